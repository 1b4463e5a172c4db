"""Durable async handoff: the agent pauses, its state waits in Redis, and it resumes when the
decision lands, across agent crashes, Redis crashes and operator restarts."""

import asyncio
import contextlib
import hashlib
import hmac
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from handoff.devenv.redis import RedisServer
from handoff.sdk import Agent, Decision, IdempotencyConflict, StateTooLarge
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .endpoints import Receiver
from .helpers import AGENT, apply_ready_policy, policy, request, review, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def kubeconfig(cluster: Cluster, namespace: str, tmp_path: Path) -> str:
    """The agent's own kubeconfig: its ServiceAccount token, nothing more."""
    token = cluster.token(f"{namespace}/{AGENT}")
    return str(
        cluster.control_plane.write_kubeconfig(
            tmp_path / "agent.kubeconfig", {AGENT: token}, namespace
        )
    )


@pytest.fixture
def governed(cluster: Cluster, operator: OperatorProcess, namespace: str) -> str:
    apply_ready_policy(cluster, policy(namespace))
    return namespace


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def collect(agent: Agent, count: int, seconds: float = 20) -> list[Decision]:
    """Decisions until ``count`` arrived (acknowledging each), or the time is up."""
    found: list[Decision] = []

    async def gather() -> None:
        async for decision in agent.decisions(block=1):
            found.append(decision)
            if len(found) >= count:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gather(), seconds)
    return found


STATE = {
    "memory": ["user asked for a refund", "found duplicate charge"],
    "plan": ["refund", "email"],
    "step": 1,
}


def test_state_round_trip_and_quick_tier1(governed: str, kubeconfig: str) -> None:
    async def scenario() -> tuple[Any, list[Decision], Any]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig) as agent:
            quick = await agent.propose("db.query", summary="count orders", state=STATE)
            big_state = {"blob": "x" * 900_000}
            big = await agent.propose("db.query", summary="a big state", state=big_state)
            decisions = await collect(agent, 2)
            return quick, decisions, big

    quick, decisions, big = run(scenario())
    assert quick.approved
    assert quick.decision["reason"] == "AutoApproved"
    assert big.approved
    by_name = {d.name: d for d in decisions}
    assert by_name[quick.name].state == STATE
    assert by_name[big.name].state == {"blob": "x" * 900_000}


def test_state_over_the_limit_is_refused_and_nothing_is_filed(
    cluster: Cluster, governed: str, kubeconfig: str
) -> None:
    async def scenario() -> None:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig, max_state_bytes=1000) as agent:
            await agent.propose("db.query", summary="too much", state={"blob": "x" * 2000})

    with pytest.raises(StateTooLarge, match="the limit is 1000 bytes"):
        run(scenario())
    listing = cluster.kubectl("get", "actionrequests", "-n", governed, "-o", "name").stdout
    assert listing.strip() == ""


def test_proposals_are_idempotent(cluster: Cluster, governed: str, kubeconfig: str) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig) as agent:
            first = await agent.propose(
                "payments.charge", summary="charge", idempotency_key="order-881"
            )
            again = await agent.propose(
                "payments.charge", summary="charge", idempotency_key="order-881"
            )
            with pytest.raises(IdempotencyConflict, match="order-881"):
                await agent.propose(
                    "payments.charge", summary="charge twice", idempotency_key="order-881"
                )
            return first, again

    first, again = run(scenario())
    assert (first.name, first.uid) == (again.name, again.uid)
    assert (
        first.phase == "AwaitingApproval"
    )  # tier 4: the ticket comes back without waiting on people
    listing = cluster.kubectl("get", "actionrequests", "-n", governed, "-o", "name").stdout
    assert len(listing.split()) == 1


PROPOSER = textwrap.dedent("""
    import asyncio, sys
    from handoff.sdk import Agent
    async def main():
        async with Agent(sys.argv[1], "payments-agent", kubeconfig=sys.argv[2], consumer="worker") as agent:
            ticket = await agent.propose("payments.charge", summary="charge $5", parameters={"amount": 5},
                                         state={"memory": ["step one"], "resume_at": "charge"})
            print(ticket.name, flush=True)
            if sys.argv[3] == "read":
                async for decision in agent.decisions():
                    print("got", decision.name, flush=True)
                    await asyncio.Event().wait()  # killed here: read, never acknowledged
            await asyncio.Event().wait()  # killed here: proposed, then gone
    asyncio.run(main())
""")


