"""The load: scripted agents (the SDK) that file, reviewers that approve and deny, a watch that
records every status transition, and consumers that receive each decision with its state."""

import asyncio
import hashlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from handoff.adapters.kube import Credentials, KubeApi, KubeError
from handoff.sdk import Agent, Decision, HandoffError
from redis.exceptions import RedisError

from reliability.attacks import HONEST_OUTCOME
from reliability.scenario import AGENTS, CHECKLIST, PLANS, Plan

GROUP_PATH = "/apis/handoff.dev/v1alpha1"


class Journal:
    """Append-only JSON lines, one file per kind of record, flushed at once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: dict[str, Any] = {}

    def write(self, kind: str, record: dict[str, Any]) -> None:
        if kind not in self._files:
            self._files[kind] = open(self.folder / f"{kind}.jsonl", "a", buffering=1)  # noqa: SIM115
        self._files[kind].write(json.dumps(record, sort_keys=True) + "\n")

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()


def checksum(state: Any) -> str:
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def api_for(server: str, ca_file: str, token: str) -> KubeApi:
    return KubeApi(Credentials(server=server, ca_file=ca_file, token=token))


class Load:
    def __init__(
        self,
        journal: Journal,
        namespace: str,
        apis: dict[str, KubeApi],
        kubeconfigs: dict[str, str],
        rate: float,
        seconds: float,
        seed: int = 10,
    ) -> None:
        self.journal = journal
        self.ns = namespace
        self.apis = apis  # admin, alice, bob, carol, mallory, and each agent by name
        self.kubeconfigs = kubeconfigs  # agent -> kubeconfig path
        self.rate = rate
        self.seconds = seconds
        self.rng = random.Random(seed)
        self.filed: dict[str, str] = {}  # uid -> name
        self.decided: set[str] = set()
        self.delivered: set[str] = set()
        self.executed: set[str] = set()
        self.approved: set[str] = set()
        self.stopping = False
        self._attempt = 0
        self._agents: dict[str, Agent] = {}
        # Who else sees what the watch records (the hostile agent may list requests too), and
        # what runs just before a reviewer asks for a rollback (the hostile agent's squat).
        self.observers: list[Callable[[dict[str, Any]], None]] = []
        self.before_rollback: Callable[[str], Awaitable[None]] | None = None

    def path(self, name: str = "") -> str:
        base = f"{GROUP_PATH}/namespaces/{self.ns}/actionrequests"
        return f"{base}/{name}" if name else base

    # -- filing --------------------------------------------------------------------------------

    async def run(self) -> None:
        for agent in AGENTS:
            self._agents[agent] = Agent(self.ns, agent, kubeconfig=self.kubeconfigs[agent])
            await _retry(self._agents[agent].connect, 60)
        names = list(PLANS)
        weights = [PLANS[n].weight for n in names]
        start = time.monotonic()
        tasks: list[asyncio.Task[None]] = []
        count = int(self.rate * self.seconds)
        for i in range(count):
            await asyncio.sleep(max(0.0, start + i / self.rate - time.monotonic()))
            plan = self.rng.choices(names, weights)[0]
            tasks.append(asyncio.create_task(self.one(i, plan, AGENTS[i % len(AGENTS)])))
        try:
            await asyncio.gather(*tasks)
        finally:
            for client in self._agents.values():
                await client.close()

    async def one(self, i: int, plan_name: str, agent_name: str) -> None:
        plan = PLANS[plan_name]
        agent = self._agents[agent_name]
        state = {"i": i, "plan": plan_name, "memory": [f"note {i}-{k}" for k in range(5)],
                 "blob": self.rng.randbytes(64).hex()}  # fmt: skip
        key = f"rel-{i}"

        async def propose() -> Any:
            return await agent.propose(
                plan.action,
                summary=f"reliability {plan_name} {i}",
                target=f"rel:{i}",
                parameters=plan.parameters or {"n": i},
                reasoning="scripted reliability load",
                blast_radius="none: a test",
                rollback={"description": "undo", "action": plan.action} if plan.rollback else None,
                confidence=0.5,
                state=state,
                idempotency_key=key,
                quick_wait=0,
            )

        filed_at = time.time()
        ticket = await _retry(propose, 120)
        record = {"i": i, "plan": plan_name, "agent": agent_name, "namespace": self.ns,
                  "name": ticket.name, "uid": ticket.uid, "key": key,
                  "checksum": checksum(state), "filed_at": filed_at, "retry_uid": None}  # fmt: skip
        if plan_name == "retry":
            again = await _retry(propose, 120)
            record["retry_uid"] = again.uid
        self.filed[ticket.uid] = ticket.name
        self.journal.write("filed", record)
        await self.review_script(plan_name, plan, ticket.name, agent_name)

    # -- reviewers -----------------------------------------------------------------------------

    async def review_script(self, plan_name: str, plan: Plan, name: str, agent: str) -> None:
        delay = self.rng.uniform(1.0, 8.0)
        if plan_name in ("approve", "deny", "veto"):
            await self.deadline_of(name)  # reviews are taken once the request is classified
        if plan_name == "approve":
            await asyncio.sleep(delay)
            await self.review(name, "alice", "Approve", until=plan.window_s + 5)
        elif plan_name == "deny":
            await asyncio.sleep(delay)
            await self.review(name, "bob", "Deny", until=plan.window_s + 5)
        elif plan_name == "veto":
            await asyncio.sleep(self.rng.uniform(1.0, 6.0))
            await self.review(name, "bob", "Deny", until=plan.window_s + 5)
        elif plan_name == "rollback":
            await self.wait_decided(name, 60)
            if self.before_rollback is not None:
                await self.before_rollback(name)
            await asyncio.sleep(self.rng.uniform(1.0, 3.0))
            # A request decided without people has no status.reviews yet: the first review
            # creates the list (as `kubectl handoff rollback` does).
            await self.review(name, "alice", "Rollback", until=30, acknowledged=[], first=True)
        elif plan_name == "late-approve":
            deadline = await self.deadline_of(name)
            if deadline is not None:
                await asyncio.sleep(max(0.0, deadline + self.rng.uniform(1.0, 3.0) - time.time()))
                await self.review(
                    name, "alice", "Approve", bad="an Approve after the deadline", expect="any"
                )
        elif plan_name == "gauntlet":
            await self.deadline_of(name)  # classified: reviews are taken from now on
            tries: list[tuple[str, str, str, dict[str, Any]]] = [
                ("mallory", "Approve", "review by a user with no rights (mallory)", {}),
                ("carol", "Approve",
                 "review by a user who is no reviewer of the policy (carol)", {}),
                (agent, "Approve", "the agent writing a review of its own request", {}),
                ("bob", "Deny", "a Deny without a comment", {"comment": False}),
            ]  # fmt: skip
            for who, verdict, bad, extra in tries:
                await self.review(name, who, verdict, bad=bad, expect="refused", **extra)
            await self.review(
                name, "alice", "Approve", bad="an Approve that skips the checklist",
                expect="accepted", acknowledged=["what"],
            )  # fmt: skip
            await self.review(name, "bob", "Approve", until=plan.window_s + 5)
            await self.wait_decided(name, 40)
            await self.review(
                name, "alice", "Deny", bad="a review after the decision", expect="refused"
            )

    async def deadline_of(self, name: str) -> float | None:
        """Wait until the request is classified; its deadline (epoch seconds)."""
        for _ in range(240):
            try:
                body = await self.apis["admin"].get(self.path(name))
                deadline = (body.get("status") or {}).get("deadline")
                if deadline:
                    return _epoch(deadline)
            except KubeError:
                pass
            await asyncio.sleep(0.5)
        return None

    async def wait_decided(self, name: str, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                body = await self.apis["admin"].get(self.path(name))
                if (body.get("status") or {}).get("decision"):
                    return
            except KubeError:
                pass
            await asyncio.sleep(0.5)

    async def review(
        self,
        name: str,
        who: str,
        verdict: str,
        *,
        until: float = 30,
        bad: str | None = None,
        expect: str = "accepted",
        comment: bool = True,
        acknowledged: list[str] | None = None,
        first: bool = False,
    ) -> None:
        """Append one review as ``who``; retried while the API server is unreachable or the
        request is not classified yet. Every attempt is journaled."""
        self._attempt += 1
        attempt_id = f"a{self._attempt}"
        entry: dict[str, Any] = {
            "reviewer": f"system:serviceaccount:{self.ns}:{who}" if who in AGENTS else who,
            "decision": verdict,
            "acknowledged": list(CHECKLIST) if acknowledged is None else acknowledged,
        }
        if comment:
            entry["comment"] = f"rel {attempt_id}"
        ops: list[dict[str, Any]] = [{"op": "add", "path": "/status/reviews/-", "value": entry}]
        if first:
            ops = [{"op": "add", "path": "/status/reviews", "value": [entry]}]
        end = time.monotonic() + until
        while True:
            before = time.time()
            status, message = 200, ""
            try:
                await self.apis[who].json_patch(self.path(name) + "/status", ops)
            except KubeError as e:
                status, message = e.status, e.message[:300]
            after = time.time()
            retry = status in (0, 409, 500, 503) or "not been classified" in message
            self.journal.write("reviews", {
                "id": attempt_id, "name": name, "who": who, "decision": verdict,
                "comment": comment, "status": status, "message": message,
                "before": before, "after": after, "bad": bad, "expect": expect,
                "final": not (retry and time.monotonic() < end),
            })  # fmt: skip
            if not retry or time.monotonic() >= end:
                return
            await asyncio.sleep(0.5)

    # -- the agents' side: decisions with their state ------------------------------------------

    async def consume(self, agent_name: str) -> None:
        while not self.stopping:
            try:
                async with Agent(
                    self.ns, agent_name, kubeconfig=self.kubeconfigs[agent_name],
                    consumer=f"{agent_name}-worker",
                ) as agent:  # fmt: skip
                    while not self.stopping:
                        async for decision in agent.decisions(block=1, forever=False):
                            await self._received(agent, agent_name, decision)
            except (HandoffError, KubeError, RedisError, OSError) as e:
                error = {"where": f"consume {agent_name}", "error": str(e)[:300], "at": time.time()}
                self.journal.write("errors", error)
                await asyncio.sleep(1)

    async def _received(self, agent: Agent, agent_name: str, decision: Decision) -> None:
        self.journal.write("deliveries", {
            "uid": decision.uid, "name": decision.name, "agent": agent_name,
            "outcome": decision.outcome, "reason": decision.reason, "by": decision.by,
            "checksum": checksum(decision.state), "entry": decision.entry_id, "at": time.time(),
        })  # fmt: skip
        self.delivered.add(decision.uid)
        if decision.approved:
            self.approved.add(decision.uid)
            await agent.verify(decision)
            await agent.report(decision, "Executed", HONEST_OUTCOME)

    # -- the watch: every status transition ----------------------------------------------------

    async def watch(self) -> None:
        api = self.apis["admin"]
        last: dict[str, Any] = {}
        version: str | None = None
        while not self.stopping:
            try:
                if version is None:
                    listing = await api.get(self.path())
                    for item in listing.get("items") or []:
                        self._observe(item, last, "LIST")
                    version = listing["metadata"]["resourceVersion"]
                params = {"resourceVersion": version, "allowWatchBookmarks": "true"}
                async for event in api.watch(self.path(), params, 30):
                    kind, body = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        version = None
                        break
                    version = body["metadata"]["resourceVersion"]
                    if kind in ("ADDED", "MODIFIED"):
                        self._observe(body, last, str(kind))
            except KubeError as e:
                self.journal.write("errors", {"where": "watch", "error": str(e)[:300],
                                              "at": time.time()})  # fmt: skip
                await asyncio.sleep(1)

    def _observe(self, body: dict[str, Any], last: dict[str, Any], kind: str) -> None:
        meta, status = body["metadata"], body.get("status") or {}
        seen = (status.get("phase"), json.dumps(status.get("decision"), sort_keys=True),
                len(status.get("reviews") or []))  # fmt: skip
        if last.get(meta["uid"]) == seen:
            return
        last[meta["uid"]] = seen
        for observer in self.observers:
            observer(body)
        self.journal.write("transitions", {
            "uid": meta["uid"], "name": meta["name"], "rv": meta["resourceVersion"],
            "type": kind, "phase": status.get("phase"), "decision": status.get("decision"),
            "reviews": len(status.get("reviews") or []), "observed": time.time(),
        })  # fmt: skip
        if status.get("decision"):
            self.decided.add(meta["uid"])
        if status.get("execution"):
            self.executed.add(meta["uid"])


async def _retry(call: Callable[[], Awaitable[Any]], seconds: float) -> Any:
    """Retry through faults (the API server or Redis away) for up to ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except (HandoffError, KubeError, RedisError, OSError):
            if time.monotonic() >= end:
                raise
            await asyncio.sleep(1)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()
