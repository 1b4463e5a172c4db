"""MCP Tasks (protocol revision 2025-11-25, experimental) on the gateway, through the SDK's
seams: a ``Server`` whose capabilities add ``tasks``, a server middleware that answers a
task-augmented ``tools/call`` with a ``CreateTaskResult`` (the SDK would validate the answer as
a ``CallToolResult``), and request handlers for ``tasks/get``, ``tasks/result``, ``tasks/list``
and ``tasks/cancel``.

Nothing is kept in memory: a task is its ActionRequest (taskstate.py), so a gateway started
after another died answers for its tasks, and ``tasks/result`` waits on the request itself.
"""

import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types import methods
from pydantic import ValidationError

from handoff.adapters.kube import KubeApi, KubeError, NotFound, resource_path
from handoff.domain.execution import OUTCOMES
from handoff.domain.reasons import Gateway, Outcome
from handoff.gateway import metrics
from handoff.gateway.auth import Caller
from handoff.gateway.calls import Calls, Refused, refused_result
from handoff.gateway.filing import call_key
from handoff.gateway.holds import Holds
from handoff.gateway.rates import Rates
from handoff.gateway.taskstate import (
    AGENT_LABEL,
    now,
    owned_by,
    task_of,
    valid_task_id,
)

log = logging.getLogger(__name__)
VERSION = "2025-11-25"  # the revision whose Tasks this serves (2026-07-28 made them an extension)
RELATED = "io.modelcontextprotocol/related-task"
IMMEDIATE = "io.modelcontextprotocol/model-immediate-response"
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601
INTERNAL_ERROR = -32603
NOT_FOUND = "Failed to retrieve task: Task not found"
CLASSIFY_WAIT = 3.0  # seconds a new task waits for the operator's classification (its deadline)
WAIT_SLICE = 30.0  # seconds of one watch while tasks/result blocks
PAGE = 100
CallerOf = Callable[[ServerRequestContext[Any, Any]], Awaitable[Caller]]


class TaskServer(Server[Any]):
    """The SDK's low-level server, advertising ``capabilities.tasks`` on the handshake (the
    SDK derives capabilities from its own handlers only): list, and task-augmented
    ``tools/call``. Not ``cancel``: an agent cannot withdraw a request in Handoff."""

    def get_capabilities(
        self, *args: Any, protocol_version: str | None = None, **kwargs: Any
    ) -> types.ServerCapabilities:
        capabilities = super().get_capabilities(*args, protocol_version=protocol_version, **kwargs)
        if protocol_version is not None and protocol_version != VERSION:
            return capabilities  # the 2026-07-28 discovery: tasks are not in that revision
        tasks = types.ServerTasksCapability(
            list=types.TasksListCapability(),
            requests=types.ServerTasksRequestsCapability(
                tools=types.TasksToolsCapability(call=types.TasksCallCapability())
            ),
        )
        return capabilities.model_copy(update={"tasks": tasks})


