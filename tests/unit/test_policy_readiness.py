"""A policy that compiles but is not enforced yet (Ready=False, CredentialsFailed: its credentials
or its executor's Role are not in place) holds what it governs for a person (tier 4,
PolicyNotReady), in the operator's index and in the gateway's fast path alike; never freer than
the same policy Ready would be."""

from dataclasses import replace
from typing import Any

import pytest
from handoff.controller.policies import PolicyIndex, policy_status
from handoff.domain.classify import RequestFacts
from handoff.domain.decide import decide
from handoff.domain.readiness import held_by_status
from handoff.domain.reasons import Phase, Reason
from handoff.gateway.fastpath import why_not

from .helpers import AGENT, CREATED, NS, policy, request

WHY = "the Kubernetes executor's Role could not be made: no Widget in example.com/v1"


def body(generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> Any:
    document: dict[str, Any] = {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "AgentActionPolicy",
        "metadata": {"name": "payments", "namespace": NS, "generation": generation},
        "spec": {"agents": {"serviceAccounts": [AGENT]},
                 "rules": [{"name": "reads", "actions": ["db.query"], "tier": 1}], **spec},
    }  # fmt: skip
    if status is not None:
        document["status"] = status
    return document


def status(ready: str, reason: str, message: str = "", observed: int = 1) -> dict[str, Any]:
    condition = {"type": "Ready", "status": ready, "reason": reason, "message": message}
    return {"observedGeneration": observed, "conditions": [condition]}


def test_a_held_policy_holds_a_tier1_action_for_a_person() -> None:
    held = replace(policy(), held=WHY)
    assert not held.ready
    assert not held.errors
    step = decide([held], request("db.query"), CREATED)
    assert step.patch is not None
    assert (step.patch["tier"], step.patch["phase"]) == (4, Phase.AWAITING_APPROVAL)
    classified = step.patch["conditions"][0]
    assert classified["reason"] == Reason.POLICY_NOT_READY
    assert WHY in classified["message"]
    assert "until it is" in classified["message"]


def test_a_held_policy_among_ready_ones_still_wins_tier4() -> None:
    ready, held = policy("a-ready"), replace(policy("b-held"), held=WHY)
    step = decide([ready, held], request("db.query"), CREATED)
    assert step.patch is not None
    assert (step.patch["tier"], step.patch["policy"]) == (4, "b-held")


def test_the_held_policys_own_status_stays_credentials_failed() -> None:
    held = replace(policy(), held=WHY)
    new = policy_status(held, {}, "2026-01-01T00:00:00Z", [WHY])
    assert (new["conditions"][0]["status"], new["conditions"][0]["reason"]) == (
        "False",
        "CredentialsFailed",
    )


@pytest.mark.parametrize(
    ("state", "held"),
    [
        (None, None),  # no status yet: says nothing
        (status("True", "Compiled"), ""),
        (status("False", "CredentialsFailed", WHY + "; retrying"), WHY),
        (status("False", "CompileFailed", "bad CEL"), ""),  # a compile finds it again itself
        (status("False", "CredentialsFailed", WHY, observed=0), None),  # an older generation's
        (status("False", "CredentialsFailed"), "CredentialsFailed"),  # no message: the reason
        (status("False", ""), "not Ready"),  # neither: still held, and says so
        (status("False", "CredentialsFailed", "x" * 600), "x" * 500),  # bounded
    ],
)
def test_what_the_status_says(state: dict[str, Any] | None, held: str | None) -> None:
    assert held_by_status(body(status=state)) == held


def test_the_index_holds_from_the_status_after_a_restart_and_until_released() -> None:
    index = PolicyIndex()
    compiled = index.put(body(status=status("False", "CredentialsFailed", WHY)))
    assert compiled.held == WHY
    # A new generation not reconciled yet keeps what was known: still held.
    assert index.put(body(generation=2, status=status("False", "CredentialsFailed", WHY))).held
    index.hold(NS, "payments", "")
    assert index.named(NS, "payments").ready  # type: ignore[union-attr]
    # The operator's own write of Ready=True, delivered by the watch, keeps it released.
    assert index.put(body(generation=2, status=status("True", "Compiled", observed=2))).ready
    index.hold(NS, "payments", WHY)
    assert index.named(NS, "payments").held == WHY  # type: ignore[union-attr]


def test_the_gateway_does_not_go_fast_under_a_held_policy() -> None:
    facts = RequestFacts(NS, AGENT, "db.query")
    assert why_not([policy()], facts) is None
    assert why_not([replace(policy(), held=WHY)], facts) == "policy payments is not Ready"


def test_a_policy_never_reconciled_has_no_ready_condition() -> None:
    """No generation in its metadata (never stored) and a status claiming generation 1 say
    nothing; a condition list holding something other than a condition is read past."""
    never = body(status=status("False", "CredentialsFailed", WHY))
    del never["metadata"]["generation"]
    assert held_by_status(never) is None
    odd = body(status=status("False", "CredentialsFailed", WHY))
    odd["status"]["conditions"].insert(0, "Ready")
    assert held_by_status(odd) == WHY
