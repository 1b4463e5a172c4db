"""The tier-1 fast path's check of what it runs (issue #15): it compares the stored request with
the document it sent, and runs the executor's full check (``Executor.refusal``: the tool lookup,
the input schema and the mappings again) only when they differ. Every field the policy or the
executor reads must count: a comparison that ignored one would let a request the full check
refuses run at once."""

import asyncio
import copy
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from handoff.adapters.kube import NotFound
from handoff.gateway.calls import Calls
from handoff.gateway.execute import Executor
from handoff.gateway.filing import Call, request_body, runs_as_validated, stored_as_sent
from handoff.gateway.servers import Server, compile_server
from mcp import types

NS, AGENT, NAME = "ns", "agent", "mcp-0123456789abcdef"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["account", "limit"],
          "properties": {"account": {"type": "string"}, "limit": {"type": "integer"},
                         "previous": {"type": "integer"}}}  # fmt: skip
TOOLS = [{"name": "set_limit", "target": "'account:' + args.account", "inverse": {
    "tool": "set_limit", "arguments": "{'account': args.account, 'limit': args.previous}"}},
    {"name": "transfer"}]  # fmt: skip


def _server() -> Server:
    return compile_server({
        "metadata": {"name": "bank", "namespace": NS, "generation": 1},
        "spec": {"url": "http://u/mcp", "agents": {"serviceAccounts": [AGENT]}, "tools": TOOLS},
    })  # fmt: skip


SERVER = _server()
CALL = Call(SERVER, SERVER.mapping("set_limit"), {"account": "a", "limit": 5, "previous": 1},
            {"reasoning": "asked"}, "Set a limit")  # fmt: skip


def _sent() -> dict[str, Any]:
    return request_body(CALL, AGENT, NAME)


