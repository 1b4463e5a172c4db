"""Standing grants: a reviewer's bounded approval in advance (the ``ActionGrant`` kind). Pure.

A reviewer approving a request may grant approval for the next few requests exactly like it:
the same agent and action, classified by the same policy and rule, a target matching the
grant's pattern and its optional CEL condition true, until ``expiresAt`` and for at most
``maxUses`` requests. The grant only narrows: a request is covered when it is classified, now,
by the rule the grant names (so the rule's own action, target and ``when`` still hold) and the
grant's bounds hold on top. Nothing a grant says can make a request match a rule it does not.

Admission checks who may create a grant and against the rule's ``grantable`` bounds; these
functions check it again against the policy as it is now (a rule that stopped being grantable
covers nothing) and against the request that prompted it.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from handoff.domain.classify import RequestFacts
from handoff.domain.globs import Glob
from handoff.domain.model import Decision, Event, Step, service_account_user
from handoff.domain.policy import CompiledPolicy
from handoff.domain.reasons import DECIDED, Outcome, Phase, Reason, ReviewDecision, Transition
from handoff.domain.timefmt import format_time, parse_time

#: What a request that waits for people carries and a grant-approved one does not.
WAITING_KEYS = frozenset(
    {"deadline", "requiredApprovals", "checklist", "reviews", "minReviewSeconds", "escalation"}
)

#: How ``decision.by`` names the grant beside its author.
GRANT_REF = "actiongrant/"

# An answer of a condition: True, False, why it could not be evaluated, or None (no condition).
Answer = bool | str | None


class GrantError(ValueError):
    """An ActionGrant that cannot be read; it covers nothing."""


@dataclass(frozen=True)
class Grant:
    namespace: str
    name: str
    author: str
    agent: str
    action: str
    policy: str
    rule: str
    target: Glob
    condition: str | None
    created: datetime
    expires: datetime
    max_uses: int
    prompted_by: str
    groups: tuple[str, ...] = ()  # the author's groups when granting (admission stamps them)
    used_by: tuple[str, ...] = ()  # the uids of the requests it covered, in order
    checked: bool = False  # the operator found it no wider than the request that prompted it
    refused: str | None = None  # why the operator refused it: it covers nothing, ever
    resource_version: str = ""

    @property
    def used(self) -> int:
        return len(self.used_by)

    @property
    def ref(self) -> str:
        return GRANT_REF + self.name

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> "Grant":
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        status = body.get("status") or {}
        try:
            return cls(
                namespace=str(meta["namespace"]),
                name=str(meta["name"]),
                author=str(spec["grantedBy"]),
                agent=str(spec["agent"]),
                action=str(spec["action"]),
                policy=str(spec["policy"]),
                rule=str(spec["rule"]),
                target=Glob.compile(str(spec["target"])),
                condition=spec.get("condition") or None,
                created=parse_time(meta["creationTimestamp"]),
                expires=parse_time(spec["expiresAt"]),
                max_uses=int(spec["maxUses"]),
                prompted_by=str(spec["request"]),
                groups=tuple(str(g) for g in spec.get("grantedGroups") or ()),
                used_by=tuple(str(u["uid"]) for u in status.get("usedBy") or ()),
                checked=status.get("checked") is True,
                refused=status.get("refused") or None,
                resource_version=str(meta.get("resourceVersion", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise GrantError(f"actiongrant {meta.get('name')!r} is malformed: {e!r}") from e


def bounds_problem(grant: Grant, policies: Mapping[str, CompiledPolicy]) -> str | None:
    """Why ``grant`` is beyond what its rule allows as the policy is now, or None."""
    policy = policies.get(grant.policy)
    rule = next((r for r in policy.rules if r.name == grant.rule), None) if policy else None
    if policy is None or rule is None:
        return f"policy {grant.policy} has no rule {grant.rule}"
    if rule.grantable is None:
        return f"rule {grant.rule} of policy {grant.policy} is not grantable"
    if grant.expires - grant.created > rule.grantable.max_duration:
        return f"it lasts longer than rule {grant.rule}'s grantable.maxDuration"
    if grant.max_uses > rule.grantable.max_count:
        return f"its maxUses is over rule {grant.rule}'s grantable.maxCount"
    return None


def prompt_problem(grant: Grant, prompt: Mapping[str, Any], condition: Answer) -> str | None:
    """Why ``grant`` is wider than the request that prompted it (``prompt``, as the API server
    returns it; ``condition``: the grant's condition on it), or None. The grant must name that
    request's agent, action, policy and rule, its target pattern and condition must hold for it,
    and its author must have approved it."""
    meta, spec = prompt.get("metadata") or {}, prompt.get("spec") or {}
    status = prompt.get("status") or {}
    facts = RequestFacts.from_spec(str(meta.get("namespace", "")), spec)
    seen = (facts.namespace, facts.agent, facts.action, status.get("policy"), status.get("rule"))
    if seen != (grant.namespace, grant.agent, grant.action, grant.policy, grant.rule):
        return f"it is not for the agent, action, policy and rule of {grant.prompted_by}"
    if not grant.target.matches(facts.target) or not holds(grant, condition):
        return f"its target or condition does not hold for {grant.prompted_by} itself"
    approvers = {
        r.get("reviewer")
        for r in status.get("reviews") or ()
        if r.get("decision") == ReviewDecision.APPROVE
    }
    if grant.author not in approvers:
        return f"{grant.author} did not approve {grant.prompted_by}"
    if (many := _many_people(status)) is not None:
        return f"{grant.prompted_by} {many}"
    return _decision_problem(grant, status.get("decision"))


def _decision_problem(grant: Grant, decision: Mapping[str, Any] | None) -> str | None:
    """Why the prompt's decision does not show its author's approval counting, or None (also
    while it is undecided: the caller waits, see ``undecided``)."""
    if decision is None:
        return None
    by = decision.get("by") or ()
    counted = (decision.get("outcome"), decision.get("reason")) == (
        str(Outcome.APPROVED),
        str(Reason.HUMAN_APPROVED),
    )
    if counted and grant.author in by:
        return None
    outcome, reason, who = decision.get("outcome"), decision.get("reason"), ", ".join(by)
    return (
        f"{grant.author}'s approval did not decide {grant.prompted_by} (it was decided"
        f" {outcome}, {reason}, by {who or 'nobody'}): a grant comes only from an approval"
        " that counted"
    )


def undecided(prompt: Mapping[str, Any]) -> bool:
    """Whether the request that prompted a grant is still undecided: the grant covers nothing
    yet (its author's approval may still fail to count), and is not refused for it."""
    return "decision" not in (prompt.get("status") or {})


def _many_people(status: Mapping[str, Any]) -> str | None:
    """Why a request with this (waiting) status takes more than one person's approval, or None.
    A grant is one person's approval in advance: it never stands in for several."""
    if status.get("stages"):
        names = ", ".join(str(s.get("name")) for s in status["stages"])
        return (
            f"is approved in stages ({names}): a grant is one person's approval and cannot"
            " stand in for every stage"
        )
    required = status.get("requiredApprovals") or 1
    if isinstance(required, int) and required > 1:
        return (
            f"needs {required} approvals: a grant is one person's approval and cannot stand in"
            f" for {required}"
        )
    return None


def request_problem(patch: Mapping[str, Any], requested_by: str, grant: Grant) -> str | None:
    """Why ``grant`` may not cover a request starting to wait with ``patch``, filed by
    ``requested_by`` (the cluster's stamp), whatever its facts: it takes more than one person,
    or the agent did not file it itself. A grant approves in advance the agent's own next
    requests; admission lets a person file naming any agent of the namespace, so the grant's
    author (nobody approves their own request, in advance either), another person, or the
    operator filing a rollback gets people's review, as without the grant."""
    if requested_by == grant.author:
        return f"{grant.author} filed the request: nobody approves their own request"
    return no_grant_covers(patch, requested_by, grant.namespace, grant.agent)


def no_grant_covers(
    patch: Mapping[str, Any], requested_by: str, namespace: str, agent: str
) -> str | None:
    """Why no grant at all may cover ``agent``'s request starting to wait with ``patch``,
    filed by ``requested_by``, or None: the request alone rules every grant out (it takes more
    than one person, or the agent did not file it itself). A part of ``request_problem``: the
    operator still lists and checks the grants for such a request, since that check records a
    grant's own refusal (test_hostile_stages_grants.py)."""
    if (many := _many_people(patch)) is not None:
        return f"the request {many}"
    if requested_by != service_account_user(namespace, agent):
        who = requested_by or "someone the cluster did not stamp"
        return f"{who} filed the request, not {agent}: a grant covers the agent's own only"
    return None


def covers(
    grant: Grant,
    facts: RequestFacts,
    classified: tuple[str, str | None],
    now: datetime,
    condition: Answer,
) -> bool:
    """Whether ``grant`` approves a request with ``facts``, classified (policy, rule) now, at
    ``now``, its condition answering ``condition``. Bounds first: an expired, used-up, refused or
    unchecked grant covers nothing, whatever the request says."""
    if grant.refused is not None or not grant.checked:
        return False
    if not grant.created <= now < grant.expires or grant.used >= grant.max_uses:
        return False
    same = (facts.namespace, facts.agent, facts.action) == (grant.namespace, grant.agent,
                                                           grant.action)  # fmt: skip
    if not same or classified != (grant.policy, grant.rule):
        return False
    return grant.target.matches(facts.target) and holds(grant, condition)


def holds(grant: Grant, condition: Answer) -> bool:
    """A grant with a condition needs it True (False, or an error, is no); one without, nothing."""
    return condition is True if grant.condition is not None else True


def usable(grant: Grant, now: datetime) -> bool:
    """Not refused, not expired and not used up: what ``kubectl handoff grants`` calls Active."""
    return (
        grant.refused is None
        and grant.created <= now < grant.expires
        and (grant.used < grant.max_uses)
    )


def approve(step: Step, grant: Grant, use: int, now: datetime) -> Step:
    """``step`` (a request starting to wait for people) turned into its approval by ``grant``,
    whose ``use``-th use it is: the same classification, decided at once, GrantApproved."""
    assert step.patch is not None
    message = (
        f"approved in advance by {grant.author} with {grant.ref}"
        f" (use {use} of {grant.max_uses}, until {format_time(grant.expires)})"
    )
    decision = Decision(Outcome.APPROVED, Reason.GRANT_APPROVED, (grant.author, grant.ref), now,
                        message)  # fmt: skip
    patch = {k: v for k, v in step.patch.items() if k not in WAITING_KEYS}
    conditions = [c for c in patch.get("conditions") or () if c.get("type") != DECIDED]
    decided = {
        "type": DECIDED,
        "status": "True",
        "reason": str(Reason.GRANT_APPROVED),
        "message": message,
        "lastTransitionTime": format_time(now.replace(microsecond=0)),
    }
    generations = {c.get("observedGeneration") for c in conditions} - {None}
    if generations:
        decided["observedGeneration"] = max(generations)
    patch |= {
        "phase": str(Phase.APPROVED),
        "decision": decision.to_json(),
        "conditions": [*conditions, decided],
    }
    event = Event("Normal", Reason.GRANT_APPROVED, message)
    return Step(patch, decision, event, None, Transition.DECIDED)
