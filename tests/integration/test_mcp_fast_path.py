"""The gateway's tier-1 fast path against the real control plane, Redis, operator and upstream:
it forwards a tier 1 at once only when the policies as read after filing, and as the operator has
compiled them, make it tier 1; the operator's decision is then compared, and the execution is
recorded (once, never called again) only when the request is Approved."""

import urllib.request
from typing import Any

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually
from handoff.testing.gateway import GatewayProcess

from .helpers import apply_ready_policy
from .mcp_helpers import (
    Upstream,
    agent_token,
    approve,
    bank_policy,
    call,
    requests,
    text,
)

pytestmark = pytest.mark.integration


def fast_path(gateway: GatewayProcess, outcome: str) -> float:
    base = gateway.url.removesuffix("/mcp")
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        lines = r.read().decode().splitlines()
    prefix = f'handoff_gateway_fast_path_total{{outcome="{outcome}"}} '
    return sum(float(line[len(prefix) :]) for line in lines if line.startswith(prefix))


def the_request(cluster: Cluster, ns: str, account: str) -> dict[str, Any]:
    (found,) = [r for r in requests(cluster, ns) if r["spec"]["parameters"] == {"account": account}]
    return found


def test_tier_1_runs_before_the_decision_and_the_operator_agrees(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    taken, agreed = fast_path(gateway, "Taken"), fast_path(gateway, "Agreed")
    result = call(gateway, token, "bank__read_account", {"account": bank})
    assert text(result) == f"account {bank}: balance 1000"
    assert fast_path(gateway, "Taken") == taken + 1
    filed = eventually(
        lambda: (r := the_request(cluster, bank, bank))["status"].get("execution", {}).get(
            "outcome") == "Executed" and r, 30, "the execution recorded",
    )  # fmt: skip
    assert filed["status"]["decision"]["reason"] == "AutoApproved"
    assert filed["status"]["phase"] == "Executed"
    eventually(lambda: fast_path(gateway, "Agreed") == agreed + 1, 30, "the decision compared")
    assert [c["key"] for c in upstream.calls(bank)] == [filed["metadata"]["uid"]]  # once

    # The same call again is a new request, run again (a tier 1 read is not cached).
    call(gateway, token, "bank__read_account", {"account": bank})
    assert len(upstream.calls(bank)) == 2
    assert len(requests(cluster, bank)) == 2


def test_a_policy_tightened_just_before_the_call_is_what_counts(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    call(gateway, token, "bank__read_account", {"account": f"{bank}-before"})  # tier 1, cached
    assert len(upstream.calls(f"{bank}-before")) == 1
    apply_ready_policy(cluster, bank_policy(bank, read_tier=4))
    declined = fast_path(gateway, "Declined")
    result = call(gateway, token, "bank__read_account", {"account": f"{bank}-after"})
    assert "awaits a person's decision" in text(result)
    assert fast_path(gateway, "Declined") == declined + 1
    assert upstream.calls(f"{bank}-after") == []
    assert the_request(cluster, bank, f"{bank}-after")["status"]["tier"] == 4


def test_a_policy_the_operator_has_not_compiled_yet_is_not_trusted(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream,
    operator: OperatorProcess,
) -> None:  # fmt: skip
    """Loosened (tier 4 to 1) while the operator is down: the gateway reads tier 1 but waits for
    the operator, which has not compiled that generation."""
    token = agent_token(cluster, bank)
    apply_ready_policy(cluster, bank_policy(bank, read_tier=4))
    operator.stop()
    try:
        cluster.apply(bank_policy(bank, read_tier=1))
        declined = fast_path(gateway, "Declined")
        result = call(gateway, token, "bank__read_account", {"account": f"{bank}-loose"})
        assert "awaits a person's decision" in text(result)  # nobody decided yet
        assert fast_path(gateway, "Declined") == declined + 1
        assert upstream.calls(f"{bank}-loose") == []
    finally:
        operator.start()
    # The operator classifies it tier 1 by the new generation; the gateway then runs it, once.
    eventually(lambda: upstream.calls(f"{bank}-loose"), 60, "the call run once approved")
    filed = eventually(
        lambda: (r := the_request(cluster, bank, f"{bank}-loose"))["status"].get("phase")
        == "Executed" and r, 30, "the execution recorded",
    )  # fmt: skip
    assert filed["status"]["decision"]["reason"] == "AutoApproved"
    assert len(upstream.calls(f"{bank}-loose")) == 1


def test_an_operator_that_decides_otherwise_is_counted_and_nothing_runs_twice(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream,
    operator: OperatorProcess,
) -> None:  # fmt: skip
    """The policy is tightened after the gateway ran a tier 1 but before the operator classified
    the request (the operator was down): the disagreement is counted, the execution is recorded
    only once a person approves, and the upstream is not called again."""
    token = agent_token(cluster, bank)
    disagreed = fast_path(gateway, "Disagreed")
    operator.stop()
    try:
        result = call(gateway, token, "bank__read_account", {"account": f"{bank}-raced"})
        assert text(result) == f"account {bank}-raced: balance 1000"
        cluster.apply(bank_policy(bank, read_tier=4))
    finally:
        operator.start()
    eventually(lambda: fast_path(gateway, "Disagreed") == disagreed + 1, 60, "the disagreement")
    filed = the_request(cluster, bank, f"{bank}-raced")
    assert filed["status"]["tier"] == 4
    assert filed["status"]["phase"] == "AwaitingApproval"
    assert "execution" not in filed["status"]  # admission: recorded only once Approved
    approve(cluster, bank, filed["metadata"]["name"])
    eventually(
        lambda: the_request(cluster, bank, f"{bank}-raced")["status"].get("phase") == "Executed",
        60, "the kept result recorded once approved",
    )  # fmt: skip
    assert len(upstream.calls(f"{bank}-raced")) == 1