def spawn_agent(namespace: str, kubeconfig: str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROPOSER, namespace, kubeconfig, mode],
        stdout=subprocess.PIPE,
        text=True,
    )


def test_an_agent_killed_after_proposing_gets_its_decision_when_it_starts_again(
    cluster: Cluster, governed: str, kubeconfig: str
) -> None:
    with spawn_agent(governed, kubeconfig, "propose") as process:
        assert process.stdout is not None
        name = process.stdout.readline().strip()
        process.kill()
    wait_for(cluster, governed, name, "phase", "AwaitingApproval")
    assert review(cluster, governed, name, "alice").returncode == 0
    wait_for(cluster, governed, name, "decision.reason", "HumanApproved")

    async def later() -> list[Decision]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig, consumer="worker") as agent:
            return await collect(agent, 1)

    decisions = run(later())
    assert [(d.name, d.reason, d.state) for d in decisions] == [
        (name, "HumanApproved", {"memory": ["step one"], "resume_at": "charge"})
    ]


def test_a_decision_read_but_not_acknowledged_is_delivered_again(
    cluster: Cluster, governed: str, kubeconfig: str
) -> None:
    with spawn_agent(governed, kubeconfig, "read") as process:
        assert process.stdout is not None
        name = process.stdout.readline().strip()
        wait_for(cluster, governed, name, "phase", "AwaitingApproval")
        review(cluster, governed, name, "bob", "Deny", comment="not today")
        assert process.stdout.readline().strip() == f"got {name}"
        process.kill()

    async def restarted(consumer: str, idle: float) -> list[Decision]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig, consumer=consumer) as agent:
            agent.claim_idle = timedelta(seconds=idle)
            return await collect(agent, 1, seconds=8)

    # Another replica of the agent picks it up once it has been idle long enough.
    time.sleep(1.2)
    decisions = run(restarted("replica-2", 1))
    assert [(d.name, d.outcome, d.reason) for d in decisions] == [(name, "Denied", "HumanDenied")]
    assert decisions[0].state == {"memory": ["step one"], "resume_at": "charge"}


def test_expiry_reaches_the_agent_as_denied(
    cluster: Cluster, governed: str, kubeconfig: str
) -> None:
    async def scenario() -> tuple[Any, list[Decision]]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig) as agent:
            ticket = await agent.propose("deploy.production", summary="ship it", state={"step": 9})
            return ticket, await collect(agent, 1, seconds=25)

    ticket, decisions = run(scenario())
    assert ticket.phase == "AwaitingApproval"
    assert [(d.name, d.outcome, d.reason, d.state) for d in decisions] == [
        (ticket.name, "Denied", "Expired", {"step": 9})
    ]


def test_outcomes_show_in_the_phase(cluster: Cluster, governed: str, kubeconfig: str) -> None:
    async def scenario() -> tuple[list[str], int]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig) as agent:
            ok = await agent.propose("db.query", summary="works", state={"n": 1})
            bad = await agent.propose("db.query", summary="breaks", parameters={"q": "x"})
            denied = await agent.propose(
                "payments.charge", summary="will be denied", state={"n": 3}
            )
            refusal = review(cluster, governed, denied.name, "alice", "Deny", comment="no")
            assert refusal.returncode == 0, refusal.stderr
            seen: list[str] = []

            async def handler(decision: Decision) -> str:
                seen.append(f"{decision.name}:{decision.outcome}")
                if decision.name == bad.name:
                    raise RuntimeError("the knowledge base timed out")
                return "counted 42 orders"

            async def drive() -> int:
                return await agent.resume(handler, forever=False, block=3)

            handled = await drive()
            return [ok.name, bad.name, denied.name, *seen], handled

    (ok, bad, denied, *seen), handled = run(scenario())
    assert handled == 3
    assert sorted(seen) == sorted([f"{ok}:Approved", f"{bad}:Approved", f"{denied}:Denied"])
    executed = wait_for(cluster, governed, ok, "phase", "Executed")
    assert executed["status"]["execution"]["message"] == "counted 42 orders"
    failed = wait_for(cluster, governed, bad, "phase", "Failed")
    assert "the knowledge base timed out" in failed["status"]["execution"]["message"]
    assert request(cluster, governed, denied)["status"]["phase"] == "Denied"


