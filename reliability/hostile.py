"""The hostile agent: ``agent-x`` files and reports what issue 14 found, beside the honest load,
through every fault. Each attempt is journaled in ``hostile.jsonl`` (what, when, the answer);
the checker reads the outcome of each from the cluster and the operators' logs.

It sees the honest requests as any agent of the namespace may (it may list and watch them): the
harness hands it what its watch records (``observe``), and, for the honest requests a reviewer
will roll back, calls ``squat_rollback`` first, so that the name the operator files the rollback
under is always taken in the attempt before the reviewer asks.
"""

import asyncio
import random
import time
from collections import deque
from typing import Any

import redis.asyncio as redis_asyncio
from handoff.adapters.kube import KubeApi, KubeError
from handoff.sdk import connection
from redis.exceptions import RedisError

from reliability.attacks import (
    ATTEMPT_LABEL,
    FORGED_REPORT,
    HOSTILE,
    METADATA,
    PATH_TRICKS,
    POISON,
    SANDBOX,
    path_trick,
)
from reliability.load import GROUP_PATH, Journal

Json = dict[str, Any]
Target = tuple[str, str, str]  # name, uid, agent
MOVES = ("forged rollbackOf", "squat -rollback", "path", "poison", "squat -pir", "metadata",
         "path", "poison", "control")  # fmt: skip
RETRY_S = 60
# What a restarted API server answers for a moment, to anyone: RBAC's cache not filled yet, or
# not ready at all. Not admission's answer: tried again.
WARMING_UP = ("cannot create resource", "not yet ready to handle request")


