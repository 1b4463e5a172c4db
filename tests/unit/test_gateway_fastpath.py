"""The gateway's tier-1 fast path (gateway/fastpath.py): it says "tier 1 now" only where the
operator will too."""

import asyncio
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from handoff.adapters.sandbox import BUDGET
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.gateway.fastpath import LocalClassifier

NS, AGENT = "ns", "agent"
COSTLY = "parameters.items.exists(x, x == 'admin')"


class View:
    def __init__(self, *bodies: dict[str, Any]) -> None:
        self.bodies = list(bodies)

    def in_namespace(self, namespace: str) -> list[Mapping[str, Any]]:
        return list(self.bodies)

    def compiled(self, body: Mapping[str, Any]) -> CompiledPolicy:
        meta = body["metadata"]
        return compile_policy(NS, meta["name"], body["spec"], meta["generation"])


class Sandbox:
    """Answers as the real one does when the budget it is given runs out on ``COSTLY``."""

    budget = BUDGET

    def __init__(self, needs: float) -> None:
        self.needs = needs  # seconds of CPU the `when` takes over these parameters
        self.given: list[float | None] = []

    async def evaluate(
        self, key: Hashable, variables: Mapping[str, object], groups: Sequence[Sequence[str]],
        budget: float | None = None,
    ) -> dict[str, bool | str]:  # fmt: skip
        self.given.append(budget)
        spent = self.budget if budget is None else budget
        if self.needs > spent:
            return {COSTLY: f"{COSTLY!r} exceeded the evaluation budget and was stopped"}
        return {COSTLY: False}


def _policy() -> dict[str, Any]:
    rules = [{"name": "admins", "actions": ["mcp.bank.*"], "when": COSTLY, "tier": 4},
             {"name": "rest", "actions": ["mcp.bank.*"], "tier": 1}]  # fmt: skip
    return {"metadata": {"name": "p", "namespace": NS, "generation": 1},
            "spec": {"agents": {"serviceAccounts": [AGENT]}, "reviewers": {"groups": ["r"]},
                     "rules": rules},
            "status": {"observedGeneration": 1}}  # fmt: skip


def _request() -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": "r", "labels": {"handoff.dev/agent": AGENT}},
            "spec": {"agent": AGENT, "action": "mcp.bank.read", "target": "t",
                     "parameters": {"items": ["a"] * 256}}}  # fmt: skip


def _why_not(needs: float) -> tuple[str | None, list[float | None]]:
    sandbox = Sandbox(needs)
    classifier = LocalClassifier(object(), View(_policy()), sandbox)  # type: ignore[arg-type]
    return asyncio.run(classifier.why_not_tier1(_request())), sandbox.given


def test_a_when_near_the_operators_budget_is_never_tier_1_here() -> None:
    """The operator fails a `when` that spends its CPU budget closed (tier 4). A `when` whose
    parameters cost just under the budget in the gateway and just over it in the operator (CPU
    time is measured, with the noise of a busy machine) ran at once, then went to a person."""
    assert _why_not(BUDGET * 0.1) == (None, [BUDGET / 2])  # cheap: tier 1 as the operator says
    assert _why_not(BUDGET * 0.9) == ("tier 4", [BUDGET / 2])  # the operator may fail it: wait
