"""AgentActionPolicy compiled once into frozen values.

``compile_policy`` runs when a policy is applied. It validates what the schema cannot (CEL,
globs, durations against each other), and never raises: problems are collected in ``errors``,
which makes the policy Ready=False and every action it governs tier 4 until it is fixed.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from handoff.domain.durations import MAX_WINDOW, MIN_WINDOW, parse_duration
from handoff.domain.executors import KubernetesScope, compile_scope
from handoff.domain.expressions import Expression, ExpressionError, compile_expression
from handoff.domain.globs import Glob
from handoff.domain.reasons import Mode, Oversight
from handoff.domain.resources import (
    ChecklistItemJSON,
    GrantableJSON,
    LaneJSON,
    NotificationJSON,
    PolicySpecJSON,
    RuleJSON,
    SecretKeyJSON,
    StageJSON,
)

TIERS = (1, 2, 3, 4)


@dataclass(frozen=True)
class ChecklistItem:
    id: str
    text: str

    def to_json(self) -> ChecklistItemJSON:
        return {"id": self.id, "text": self.text}


#: What a reviewer acknowledges when a policy names no checklist: the article's three questions.
DEFAULT_CHECKLIST = (
    ChecklistItem("what", "I read what the action does and to which target"),
    ChecklistItem("impact", "I know what happens if it goes wrong"),
    ChecklistItem("rollback", "I know how it would be undone"),
)


@dataclass(frozen=True)
class Reviewers:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.users or self.groups)


@dataclass(frozen=True)
class Stage:
    """One step of a staged HITL lane: its reviewers decide it, in order, after the stage before
    it has its approvals. Its checklist is the lane's unless it names its own."""

    name: str
    reviewers: Reviewers
    approvals: int = 1
    checklist: tuple[ChecklistItem, ...] | None = None
    escalate_after: timedelta | None = None  # from when the stage opens
    escalate_to: tuple[str, ...] = ()


#: The most stages a lane may declare (the CRD's bound too).
MAX_STAGES = 5


@dataclass(frozen=True)
class Lane:
    """How a tier 3 or 4 request waits: the staging queue's settings."""

    oversight: Oversight
    decision_window: timedelta
    approvals: int
    checklist: tuple[ChecklistItem, ...]
    hold_for: timedelta | None = None  # tier 3 HOTL only: approved when it passes, unless vetoed
    escalate_after: timedelta | None = None  # still undecided by then: the Escalated notification
    escalate_to: tuple[str, ...] = ()
    min_review_seconds: int = 0  # the console holds Approve this long; faster approvals are counted
    stages: tuple[Stage, ...] = ()  # HITL only: approved stage by stage, in order


DEFAULT_TIER3 = Lane(
    Oversight.HOTL, timedelta(minutes=30), 1, DEFAULT_CHECKLIST, timedelta(minutes=5)
)
DEFAULT_TIER4 = Lane(Oversight.HITL, timedelta(minutes=15), 1, DEFAULT_CHECKLIST)


@dataclass(frozen=True)
class SecretKey:
    name: str
    key: str


@dataclass(frozen=True)
class NotificationTarget:
    """Where waiting requests are announced: a JSON webhook, a Slack incoming webhook, or
    (SlackApp) a channel the Handoff Slack app posts to, with Approve and Deny buttons."""

    name: str
    format: str = "JSON"  # JSON | Slack | SlackApp
    url: str | None = None
    url_secret: SecretKey | None = None
    hmac_secret: SecretKey | None = None
    events: frozenset[str] = frozenset({"Pending", "Escalated"})
    channel: str | None = None  # SlackApp


@dataclass(frozen=True)
class WebhookExecutor:
    """Where Handoff posts approved Webhook-executed actions, signed when an HMAC key is set."""

    url: str | None = None
    url_secret: SecretKey | None = None
    hmac_secret: SecretKey | None = None


@dataclass(frozen=True)
class Budget:
    """At most ``max`` auto-approved (tier 1 and 2) actions matching ``actions`` per agent per
    ``per``; past it, a person decides. A runaway agent is contained by the cluster."""

    name: str
    actions: tuple[Glob, ...]
    max: int
    per: timedelta

    def covers(self, action: str) -> bool:
        return any(glob.matches(action) for glob in self.actions)