class Hostile:
    def __init__(self, journal: Journal, namespace: str, elsewhere: str, api: KubeApi,
                 honest: tuple[str, ...], policy_uid: str, seed: int = 14) -> None:  # fmt: skip
        self.journal, self.ns, self.elsewhere, self.api = journal, namespace, elsewhere, api
        self.honest = honest
        self.policy_uid = policy_uid  # the load policy's: an owner the agent would like to claim
        self.rng = random.Random(seed)
        self.waiting: deque[Target] = deque(maxlen=40)  # honest requests a person must decide
        self.approved: deque[Target] = deque(maxlen=40)
        self.reversible: deque[Target] = deque(maxlen=40)  # approved, with a rollback plan
        self.undos: deque[Target] = deque(maxlen=20)  # rollbacks the operator filed
        self.own: Target | None = None  # its own approved query: the poison names it
        self.redis: redis_asyncio.Redis | None = None
        self.count = 0
        self.turns: dict[str, int] = {}
        self.stopping = False

    def path(self, name: str = "") -> str:
        base = f"{GROUP_PATH}/namespaces/{self.ns}/actionrequests"
        return f"{base}/{name}" if name else base

    # -- what it sees ----------------------------------------------------------------------------

    def observe(self, body: Json) -> None:
        meta, spec, status = body["metadata"], body["spec"], body.get("status") or {}
        target = (meta["name"], meta["uid"], spec.get("agent", ""))
        if spec.get("agent") == HOSTILE:
            if spec.get("action") == "db.query" and status.get("decision"):
                self.own = target
            return
        decision = status.get("decision") or {}
        if spec.get("rollbackOf"):
            self.undos.append(target)
        elif not decision and status.get("deadline"):
            self.waiting.append(target)
        elif decision.get("outcome") == "Approved":
            self.approved.append(target)
            if spec.get("rollback"):
                self.reversible.append(target)

    def _pick(self, *pools: deque[Target]) -> Target | None:
        found = [t for pool in pools for t in pool]
        return self.rng.choice(found) if found else None

    def _turn(self, what: str, choices: tuple[str, ...] | list[str]) -> str:
        k = self.turns[what] = self.turns.get(what, -1) + 1
        return choices[k % len(choices)]

    # -- the run -----------------------------------------------------------------------------------

    async def run(self, seconds: float, every: float) -> None:
        """Attempts every ``every`` seconds for ``seconds``, one at a time."""
        url = await _retry(lambda: connection.redis_url(self.api, self.ns, HOSTILE))
        self.redis = redis_asyncio.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        start = time.monotonic()
        try:
            await self.control("its own query")
            k = 0
            while not self.stopping and time.monotonic() - start < seconds:
                await asyncio.sleep(max(0.0, start + k * every - time.monotonic()))
                k += 1
                move = MOVES[k % len(MOVES)]
                try:
                    await self.move(move)
                except (KubeError, RedisError, OSError) as e:  # journaled: a fault outlasted it
                    error = {"where": f"hostile {move}", "error": str(e)[:300], "at": time.time()}
                    self.journal.write("errors", error)
        finally:
            await self.redis.aclose()

    async def move(self, move: str) -> None:
        if move == "forged rollbackOf":
            await self.forged_rollback()
        elif move == "squat -rollback":
            victim = self._pick(self.reversible)
            if victim is not None:
                await self.squat_rollback(victim[0])
        elif move == "squat -pir":
            victim = self._pick(self.waiting, self.approved)
            if victim is not None:
                await self.file("squat <name>-pir of an honest request",
                                self.document(name=f"{victim[0]}-pir"), victim)  # fmt: skip
        elif move == "metadata":
            await self.metadata(self._turn("metadata", METADATA))
        elif move == "path":
            await self.path_trick(self._turn("path", list(PATH_TRICKS)))
        elif move == "poison":
            for _ in range(3):
                await self.poison(self._turn("poison", POISON))
        elif move == "control":
            await self.control(self._turn("control", ("scale its sandbox Deployment",
                                                       "its own query")))  # fmt: skip

    # -- filing ----------------------------------------------------------------------------------

    def document(self, name: str = "", agent: str = HOSTILE, meta: Json | None = None,
                 **spec: Any) -> Json:  # fmt: skip
        self.count += 1
        attempt = f"h{self.count}"
        metadata: Json = {"namespace": self.ns, "name": name or f"hostile-{attempt}",
                          "labels": {ATTEMPT_LABEL: attempt}}  # fmt: skip
        for key, value in (meta or {}).items():
            metadata[key] = (metadata.get(key) or {}) | value if key == "labels" else value
        body = {"agent": agent, "action": "db.query", "target": f"hostile:{attempt}",
                "summary": f"hostile {attempt}"} | spec  # fmt: skip
        return {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                "metadata": metadata, "spec": body}  # fmt: skip

    async def file(self, kind: str, document: Json, victim: Target | None = None,
                   klass: str = "admission") -> Json | None:  # fmt: skip
        """Create ``document`` as the hostile agent; retried while the API server is away or
        its RBAC cache is not filled yet (a restarted API server refuses for a moment). Every
        answer is journaled; the last is ``final``. The created body, if the server took it."""
        meta = document["metadata"]
        end = time.monotonic() + RETRY_S
        while True:
            at = time.time()
            status, message, created = 201, "", None
            try:
                created = await self.api.create(self.path(), document)
            except KubeError as e:
                status, message = e.status, e.message[:500]
            transient = status in (0, 429) or status >= 500 or (
                status == 403 and any(p in message for p in WARMING_UP))  # fmt: skip
            if status == 409 and "already exists" in message:
                # an earlier try went through unseen: that is the answer
                status, message = 201, "created (an earlier try's answer was lost)"
                try:
                    created = await self.api.get(self.path(meta["name"]))
                except KubeError:
                    created = None
            final = not transient or time.monotonic() >= end
            self.journal.write("hostile", {
                "id": meta["labels"][ATTEMPT_LABEL], "class": klass, "kind": kind, "at": at,
                "name": meta.get("name", ""), "victim": victim[0] if victim else "",
                "victim_uid": victim[1] if victim else "", "status": status,
                "message": message, "final": final,
                "uid": ((created or {}).get("metadata") or {}).get("uid", ""),
            })  # fmt: skip
            if final:
                return created
            await asyncio.sleep(1)

    async def forged_rollback(self) -> None:
        """File a request that says it undoes an honest one, then report the victim carried out
        on its own outcome stream (what made the victim RolledBack before issue 14)."""
        victim = self._pick(self.waiting, self.approved)
        if victim is None:
            return
        if self._turn("forged", ("name", "path")) == "path":
            kind = "forged rollbackOf with a path to another namespace"
            pointer = f"../../{self.elsewhere}/actionrequests/{victim[0]}"
        else:
            kind, pointer = "forged rollbackOf naming an honest request", victim[0]
        forged = await self.file(kind, self.document(rollbackOf=pointer), victim)
        if forged is not None:  # admission let it through: play the rest of the attack
            meta = forged["metadata"]
            itself = {b"name": meta["name"].encode(), b"uid": meta["uid"].encode()}
            await self.report(FORGED_REPORT, itself | {b"outcome": b"Executed"}, victim)
        theirs = {b"name": victim[0].encode(), b"uid": victim[1].encode()}
        await self.report(FORGED_REPORT, theirs | {b"outcome": b"Executed"}, victim)

    async def squat_rollback(self, name: str) -> None:
        """Take ``<name>-rollback`` before the operator files the rollback there."""
        victim = (name, "", "")
        await self.file("squat <name>-rollback of an honest request",
                        self.document(name=f"{name}-rollback"), victim)  # fmt: skip

    async def metadata(self, kind: str) -> None:
        victim = self._pick(self.waiting, self.approved)
        honest_name = victim[0] if victim else "none"
        other = self.rng.choice(self.honest)
        if kind == "filed as an honest agent":
            document = self.document(agent=other)
        elif kind == "a post-incident review of an honest request":
            document = self.document(action="handoff.post-incident-review",
                                     target=f"actionrequest/{honest_name}")  # fmt: skip
        elif kind == "a finalizer":
            document = self.document(meta={"finalizers": ["example.com/keep-forever"]})
        elif kind.startswith(("an owner reference", "a dangling")):
            blocking = kind.endswith("blocking")
            owner = {"apiVersion": "handoff.dev/v1alpha1", "kind": "AgentActionPolicy",
                     "name": "reliability" if blocking else "gone",
                     "uid": self.policy_uid if blocking else "00000000-0000-0000-0000-000000000000",
                     "blockOwnerDeletion": blocking}  # fmt: skip
            document = self.document(meta={"ownerReferences": [owner]})
        elif kind == "label handoff.dev/agent of an honest agent":
            document = self.document(meta={"labels": {"handoff.dev/agent": other}})
        elif kind == "label handoff.dev/rollback-of an honest request":
            document = self.document(meta={"labels": {"handoff.dev/rollback-of": honest_name}})
        else:
            document = self.document(meta={"annotations": {"handoff.dev/break-glass": "{}"}})
        await self.file(kind, document, victim)

    async def path_trick(self, kind: str) -> None:
        victim = self._pick(self.waiting) or self._pick(self.approved)
        honest_name = victim[0] if victim else "none"
        action, target, parameters = path_trick(kind, self.ns, self.elsewhere, honest_name)
        document = self.document(
            action=action, target=target, parameters=parameters, execution="Kubernetes",
            rollback={"description": "undo"},
        )  # fmt: skip
        aimed = victim if "request's /status" in kind else None
        await self.file(kind, document, aimed, klass="path")

    async def control(self, kind: str) -> None:
        if kind == "its own query":
            document = self.document()
        else:
            replicas = 1 + self.turns.get("control", 0) % 3
            parameters = {"apiVersion": "apps/v1", "kind": "Deployment", "name": SANDBOX,
                          "replicas": replicas}  # fmt: skip
            document = self.document(action="kubernetes.scale", target="quick:sandbox",
                                     parameters=parameters, execution="Kubernetes",
                                     rollback={"description": "scale back"})  # fmt: skip
        await self.file(kind, document, klass="control")

    # -- its own outcome stream ------------------------------------------------------------------

    async def poison(self, case: str) -> None:
        honest = self._pick(self.approved, self.waiting)
        undo = self._pick(self.undos)
        own = self.own
        if own is None or honest is None:
            return
        if case == "an honest request's rollback reported Executed":
            if undo is None:
                return
            honest = undo
        me, uid = own[0].encode(), own[1].encode()
        ok = {b"uid": uid, b"outcome": b"Executed"}
        theirs = {b"name": honest[0].encode(), b"uid": honest[1].encode()}
        fields: dict[str, dict[bytes, bytes]] = {
            "no name": ok,
            "an empty name": {b"name": b"", **ok},
            "a name that is not UTF-8": {b"name": b"\xff\xfe\xc3(", **ok},
            "a field name that is not UTF-8 (its own request)": {b"\xc3(": b"x", b"name": me, **ok},
            "a message that is not UTF-8 (its own request)": {b"name": me, b"message": b"\xc0\x80",
                                                              **ok},
            "binary garbage": {bytes(range(256)): bytes(range(255, -1, -1))},
            "a path for a name": {b"name": f"../../../api/v1/namespaces/{self.elsewhere}/secrets/"
                                  "token".encode(), **ok},
            "percent-encoded dots for a name": {b"name": b"%2e%2e%2f%2e%2e%2fsecrets", **ok},
            "an honest request's name with a query": {**theirs, b"outcome": b"Executed",
                                                      b"name": honest[0].encode() + b"?dryRun=All"},
            "a name of 300 characters": {b"name": b"a" * 300, **ok},
            "a 100 KB message (its own request)": {b"name": me, b"message": b"x" * 100_000, **ok},
            "an unknown outcome (its own request)": {b"name": me, b"uid": uid, b"outcome": b"Done"},
            "no outcome (its own request)": {b"name": me, b"uid": uid},
            "a uid that is not its own request's": {b"name": me, b"uid": b"0000-1111",
                                                    b"outcome": b"Executed"},
            "an honest agent's request reported Executed": {**theirs, b"outcome": b"Executed"},
            "an honest agent's request reported Failed": {**theirs, b"outcome": b"Failed"},
            "an honest request's rollback reported Executed": {**theirs, b"outcome": b"Executed"},
        }  # fmt: skip
        named = fields[case].get(b"name", b"").split(b"?")[0]  # what it aims at, if anything
        target = own if named == me else honest if named == theirs[b"name"] else None
        await self.report(case, fields[case], target)

    async def report(self, case: str, fields: dict[bytes, bytes], target: Target | None) -> None:
        """Append one entry to the agent's own outcome stream (it may: XADD is its right)."""
        assert self.redis is not None
        self.count += 1
        marker = f"poison h{self.count}"
        entry = dict(fields)
        if b"message" not in entry and case != "binary garbage":
            entry[b"message"] = marker.encode()
        stream = f"handoff:outcomes:{self.ns}:{HOSTILE}"
        end = time.monotonic() + 30
        while True:
            at = time.time()
            try:
                entry_id: Any = await self.redis.xadd(stream, entry)  # type: ignore[arg-type]
                break
            except (RedisError, OSError) as e:
                if time.monotonic() >= end:
                    self.journal.write("errors", {"where": "hostile poison", "at": at,
                                                  "error": str(e)[:300]})  # fmt: skip
                    return
                await asyncio.sleep(1)
        self.journal.write("hostile", {
            "id": f"h{self.count}", "class": "poison", "kind": case, "at": at,
            "entry": entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id),
            "stream": stream, "names": target[0] if target else "",
            "names_uid": target[1] if target else "", "names_agent": target[2] if target else "",
            "message": entry.get(b"message", b"").decode(errors="replace")[:100],
            "final": True,
        })  # fmt: skip


async def _retry(call: Any, seconds: float = RETRY_S) -> Any:
    end = time.monotonic() + seconds
    while True:
        try:
            return await call()
        except Exception:
            if time.monotonic() >= end:
                raise
            await asyncio.sleep(1)