def _stored(change: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The sent document as the API server answers the create (with what it adds itself)."""
    body = copy.deepcopy(_sent())
    body["metadata"].update(uid="u-1", resourceVersion="7", generation=1,
                            annotations={"handoff.dev/requested-by":
                                         f"system:serviceaccount:{NS}:{AGENT}"})  # fmt: skip
    if change is not None:
        change(body)
    return body


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = body
        for part in parents:
            node = node[part]
        del node[last]

    return change


def _label(key: str, value: str) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["metadata"]["labels"].update({key: value})


DIFFERENT = {
    "a stored target": _set("spec.target", "account:b"),
    "a parameter's value": _set("spec.parameters.limit", 500),
    "a parameter more": _set("spec.parameters.admin", True),
    "a parameter less": _drop("spec.parameters.previous"),
    "an integer stored as a double": _set("spec.parameters.limit", 5.0),
    "an integer stored as a boolean": _set("spec.parameters.previous", True),
    "the rollback's parameters": _set("spec.rollback.parameters", {"account": "a", "limit": 99}),
    "the rollback's action": _set("spec.rollback.action", "mcp.bank.transfer"),
    "no rollback": _drop("spec.rollback"),
    "a rollbackOf": _set("spec.rollbackOf", "mcp-other"),
    "the action": _set("spec.action", "mcp.bank.transfer"),
    "the agent": _set("spec.agent", "other"),
    "the execution": _set("spec.execution", "Webhook"),
    "the reasoning": _set("spec.reasoning", "an instruction to the reviewer"),
    "the summary": _set("spec.summary", "harmless"),
    "a spec field the gateway never sets": _set("spec.deadline", "2030-01-01T00:00:00Z"),
    "a foreign label": _label("team", "payments"),
    "a handoff.dev/ label besides the agent's": _label("handoff.dev/tier", "1"),
    "another agent's label": _label("handoff.dev/agent", "other"),
    "another namespace": _set("metadata.namespace", "other"),
}


def test_the_request_as_sent_needs_no_full_check() -> None:
    assert stored_as_sent(_stored(), _sent())
    assert runs_as_validated(_stored(), (SERVER, "set_limit"), CALL, _sent())
    # What the API server itself sets, and the operator's status, are not the filer's choice.
    assert stored_as_sent(_stored(_set("status.phase", "Pending")), _sent())


@pytest.mark.parametrize("change", DIFFERENT.values(), ids=DIFFERENT.keys())
def test_any_difference_takes_the_full_check(change: Callable[[dict[str, Any]], None]) -> None:
    assert not stored_as_sent(_stored(change), _sent())
    assert not runs_as_validated(_stored(change), (SERVER, "set_limit"), CALL, _sent())


def test_another_server_or_tool_than_the_call_was_mapped_with_takes_the_full_check() -> None:
    """The registry compiles an MCPServer again at each change: the executor's lookup then
    finds a newer mapping than the one the request was made with."""
    assert not runs_as_validated(_stored(), (_server(), "set_limit"), CALL, _sent())
    assert not runs_as_validated(_stored(), (SERVER, "transfer"), CALL, _sent())


class Registry:
    def in_namespace(self, namespace: str) -> list[Server]:
        return [SERVER]


class Upstreams:
    def __init__(self) -> None:
        self.called: list[Mapping[str, Any]] = []

    async def tools(self, server: Server, fresh: bool = False) -> dict[str, types.Tool]:
        return {n: types.Tool(name=n, input_schema=SCHEMA) for n in ("set_limit", "transfer")}

    async def call(
        self, server: Server, tool: str, arguments: Mapping[str, Any], key: str
    ) -> dict[str, Any]:
        self.called.append(arguments)
        return {"content": [{"type": "text", "text": "done"}], "isError": False}


class Store:
    owner = "gw"

    async def claim(self, uid: str) -> str | None:
        return "new"

    async def save_result(self, uid: str, result: Any, delivered: Any = None) -> str:
        return "sha256:x"


class Tier1:
    async def why_not_tier1(self, request: Mapping[str, Any]) -> str | None:
        return None


class Api:
    async def get(self, path: str) -> dict[str, Any]:
        raise NotFound(404, f"{path} is not found")


class Spied(Executor):
    def __init__(self, upstreams: Upstreams) -> None:
        super().__init__(Api(), Registry(), upstreams, Store(), stale=60)  # type: ignore[arg-type]
        self.refusals: list[str | None] = []

    async def refusal(self, body: Mapping[str, Any], server: Server, tool: str) -> str | None:
        self.refusals.append(found := await super().refusal(body, server, tool))
        return found


def _fast(stored: dict[str, Any]) -> tuple[dict[str, Any] | None, Upstreams, Spied]:
    upstreams = Upstreams()
    executor = Spied(upstreams)

    async def run() -> dict[str, Any] | None:
        calls = Calls(api=None, credentials=None, registry=Registry(), upstreams=upstreams,
                      executor=executor, store=Store(), wait=1, fast=False)  # type: ignore[arg-type]  # fmt: skip
        calls.classifier = Tier1()  # type: ignore[assignment]
        decided = asyncio.get_running_loop().create_future()
        decided.set_result({"metadata": {"uid": "another"}})  # the settling ends at once
        answer = await calls._fast(stored, decided, (NS, AGENT, CALL.key, 0), (CALL, _sent()))
        await asyncio.gather(*calls._settling)
        return answer

    return asyncio.run(run()), upstreams, executor


def test_the_fast_path_runs_the_request_as_sent_without_the_full_check() -> None:
    answer, upstreams, executor = _fast(_stored())
    assert answer is not None
    assert not answer["isError"]
    assert upstreams.called == [CALL.arguments]
    assert executor.refusals == []


@pytest.mark.parametrize(
    "change",
    [_set("spec.target", "account:b"), _set("spec.rollback.parameters", {"account": "a"}),
     _set("spec.parameters.admin", True), _label("team", "payments"),
     _set("spec.rollbackOf", "mcp-other")],
    ids=["target", "rollback", "parameters", "foreign label", "rollbackOf"],
)  # fmt: skip
def test_a_stored_request_the_full_check_refuses_never_runs_at_once(
    change: Callable[[dict[str, Any]], None],
) -> None:
    """A request stored otherwise than sent (a mutating admission, a squatted name) goes to
    the executor's full check, which refuses these: nothing is called, the request waits."""
    answer, upstreams, executor = _fast(_stored(change))
    assert answer is None
    assert upstreams.called == []
    assert len(executor.refusals) == 1
    assert executor.refusals[0] is not None


def test_a_stored_request_the_full_check_accepts_still_runs_at_once() -> None:
    """A difference the full check does not mind (another reasoning for the reviewer, from an
    identical earlier call's request found under the same name; parameters the mapping makes
    the same target and rollback of) costs the full check, no more: what runs is what the
    policy judged, as stored."""
    answer, upstreams, executor = _fast(_stored(_set("spec.reasoning", "asked before")))
    assert answer is not None
    assert not answer["isError"]
    assert upstreams.called == [CALL.arguments]
    assert executor.refusals == [None]
    answer, upstreams, executor = _fast(_stored(_set("spec.parameters.limit", 500)))
    assert upstreams.called == [{**CALL.arguments, "limit": 500}]
    assert executor.refusals == [None]