@dataclass(frozen=True)
class Grantable:
    """A rule's consent to standing grants (``ActionGrant``): for at most ``max_duration`` and
    ``max_count`` uses each. A rule without it cannot be granted in advance."""

    max_duration: timedelta
    max_count: int


#: The bounds of ``grantable`` (the CRD enforces the same; a test keeps them equal).
MAX_GRANT_COUNT = 1000


@dataclass(frozen=True)
class Rule:
    name: str
    tier: int
    actions: tuple[Glob, ...]
    targets: tuple[Glob, ...] = ()  # empty: any target
    when: Expression | None = None
    decision_window: timedelta | None = None  # lane overrides for this rule's requests
    approvals: int | None = None
    checklist: tuple[ChecklistItem, ...] | None = None
    stages: tuple[Stage, ...] | None = None  # its own approval stages (tier 3 HITL or 4)
    grantable: Grantable | None = None  # None: no ActionGrant may cover this rule


@dataclass(frozen=True)
class CompiledPolicy:
    namespace: str
    name: str
    generation: int = 0
    service_accounts: frozenset[str] = frozenset()
    mode: Mode = Mode.ENFORCE
    default_tier: int = 4
    reviewers: Reviewers = Reviewers()
    tier3: Lane = DEFAULT_TIER3
    tier4: Lane = DEFAULT_TIER4
    rules: tuple[Rule, ...] = ()
    notifications: tuple[NotificationTarget, ...] = ()
    kubernetes: KubernetesScope = field(default_factory=KubernetesScope)
    webhook: WebhookExecutor | None = None
    budgets: tuple[Budget, ...] = ()
    errors: tuple[str, ...] = field(default=())

    @property
    def ready(self) -> bool:
        return not self.errors

    def governs(self, namespace: str, agent: str) -> bool:
        return namespace == self.namespace and agent in self.service_accounts

    def lane(self, tier: int) -> Lane:
        """The waiting lane of a tier; a tier 2 request without rollback waits in tier 4's."""
        return self.tier3 if tier == 3 else self.tier4


def compile_policy(
    namespace: str, name: str, spec: PolicySpecJSON, generation: int = 0
) -> CompiledPolicy:
    """Compile a policy's spec. Never raises: problems end up in ``errors``."""
    errors: list[str] = []
    tiers = spec.get("tiers") or {}
    tier3 = _lane(tiers.get("tier3"), DEFAULT_TIER3, "tiers.tier3", errors, tier=3)
    tier4 = _lane(tiers.get("tier4"), DEFAULT_TIER4, "tiers.tier4", errors, tier=4)
    rules = tuple(
        rule
        for index, raw in enumerate(spec.get("rules") or [])
        if (rule := _rule(raw, index, errors)) is not None
    )
    _same_stage_reviewers(
        [("tier3", tier3.stages), ("tier4", tier4.stages)]
        + [(f"rule {r.name!r}", r.stages or ()) for r in rules],
        errors,
    )
    if tier3.oversight is not Oversight.HITL and any(r.stages for r in rules if r.tier == 3):
        errors.append("rules with stages at tier 3 need a HITL tier 3 lane (tiers.tier3.oversight)")
    names = [rule.name for rule in rules]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"rule name {duplicate!r} is used more than once")
    default_tier = spec.get("defaultTier", 4)
    if default_tier not in TIERS:
        errors.append(f"defaultTier {default_tier} is not one of 1, 2, 3, 4")
        default_tier = 4
    try:
        mode = Mode(spec.get("mode", Mode.ENFORCE))
    except ValueError:
        errors.append(f"mode {spec.get('mode')!r} is neither Enforce nor Audit")
        mode = Mode.ENFORCE
    agents = spec.get("agents") or {}
    reviewers = spec.get("reviewers") or {}
    kube = compile_scope((spec.get("executors") or {}).get("kubernetes"), errors)
    hook = (spec.get("executors") or {}).get("webhook")
    return CompiledPolicy(
        namespace=namespace,
        name=name,
        generation=generation,
        service_accounts=frozenset(agents.get("serviceAccounts") or ()),
        mode=mode,
        default_tier=default_tier,
        reviewers=Reviewers(
            frozenset(reviewers.get("users") or ()), frozenset(reviewers.get("groups") or ())
        ),
        tier3=tier3,
        tier4=tier4,
        rules=rules,
        notifications=tuple(_target(raw) for raw in spec.get("notifications") or ()),
        budgets=tuple(
            Budget(b["name"], tuple(Glob.compile(a) for a in b["actions"]), int(b["max"]), per)
            for b in spec.get("budgets") or []
            if (per := _duration(b.get("per"), None, f"budget {b.get('name')!r}", errors))
            is not None
        ),
        webhook=WebhookExecutor(
            url=hook.get("url"),
            url_secret=_secret_key(hook.get("urlSecretRef")),
            hmac_secret=_secret_key(hook.get("hmacSecretRef")),
        )
        if hook
        else None,
        kubernetes=kube,
        errors=tuple(errors),
    )


