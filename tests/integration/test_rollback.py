"""Rollback of Agent-executed actions: a reviewer asks, Handoff files the rollback plan as a new
request through the same policy, the agent carries it out, the original becomes RolledBack."""

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from handoff.devenv.redis import RedisServer
from handoff.sdk import Agent, Decision
from handoff.testing.cluster import Cluster, OperatorProcess, redis_client

from .helpers import AGENT, apply_ready_policy, file, policy, request, review, wait_for

pytestmark = pytest.mark.integration
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")


@pytest.fixture
def people(cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path) -> str:
    apply_ready_policy(cluster, policy(namespace))
    identities = {who: cluster.token(who) for who in ("alice", "mallory")}
    identities[AGENT] = cluster.token(f"{namespace}/{AGENT}")
    return str(
        cluster.control_plane.write_kubeconfig(
            tmp_path / "people.kubeconfig", identities, namespace
        )
    )


def plugin(kubeconfig: str, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PLUGIN, "--kubeconfig", kubeconfig, "--context", who, *args],
                          capture_output=True, text=True, check=False)  # fmt: skip


async def act(kubeconfig: str, namespace: str) -> list[str]:
    """Run the agent until it has nothing left: it carries out whatever was approved."""
    seen: list[str] = []

    async def handler(decision: Decision) -> str:
        seen.append(f"{decision.action}:{decision.reason}")
        return f"did {decision.action}"

    async with Agent(namespace, AGENT, kubeconfig=kubeconfig, context=AGENT) as agent:
        await agent.resume(handler, forever=False, block=3)
    return seen


def test_rollback_files_the_plan_and_marks_the_original(
    cluster: Cluster, namespace: str, people: str, redis_server: RedisServer
) -> None:
    async def propose() -> Any:
        async with Agent(namespace, AGENT, kubeconfig=people, context=AGENT) as agent:
            return await agent.propose(
                "crm.update", target="crm:contact/42", parameters={"phone": "+1 555 0199"},
                summary="Set contact 42's phone", state={"step": 1},
                rollback={"description": "Restore the old phone", "action": "crm.update",
                          "parameters": {"phone": "+1 555 0100"}},
            )  # fmt: skip

    ticket = asyncio.run(propose())
    assert ticket.decision["reason"] == "Logged"
    assert asyncio.run(act(people, namespace)) == ["crm.update:Logged"]
    wait_for(cluster, namespace, ticket.name, "phase", "Executed")

    refused = plugin(people, "mallory", "rollback", ticket.name)
    assert refused.returncode == 1
    assert "mallory" in refused.stderr

    done = plugin(people, "alice", "rollback", ticket.name, "--comment", "wrong contact")
    assert done.returncode == 0, done.stderr
    assert f"Recorded alice's rollback of {ticket.name}" in done.stdout
    original = wait_for(
        cluster, namespace, ticket.name, "rollback.request", f"{ticket.name}-rollback"
    )
    assert original["status"]["rollback"]["by"] == "alice"

    undo = wait_for(cluster, namespace, f"{ticket.name}-rollback", "decision.reason", "Logged")
    assert undo["spec"]["rollbackOf"] == ticket.name
    assert undo["spec"]["action"] == "crm.update"
    assert undo["spec"]["parameters"] == {"phone": "+1 555 0100"}
    assert "alice asked to roll back" in undo["spec"]["reasoning"]
    assert "wrong contact" in undo["spec"]["reasoning"]

    again = plugin(people, "alice", "rollback", ticket.name)
    assert again.returncode == 1
    assert "cannot be rolled back twice" in again.stderr

    assert asyncio.run(act(people, namespace)) == ["crm.update:Logged"]
    rolled = wait_for(cluster, namespace, ticket.name, "phase", "RolledBack")
    assert rolled["status"]["rollback"]["done"] is True
    events = [fields[b"event"] for _, fields in redis_client(redis_server.url).xrange("handoff:audit")
              if fields[b"name"].decode() == ticket.name]  # fmt: skip
    assert events[-2:] == [b"RollbackRequested", b"RolledBack"]


def test_what_cannot_be_rolled_back_is_refused_clearly(
    cluster: Cluster, namespace: str, people: str
) -> None:
    read = file(cluster, namespace, "db.query")
    wait_for(cluster, namespace, read, "decision.reason", "AutoApproved")
    no_plan = plugin(people, "alice", "rollback", read)
    assert no_plan.returncode == 1
    assert "has no rollback plan, so it is not reversible" in no_plan.stderr

    waiting = file(cluster, namespace, "payments.charge", rollback=True)
    wait_for(cluster, namespace, waiting, "phase", "AwaitingApproval")
    review(cluster, namespace, waiting, "alice", "Deny", comment="no")
    wait_for(cluster, namespace, waiting, "decision.reason", "HumanDenied")
    denied = plugin(people, "alice", "rollback", waiting)
    assert denied.returncode == 1
    assert "only an approved action can be rolled back" in denied.stderr
    assert request(cluster, namespace, waiting)["status"].get("rollback") is None
