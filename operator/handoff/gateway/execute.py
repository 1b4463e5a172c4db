"""After approval: call the upstream with the arguments stored in the request's immutable spec,
once, and record Executed or Failed with the result's digest.

The protocol: claim the call in Redis (``store.claim``: once per request, by this gateway's
owner id), mark ``Executing`` in status (a patch guarded by the resourceVersion), call, keep the
result (or the failure) in Redis, then record the outcome. A gateway that dies after the call
finds the result in Redis and only records it. A claim is taken over only from a gateway that is
gone (its heartbeat expired; a gateway starts no call unless its own heartbeat will live
``MARGIN`` seconds more), never because a call is slow: two live gateways never both call. The
one that takes over calls again with the same idempotency key (the request's uid, in ``_meta``):
the owner may have died after the upstream ran, so an upstream that must not run twice should
deduplicate on it.
"""

import asyncio
import logging
from collections.abc import Coroutine, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound, resource_path
from handoff.adapters.sandbox import Sandbox
from handoff.domain.execution import OUTCOMES
from handoff.domain.executors import MCP
from handoff.domain.reasons import EXECUTING, Gateway, Outcome
from handoff.domain.timefmt import format_time, parse_time
from handoff.gateway import metrics
from handoff.gateway.budget import mapping_values
from handoff.gateway.filing import BadCall, checked_arguments, foreign_labels, rollback_plan
from handoff.gateway.registry import Registry
from handoff.gateway.servers import MappingError, Server
from handoff.gateway.store import FAILURE, Store, digest
from handoff.gateway.upstream import UpstreamError, Upstreams

log = logging.getLogger(__name__)
MAX_UNDO_DEPTH = 8  # a rollback of a rollback ... of a request, checked back to the first


