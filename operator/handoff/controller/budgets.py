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
    # When each auto-approval happened, and which request it was, by (namespace, policy, budget,
    # agent). Only the budget's window is kept: a decided request leaves when its hit does.
    _hits: defaultdict[tuple[str, str, str, str], deque[tuple[datetime, str]]] = field(
        default_factory=lambda: defaultdict(deque)
    )
    _counted: defaultdict[tuple[str, str, str, str], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )  # the uids in _hits, per key

    def usage(self, namespace: str, agent: str) -> dict[tuple[str, str], int]:
        """(policy, budget) -> auto-approvals within the budget's window, up to now."""
        now = self.clock()
        usage: dict[tuple[str, str], int] = {}
        for policy in self.policies.in_namespace(namespace):
            for budget in policy.budgets:
                key = (namespace, policy.name, budget.name, agent)
                self._expire(key, now - budget.per)
                usage[(policy.name, budget.name)] = len(self._hits[key])
        return usage

    def spend(self, body: RequestJSON) -> None:
        """An auto-approval spends from every budget of its policy that covers its action, once,
        while it is within the budget's window."""
        status = body.get("status") or {}
        decision = status.get("decision") or {}
        if decision.get("reason") not in SPENDING:
            return
        namespace, uid = body["metadata"]["namespace"], body["metadata"]["uid"]
        agent, action = body["spec"]["agent"], body["spec"]["action"]
        policy = self.policies.named(namespace, status.get("policy"))
        if policy is None:
            return
        at, now = parse_time(decision["at"]), self.clock()
        for budget in policy.budgets:
            key = (namespace, policy.name, budget.name, agent)
            if not budget.covers(action) or at <= now - budget.per or uid in self._counted[key]:
                continue
            self._counted[key].add(uid)
            hits = self._hits[key]
            hits.append((at, uid))
            if len(hits) > 1 and hits[-2][0] > at:  # arrived out of order (a restart's listing)
                self._hits[key] = deque(sorted(hits))

    def _expire(self, key: tuple[str, str, str, str], before: datetime) -> None:
        hits = self._hits[key]
        while hits and hits[0][0] <= before:
            self._counted[key].discard(hits.popleft()[1])

    def forget(self, uid: str) -> None:
        """A deleted request: its hit stays until the window passes (it was spent)."""
