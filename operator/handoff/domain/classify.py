"""Which tier an action falls in: each governing policy's first matching rule, highest tier wins."""

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from handoff.domain.expressions import Bindings, ExpressionError
from handoff.domain.globs import any_match
from handoff.domain.policy import DEFAULT_TIER4, CompiledPolicy, Lane, Rule
from handoff.domain.policyparts import ChecklistItem, Reviewers
from handoff.domain.policystages import Stage
from handoff.domain.reasons import Mode, Oversight


@dataclass(frozen=True)
class RequestFacts:
    """What classification reads of a request: the variables of a rule's ``when`` and more."""

    namespace: str
    agent: str
    action: str
    target: str = ""
    parameters: Mapping[str, object] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    has_rollback: bool = False
    # The answers of the ``when`` expressions this request reaches, evaluated beforehand (by
    # source; see ``when_plan``), or None to evaluate them here.
    results: Mapping[str, bool | str] | None = None

    @classmethod
    def from_spec(
        cls, namespace: str, spec: Mapping[str, Any], labels: Mapping[str, str] | None = None
    ) -> "RequestFacts":
        """From an ActionRequest's spec (or a sample request written like one)."""
        return cls(
            namespace=namespace,
            agent=str(spec.get("agent", "")),
            action=str(spec.get("action", "")),
            target=str(spec.get("target", "")),
            parameters=spec.get("parameters") or {},
            labels=labels or {},
            has_rollback=bool(spec.get("rollback")),
        )

    def variables(self) -> dict[str, object]:
        return {
            "action": self.action,
            "target": self.target,
            "parameters": dict(self.parameters),
            "agent": self.agent,
            "labels": dict(self.labels),
        }


@dataclass(frozen=True)
class Verdict:
    """One policy's answer for one request."""

    policy: str
    mode: Mode
    tier: int
    rule: str | None  # None: no rule matched, the policy's defaultTier applied
    lane: Lane  # the waiting lane with the rule's overrides (used for tiers 3 and 4)
    reviewers: Reviewers
    message: str  # why, in words
    fail_closed: bool = False  # tier 4 because the policy or a rule is broken
    not_ready: bool = False  # tier 4 because the policy is compiled but not enforced yet (held)
    policy_lane4: Lane = DEFAULT_TIER4  # where a tier 1 request waits when its budget is spent

    @property
    def oversight(self) -> Oversight:
        if self.tier == 1:
            return Oversight.HOOTL
        if self.tier == 2:
            return Oversight.HOTL
        return self.lane.oversight if self.tier == 3 else Oversight.HITL


@dataclass(frozen=True)
class Classification:
    verdict: Verdict | None  # None: no Enforce policy governs this agent (NoPolicy)
    shadow: tuple[Verdict, ...] = ()  # what each Audit policy would have said


class RuleIndex:
    """A policy's rules looked up by action: only rules whose action globs match are tried.

    Rules are bucketed by the literal prefix of each action glob (``payments.`` for
    ``payments.*``), so a lookup reads one bucket per distinct prefix length instead of matching
    every glob; the answer for an action name is remembered, since agents reuse a small
    vocabulary of actions. Candidates keep the policy's rule order: the first match still wins.
    """

    MEMO_SIZE = 8192  # action names remembered per policy; forgotten all at once past that

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._buckets: dict[str, list[int]] = {}
        for index, rule in enumerate(rules):
            for glob in rule.actions:
                bucket = self._buckets.setdefault(glob.literal_prefix, [])
                if not bucket or bucket[-1] != index:
                    bucket.append(index)
        self._lengths = sorted({len(prefix) for prefix in self._buckets})
        self._memo: dict[str, tuple[Rule, ...]] = {}

    def candidates(self, action: str) -> tuple[Rule, ...]:
        """The rules whose action globs match ``action``, in policy order."""
        found = self._memo.get(action)
        if found is None:
            indices: set[int] = set()
            for length in self._lengths:
                if length > len(action):
                    break
                bucket = self._buckets.get(action[:length])
                if bucket:
                    indices.update(bucket)
            found = tuple(
                self.rules[i] for i in sorted(indices) if any_match(self.rules[i].actions, action)
            )
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            self._memo[action] = found
        return found


# Compiled policies are frozen values replaced (never mutated) when their YAML changes, so an
# index is kept per policy object and dropped with it.
_INDEXES: dict[int, tuple["weakref.ref[CompiledPolicy]", RuleIndex]] = {}


def rule_index(policy: CompiledPolicy) -> RuleIndex:
    entry = _INDEXES.get(id(policy))
    if entry is not None and entry[0]() is policy:
        return entry[1]
    index = RuleIndex(policy.rules)
    key = id(policy)
    _INDEXES[key] = (weakref.ref(policy, lambda _: _INDEXES.pop(key, None)), index)
    return index


