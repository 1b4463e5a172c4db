"""The async agent SDK. See the package docstring for an example."""

import asyncio
import socket
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError

from handoff import API_VERSION, GROUP, REQUESTS, VERSION
from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.domain.decide import spec_digest
from handoff.domain.keys import decisions_key, outcomes_key, state_key
from handoff.sdk import connection
from handoff.sdk.errors import (
    HandoffError,
    IdempotencyConflict,
    SpecMismatch,
    StateTooLarge,
    kube_failure,
    redis_failure,
)
from handoff.sdk.state import (
    JsonSerializer,
    RedisStateStore,
    Serializer,
    StateStore,
    envelope,
    open_envelope,
)
from handoff.sdk.values import Decision, Ticket, decode_entry, request_name, settled

GROUP_NAME = "agent"  # the consumer group the operator creates on each decision stream
MAX_WINDOW = timedelta(hours=168)  # the longest decision window a policy may set


class Agent:
    def __init__(
        self,
        namespace: str,
        name: str,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        redis_url: str | None = None,
        consumer: str | None = None,
        serializer: Serializer | None = None,
        state_store: StateStore | None = None,
        max_state_bytes: int = 1 << 20,
        state_grace: timedelta = timedelta(days=7),
        claim_idle: timedelta = timedelta(seconds=60),
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.consumer = consumer or f"{socket.gethostname()}"
        self.serializer = serializer or JsonSerializer()
        self.max_state_bytes = max_state_bytes
        self.state_ttl = MAX_WINDOW + state_grace
        self.claim_idle = claim_idle
        self._kubeconfig, self._context, self._redis_url = kubeconfig, context, redis_url
        self._api: KubeApi | None = None
        self._redis: redis_asyncio.Redis | None = None
        self._store = state_store

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> "Agent":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Authenticate with the ServiceAccount token (kubeconfig or in-cluster) and with the
        agent's own Redis user, whose URL the operator keeps in a Secret only it may read.
        Raises :class:`HandoffError` (:class:`Unavailable`, :class:`Forbidden`) saying what to do,
        with nothing left open."""
        try:
            await self._connect()
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> None:
        if self._api is None:
            self._api = connection.kube_api(self._kubeconfig, self._context)
        if self._redis is None:
            url = self._redis_url or await connection.redis_url(
                self._api, self.namespace, self.name
            )
            self._redis = await connection.redis_client(url, self.name)
        if self._store is None:
            self._store = RedisStateStore(self._redis)

    async def close(self) -> None:
        if self._api is not None:
            await self._api.close()
            self._api = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    # -- proposing -----------------------------------------------------------------------------

    async def propose(
        self,
        action: str,
        *,
        summary: str,
        target: str = "",
        parameters: dict[str, Any] | None = None,
        reasoning: str = "",
        blast_radius: str = "",
        rollback: dict[str, Any] | None = None,
        confidence: float | None = None,
        state: Any = None,
        idempotency_key: str | None = None,
        quick_wait: float = 2.0,
    ) -> Ticket:
        """Save the state, file the request, and return at once.

        Retrying with the same ``idempotency_key`` never files twice. Tier 1 and 2 decisions
        that arrive within ``quick_wait`` seconds come back in the ticket; nothing waits on people.
        """
        api = self._kube()
        proposal_id = idempotency_key or uuid.uuid4().hex
        spec: dict[str, Any] = {"agent": self.name, "action": action, "summary": summary}
        optional = {
            "target": target, "parameters": parameters, "reasoning": reasoning,
            "blastRadius": blast_radius, "rollback": rollback, "confidence": confidence,
        }  # fmt: skip
        spec |= {k: v for k, v in optional.items() if v not in (None, "")}
        if state is not None:
            spec["stateRef"] = state_key(self.namespace, self.name, proposal_id)
        digest = spec_digest(spec)
        if state is not None:
            data = envelope(self.serializer, state, digest)
            if len(data) > self.max_state_bytes:
                raise StateTooLarge(len(data), self.max_state_bytes)
            await self._state().put(spec["stateRef"], data, self.state_ttl)
        name = request_name(action, self.namespace, self.name, proposal_id)
        body = {
            "apiVersion": API_VERSION,
            "kind": "ActionRequest",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {"handoff.dev/agent": self.name},
                "annotations": {"handoff.dev/proposal-id": proposal_id},
            },
            "spec": spec,
        }
        path = resource_path(GROUP, VERSION, REQUESTS, self.namespace)
        try:
            try:
                created = await api.create(path, body)
            except Conflict:
                created = await api.get(f"{path}/{name}")
                if spec_digest(created.get("spec") or {}) != digest:
                    raise IdempotencyConflict(
                        f"idempotency key {proposal_id!r} was used for a different proposal"
                        f" ({name})"
                    ) from None
            return await self._ticket(created, proposal_id, digest, quick_wait)
        except KubeError as e:
            raise self._kube_failure(e, f"file the request {action} in {self.namespace}") from e

    async def _ticket(
        self, created: dict[str, Any], proposal_id: str, digest: str, quick_wait: float
    ) -> Ticket:
        body = created
        loop = asyncio.get_running_loop()
        deadline = loop.time() + quick_wait
        while not settled(body) and loop.time() < deadline:
            body = await self._watch_once(body, deadline - loop.time())
        status = body.get("status") or {}
        return Ticket(
            name=body["metadata"]["name"],
            uid=body["metadata"]["uid"],
            proposal_id=proposal_id,
            spec_digest=digest,
            tier=status.get("tier"),
            phase=status.get("phase"),
            deadline=status.get("deadline"),
            decision=status.get("decision"),
        )

    async def _watch_once(self, body: dict[str, Any], seconds: float) -> dict[str, Any]:
        meta = body["metadata"]
        path = resource_path(GROUP, VERSION, REQUESTS, self.namespace)
        params = {
            "fieldSelector": f"metadata.name={meta['name']}",
            "resourceVersion": meta["resourceVersion"],
        }
        async for event in self._kube().watch(path, params, seconds):
            if event.get("type") in ("ADDED", "MODIFIED"):
                body = event["object"]
                if settled(body):
                    break
        return body

    # -- resuming ------------------------------------------------------------------------------

    async def decisions(
        self, *, block: float = 5.0, forever: bool = True
    ) -> AsyncGenerator[Decision, None]:
        """Decisions with their state, at least once each: an entry is acknowledged only when the
        loop body that received it finishes. After a crash, this consumer's unacknowledged
        entries come first, then entries other consumers left idle for ``claim_idle``.

        With ``forever=False`` it stops when nothing new arrives within ``block`` seconds.
        """
        redis = self._redis_client()
        stream = decisions_key(self.namespace, self.name)
        first = True
        while True:
            entries: list[tuple[str, dict[str, str]]] = []
            try:
                if first:
                    entries += await self._read(stream, "0", None)
                    idle_ms = int(self.claim_idle.total_seconds() * 1000)
                    claimed = await redis.xautoclaim(
                        stream, GROUP_NAME, self.consumer, idle_ms, "0-0", count=100
                    )
                    entries += [decode_entry(e) for e in claimed[1] if e and e[1]]
                    first = False
                if not entries:
                    entries = await self._read(stream, ">", int(block * 1000))
            except RedisError as e:
                raise redis_failure(e, f"read {self.name}'s decisions") from e
            if not entries and not forever:
                return
            for entry_id, fields in entries:
                decision = await self._rehydrate(entry_id, fields)
                yield decision
                try:
                    await redis.xack(stream, GROUP_NAME, entry_id)
                except RedisError as e:  # the decision comes again: handlers must be idempotent
                    raise redis_failure(e, f"acknowledge the decision on {decision.name}") from e

    async def resume(
        self,
        handler: Callable[[Decision], Awaitable[str | None]],
        *,
        forever: bool = True,
        block: float = 5.0,
    ) -> int:
        """Run ``handler`` on each decision. For an approval, the spec is checked against what was
        proposed first; the handler's return (a message) reports Executed, an exception Failed.
        Denials reach the handler too, so the workflow can end gracefully. Returns how many."""
        handled = 0
        async for decision in self.decisions(forever=forever, block=block):
            if decision.approved:
                try:
                    await self.verify(decision)
                except SpecMismatch as e:
                    await self.report(decision, "Failed", str(e))
                    handled += 1
                    continue
                try:
                    message = await handler(decision)
                except Exception as e:  # the action failed: say so, and end this workflow
                    await self.report(decision, "Failed", f"{type(e).__name__}: {e}")
                else:
                    await self.report(decision, "Executed", message or "")
            else:
                await handler(decision)
            if decision.state_ref:
                await self._state().delete(decision.state_ref)
            handled += 1
        return handled

    async def verify(self, decision: Decision) -> None:
        """Raise SpecMismatch unless the request as approved is byte for byte what was proposed."""
        path = resource_path(GROUP, VERSION, REQUESTS, self.namespace, decision.name)
        try:
            body = await self._kube().get(path)
        except NotFound as e:
            raise SpecMismatch(f"{decision.name} no longer exists") from e
        except KubeError as e:
            raise self._kube_failure(e, f"read {decision.name} to check it") from e
        actual = spec_digest(body.get("spec") or {})
        recorded = (body.get("status") or {}).get("specDigest")
        if body["metadata"]["uid"] != decision.uid or actual != recorded:
            raise SpecMismatch(f"{decision.name}: the approved spec is not the one recorded")
        if decision.spec_digest and actual != decision.spec_digest:
            raise SpecMismatch(
                f"{decision.name}: the approved spec is not what this agent proposed"
            )

    async def read_request(self, name: str) -> dict[str, Any]:
        """The request as the API server has it now (spec, and status with its reviews)."""
        path = resource_path(GROUP, VERSION, REQUESTS, self.namespace, name)
        try:
            body: dict[str, Any] = await self._kube().get(path)
        except KubeError as e:
            raise self._kube_failure(e, f"read {name}") from e
        return body

    @property
    def state_store(self) -> StateStore:
        """Where this agent's states wait (its own Redis keys): for integrations that keep more."""
        return self._state()

    async def report(self, decision: Decision, outcome: str, message: str = "") -> None:
        """Tell the operator what happened (Executed or Failed); the request's phase shows it."""
        fields = {
            "name": decision.name,
            "uid": decision.uid,
            "outcome": outcome,
            "message": message[:2000],
        }
        try:
            await self._redis_client().xadd(outcomes_key(self.namespace, self.name), fields)  # type: ignore[arg-type]
        except RedisError as e:
            raise redis_failure(e, f"report the outcome of {decision.name}") from e

    # -- internals -----------------------------------------------------------------------------

    async def _read(
        self, stream: str, start: str, block_ms: int | None
    ) -> list[tuple[str, dict[str, str]]]:
        answer: Any = await self._redis_client().xreadgroup(
            GROUP_NAME, self.consumer, {stream: start}, count=50, block=block_ms
        )
        return [decode_entry(entry) for _, entries in answer or [] for entry in entries if entry[1]]

    async def _rehydrate(self, entry_id: str, fields: dict[str, str]) -> Decision:
        state, proposed_digest = None, ""
        state_ref = fields.get("stateRef", "")
        if state_ref:
            data = await self._state().get(state_ref)
            if data is None:
                raise HandoffError(
                    f"the state of {fields.get('name')} ({state_ref}) is gone: it expired or was"
                    " deleted; Redis must run with append-only persistence"
                )
            state, proposed_digest = open_envelope(self.serializer, data)
        return Decision(
            namespace=fields.get("namespace", self.namespace),
            name=fields.get("name", ""),
            uid=fields.get("uid", ""),
            action=fields.get("action", ""),
            target=fields.get("target", ""),
            outcome=fields.get("outcome", ""),
            reason=fields.get("reason", ""),
            by=[b for b in fields.get("by", "").split(",") if b],
            message=fields.get("message", ""),
            state=state,
            spec_digest=proposed_digest,
            state_ref=state_ref,
            entry_id=entry_id,
        )

    def _kube_failure(self, error: KubeError, doing: str) -> HandoffError:
        return kube_failure(error, doing, self.name, self.namespace)

    def _kube(self) -> KubeApi:
        if self._api is None:
            raise HandoffError("call connect() first (or use 'async with Agent(...)')")
        return self._api

    def _redis_client(self) -> "redis_asyncio.Redis":
        if self._redis is None:
            raise HandoffError("call connect() first (or use 'async with Agent(...)')")
        return self._redis

    def _state(self) -> StateStore:
        if self._store is None:
            raise HandoffError("call connect() first (or use 'async with Agent(...)')")
        return self._store