def test_a_tampered_state_digest_stops_the_action(
    cluster: Cluster, governed: str, kubeconfig: str, redis_server: RedisServer
) -> None:
    admin = redis_client(redis_server.url)

    async def scenario() -> tuple[str, list[str]]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig) as agent:
            ticket = await agent.propose(
                "crm.update", summary="edit", rollback={"description": "undo"}, state={"a": 1}
            )
            key = f"handoff:state:{governed}:{AGENT}:{ticket.proposal_id}"
            header, _, body = admin.get(key).partition(b"\n")
            forged = json.loads(header) | {"digest": "sha256:" + "0" * 64}
            admin.set(key, json.dumps(forged).encode() + b"\n" + body)
            ran: list[str] = []

            async def handler(decision: Decision) -> str:
                ran.append(decision.name)
                return "done"

            await agent.resume(handler, forever=False, block=3)
            return ticket.name, ran

    name, ran = run(scenario())
    assert ran == []
    failed = wait_for(cluster, governed, name, "phase", "Failed")
    assert "not what this agent proposed" in failed["status"]["execution"]["message"]


def test_redis_killed_between_proposal_and_decision_loses_nothing(
    cluster: Cluster, governed: str, kubeconfig: str, redis_server: RedisServer
) -> None:
    async def propose() -> Any:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig, consumer="survivor") as agent:
            return await agent.propose("payments.charge", summary="charge", state={"kept": True})

    ticket = run(propose())
    time.sleep(1.5)  # appendfsync everysec: what was written a second ago is on disk
    redis_server.kill()
    try:
        assert review(cluster, governed, ticket.name, "alice").returncode == 0
        wait_for(cluster, governed, ticket.name, "decision.reason", "HumanApproved")
        time.sleep(1)  # the operator tries to publish, fails, and keeps the decision in status
    finally:
        redis_server.start()

    async def resume() -> list[Decision]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig, consumer="survivor") as agent:
            return await collect(agent, 1, seconds=20)

    decisions = run(resume())
    assert [(d.name, d.reason, d.state) for d in decisions] == [
        (ticket.name, "HumanApproved", {"kept": True})
    ]


def test_operator_restart_does_not_publish_twice(
    cluster: Cluster,
    operator: OperatorProcess,
    governed: str,
    kubeconfig: str,
    redis_server: RedisServer,
) -> None:
    async def propose() -> list[Any]:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig) as agent:
            return [await agent.propose("db.query", summary=f"read {i}") for i in range(5)]

    tickets = run(propose())
    admin = redis_client(redis_server.url)
    stream = f"handoff:decisions:{governed}:{AGENT}"
    eventually(lambda: admin.xlen(stream) == 5, what="five decisions published")
    audit_before = _audit_lines(admin, {t.uid for t in tickets})
    operator.kill()
    operator.start()
    probe = run(propose())  # a new request after the restart: published once too
    eventually(lambda: admin.xlen(stream) == 10, what="five more after the restart")
    time.sleep(1)
    assert admin.xlen(stream) == 10
    assert _audit_lines(admin, {t.uid for t in tickets}) == audit_before
    assert len(audit_before) == 5
    assert len(_audit_lines(admin, {t.uid for t in probe})) == 5


