"""MCP Tasks (protocol revision 2025-11-25) through the gateway, end to end: the mcp SDK's client
(the initialize handshake, then task-augmented tools/call and tasks/* with the SDK's own types)
against the real control plane, Redis, operator and the counting upstream bank. Each helper opens
a new client session, as a client that reconnects does."""

import asyncio
import http.client
import json
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
import pytest
from handoff.domain.timefmt import parse_time
from handoff.gateway.store import RESULT_TTL
from handoff.testing.cluster import Cluster, eventually
from handoff.testing.gateway import GatewayProcess
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .helpers import AGENT
from .mcp_helpers import (
    Upstream,
    agent_token,
    approve,
    call,
    leaves,
    mcp_server,
    plugin,
    request_of,
    requests,
    text,
)

pytestmark = pytest.mark.integration
OTHER = "other-agent"  # of the same namespace and policy; the bank does not list it
NOT_FOUND = "Failed to retrieve task: Task not found"
T = TypeVar("T")


TRANSCRIPT: list[str] = []  # what the tier-4 test's client sent and got, for the docs


def session(gateway: GatewayProcess, token: str, use: Callable[[Client], Awaitable[T]]) -> T:
    """``use`` on a new client session that negotiates 2025-11-25 (the handshake)."""

    async def go() -> T:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        client = Client(streamable_http_client(gateway.url, http_client=http), mode="legacy")
        async with http, client:
            assert client.protocol_version == "2025-11-25"
            return await use(client)

    return asyncio.run(go())


def send(gateway: GatewayProcess, token: str, request: types.Request[Any, Any], kind: type[T]) -> T:
    answer: Any = session(gateway, token, lambda c: c.session.send_request(request, kind))
    sent = request.model_dump(by_alias=True, mode="json", exclude_none=True)
    TRANSCRIPT.append(f"-> {json.dumps(sent)}")
    TRANSCRIPT.append(f"<- {answer.model_dump_json(by_alias=True, exclude_none=True)}")
    return cast(T, answer)


def create(
    gateway: GatewayProcess, token: str, tool: str, arguments: dict[str, Any],
    ttl: int | None = None,
) -> types.Task:  # fmt: skip
    params = types.CallToolRequestParams(
        name=tool, arguments=arguments, task=types.TaskMetadata(ttl=ttl)
    )

    request = types.CallToolRequest(params=params)
    return send(gateway, token, request, types.CreateTaskResult).task


def get(gateway: GatewayProcess, token: str, task_id: str) -> types.GetTaskResult:
    request = types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id))
    return send(gateway, token, request, types.GetTaskResult)


def result(gateway: GatewayProcess, token: str, task_id: str) -> types.CallToolResult:
    params = types.GetTaskPayloadRequestParams(task_id=task_id)
    return send(gateway, token, types.GetTaskPayloadRequest(params=params), types.CallToolResult)


def listed(gateway: GatewayProcess, token: str) -> list[str]:
    async def use(client: Client) -> list[str]:
        ids, cursor = [], None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor)
            page = await client.session.send_request(
                types.ListTasksRequest(params=params), types.ListTasksResult
            )
            ids += [t.task_id for t in page.tasks]
            if not (cursor := page.next_cursor):
                return ids

    return session(gateway, token, use)


def cancel(gateway: GatewayProcess, token: str, task_id: str) -> types.CancelTaskResult:
    request = types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=task_id))
    return session(
        gateway, token, lambda c: c.session.send_request(request, types.CancelTaskResult)
    )


def error_of(probe: Callable[[], object]) -> MCPError:
    """The JSON-RPC error the SDK's client raises (inside exception groups)."""
    with pytest.raises((MCPError, ExceptionGroup)) as raised:
        probe()
    found = leaves(raised.value)
    (error,) = [e for e in found if isinstance(e, MCPError)] or found
    assert isinstance(error, MCPError), found
    return error


def refused(probe: Callable[[GatewayProcess, str, str], object], *args: Any) -> MCPError:
    return error_of(lambda: probe(*args))


def ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


# -- the capability and the tools ---------------------------------------------------------------


