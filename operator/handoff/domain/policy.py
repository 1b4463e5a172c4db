"""AgentActionPolicy compiled once into frozen values.

``compile_policy`` runs when a policy is applied. It validates what the schema cannot (CEL,
globs, durations against each other), and never raises: problems are collected in ``errors``,
which makes the policy Ready=False and every action it governs tier 4 until it is fixed. A
policy that compiles but whose credentials or executor Role the operator could not put in place
is ``held`` (Ready=False, CredentialsFailed): tier 4 too, until they are.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from handoff.domain.executors import KubernetesScope, compile_scope
from handoff.domain.expressions import Expression, ExpressionError, compile_expression
from handoff.domain.globs import Glob
from handoff.domain.grantable import Grantable, compile_grantable
from handoff.domain.policyparts import (
    DEFAULT_CHECKLIST,
    ChecklistItem,
    Reviewers,
    compile_checklist,
    compile_duration,
    compile_reviewers,
)
from handoff.domain.policystages import Stage, compile_stages, same_stage_reviewers
from handoff.domain.reasons import Mode, Oversight
from handoff.domain.resources import (
    LaneJSON,
    NotificationJSON,
    PolicySpecJSON,
    RuleJSON,
    SecretKeyJSON,
)

TIERS = (1, 2, 3, 4)


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
    reviewers: Reviewers = field(default_factory=Reviewers)
    tier3: Lane = DEFAULT_TIER3
    tier4: Lane = DEFAULT_TIER4
    rules: tuple[Rule, ...] = ()
    notifications: tuple[NotificationTarget, ...] = ()
    kubernetes: KubernetesScope = field(default_factory=KubernetesScope)
    webhook: WebhookExecutor | None = None
    budgets: tuple[Budget, ...] = ()
    errors: tuple[str, ...] = field(default=())
    # Compiled, but not enforced yet: what the operator could not put in place for it (its
    # credentials, the executor's Role), in words. Classified tier 4 until it is (fail closed).
    held: str = ""

    @property
    def ready(self) -> bool:
        return not self.errors and not self.held

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
    same_stage_reviewers(
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
    kube = compile_scope((spec.get("executors") or {}).get("kubernetes"), errors)
    hook = (spec.get("executors") or {}).get("webhook")
    return CompiledPolicy(
        namespace=namespace,
        name=name,
        generation=generation,
        service_accounts=frozenset(agents.get("serviceAccounts") or ()),
        mode=mode,
        default_tier=default_tier,
        reviewers=compile_reviewers(spec.get("reviewers")),
        tier3=tier3,
        tier4=tier4,
        rules=rules,
        notifications=tuple(_target(raw) for raw in spec.get("notifications") or ()),
        budgets=tuple(
            Budget(b["name"], tuple(Glob.compile(a) for a in b["actions"]), int(b["max"]), per)
            for b in spec.get("budgets") or []
            if (per := compile_duration(b.get("per"), None, f"budget {b.get('name')!r}", errors))
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
    window = compile_duration(raw.get("decisionWindow"), default.decision_window, where, errors)
    hold = (
        compile_duration(raw.get("holdFor"), default.hold_for, where, errors) if tier == 3 else None
    )
    approvals = raw.get("approvals", default.approvals)
    if approvals < 1:
        errors.append(f"{where}.approvals must be at least 1, not {approvals}")
        approvals = max(default.approvals, 1)
    checklist = compile_checklist(raw.get("checklist"), where, errors)
    escalate_after = compile_duration(raw.get("escalateAfter"), None, where, errors)
    stages = compile_stages(raw.get("stages"), where, errors)
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
    stages = compile_stages(raw.get("stages"), where, errors) if "stages" in raw else None
    if stages and tier < 3:
        errors.append(f"{where}: stages are for tier 3 (HITL) and tier 4 rules")
        stages = None
    return Rule(
        name=name,
        tier=tier,
        actions=tuple(Glob.compile(a) for a in actions),
        targets=tuple(Glob.compile(t) for t in raw.get("targets") or ()),
        when=when,
        decision_window=compile_duration(raw.get("decisionWindow"), None, where, errors),
        approvals=approvals,
        checklist=compile_checklist(raw.get("checklist"), where, errors),
        stages=stages,
        grantable=compile_grantable(raw.get("grantable"), where, errors),
    )