def _lane(raw: LaneJSON | None, default: Lane, where: str, errors: list[str], *, tier: int) -> Lane:
    if not raw:
        return default
    oversight = default.oversight
    if tier == 3 and "oversight" in raw:
        try:
            oversight = Oversight(raw["oversight"])
        except ValueError:
            oversight = Oversight.HITL
        if oversight not in (Oversight.HOTL, Oversight.HITL):
            errors.append(f"{where}.oversight must be HOTL or HITL, not {raw['oversight']!r}")
            oversight = Oversight.HITL
    elif tier != 3 and ("oversight" in raw or "holdFor" in raw):
        # Tier 4 is always HITL: nothing may turn it into a hold that approves by itself. Tier 3
        # may name holdFor alone: its oversight is then its default, HOTL.
        errors.append(f"{where} is always HITL: oversight and holdFor are not allowed there")
    window = _duration(raw.get("decisionWindow"), default.decision_window, where, errors)
    hold = _duration(raw.get("holdFor"), default.hold_for, where, errors) if tier == 3 else None
    approvals = raw.get("approvals", default.approvals)
    if approvals < 1:
        errors.append(f"{where}.approvals must be at least 1, not {approvals}")
        approvals = max(default.approvals, 1)
    checklist = _checklist(raw.get("checklist"), where, errors)
    escalate_after = _duration(raw.get("escalateAfter"), None, where, errors)
    stages = _stages(raw.get("stages"), where, errors)
    if stages and oversight is not Oversight.HITL:
        errors.append(f"{where}.stages need a HITL lane: a HOTL hold has nobody to approve in turn")
        stages = ()
    return Lane(
        oversight=oversight,
        decision_window=window or default.decision_window,
        approvals=approvals,
        checklist=checklist if checklist is not None else default.checklist,
        hold_for=hold if oversight is Oversight.HOTL else None,
        escalate_after=escalate_after,
        escalate_to=tuple(raw.get("escalateTo") or ()),
        min_review_seconds=int(raw.get("minReviewSeconds") or 0),
        stages=stages,
    )


def _stages(raw: list[StageJSON] | None, where: str, errors: list[str]) -> tuple[Stage, ...]:
    stages: list[Stage] = []
    for index, item in enumerate(raw or ()):
        name = item.get("name") or f"stages[{index}]"
        at = f"{where}.stages[{name}]"
        reviewers = item.get("reviewers") or {}
        people = Reviewers(
            frozenset(reviewers.get("users") or ()), frozenset(reviewers.get("groups") or ())
        )
        if not people:
            errors.append(f"{at} names no reviewers: nobody could approve it")
        approvals = item.get("approvals", 1)
        if approvals < 1:
            errors.append(f"{at}.approvals must be at least 1, not {approvals}")
            approvals = 1
        stages.append(Stage(
            name=name,
            reviewers=people,
            approvals=approvals,
            checklist=_checklist(item.get("checklist"), at, errors),
            escalate_after=_duration(item.get("escalateAfter"), None, at, errors),
            escalate_to=tuple(item.get("escalateTo") or ()),
        ))  # fmt: skip
    names = [stage.name for stage in stages]
    for duplicate in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"{where}: stage name {duplicate!r} is used more than once")
    if len(stages) > MAX_STAGES:
        errors.append(f"{where}: at most {MAX_STAGES} stages, not {len(stages)}")
    return tuple(stages)