def test_the_handshake_advertises_tasks_and_every_tool_may_be_a_task(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    async def use(client: Client) -> tuple[types.ServerCapabilities, list[types.Tool]]:
        return client.server_capabilities, list((await client.list_tools()).tools)

    capabilities, tools = session(gateway, agent_token(cluster, bank), use)
    assert capabilities.tasks is not None
    assert capabilities.tasks.requests is not None
    assert capabilities.tasks.requests.tools is not None
    assert capabilities.tasks.requests.tools.call is not None
    assert capabilities.tasks.list is not None
    assert capabilities.tasks.cancel is None  # an agent cannot withdraw a request
    assert {t.name: t.execution and t.execution.task_support for t in tools} == {
        "bank__read_account": "optional",
        "bank__set_limit": "optional",
        "bank__transfer": "optional",
        "bank__close_account": "optional",
    }


# -- tiers ------------------------------------------------------------------------------------


def test_a_tier_4_task_works_until_approved_then_returns_the_upstream_result_once(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    TRANSCRIPT.clear()
    asked = {"amount": 2500, "to": bank, "handoff_reasoning": "refund of order 881"}
    task = create(gateway, token, "bank__transfer", asked, ttl=10 * 365 * 24 * 3600 * 1000)
    (filed,) = requests(cluster, bank)
    assert task.task_id == filed["metadata"]["name"]
    assert task.status == "working"
    assert "awaits a person's decision" in (task.status_message or "")
    assert task.poll_interval == 5000
    # The lifetime follows the decision window (5m here), then the outcome's retention: the
    # ten years the client asked for stretch nothing.
    status = cluster.get("actionrequest", task.task_id, bank)["status"]
    window = parse_time(status["deadline"]) - parse_time(filed["metadata"]["creationTimestamp"])
    assert task.ttl == ms(window + timedelta(seconds=RESULT_TTL))
    assert parse_time(task.created_at) == parse_time(filed["metadata"]["creationTimestamp"])

    again = create(gateway, token, "bank__transfer", asked, ttl=1)  # a retry: the same task
    assert again.task_id == task.task_id
    assert len(requests(cluster, bank)) == 1
    assert get(gateway, token, task.task_id).status == "working"

    approve(cluster, bank, task.task_id)
    done = result(gateway, token, task.task_id)  # blocks until the tool ran
    assert not done.is_error
    assert text(done) == f"moved 2500 to {bank}"
    assert (done.meta or {})["io.modelcontextprotocol/related-task"] == {"taskId": task.task_id}
    assert [c["args"] for c in upstream.calls(bank)] == [{"amount": 2500, "to": bank}]
    assert upstream.calls(bank)[0]["key"] == filed["metadata"]["uid"]
    finished = get(gateway, token, task.task_id)
    assert finished.status == "completed"
    assert finished.poll_interval is None
    assert text(result(gateway, token, task.task_id)) == f"moved 2500 to {bank}"  # kept
    assert len(upstream.calls(bank)) == 1
    print("\n".join(TRANSCRIPT))  # the docs' transcript (pytest -s)
    # Its outcome was delivered: the same call once more is a new request, with its own review.
    assert create(gateway, token, "bank__transfer", asked).task_id != task.task_id
    assert len(requests(cluster, bank)) == 2


def test_a_denied_task_fails_with_the_reason_and_the_reviewer_s_comment(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    task = create(gateway, token, "bank__transfer", {"amount": 70, "to": bank})
    plugin(cluster, bank, "bob", "deny", task.task_id, "--comment", "no ticket for this")
    failed = eventually(
        lambda: (t := get(gateway, token, task.task_id)).status == "failed" and t,
        20, "the task to fail",
    )  # fmt: skip
    assert "Denied (HumanDenied)" in (failed.status_message or "")
    assert "bob: no ticket for this" in (failed.status_message or "")
    answer = result(gateway, token, task.task_id)
    assert answer.is_error
    assert "Denied (HumanDenied)" in text(answer)
    assert "no ticket for this" in text(answer)
    assert upstream.calls(bank) == []


def test_an_expired_task_fails_as_expired_and_its_result_waits_for_it(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    task = create(gateway, token, "bank__close_account", {"account": bank})
    assert task.status == "working"
    assert task.ttl is not None
    assert task.ttl <= ms(timedelta(seconds=10 + RESULT_TTL))  # the rule's 10 s window
    answer = result(gateway, token, task.task_id)  # blocks until the window closes
    assert answer.is_error
    assert "Denied (Expired)" in text(answer)
    assert get(gateway, token, task.task_id).status == "failed"
    assert upstream.calls(bank) == []


def test_a_tier_1_task_completes_without_a_person(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """A task-augmented call is answered with a task at every tier (the spec: a receiver that
    accepts one returns a CreateTaskResult); one no person decides completes on its own."""
    token = agent_token(cluster, bank)
    task = create(gateway, token, "bank__read_account", {"account": bank})
    eventually(lambda: get(gateway, token, task.task_id).status == "completed", 30, "completed")
    assert text(result(gateway, token, task.task_id)) == f"account {bank}: balance 1000"
    assert [c["args"] for c in upstream.calls(bank)] == [{"account": bank}]


def test_without_a_task_the_call_is_held_and_retried_as_before(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)

    async def use(client: Client) -> types.CallToolResult:
        return await client.call_tool("bank__transfer", {"amount": 5, "to": bank})

    held = session(gateway, token, use)  # 2025-11-25, no task field
    assert not held.is_error
    assert "awaits a person's decision" in text(held)
    assert request_of(held) == requests(cluster, bank)[0]["metadata"]["name"]
    approve(cluster, bank, request_of(held))
    eventually(lambda: upstream.calls(bank), 20, "the approved call at the upstream")
    assert text(call(gateway, token, "bank__transfer", {"amount": 5, "to": bank})) == (
        f"moved 5 to {bank}"
    )


# -- durability -------------------------------------------------------------------------------


def test_a_gateway_killed_while_a_task_works_finishes_it_once_after_restart(
    cluster: Cluster, bank: str, redis_server: Any, upstream: Upstream, tmp_path: Path
) -> None:
    own = GatewayProcess(cluster, tmp_path, redis_server.url).start()
    try:
        token = agent_token(cluster, bank)
        task = create(own, token, "bank__transfer", {"amount": 300, "to": bank})
        waiting: list[BaseException | types.CallToolResult] = []

        def wait_for_result() -> None:
            try:
                waiting.append(result(own, token, task.task_id))
            except BaseException as e:  # the gateway dies under it
                waiting.append(e)

        blocked = threading.Thread(target=wait_for_result)
        blocked.start()
        own.kill()  # while the task works, and a client waits on tasks/result
        blocked.join(30)
        assert waiting
        assert not isinstance(waiting[0], types.CallToolResult)
        approve(cluster, bank, task.task_id)
        own.start()
        # A new session of a reconnected client finds the task, and its outcome.
        eventually(lambda: get(own, token, task.task_id).status == "completed", 30, "completed")
        assert text(result(own, token, task.task_id)) == f"moved 300 to {bank}"
        assert len(upstream.calls(bank)) == 1
        assert len(requests(cluster, bank)) == 1
    finally:
        own.stop()


# -- whose task -------------------------------------------------------------------------------


def test_another_agent_s_task_is_as_unknown_as_a_made_up_id(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    mine = agent_token(cluster, bank)
    task = create(gateway, mine, "bank__transfer", {"amount": 9, "to": bank})
    theirs = agent_token(cluster, bank, OTHER)
    probes = [  # another agent of the namespace, and ids made up or crafted
        (theirs, task.task_id), (mine, "mcp-0000000000000000000000000000000000000000"),
        (mine, "../../../api/v1/namespaces/kube-system/secrets"), (mine, "mcp-x/../y"),
        (mine, ""), (mine, "A" * 300), (mine, "mcp-\u0430"), (mine, ".."),
    ]  # fmt: skip
    for token, task_id in probes:
        for probe in (get, result, cancel):
            error = refused(probe, gateway, token, task_id)
            assert (error.code, str(error)) == (-32602, NOT_FOUND), (probe, task_id)
    assert task.task_id not in listed(gateway, theirs)
    for method in ("tasks/get", "tasks/result", "tasks/list"):  # no token: no MCP at all
        assert _post(gateway, None, method, {"taskId": task.task_id})[0] == 401
    assert get(gateway, mine, task.task_id).status == "working"  # untouched
    assert upstream.calls(bank) == []


def test_tasks_list_shows_only_the_caller_s_tasks(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    both = mcp_server(bank, upstream.url)
    both["spec"]["agents"]["serviceAccounts"] = [AGENT, OTHER]
    cluster.apply(both)
    mine, theirs = agent_token(cluster, bank), agent_token(cluster, bank, OTHER)
    eventually(lambda: session(gateway, theirs, lambda c: c.list_tools()).tools, 20, "allowed")
    own = {create(gateway, mine, "bank__transfer", {"amount": n, "to": bank}).task_id
           for n in (1, 2)}  # fmt: skip
    other = create(gateway, theirs, "bank__transfer", {"amount": 1, "to": bank}).task_id
    held = call(gateway, mine, "bank__transfer", {"amount": 3, "to": bank})  # not a task
    assert set(listed(gateway, mine)) == own | {request_of(held)}  # the agent's own calls
    assert listed(gateway, theirs) == [other]


def test_a_task_cannot_be_cancelled_and_the_answer_says_why(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    token = agent_token(cluster, bank)
    task = create(gateway, token, "bank__transfer", {"amount": 4, "to": bank})
    error = error_of(lambda: cancel(gateway, token, task.task_id))
    assert error.code == -32602
    assert "cannot withdraw its request" in str(error)
    assert get(gateway, token, task.task_id).status == "working"
    plugin(cluster, bank, "bob", "deny", task.task_id, "--comment", "no")
    eventually(lambda: get(gateway, token, task.task_id).status == "failed", 20, "failed")
    error = error_of(lambda: cancel(gateway, token, task.task_id))
    assert "already in terminal status 'failed'" in str(error)


# -- hostile input ----------------------------------------------------------------------------


def _post(
    gateway: GatewayProcess, token: str | None, method: str, params: dict[str, Any]
) -> tuple[int, str]:
    """One JSON-RPC request by hand, at 2025-11-25: what a hostile client can send."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    where = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}  # fmt: skip
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    try:
        connection.request("POST", where.path, body, headers)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


def _raw(gateway: GatewayProcess, token: str, params: dict[str, Any]) -> dict[str, Any]:
    _, answer = _post(gateway, token, "tools/call", params)
    (data,) = [line[5:] for line in answer.splitlines() if line.startswith("data:")] or [answer]
    return dict(json.loads(data))


@pytest.mark.parametrize(
    ("params", "said"),
    [
        ({"task": 5}, "the task field of tools/call must be an object"),
        ({"task": {"ttl": "soon"}}, "must be an object with an optional ttl"),
        ({"task": {"ttl": 1.5}}, "must be an object with an optional ttl"),
        ({"task": [], "arguments": {"amount": 1, "to": "x"}}, "the task field"),
        ({"task": {}, "arguments": {"amount": "lots", "to": "x"}}, "invalid arguments at amount"),
        ({"task": {}, "arguments": {"amount": 1, "to": "x", "handoff_reasoning": 7}}, "handoff_reasoning is a string"),
        ({"task": {}, "arguments": [1]}, "params are malformed at arguments"),
        ({"task": {}, "name": "bank__mint_money", "arguments": {}}, "there is no tool"),
        ({"task": {}, "name": 7}, "params are malformed at name"),
    ],
)  # fmt: skip
def test_malformed_task_calls_get_a_clear_error_and_file_nothing(
    cluster: Cluster, bank: str, gateway: GatewayProcess, params: dict[str, Any], said: str
) -> None:
    sent = {"name": "bank__transfer", "arguments": {"amount": 1, "to": bank}, **params}
    answer = _raw(gateway, agent_token(cluster, bank), sent)
    assert answer["error"]["code"] == -32602, answer
    assert said in answer["error"]["message"]
    assert requests(cluster, bank) == []
