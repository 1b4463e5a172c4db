"""Every series documented in docs/metrics.md is on /metrics, with its documented labels, and
moves with the traffic that should move it."""

import asyncio
import re
from pathlib import Path

import pytest
from handoff.devenv.redis import RedisServer
from handoff.sdk import Agent, Decision
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .helpers import AGENT, apply_ready_policy, file, policy, review, samples, value, wait_for

pytestmark = pytest.mark.integration
DOC = Path(__file__).parents[2] / "docs" / "metrics.md"


def documented() -> dict[str, set[str]]:
    """The table in docs/metrics.md: series name to its label names."""
    found = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"\| `(handoff_\w+)` \| \w+ \|([^|]*)\|", line)
        if match:
            found[match[1]] = set(re.findall(r"`(\w+)`", match[2]))
    return found


def test_the_table_lists_the_contracts_series() -> None:
    table = documented()
    assert table["handoff_action_requests_total"] == {
        "namespace", "policy", "tier", "outcome", "reason",
    }  # fmt: skip
    assert table["handoff_decision_seconds"] == {"tier", "outcome"}
    assert table["handoff_pending_requests"] == {"namespace", "tier"}
    assert table["handoff_fast_approvals_total"] == {"namespace"}
    assert len(table) >= 18


def test_every_documented_series_moves_with_traffic(
    cluster: Cluster,
    operator: OperatorProcess,
    redis_server: RedisServer,
    namespace: str,
    tmp_path: Path,
) -> None:
    document = policy(
        namespace,
        tiers={"tier4": {"decisionWindow": "5m", "minReviewSeconds": 60}},
        notifications=[{"name": "nowhere", "url": "http://127.0.0.1:1/hook"}],
    )
    apply_ready_policy(cluster, document)
    token = cluster.token(f"{namespace}/{AGENT}")
    kubeconfig = cluster.control_plane.write_kubeconfig(
        tmp_path / "agent.kubeconfig", {AGENT: token}, namespace
    )

    async def agent_work() -> int:
        async with Agent(namespace, AGENT, kubeconfig=str(kubeconfig)) as agent:
            ticket = await agent.propose("db.query", summary="count orders", state={"step": 1})
            assert ticket.approved

            async def handler(decision: Decision) -> str:
                assert decision.state == {"step": 1}
                return "42 orders"

            return await agent.resume(handler, forever=False, block=3)

    assert asyncio.run(agent_work()) == 1
    # An entry the operator cannot record: rejected and counted (test_hostile_operator_inputs).
    redis_client(redis_server.url).xadd(f"handoff:outcomes:{namespace}:{AGENT}", {"name": "x/y"})
    eventually(
        lambda: value(operator, "handoff_rejected_outcomes_total", namespace=namespace) == 1,
        30, "a rejected outcome counted",
    )  # fmt: skip
    waiting = file(cluster, namespace, "deploy.web")
    wait_for(cluster, namespace, waiting, "phase", "AwaitingApproval")
    # The gauge counts it once its deadline is armed, just after the status write we saw.
    eventually(
        lambda: value(operator, "handoff_pending_requests", namespace=namespace, tier="4") == 1,
        15, "the pending gauge counting the waiting request",
    )  # fmt: skip
    assert review(cluster, namespace, waiting, "alice").returncode == 0  # within seconds
    wait_for(cluster, namespace, waiting, "phase", "Approved")
    eventually(
        lambda: value(operator, "handoff_notifications_total", namespace=namespace,
                      target="nowhere", result="failed") >= 1,
        30, "a failed notification counted",
    )  # fmt: skip

    eventually(
        lambda: value(operator, "handoff_pending_requests", namespace=namespace, tier="4") == 0,
        15, "the pending gauge no longer counting the approved request",
    )  # fmt: skip
    mine = {"namespace": namespace, "policy": "payments"}
    assert value(operator, "handoff_action_requests_total", **mine, tier="1",
                 outcome="Approved", reason="AutoApproved") == 1  # fmt: skip
    assert value(operator, "handoff_action_requests_total", **mine, tier="4",
                 outcome="Approved") == 1  # fmt: skip
    assert value(operator, "handoff_fast_approvals_total", namespace=namespace) == 1
    assert value(operator, "handoff_executions_total", namespace=namespace, outcome="Executed") == 1
    assert value(operator, "handoff_decision_seconds_count", tier="1", outcome="Approved") >= 1
    assert value(operator, "handoff_outbox_lag_seconds_count") >= 2
    assert value(operator, "handoff_reconcile_seconds_count") >= 3
    assert value(operator, "handoff_policies", ready="true") >= 1
    assert value(operator, "handoff_leader") == 1
    assert value(operator, "handoff_scheduled_deadlines") >= 0

    table = documented()
    exposed: dict[str, list[dict[str, str]]] = {}
    for name, found in samples(operator).items():
        exposed.setdefault(_family(name, table), []).extend(labels for labels, _ in found)
    for name, labels in table.items():
        assert exposed.get(name), f"{name} is documented but not on /metrics"
        for found in exposed[name]:
            assert set(found) - {"le"} == labels, f"{name} has labels {sorted(found)}"
    undocumented = sorted(n for n in exposed if n.startswith("handoff_") and n not in table)
    assert not undocumented, f"on /metrics but not in docs/metrics.md: {undocumented}"


def _family(sample: str, table: dict[str, set[str]]) -> str:
    """The documented series a sample belongs to (histogram and counter samples have suffixes)."""
    if sample in table:
        return sample
    for suffix in ("_bucket", "_count", "_sum", "_created"):
        base = sample.removesuffix(suffix)
        for candidate in (base, base + "_total"):
            if base != sample and candidate in table:
                return candidate
    return sample
