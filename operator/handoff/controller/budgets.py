"""Budgets: how many auto-approvals each agent spent of each budget of its policies, in a
sliding window. Counted in memory from the decisions the watch delivers (a restart's first
listing counts them again, in any order)."""

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from handoff.controller.policies import PolicyIndex
from handoff.domain.reasons import Reason
from handoff.domain.resources import RequestJSON
from handoff.domain.timefmt import parse_time

SPENDING = (Reason.AUTO_APPROVED, Reason.LOGGED)  # the decisions that spend from a budget


@dataclass
class Budgets:
    policies: PolicyIndex
    clock: Callable[[], datetime]
    # When each auto-approval happened, by (namespace, policy, budget, agent).
    _hits: defaultdict[tuple[str, str, str, str], deque[datetime]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    _counted: set[str] = field(default_factory=set)  # uids already spent

    def usage(self, namespace: str, agent: str) -> dict[tuple[str, str], int]:
        """(policy, budget) -> auto-approvals within the budget's window, up to now."""
        now = self.clock()
        usage: dict[tuple[str, str], int] = {}
        for policy in self.policies.in_namespace(namespace):
            for budget in policy.budgets:
                hits = self._hits[(namespace, policy.name, budget.name, agent)]
                while hits and hits[0] <= now - budget.per:
                    hits.popleft()
                usage[(policy.name, budget.name)] = len(hits)
        return usage

    def spend(self, body: RequestJSON) -> None:
        """An auto-approval spends from every budget of its policy that covers its action."""
        status = body.get("status") or {}
        decision = status.get("decision") or {}
        uid = body["metadata"]["uid"]
        if decision.get("reason") not in SPENDING or uid in self._counted:
            return
        self._counted.add(uid)
        namespace = body["metadata"]["namespace"]
        agent, action = body["spec"]["agent"], body["spec"]["action"]
        at = parse_time(decision["at"])
        policy = self.policies.named(namespace, status.get("policy"))
        if policy is None:
            return
        for budget in policy.budgets:
            if budget.covers(action):
                key = (namespace, policy.name, budget.name, agent)
                hits = self._hits[key]
                hits.append(at)
                if len(hits) > 1 and hits[-2] > at:  # arrived out of order (a restart's listing)
                    self._hits[key] = deque(sorted(hits))

    def forget(self, uid: str) -> None:
        self._counted.discard(uid)