class Executor:
    def __init__(
        self, api: KubeApi, registry: Registry, upstreams: Upstreams, store: Store, *,
        stale: float, sandbox: Sandbox | None = None,
    ) -> None:  # fmt: skip
        self.api = api
        self.registry = registry
        self.upstreams = upstreams
        self.store = store
        self.sandbox = sandbox  # costly mappings run there, within a budget
        self.stale = timedelta(seconds=stale)  # a mark older than this was left by a dead call
        self._locks: dict[str, asyncio.Lock] = {}

    async def run(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """Carry out an approved MCP request if nobody has; the request as it is afterwards."""
        return await self._exclusive(body["metadata"]["uid"], self._run(body))

    async def _exclusive(
        self, uid: str, work: Coroutine[Any, Any, Mapping[str, Any]]
    ) -> Mapping[str, Any]:
        """``work`` while no other work on request ``uid`` runs in this gateway."""
        lock = self._locks.setdefault(uid, asyncio.Lock())
        async with lock:
            try:
                return await work
            finally:
                if not lock._waiters:
                    self._locks.pop(uid, None)

    async def _run(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        meta = body["metadata"]
        path = resource_path(
            "handoff.dev", "v1alpha1", "actionrequests", meta["namespace"], meta["name"]
        )
        claimed: str | None = None
        for _ in range(5):
            status = body.get("status") or {}
            execution = status.get("execution") or {}
            if (
                body["spec"].get("execution") != MCP
                or execution.get("outcome") in OUTCOMES
                or (status.get("decision") or {}).get("outcome") != Outcome.APPROVED
            ):
                return body
            kept = await self.store.result(meta["uid"])
            if kept is not None:  # called already (maybe before a restart): never call again
                return await self._record_kept(path, kept)
            if claimed is None:
                claimed = await self.store.claim(meta["uid"])
                if claimed is None:
                    return body  # another live gateway (or a fast path) calls: it records
            if (
                claimed == "new"
                and execution.get("outcome") == EXECUTING
                and not self._old(execution)
            ):
                # Marked, yet nobody held the claim: Redis lost it. Wait until the mark is older
                # than any call, rather than call beside whoever marked.
                await self.store.release(meta["uid"])
                return body
            try:
                body = await self.api.merge_patch(path + "/status", {
                    "metadata": {"resourceVersion": meta["resourceVersion"]},
                    "status": {"execution": {"outcome": EXECUTING, "at": _now(),
                                             "message": "the MCP gateway is calling the tool"
                                                        f" (gateway {self.store.owner})"[:200]}},
                })  # fmt: skip
            except Conflict:
                body = await self.api.get(path)
                continue
            return await self._call(body, path)
        if claimed is not None:
            await self.store.release(meta["uid"])
        return body

    async def record_claimed(self, body: Mapping[str, Any], failure: str) -> Mapping[str, Any]:
        """Record what a claimed call (a tier-1 fast path) left: its kept result, or ``failure``
        when the upstream gave none. Only once the request is Approved, as every record."""
        return await self._exclusive(body["metadata"]["uid"], self._record_claimed(body, failure))

    async def _record_claimed(self, body: Mapping[str, Any], failure: str) -> Mapping[str, Any]:
        meta = body["metadata"]
        path = resource_path(
            "handoff.dev", "v1alpha1", "actionrequests", meta["namespace"], meta["name"]
        )
        status = body.get("status") or {}  # as the watcher just saw it
        if (status.get("execution") or {}).get("outcome") in OUTCOMES:
            return body
        if (status.get("decision") or {}).get("outcome") != Outcome.APPROVED:
            return body
        kept = await self.store.result(meta["uid"])
        why = failed(kept) if kept is not None else failure
        return await self._record(body, path, None if why else kept, why)

    async def _record_kept(self, path: str, kept: dict[str, Any]) -> Mapping[str, Any]:
        fresh = await self.api.get(path)
        if ((fresh.get("status") or {}).get("execution") or {}).get("outcome") in OUTCOMES:
            return dict(fresh)  # recorded too: the body this run started from was older
        failure = failed(kept)
        return await self._record(fresh, path, None if failure else kept, failure)

    async def _call(self, body: Mapping[str, Any], path: str) -> Mapping[str, Any]:
        spec, uid = body["spec"], body["metadata"]["uid"]
        found = self.tool_of(body)
        if isinstance(found, str):
            return await self._record(body, path, None, found)
        server, tool = found
        arguments = spec.get("parameters") or {}
        try:
            problem = await self._mismatch(body, server, tool, arguments)
        except UpstreamError as e:
            return await self._record(body, path, None, str(e))
        if problem is not None:
            metrics.CALLS.labels(outcome=Gateway.MAPPING_MISMATCH).inc()
            return await self._record(body, path, None, problem)
        if self.store.lease_left() <= 0:  # we may soon count as gone: let another gateway call
            await self.store.release(uid)
            return body
        try:
            result = await self.upstreams.call(server, tool, arguments, uid)
        except UpstreamError as e:  # kept as well: a later run records it, never calls again
            await self.store.save_result(uid, failure_result(str(e)))
            return await self._record(body, path, None, str(e))
        await self.store.save_result(uid, result)
        return await self._record(body, path, result, None)

    def tool_of(self, body: Mapping[str, Any]) -> tuple[Server, str] | str:
        namespace, spec = body["metadata"]["namespace"], body["spec"]
        action, agent = str(spec.get("action")), str(spec.get("agent"))
        found = [(s, t) for s in self.registry.in_namespace(namespace)
                 if s.allows(agent) and (t := s.tool_of_action(action)) is not None]  # fmt: skip
        if len(found) != 1:
            which = "no MCPServer" if not found else "several MCPServers"
            return (
                f"{which} of {namespace} that {agent} may use maps a tool to the action {action}:"
                " the gateway does not know which tool to call; nothing was called"
            )
        return found[0]

    async def refusal(self, body: Mapping[str, Any], server: Server, tool: str) -> str | None:
        """Why the request must not run as ``tool`` of ``server`` (see ``_mismatch``), or None.
        The tier-1 fast path asks too when the stored request is not exactly the document it
        sent for the call it validated (``calls._as_sent``): it runs nothing this would refuse."""
        try:
            return await self._mismatch(body, server, tool, body["spec"].get("parameters") or {})
        except UpstreamError as e:
            return str(e)

    async def _mismatch(
        self, body: Mapping[str, Any], server: Server, tool: str, arguments: Any, depth: int = 0
    ) -> str | None:
        """Why the request is not what the MCPServer's mapping makes of its arguments, as filed
        through the gateway, or None: its labels first (a policy's `when` may read them, and
        the gateway files none but its own), then its spec (``_spec_mismatch``)."""
        if labels := foreign_labels(body):
            return (
                f"the request carries labels of its filer's own choice ({', '.join(labels)[:200]}),"
                " which a policy may have judged: it was not filed through the gateway; nothing"
                " was called"
            )
        return await self._spec_mismatch(body, server, tool, arguments, depth)

    async def _spec_mismatch(
        self, body: Mapping[str, Any], server: Server, tool: str, arguments: Any, depth: int
    ) -> str | None:
        """Why the stored spec is not what the MCPServer's mapping makes of its arguments (a
        request filed around the gateway), or None. A rollback (``rollbackOf``, which only the
        operator sets) must be the plan of the request it undoes, and that request must itself
        be what the mapping made: its plan is where the rollback's tool and arguments come from."""
        spec = body["spec"]
        tools = await self.upstreams.tools(server)
        if tool not in tools:
            return f"the upstream {server.name} no longer offers {tool}; nothing was called"
        rollback = bool(spec.get("rollbackOf"))
        try:
            own, _ = checked_arguments(arguments, tools[tool].input_schema, tool)
            mapping = server.mapping(tool)
            if mapping.hidden and not rollback:
                raise BadCall(f"{tool} is hidden: it runs only as another tool's inverse")
            key = (server.namespace, str(spec.get("agent")))
            values = {} if rollback else await mapping_values(self.sandbox, key, mapping, own)
            target = None if rollback else mapping.target_of(server.name, own, values)
            plan = None if rollback else rollback_plan(server, mapping, own, values)
        except (BadCall, MappingError) as e:
            return f"the stored arguments do not fit {server.name}/{tool}: {e}; nothing was called"
        if own != arguments or (target is not None and spec.get("target") != target):
            return (
                f"the request's target {spec.get('target')!r} or arguments are not what"
                f" {server.name}'s mapping makes of them (target {target!r}): it was not filed"
                " through the gateway; nothing was called"
            )
        if rollback:
            return await self._undoes(body, depth)
        if spec.get("rollback") != plan:
            return (
                f"the request's rollback plan is not the inverse {server.name}'s mapping declares"
                f" for {tool} ({'none' if plan is None else plan['action']}): it was not filed"
                " through the gateway; nothing was called"
            )
        return None

    async def _undoes(self, undo: Mapping[str, Any], depth: int) -> str | None:
        """Why the rollback ``undo`` is not the plan of a request the mapping made, or None."""
        meta, spec = undo["metadata"], undo["spec"]
        name = str(spec.get("rollbackOf"))
        if depth >= MAX_UNDO_DEPTH:
            return f"rollbacks of rollbacks deeper than {MAX_UNDO_DEPTH}; nothing was called"
        path = resource_path("handoff.dev", "v1alpha1", "actionrequests", meta["namespace"], name)
        try:
            original = await self.api.get(path)
        except NotFound:
            return f"the request it rolls back, {name}, is gone; nothing was called"
        ospec = original.get("spec") or {}
        plan = ospec.get("rollback") or {}
        same = (
            ospec.get("execution") == MCP
            and ospec.get("agent") == spec.get("agent")
            and (plan.get("action") or ospec.get("action")) == spec.get("action")
            and (plan.get("parameters") or {}) == (spec.get("parameters") or {})
        )
        if not same:
            return (
                f"the rollback is not the plan of {name}, an MCP request of the same agent;"
                " nothing was called"
            )
        found = self.tool_of(original)
        if isinstance(found, str):
            return f"{name}, the request it rolls back: {found}"
        problem = await self._mismatch(
            original, *found, ospec.get("parameters") or {}, depth=depth + 1
        )
        if problem is not None:
            return f"{name}, which it rolls back, was not filed through the gateway: {problem}"
        return None

    async def _record(
        self, body: Mapping[str, Any], path: str, result: dict[str, Any] | None, failure: str | None
    ) -> Mapping[str, Any]:
        if result is not None and not result.get("isError"):
            outcome, message = "Executed", "the upstream tool returned a result"
        elif result is not None:
            outcome, message = "Failed", "the upstream tool returned an error result"
        else:
            outcome, message = "Failed", failure or "the call failed"
        execution: dict[str, Any] = {"outcome": outcome, "message": message[:2000], "at": _now()}
        if result is not None:
            execution["resultDigest"] = digest(result)
        try:
            updated = await self.api.merge_patch(
                path + "/status", {"status": {"phase": outcome, "execution": execution}}
            )
        except KubeError as e:
            log.warning("recording %s on %s: %s", outcome, path, e.message)
            return body
        metrics.EXECUTIONS.labels(outcome=outcome).inc()
        return dict(updated)

    def _old(self, execution: Mapping[str, Any]) -> bool:
        """Whether an Executing mark is older than any call could last (``self.stale``)."""
        try:
            marked = parse_time(str(execution.get("at")))
        except ValueError:
            return True
        return datetime.now(UTC) - marked > self.stale


def failure_result(message: str) -> dict[str, Any]:
    """What is kept of a call that failed: an error result saying so, marked as a failure."""
    return {"content": [{"type": "text", "text": f"the call failed: {message}"}], "isError": True,
            "_meta": {FAILURE: message[:2000]}}  # fmt: skip


def failed(kept: Mapping[str, Any]) -> str | None:
    """The failure a kept result records, or None for the upstream's own result."""
    found = (kept.get("_meta") or {}).get(FAILURE)
    return str(found) if found else None


def _now() -> str:
    return format_time(datetime.now(UTC))