def _audit_lines(admin: "redis.Redis", uids: set[str]) -> list[tuple[bytes, bytes]]:
    lines = admin.xrange("handoff:audit")
    return [
        (fields[b"uid"], fields[b"event"]) for _, fields in lines if fields[b"uid"].decode() in uids
    ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver(fail_first=1)
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_notifications_announce_retry_and_escalate(
    cluster: Cluster, operator: OperatorProcess, namespace: str, kubeconfig: str, receiver: Receiver
) -> None:
    cluster.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hook", "namespace": namespace},
                   "stringData": {"key": "s3cret"}})  # fmt: skip
    document = policy(
        namespace,
        tiers={"tier4": {"decisionWindow": "40s", "escalateAfter": "10s", "escalateTo": ["sre-oncall"]}},
        notifications=[
            {"name": "oncall", "url": receiver.url, "hmacSecretRef": {"name": "hook", "key": "key"},
             "events": ["Pending", "Escalated", "Decided"]},
            {"name": "nowhere", "url": "http://127.0.0.1:1/hook"},
        ],
    )  # fmt: skip
    apply_ready_policy(cluster, document)

    async def propose() -> Any:
        async with Agent(namespace, AGENT, kubeconfig=kubeconfig) as agent:
            return await agent.propose(
                "payments.charge", summary="Charge $5 for order 9", reasoning="the card was declined before",
                blast_radius="$5 from the customer", rollback={"description": "refund $5"},
            )  # fmt: skip

    ticket = run(propose())
    eventually(
        lambda: receiver.events() == ["Pending"], timeout=15, what="the Pending announcement"
    )
    assert receiver.calls == 2  # the first attempt got a 503 and was retried
    headers, body = receiver.received[0]
    assert body["what"] == "Charge $5 for order 9"
    assert body["why"] == "the card was declined before"
    assert body["blastRadius"] == "$5 from the customer"
    assert body["rollback"] == "refund $5"
    assert body["deadline"] == request(cluster, namespace, ticket.name)["status"]["deadline"]
    assert body["link"] == f"http://console.invalid/requests/{namespace}/{ticket.name}"
    expected = hmac.new(
        b"s3cret",
        headers["X-Handoff-Timestamp"].encode() + b"." + body["_raw"].encode(),
        hashlib.sha256,
    )
    assert headers["X-Handoff-Signature"] == "sha256=" + expected.hexdigest()
    assert headers["X-Handoff-Delivery"] == f"{ticket.uid}:Pending"

    eventually(
        lambda: receiver.events() == ["Pending", "Escalated"], timeout=20, what="the escalation"
    )
    assert receiver.received[1][1]["escalateTo"] == ["sre-oncall"]
    review(cluster, namespace, ticket.name, "alice")
    eventually(
        lambda: receiver.events() == ["Pending", "Escalated", "Decided"], what="the Decided message"
    )
    assert receiver.received[2][1]["decision"]["reason"] == "HumanApproved"

    failing = eventually(
        lambda: next(
            (n for n in cluster.get("agentactionpolicy", "payments", namespace)["status"].get("notifications", [])
             if n["name"] == "nowhere" and n.get("failed")),
            None,
        ),
        timeout=20,
        what="the failing target in the policy's status",
    )  # fmt: skip
    assert "Pending" in failing["lastError"]
    assert wait_for(cluster, namespace, ticket.name, "decision.reason", "HumanApproved")


def test_redis_that_comes_back_without_its_data_gets_every_decision_again(
    cluster: Cluster, operator: OperatorProcess, governed: str, kubeconfig: str,
    redis_server: RedisServer,
) -> None:  # fmt: skip
    """A crash inside the fsync interval (or a failover to a lagging replica) loses writes Redis
    had acknowledged. Simulated here at its worst: the append-only data is gone entirely (the
    ACL file, with the agents' users, is kept). The operator notices the new server run_id and
    publishes every decision the statuses hold again."""

    async def propose() -> Any:
        async with Agent(governed, AGENT, kubeconfig=kubeconfig) as agent:
            return await agent.propose("db.query", summary="count orders")

    ticket = run(propose())
    assert ticket.approved
    stream = f"handoff:decisions:{governed}:{AGENT}"
    client = redis_client(redis_server.url)

    def names() -> list[str]:
        return [fields[b"name"].decode() for _, fields in client.xrange(stream)]

    assert eventually(lambda: names() == [ticket.name], 15, "the decision on the stream")
    redis_server.kill()
    for lost in redis_server.folder.glob("appendonly*"):
        if lost.is_dir():
            for part in lost.iterdir():
                part.unlink()
            lost.rmdir()
        else:
            lost.unlink()
    redis_server.start()
    assert client.xlen(stream) == 0  # nothing survived
    eventually(lambda: names() == [ticket.name], 30, "the decision published again")
    audit = [f for _, f in client.xrange("handoff:audit") if f[b"uid"].decode() == ticket.uid]
    assert [f[b"event"].decode() for f in audit] == ["Approved"]
    assert "Redis restarted or failed over" in operator.log.read_text()