def _same_stage_reviewers(places: list[tuple[str, tuple[Stage, ...]]], errors: list[str]) -> None:
    """A stage's name is the right to approve it (the verb approve on
    agentactionpolicies/<policy>:<stage>), so a name used in two places must mean the same
    people in both."""
    seen: dict[str, tuple[str, Reviewers]] = {}
    for where, stages in places:
        for stage in stages:
            first = seen.setdefault(stage.name, (where, stage.reviewers))
            if first[1] != stage.reviewers:
                errors.append(
                    f"stage {stage.name!r} is in {first[0]} and {where} with different"
                    " reviewers: give it the same reviewers in both, or another name"
                )


def _secret_key(ref: SecretKeyJSON | None) -> SecretKey | None:
    return SecretKey(ref["name"], ref["key"]) if ref else None


def _target(raw: NotificationJSON) -> NotificationTarget:
    return NotificationTarget(
        name=raw["name"],
        format=raw.get("format", "JSON"),
        url=raw.get("url"),
        url_secret=_secret_key(raw.get("urlSecretRef")),
        hmac_secret=_secret_key(raw.get("hmacSecretRef")),
        events=frozenset(raw.get("events") or ("Pending", "Escalated")),
        channel=raw.get("channel"),
    )


def _rule(raw: RuleJSON, index: int, errors: list[str]) -> Rule | None:
    name = raw.get("name") or f"rules[{index}]"
    where = f"rule {name!r}"
    tier = raw.get("tier")
    if tier not in TIERS:
        errors.append(f"{where}: tier {tier!r} is not one of 1, 2, 3, 4")
        return None
    actions = raw.get("actions") or []
    if not actions:
        errors.append(f"{where}: actions must list at least one glob")
        return None
    when: Expression | None = None
    if raw.get("when"):
        try:
            when = compile_expression(raw["when"])
        except ExpressionError as e:
            errors.append(f"{where}: when: {e}")
            return None
    approvals = raw.get("approvals")
    if approvals is not None and approvals < 1:
        errors.append(f"{where}: approvals must be at least 1, not {approvals}")
        approvals = None
    stages = _stages(raw.get("stages"), where, errors) if "stages" in raw else None
    if stages and tier < 3:
        errors.append(f"{where}: stages are for tier 3 (HITL) and tier 4 rules")
        stages = None
    return Rule(
        name=name,
        tier=tier,
        actions=tuple(Glob.compile(a) for a in actions),
        targets=tuple(Glob.compile(t) for t in raw.get("targets") or ()),
        when=when,
        decision_window=_duration(raw.get("decisionWindow"), None, where, errors),
        approvals=approvals,
        checklist=_checklist(raw.get("checklist"), where, errors),
        stages=stages,
        grantable=_grantable(raw.get("grantable"), where, errors),
    )


def _grantable(raw: GrantableJSON | None, where: str, errors: list[str]) -> Grantable | None:
    if raw is None:
        return None
    text, count = raw.get("maxDuration"), raw.get("maxCount")
    if text is None or count is None:
        errors.append(f"{where}: grantable needs both maxDuration (such as 4h) and maxCount")
        return None
    if not 1 <= count <= MAX_GRANT_COUNT:
        errors.append(f"{where}: grantable.maxCount must be 1 to {MAX_GRANT_COUNT}, not {count}")
        return None
    longest = _duration(text, None, f"{where}: grantable.maxDuration", errors)
    return Grantable(longest, count) if longest is not None else None


def _duration(
    text: str | None, default: timedelta | None, where: str, errors: list[str]
) -> timedelta | None:
    if text is None:
        return default
    try:
        value = parse_duration(text)
    except ValueError as e:
        errors.append(f"{where}: {e}")
        return default
    if not MIN_WINDOW <= value <= MAX_WINDOW:
        errors.append(f"{where}: {text} is outside 10s to 168h")
        return default
    return value


def _checklist(
    raw: list[ChecklistItemJSON] | None, where: str, errors: list[str]
) -> tuple[ChecklistItem, ...] | None:
    if raw is None:
        return None
    items = tuple(ChecklistItem(item["id"], item["text"]) for item in raw)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        errors.append(f"{where}: checklist ids must be unique")
    return items