def evaluate(policy: CompiledPolicy, facts: RequestFacts) -> Verdict:
    """The verdict of one policy. Fails closed: a broken policy or rule gives tier 4."""
    if policy.errors:
        message = f"policy {policy.name} is not Ready, so tier 4 (fail closed)"
        return _verdict(policy, 4, None, message, fail_closed=True)
    if policy.held:
        message = (
            f"policy {policy.name} is not Ready ({policy.held}), so tier 4 (fail closed)"
            " until it is"
        )
        return replace(_verdict(policy, 4, None, message, fail_closed=True), not_ready=True)
    bindings: Bindings | None = None
    for rule in rule_index(policy).candidates(facts.action):
        if rule.targets and not any_match(rule.targets, facts.target):
            continue
        if rule.when is not None:
            bindings = bindings or Bindings(facts.variables(), facts.results)
            try:
                if not rule.when.matches(bindings):
                    continue
            except ExpressionError as e:
                message = f"rule {rule.name}: {e}; tier 4 (fail closed)"
                return _verdict(policy, 4, rule, message, fail_closed=True)
        return _verdict(policy, rule.tier, rule, f"rule {rule.name} matched {facts.action}")
    return _verdict(
        policy,
        policy.default_tier,
        None,
        f"no rule matched {facts.action}; defaultTier {policy.default_tier}",
    )


def when_plan(policies: Iterable[CompiledPolicy], facts: RequestFacts) -> list[tuple[str, ...]]:
    """The ``when`` expressions classifying ``facts`` may evaluate, as ``evaluate`` meets them:
    one group per governing policy, each in rule order up to the first rule without one. A
    group's evaluation stops at its first expression that holds or fails, as ``evaluate`` does.
    """
    groups: list[tuple[str, ...]] = []
    for policy in sorted(policies, key=lambda p: p.name):
        if not policy.governs(facts.namespace, facts.agent) or not policy.ready:
            continue
        group: list[str] = []
        for rule in rule_index(policy).candidates(facts.action):
            if rule.targets and not any_match(rule.targets, facts.target):
                continue
            if rule.when is None:
                break
            group.append(rule.when.source)
        if group:
            groups.append(tuple(group))
    return groups


def classify(policies: Iterable[CompiledPolicy], facts: RequestFacts) -> Classification:
    """Evaluate every policy that governs the request's agent; the highest tier wins.

    Ties go to the stricter lane (more approvals), then to the policy named first, so the
    answer never depends on the order policies arrived in.
    """
    enforced: list[Verdict] = []
    shadow: list[Verdict] = []
    for policy in sorted(policies, key=lambda p: p.name):
        if not policy.governs(facts.namespace, facts.agent):
            continue
        verdict = evaluate(policy, facts)
        (shadow if policy.mode is Mode.AUDIT else enforced).append(verdict)
    if not enforced:
        return Classification(None, tuple(shadow))
    winner = min(enforced, key=lambda v: (-v.tier, -v.lane.approvals, v.policy))
    return Classification(winner, tuple(shadow))


def _verdict(
    policy: CompiledPolicy, tier: int, rule: Rule | None, message: str, *, fail_closed: bool = False
) -> Verdict:
    lane = lane_of(policy, tier, rule)
    return Verdict(
        policy=policy.name,
        mode=policy.mode,
        tier=tier,
        rule=rule.name if rule else None,
        lane=lane,
        reviewers=policy.reviewers,
        message=message,
        fail_closed=fail_closed,
        policy_lane4=policy.tier4,
    )


def lane_of(policy: CompiledPolicy, tier: int, rule: Rule | None) -> Lane:
    """The lane a request of ``tier`` is decided in: the policy's, with the matched rule's own
    window, approvals, checklist and stages where it names them."""
    lane = policy.lane(tier)
    if rule is None:
        return lane
    return _override(lane, rule.decision_window, rule.approvals, rule.checklist, rule.stages)


def _override(
    lane: Lane,
    window: timedelta | None,
    approvals: int | None,
    checklist: tuple[ChecklistItem, ...] | None,
    stages: tuple[Stage, ...] | None = None,
) -> Lane:
    return Lane(
        oversight=lane.oversight,
        decision_window=window if window is not None else lane.decision_window,
        approvals=approvals if approvals is not None else lane.approvals,
        checklist=checklist if checklist is not None else lane.checklist,
        hold_for=lane.hold_for,
        escalate_after=lane.escalate_after,
        escalate_to=lane.escalate_to,
        min_review_seconds=lane.min_review_seconds,
        stages=stages if stages is not None else lane.stages,
    )
