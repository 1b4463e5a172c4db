"""One ``tools/call``: refuse bad input before anything is filed, file the call as an
ActionRequest with the agent's own token (or find the one an identical earlier call filed),
wait for its decision a while, and answer with the upstream's result, an error result saying
why it was refused, or a result saying it awaits a person."""

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from handoff.adapters.kube import Conflict, Credentials, KubeApi, KubeError, resource_path
from handoff.adapters.sandbox import Sandbox
from handoff.domain.execution import OUTCOMES
from handoff.domain.reasons import Gateway, Reason
from handoff.gateway import metrics
from handoff.gateway.auth import Caller
from handoff.gateway.budget import mapping_values
from handoff.gateway.execute import Executor, failure_result
from handoff.gateway.fastpath import Decisions, LocalClassifier
from handoff.gateway.filing import (
    BadCall,
    Call,
    checked_arguments,
    is_this_call,
    request_body,
    runs_as_validated,
)
from handoff.gateway.policyview import PolicyView
from handoff.gateway.registry import Registry
from handoff.gateway.servers import MappingError, split_tool_name
from handoff.gateway.steps import observe, span
from handoff.gateway.store import Delivered, Store
from handoff.gateway.upstream import UpstreamError, Upstreams

log = logging.getLogger(__name__)
Progress = Callable[[float, str], Awaitable[None]]
PROGRESS_EVERY = 5.0
SETTLE_WAIT = 120.0  # seconds a fast path waits for the operator's decision to record it