class Tasks:
    def __init__(
        self, api: KubeApi, calls: Calls, caller: CallerOf, holds: Holds | None = None,
        rates: Rates | None = None,
    ) -> None:  # fmt: skip
        self.api = api  # the gateway's own: reads requests
        self.calls = calls
        self.caller = caller
        self.holds = holds or Holds()  # what one agent holds open: waiting tasks/result count
        self.rates = rates or Rates()  # how fast one agent reads its tasks (rates.py)

    def install(self, server: Server[Any]) -> None:
        server.middleware.append(self._tools_call)
        server.add_request_handler("tasks/get", types.GetTaskRequestParams, self._get)
        server.add_request_handler("tasks/result", types.GetTaskPayloadRequestParams, self._result)
        server.add_request_handler("tasks/list", types.PaginatedRequestParams, self._list)
        server.add_request_handler("tasks/cancel", types.CancelTaskRequestParams, self._cancel)

    @staticmethod
    def listed(tools: list[types.Tool], version: str | None) -> list[types.Tool]:
        """Every offered tool may be called as a task: any call may need a person."""
        if version != VERSION:
            return tools
        optional = types.ToolExecution(task_support="optional")
        return [t.model_copy(update={"execution": optional}) for t in tools]

    # -- tools/call with a task ---------------------------------------------------------------

    async def _tools_call(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        raw = ctx.params
        if (
            ctx.method != "tools/call"
            or ctx.request_id is None
            or ctx.protocol_version != VERSION
            or not isinstance(raw, Mapping)
            or raw.get("task") is None
        ):
            return await call_next(ctx)  # not a task: the ordinary path, unchanged
        params = _task_params(raw)
        caller = await self.caller(ctx)
        await self.calls.registry.synced.wait()
        try:
            body, error = await self.calls.file(caller, params.name, params.arguments)
        except Refused as e:
            raise MCPError(INVALID_PARAMS, str(e), {"reason": e.reason}) from None
        if body is None:  # nothing filed: no task to point at, so an error, not a task
            text = " ".join(str(c.get("text", "")) for c in (error or {}).get("content", []))
            raise MCPError(INVALID_PARAMS, text or "nothing was filed")
        if not (body.get("status") or {}).get("phase"):
            body = await self.calls.changed(body, CLASSIFY_WAIT)  # the deadline, usually ms
        task = task_of(body, now())
        metrics.CALLS.labels(outcome=Gateway.TASK_CREATED).inc()
        log.info("task %s/%s for %s", caller.namespace, task.task_id, caller.agent)
        said = (
            f"{task.status_message}. Task {task.task_id}: poll tasks/get, then tasks/result for"
            " the tool's result."
        )
        result = types.CreateTaskResult(task=task).model_dump(
            by_alias=True, mode="json", exclude_none=True
        )
        result["_meta"] = {IMMEDIATE: said}  # what a host may hand the model meanwhile
        # Also a CallToolResult's content: clients (the mcp SDK 2.3 among them) validate every
        # tools/call answer as one; a CreateTaskResult may carry other fields.
        result["content"] = [{"type": "text", "text": said}]
        return result

    # -- tasks/* ------------------------------------------------------------------------------

    async def _get(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetTaskRequestParams
    ) -> types.GetTaskResult:
        body = await self._own(ctx, params.task_id, "get")
        return types.GetTaskResult.model_validate(task_of(body, now()).model_dump())

    async def _result(
        self, ctx: ServerRequestContext[Any, Any], params: types.GetTaskPayloadRequestParams
    ) -> dict[str, Any]:
        """Block until the request's outcome, then return what the call returns: the
        upstream's result, or an error result saying Denied (reason, reviewers' comments) or
        Failed."""
        body = await self._own(ctx, params.task_id, "result")
        meta, agent = body["metadata"], str(body["spec"].get("agent"))
        holding = False
        with contextlib.ExitStack() as held:
            while True:
                decision = (body.get("status") or {}).get("decision") or {}
                if decision.get("outcome") == Outcome.DENIED:
                    answer = refused_result(body)
                    break
                if decision.get("outcome") == Outcome.APPROVED:
                    body = dict(await self.calls.executor.run(body))  # if nobody has: once
                    execution = (body.get("status") or {}).get("execution") or {}
                    if execution.get("outcome") in OUTCOMES:
                        answer = await self.calls.outcome(body)
                        break
                if not holding:  # it waits: one of the agent's held requests from now on
                    held.enter_context(self.holds.hold(meta["namespace"], agent, "tasks/result"))
                    holding = True
                try:
                    body = await self.calls.changed(body, WAIT_SLICE)
                except NotFound:
                    raise MCPError(INVALID_PARAMS, NOT_FOUND) from None
        await self._delivered(body)
        # Exactly what the call returns on this revision (the SDK's own shaping of a tools/call
        # result), with the task it belongs to.
        answer = methods.serialize_server_result("tools/call", VERSION, answer)
        answer["_meta"] = {**(answer.get("_meta") or {}), RELATED: {"taskId": params.task_id}}
        return answer

    async def _list(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListTasksResult:
        caller = await self._task_caller(ctx, "tasks/list")
        query = {"labelSelector": f"{AGENT_LABEL}={caller.agent}", "limit": str(PAGE)}
        if params.cursor is not None:
            if not params.cursor or len(params.cursor) > 4096:
                raise MCPError(INVALID_PARAMS, "Invalid cursor: pass nextCursor as it came")
            query["continue"] = params.cursor
        path = resource_path("handoff.dev", "v1alpha1", "actionrequests", caller.namespace)
        try:
            page = await self.api.request("GET", path, params=query)
        except KubeError as e:
            if e.status in (400, 410):
                raise MCPError(
                    INVALID_PARAMS, "Invalid or expired cursor: list again without one"
                ) from None
            raise MCPError(INTERNAL_ERROR, f"the tasks could not be listed: {e.message}") from None
        at = now()
        tasks = [task_of(b, at) for b in page.get("items") or [] if owned_by(b, caller)]
        following = (page.get("metadata") or {}).get("continue") or None
        return types.ListTasksResult(tasks=tasks, next_cursor=following)

    async def _cancel(
        self, ctx: ServerRequestContext[Any, Any], params: types.CancelTaskRequestParams
    ) -> types.CancelTaskResult:
        body = await self._own(ctx, params.task_id, "cancel")
        task = task_of(body, now())
        if task.status in ("completed", "failed", "cancelled"):
            raise MCPError(
                INVALID_PARAMS, f"Cannot cancel task: already in terminal status '{task.status}'"
            )
        raise MCPError(
            INVALID_PARAMS,
            f"Cannot cancel task: in Handoff an agent cannot withdraw its request"
            f" ({task.status_message}); the task ends when a reviewer decides or the decision"
            " window closes (then it fails as Expired and the tool never runs)",
        )

    # -- whose task ---------------------------------------------------------------------------

    async def _task_caller(self, ctx: ServerRequestContext[Any, Any], method: str) -> Caller:
        if ctx.protocol_version != VERSION:
            raise MCPError(
                METHOD_NOT_FOUND,
                f"Method not found: tasks are served on protocol revision {VERSION}",
            )
        caller = await self.caller(ctx)
        self.rates.take(caller.namespace, caller.agent, method)  # before the API server's read
        return caller

    async def _own(
        self, ctx: ServerRequestContext[Any, Any], task_id: str, method: str
    ) -> dict[str, Any]:
        """The task's request, if it is the caller's; for anything else (an unknown or malformed
        id, another agent's task) the same error, so the answer says nothing about others."""
        caller = await self._task_caller(ctx, f"tasks/{method}")
        body: dict[str, Any] | None = None
        if valid_task_id(task_id):
            path = resource_path(
                "handoff.dev", "v1alpha1", "actionrequests", caller.namespace, task_id
            )
            try:
                body = dict(await self.api.get(path))
            except NotFound:
                body = None
            except KubeError as e:
                raise MCPError(INTERNAL_ERROR, f"the task could not be read: {e.message}") from e
        found = body is not None and owned_by(body, caller)
        metrics.TASK_LOOKUPS.labels(method=method, found=str(found).lower()).inc()
        if body is None or not found:
            raise MCPError(INVALID_PARAMS, NOT_FOUND)
        return body

    async def _delivered(self, body: Mapping[str, Any]) -> None:
        """The outcome reached its client: the next identical call files anew (as on the retry
        path), but only from the generation this request was filed under."""
        meta, spec = body["metadata"], body["spec"]
        found = self.calls.executor.tool_of(body)
        if isinstance(found, str):
            return
        server, tool = found
        key = call_key(server.name, tool, spec.get("parameters") or {})
        store, namespace, agent = self.calls.store, meta["namespace"], str(spec.get("agent"))
        generation = await store.generation(namespace, agent, key)
        if await store.request_name(namespace, agent, key, generation) == meta["name"]:
            await store.delivered(namespace, agent, key, generation)


def _task_params(raw: Mapping[str, Any]) -> types.CallToolRequestParams:
    """The params of a task-augmented call, or a clear error (nothing is filed)."""
    task = raw.get("task")
    ttl = task.get("ttl") if isinstance(task, Mapping) else None
    if not isinstance(task, Mapping) or not (
        ttl is None or (isinstance(ttl, int) and not isinstance(ttl, bool))
    ):
        raise MCPError(
            INVALID_PARAMS,
            "the task field of tools/call must be an object with an optional ttl, a whole number"
            " of milliseconds; nothing was filed",
        )
    try:
        return types.CallToolRequestParams.model_validate(raw, by_name=False)
    except ValidationError as e:
        where = ".".join(str(p) for p in e.errors()[0]["loc"]) or "params"
        raise MCPError(
            INVALID_PARAMS, f"tools/call params are malformed at {where}; nothing was filed"
        ) from None