class Refused(Exception):
    """A call refused before anything was filed: a JSON-RPC error for the client."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Calls:
    def __init__(
        self, *, api: KubeApi, credentials: Credentials, registry: Registry,
        upstreams: Upstreams, executor: Executor, store: Store, wait: float, fast: bool = True,
        policies: PolicyView | None = None, sandbox: Sandbox | None = None,
    ) -> None:  # fmt: skip
        self.api = api  # the gateway's own: reads requests, never files them
        self.credentials = credentials
        self.registry = registry
        self.upstreams = upstreams
        self.executor = executor
        self.store = store
        self.wait = wait
        self._agents: dict[str, KubeApi] = {}
        self.sandbox = sandbox  # the costly mappings and `when`s run there, within a budget
        self.classifier = LocalClassifier(api, policies, sandbox) if fast else None
        self.decisions = Decisions()
        self._settling: set[asyncio.Task[None]] = set()

    async def call(
        self, caller: Caller, name: str, arguments: Mapping[str, Any] | None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        started = time.monotonic()
        try:
            with span("validate"):
                call = await self._validated(caller, name, arguments or {})
            if isinstance(call, dict):  # an error result for the model to correct
                metrics.REFUSED.labels(reason=Gateway.INVALID_ARGUMENTS).inc()
                return call
            answer, outcome = await self._file_and_wait(caller, call, progress)
        except Refused as e:
            metrics.REFUSED.labels(reason=e.reason).inc()
            raise
        metrics.CALLS.labels(outcome=outcome).inc()
        metrics.CALL_SECONDS.observe(took := time.monotonic() - started)
        observe("handler", took)
        return answer

    async def file(
        self, caller: Caller, name: str, arguments: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The Tasks path (tasks.py): file the call, or find the request an identical earlier
        call filed, and return it at once: (the request, None), or (None, an error result) when
        nothing was filed. Raises Refused as ``call`` does. No fast path: the operator decides
        every task's request, and the watcher runs it once approved."""
        try:
            call = await self._validated(caller, name, arguments or {})
        except Refused as e:
            metrics.REFUSED.labels(reason=e.reason).inc()
            raise
        if isinstance(call, dict):
            metrics.REFUSED.labels(reason=Gateway.INVALID_ARGUMENTS).inc()
            return None, call
        generation = await self.store.generation(caller.namespace, caller.agent, call.key)
        request = await self.store.request_name(
            caller.namespace, caller.agent, call.key, generation
        )
        try:
            return await self._file(caller, request_body(call, caller.agent, request)), None
        except MappingError as e:
            return None, error_result(f"{e}; nothing was filed")
        except KubeError as e:
            return None, error_result(
                f"the API server would not file the request as {caller.agent}: {e.message}"
            )

    async def changed(self, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        """The request once it changed, or as it is after ``seconds``."""
        return await self._changed(body, seconds)

    async def outcome(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The result of an executed request (kept in Redis), or an error result saying why
        there is none."""
        return await self._outcome(body)

    async def _validated(
        self, caller: Caller, name: str, arguments: Mapping[str, Any]
    ) -> Call | dict[str, Any]:
        split = split_tool_name(name)
        server = self.registry.server(caller.namespace, split[0]) if split else None
        if split is None or server is None:
            raise _unknown(name)
        if not server.allows(caller.agent):
            raise Refused(
                Gateway.NOT_ALLOWED,
                f"{caller.agent} may not use the MCP server {server.name}: its"
                " spec.agents.serviceAccounts does not list you; ask its owners",
            )
        mapping = server.mapping(split[1])
        try:
            tools = await self.upstreams.tools(server)
        except UpstreamError as e:
            return error_result(f"{e}; nothing was filed, try again later")
        if mapping.hidden or not mapping.action or split[1] not in tools:
            raise _unknown(name)
        if server.tool_of_action(mapping.action) != split[1]:
            raise Refused(
                Gateway.AMBIGUOUS_TOOL,
                f"{name[:200]} becomes the action {mapping.action}, which the MCPServer"
                f" {server.name} also gives another tool: the gateway could not tell which one"
                " to run, so it files neither; ask its owners to give each tool its own action",
            )
        tool = tools[split[1]]
        try:
            own, context = checked_arguments(arguments, tool.input_schema, tool.name)
        except BadCall as e:
            return error_result(f"{e}; nothing was filed")
        values = await mapping_values(self.sandbox, (caller.namespace, caller.agent), mapping, own)
        return Call(server, mapping, own, context, tool.title or tool.name, values)

    async def _file_and_wait(
        self, caller: Caller, call: Call, progress: Progress | None
    ) -> tuple[dict[str, Any], str]:
        namespace, agent = caller.namespace, caller.agent
        with span("name"):
            generation = await self.store.generation(namespace, agent, call.key)
            name = await self.store.request_name(namespace, agent, call.key, generation)
        decided = self.decisions.expect(namespace, name)  # before filing: no event missed
        fast = None
        try:
            with span("create"):
                sent = request_body(call, agent, name)
                body = await self._file(caller, sent)
            if (
                self.classifier is not None
                and decided is not None
                and not (body.get("status") or {}).get("decision")
            ):
                delivering = (namespace, agent, call.key, generation)
                fast = await self._fast(body, decided, delivering, (call, sent))
        except MappingError as e:
            return error_result(f"{e}; nothing was filed"), Gateway.INVALID_ARGUMENTS
        except KubeError as e:
            return error_result(
                f"the API server would not file the request as {agent}: {e.message}"
            ), Gateway.REFUSED
        finally:
            if fast is None and decided is not None:
                self.decisions.forget(namespace, name)
        if fast is not None:  # delivered: its generation advanced as its result was kept
            return fast, Gateway.COMPLETED
        deadline = time.monotonic() + self.wait
        while True:
            status = body.get("status") or {}
            decision = status.get("decision") or {}
            if decision.get("outcome") == "Denied":
                await self.store.delivered(namespace, agent, call.key, generation)
                return refused_result(body), Gateway.REFUSED
            if decision.get("outcome") == "Approved":
                body = dict(await self.executor.run(body))
                if (body.get("status") or {}).get("execution", {}).get("outcome") in OUTCOMES:
                    answer = await self._outcome(body)
                    await self.store.delivered(namespace, agent, call.key, generation)
                    return answer, Gateway.COMPLETED
            left = deadline - time.monotonic()
            if left <= 0:
                return pending_result(body), Gateway.AWAITING
            if progress is not None:
                await progress(self.wait - left, f"{body['metadata']['name']} awaits a decision")
            body = dict(await self._changed(body, min(left, PROGRESS_EVERY)))

    async def _fast(
        self, body: Mapping[str, Any], decided: "asyncio.Future[Mapping[str, Any]]",
        delivering: Delivered, filed: tuple[Call, Mapping[str, Any]],
    ) -> dict[str, Any] | None:  # fmt: skip
        """Tier 1 at once (see fastpath.py): the upstream's answer, or None to wait as usual.
        ``filed``: the validated call and the document the gateway sent for it."""
        assert self.classifier is not None
        with span("classify"):
            why = await self.classifier.why_not_tier1(body)
        if why is not None:
            metrics.FAST_PATH.labels(outcome=Gateway.FAST_DECLINED).inc()
            return None
        uid = body["metadata"]["uid"]
        found = self.executor.tool_of(body)
        if isinstance(found, str):
            return None  # a tool the executor cannot tell: wait
        if (
            not runs_as_validated(body, found, *filed)
            and await self.executor.refusal(body, *found) is not None
        ):
            return None  # not what the mapping makes of it as stored: the executor records why
        with span("claim"):
            claimed = await self.store.claim(uid)
        if claimed is None:
            return None  # someone else is calling: wait
        server, tool = found
        failure = ""
        try:
            with span("upstream"):
                result = await self.upstreams.call(
                    server, tool, body["spec"].get("parameters") or {}, uid
                )
            with span("save"):
                await self.store.save_result(uid, result, delivering)
        except UpstreamError as e:  # kept: an approval later records it, never calls again
            result, failure = None, str(e)
            await self.store.save_result(uid, failure_result(failure), delivering)
        metrics.FAST_PATH.labels(outcome=Gateway.FAST_TAKEN).inc()
        task = asyncio.create_task(self._settle(body, decided, failure))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        if result is None:
            return error_result(
                f"{body['metadata']['name']} was approved; the call failed: {failure}"
            )
        return result

    async def _settle(
        self, body: Mapping[str, Any], decided: "asyncio.Future[Mapping[str, Any]]", failure: str
    ) -> None:
        """After a fast path: wait for the operator's decision (the watcher hands it over), say
        whether it agreed, and record the execution once the request is Approved (the watcher
        records it if this gateway stops first or the decision is late)."""
        meta = body["metadata"]
        try:
            seen = await asyncio.wait_for(decided, SETTLE_WAIT)
        except TimeoutError:
            return
        finally:
            self.decisions.forget(meta["namespace"], meta["name"])
        if seen["metadata"].get("uid") != meta["uid"]:
            return  # another request of that name (deleted meanwhile): the watcher's
        status = seen.get("status") or {}
        decision = status.get("decision") or {}
        approved = decision.get("outcome") == "Approved"
        if approved and decision.get("reason") == Reason.AUTO_APPROVED:
            metrics.FAST_PATH.labels(outcome=Gateway.FAST_AGREED).inc()
        else:
            metrics.FAST_PATH.labels(outcome=Gateway.FAST_DISAGREED).inc()
            log.warning(
                "%s/%s ran at once as tier 1, but the operator classified it tier %s (%s): a"
                " policy changed as it was filed; its execution is recorded only if a person"
                " approves it", meta["namespace"], meta["name"], status.get("tier"),
                decision.get("reason") or status.get("phase"),
            )  # fmt: skip
        if approved:
            try:
                await self.executor.record_claimed(seen, failure or "the call failed")
            except KubeError as e:
                log.warning("recording the fast path of %s: %s", meta["name"], e.message)

    async def _file(self, caller: Caller, document: dict[str, Any]) -> dict[str, Any]:
        """The request filed as ``document`` (``request_body``) with the agent's token."""
        name = document["metadata"]["name"]
        path = resource_path("handoff.dev", "v1alpha1", "actionrequests", caller.namespace)
        try:
            return dict(await self._as_agent(caller).create(path, document))
        except Conflict:  # filed already: by this call's earlier try, or squatted
            found = await self.api.get(f"{path}/{name}")
            if is_this_call(found, document):
                return dict(found)
        meta = document["metadata"]
        meta.pop("name")
        meta["generateName"] = "mcp-"
        return dict(await self._as_agent(caller).create(path, document))

    async def _changed(self, body: Mapping[str, Any], seconds: float) -> dict[str, Any]:
        meta = body["metadata"]
        path = resource_path("handoff.dev", "v1alpha1", "actionrequests", meta["namespace"])
        params = {"fieldSelector": f"metadata.name={meta['name']}",
                  "resourceVersion": meta["resourceVersion"]}  # fmt: skip
        try:
            async for event in self.api.watch(path, params, max(seconds, 1.0)):
                if event.get("type") in ("ADDED", "MODIFIED"):
                    return dict(event["object"])
        except KubeError:
            await asyncio.sleep(0.5)
        return dict(await self.api.get(f"{path}/{meta['name']}"))

    async def _outcome(self, body: Mapping[str, Any]) -> dict[str, Any]:
        execution = body["status"]["execution"]
        kept = await self.store.result(body["metadata"]["uid"])
        if kept is not None:
            return kept
        return error_result(
            f"{body['metadata']['name']} was approved; the gateway's call {execution['outcome']}:"
            f" {execution.get('message', '')}"
        )

    def _as_agent(self, caller: Caller) -> KubeApi:
        key = hashlib.sha256(caller.token.encode()).hexdigest()
        if key not in self._agents:
            if len(self._agents) >= 256:
                old = self._agents.pop(next(iter(self._agents)))
                task = asyncio.create_task(old.close())
                task.add_done_callback(lambda _: None)
            token = self.credentials.with_token(caller.token, "the agent's bearer token")
            self._agents[key] = KubeApi(token)
        return self._agents[key]

    async def close(self) -> None:
        for task in list(self._settling):
            task.cancel()
        for api in self._agents.values():
            await api.close()


def _unknown(name: str) -> Refused:
    return Refused(Gateway.UNKNOWN_TOOL, f"there is no tool {name[:200]!r} here; list the tools")


def error_result(text: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": True}


def refused_result(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, status = body["metadata"], body.get("status") or {}
    decision = status.get("decision") or {}
    comments = [f"{r.get('reviewer')}: {r.get('comment')}" for r in status.get("reviews") or []
                if r.get("decision") == "Deny" and r.get("comment")]  # fmt: skip
    said = f" Reviewer comments: {'; '.join(comments)}." if comments else ""
    message = str(decision.get("message") or "").strip()
    if message and not message.endswith((".", "!", "?")):
        message += "."
    text = (
        f"Not run: {meta['namespace']}/{meta['name']} was Denied ({decision.get('reason')})."
        f" {message}{said}"
    )
    result = error_result(text.strip())
    result["_meta"] = {
        "dev.handoff/request": meta["name"],
        "dev.handoff/reason": decision.get("reason"),
    }
    return result


def pending_result(body: Mapping[str, Any]) -> dict[str, Any]:
    meta, status = body["metadata"], body.get("status") or {}
    deadline = status.get("deadline") or "its policy's decision window"
    text = (
        f"Not run yet: this call awaits a person's decision as ActionRequest"
        f" {meta['namespace']}/{meta['name']} (phase {status.get('phase', 'Pending')}, decided"
        f" by {deadline} at the latest). Call the same tool again with the same arguments to get"
        " the outcome; different arguments file a new request."
    )
    return {
        "content": [{"type": "text", "text": text}],
        "isError": False,
        "_meta": {"dev.handoff/request": meta["name"], "dev.handoff/phase": status.get("phase"),
                  "dev.handoff/deadline": status.get("deadline")},
    }  # fmt: skip
