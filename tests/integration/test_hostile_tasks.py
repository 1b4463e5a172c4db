"""A hostile agent against the gateway's MCP Tasks, with only an agent's rights: its
ServiceAccount token (kubectl and /mcp), its Redis credentials, and the mcp SDK's client or raw
JSON-RPC. What got through is reproduced here with its fix; what held is kept, so it keeps
holding (docs/threat-model.md rows 38 to 40 and 64 to 67)."""

import base64
import http.client
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mcp_types as types
import pytest
import redis
from handoff.gateway.store import RESULT_TTL
from handoff.testing.cluster import Cluster, eventually
from handoff.testing.gateway import GatewayProcess
from mcp import Client
from mcp.shared.exceptions import MCPError

from .helpers import AGENT, apply_ready_policy, policy
from .mcp_helpers import (
    Upstream,
    agent_token,
    approve,
    call,
    leaves,
    mcp_server,
    plugin,
    requests,
    text,
)
from .test_mcp_tasks import NOT_FOUND, OTHER, _raw, create, error_of, get, result, session

pytestmark = pytest.mark.integration
HELD = 2  # --max-held-per-agent of the gateway below


def _held(gateway: GatewayProcess) -> float:
    url = gateway.url.removesuffix("/mcp") + "/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - the test's own gateway
        for line in r.read().decode().splitlines():
            if line.startswith("handoff_gateway_held_requests "):
                return float(line.split()[1])
    return 0.0


# -- holding the gateway open ----------------------------------------------------------------


def test_an_agent_holds_at_most_its_bound_of_requests_open(
    cluster: Cluster, bank: str, redis_server: Any, upstream: Upstream, tmp_path: Path
) -> None:
    """Reproduced: each tasks/result on an undecided task, and each held tools/call, keeps a
    connection and a watch open for as long as a person takes; one agent held any number, for
    every other agent of the replica to share what was left. Now past the bound it gets a clear
    error at once, nothing is filed, and another agent is not affected."""
    both = mcp_server(bank, upstream.url)
    both["spec"]["agents"]["serviceAccounts"] = [AGENT, OTHER]
    cluster.apply(both)
    own = GatewayProcess(
        cluster, tmp_path, redis_server.url, wait=30, args=(f"--max-held-per-agent={HELD}",)
    ).start()
    try:
        mine, theirs = agent_token(cluster, bank), agent_token(cluster, bank, OTHER)
        eventually(lambda: session(own, theirs, lambda c: c.list_tools()).tools, 20, "allowed")
        tasks = [create(own, mine, "bank__transfer", {"amount": n, "to": bank}).task_id
                 for n in (1, 2, 3)]  # fmt: skip
        answers: list[object] = []  # creating a task held nothing; waiting on its result does

        def wait_for(task_id: str) -> None:
            try:
                answers.append(result(own, mine, task_id))
            except BaseException as e:  # kept for the asserts
                answers.append(e)

        waiting = [threading.Thread(target=wait_for, args=(t,)) for t in tasks[:HELD]]
        for thread in waiting:
            thread.start()
        eventually(lambda: _held(own) == HELD, 20, f"{HELD} tasks/result held")

        error = error_of(lambda: result(own, mine, tasks[2]))
        assert error.code == -32000
        assert f"already holds {HELD} requests open" in str(error)
        assert "poll tasks/get" in str(error)
        error = error_of(lambda: call(own, mine, "bank__transfer", {"amount": 4, "to": bank}))
        assert f"already holds {HELD} requests open" in str(error)
        assert "nothing was filed" in str(error)
        assert len(requests(cluster, bank)) == 3  # the refused call filed nothing
        assert get(own, mine, tasks[2]).status == "working"  # a poll holds nothing

        # Another agent of the namespace holds its own share.
        read = call(own, theirs, "bank__read_account", {"account": bank})
        assert text(read) == f"account {bank}: balance 1000"

        approve(cluster, bank, tasks[0])  # one returns: the agent may hold another
        waiting[0].join(30)
        eventually(lambda: _held(own) == HELD - 1, 20, "one fewer held")
        assert not call(own, mine, "bank__read_account", {"account": bank}).is_error
        plugin(cluster, bank, "bob", "deny", tasks[1], "--comment", "no")
        waiting[1].join(30)
        assert [type(a) for a in answers] == [types.CallToolResult] * HELD
        assert _held(own) == 0
    finally:
        own.stop()


def test_the_bound_on_held_requests_is_a_whole_number_of_at_least_one(tmp_path: Path) -> None:
    import subprocess  # noqa: PLC0415 - this test only
    import sys  # noqa: PLC0415

    for bad in ("0", "-3", "many"):
        out = subprocess.run(
            [sys.executable, "-m", "handoff", "gateway", f"--max-held-per-agent={bad}",
             "--redis-url=redis://127.0.0.1:1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 2
        assert "is not a whole number of at least 1" in out.stderr
        assert "Traceback" not in out.stderr


# -- ids that are not the caller's tasks --------------------------------------------------------


def test_requests_that_are_not_the_callers_tasks_are_not_found(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Held: the agent's own request filed with kubectl as ``execution: Agent`` (its own claim
    of an action, carried out by itself), and a task of an agent of the same name in another
    namespace, are tasks of nobody here: the one answer an unknown id gets."""
    mine = agent_token(cluster, bank)
    own = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
           "metadata": {"generateName": "own-", "namespace": bank,
                        "labels": {"handoff.dev/agent": AGENT}},
           "spec": {"agent": AGENT, "action": "mcp.bank.transfer", "target": "account:x",
                    "summary": "mine", "execution": "Agent",
                    "parameters": {"amount": 1, "to": bank}}}  # fmt: skip
    filed = json.loads(cluster.create(own, who=f"{bank}/{AGENT}").stdout)["metadata"]["name"]

    elsewhere = cluster.new_namespace(agents=(AGENT,))
    apply_ready_policy(cluster, policy(elsewhere))
    theirs = {**own, "metadata": {**own["metadata"], "namespace": elsewhere},
              "spec": {**own["spec"], "execution": "MCP"}}  # fmt: skip
    out = cluster.create(theirs, who=f"{elsewhere}/{AGENT}")
    foreign = json.loads(out.stdout)["metadata"]["name"]

    for task_id in (filed, foreign, f"{elsewhere}/{foreign}", f"../{elsewhere}/{foreign}"):
        for probe in (get, result):
            error = error_of(lambda p=probe, t=task_id: p(gateway, mine, t))  # type: ignore[misc]
            assert (error.code, str(error)) == (-32602, NOT_FOUND), (probe, task_id)
    assert upstream.calls(bank) == []


def test_a_forged_tasks_list_cursor_lists_nothing_of_others(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held: the cursor is the API server's continue token, under the caller's namespace and
    label; one crafted to start in another namespace or at a key with path characters is refused
    (a clear error) or lists nothing, and whatever a cursor lists passes the owner check again."""
    mine = agent_token(cluster, bank)
    task = create(gateway, mine, "bank__transfer", {"amount": 5, "to": bank}).task_id

    def token(start: str) -> str:
        raw = {"v": "meta.k8s.io/v1", "rv": 1, "start": start}
        return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")

    for cursor in (token("../kube-system/x"), token("../../secrets/kube-system/"),
                   token("/x"), token(""), "not-a-token", "=" * 10, "x" * 5000):  # fmt: skip
        answer = _rpc(gateway, mine, "tasks/list", {"cursor": cursor})
        if "error" in answer:  # the API server refused it: a sentence about the cursor
            assert answer["error"]["code"] == -32602, answer
            assert "cursor" in answer["error"]["message"]
            continue
        listed = {t["taskId"] for t in answer["result"]["tasks"]}
        assert listed <= {task}, (cursor[:40], answer)


def _rpc(gateway: GatewayProcess, token: str, method: str, params: dict[str, Any]) -> Any:
    from .test_mcp_tasks import _post  # noqa: PLC0415 - raw JSON-RPC, shared

    _, answer = _post(gateway, token, method, params)
    (data,) = [line[5:] for line in answer.splitlines() if line.startswith("data:")] or [answer]
    return json.loads(data)


# -- ttl and params --------------------------------------------------------------------------


@pytest.mark.parametrize("ttl", [-1, -(10**12), 0, 10**30])
def test_a_task_s_ttl_comes_from_its_decision_window_whatever_the_client_asks(
    cluster: Cluster, bank: str, gateway: GatewayProcess, ttl: int
) -> None:
    """Held: negative, zero and huge ttls are ignored like any other; the task lives for its
    decision window plus the time its outcome is kept."""
    sent = {"name": "bank__transfer", "arguments": {"amount": 6, "to": bank}, "task": {"ttl": ttl}}
    answer = _raw(gateway, agent_token(cluster, bank), sent)
    task = answer["result"]["task"]
    assert task["status"] == "working"
    assert RESULT_TTL * 1000 < task["ttl"] <= (RESULT_TTL + 5 * 60) * 1000
    assert len(requests(cluster, bank)) == 1


@pytest.mark.parametrize(
    "params",
    [{"task": {"ttl": True}}, {"task": {"ttl": None}, "name": ""}, {"task": "{}"},
     {"task": {}, "arguments": None, "name": "bank__transfer"}, {"task": {}, "_meta": 5}],
)  # fmt: skip
def test_more_malformed_task_calls_file_nothing(
    cluster: Cluster, bank: str, gateway: GatewayProcess, params: dict[str, Any]
) -> None:
    sent = {"name": "bank__transfer", "arguments": {"amount": 1, "to": bank}, **params}
    answer = _raw(gateway, agent_token(cluster, bank), sent)
    assert "error" in answer or answer["result"].get("isError"), answer
    assert requests(cluster, bank) == []


# -- outcomes replayed, requests gone --------------------------------------------------------


def test_a_denied_task_s_result_replays_the_denial_and_the_same_call_files_anew(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    asked = {"amount": 77, "to": bank}
    task = create(gateway, token, "bank__transfer", asked)
    plugin(cluster, bank, "bob", "deny", task.task_id, "--comment", "no")
    first, again = result(gateway, token, task.task_id), result(gateway, token, task.task_id)
    assert first.is_error
    assert again.is_error
    assert text(first) == text(again)
    assert "Denied (HumanDenied)" in text(again)
    retry = create(gateway, token, "bank__transfer", asked)  # after delivery: a new request
    assert retry.task_id != task.task_id
    assert retry.status == "working"  # reviewed anew: the denial approves nothing
    assert upstream.calls(bank) == []


def test_a_task_whose_request_is_deleted_meanwhile_is_not_found(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Held: the agent may not delete its request; an administrator who does ends the wait of a
    tasks/result with the unknown id's answer, and nothing runs."""
    token = agent_token(cluster, bank)
    task = create(gateway, token, "bank__transfer", {"amount": 8, "to": bank})
    out = cluster.kubectl("delete", "actionrequest", task.task_id, "-n", bank,
                          who=f"{bank}/{AGENT}", check=False)  # fmt: skip
    assert out.returncode != 0
    assert "forbidden" in out.stderr.lower()
    answers: list[object] = []

    def wait() -> None:
        try:
            answers.append(result(gateway, token, task.task_id))
        except BaseException as e:  # kept for the asserts
            answers.append(e)

    waiting = threading.Thread(target=wait)
    waiting.start()
    eventually(lambda: _held(gateway) >= 1, 20, "tasks/result held")
    cluster.kubectl("delete", "actionrequest", task.task_id, "-n", bank, "--wait=false")
    waiting.join(60)
    assert answers
    assert isinstance(answers[0], BaseException), answers
    (error,) = [e for e in leaves(answers[0]) if isinstance(e, MCPError)]
    assert (error.code, str(error)) == (-32602, NOT_FOUND)
    assert (error_of(lambda: get(gateway, token, task.task_id)).code) == -32602
    assert upstream.calls(bank) == []


# -- what the agent may write itself ---------------------------------------------------------


def test_the_agent_cannot_restamp_its_request_s_owner_or_status(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held: what the gateway reads back to find a task's owner is admission's stamp, the
    immutable spec and the gateway's label; the agent changes none of them, nor the status."""
    task = create(gateway, agent_token(cluster, bank), "bank__transfer", {"amount": 9, "to": bank})
    me = f"{bank}/{AGENT}"
    for patch in (
        {"metadata": {"labels": {"handoff.dev/agent": OTHER}}},
        {"metadata": {"annotations": {"handoff.dev/requested-by":
                                      f"system:serviceaccount:{bank}:{OTHER}"}}},
        {"spec": {"agent": OTHER}},
        {"spec": {"parameters": {"amount": 9000, "to": bank}}},
    ):  # fmt: skip
        out = cluster.kubectl("patch", "actionrequest", task.task_id, "-n", bank,
                              "--type=merge", "-p", json.dumps(patch), who=me, check=False)  # fmt: skip
        assert out.returncode != 0, patch
    status = {"status": {"decision": {"outcome": "Approved", "reason": "HumanApproved"}}}
    out = cluster.kubectl("patch", "actionrequest", task.task_id, "-n", bank, "--subresource=status",
                          "--type=merge", "-p", json.dumps(status), who=me, check=False)  # fmt: skip
    assert out.returncode != 0
    assert "forbidden" in out.stderr.lower()
    body = cluster.get("actionrequest", task.task_id, bank)
    assert body["spec"]["agent"] == AGENT
    assert body["spec"]["parameters"] == {"amount": 9, "to": bank}
    assert error_of(lambda: get(gateway, agent_token(cluster, bank, OTHER), task.task_id))


def test_the_agents_redis_user_cannot_forge_claims_heartbeats_or_read_the_salt(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held: a claim the agent set would stop the gateway from ever calling an approved request;
    a heartbeat kept alive would stop a takeover; the salt computes every request name."""
    secret = json.loads(cluster.kubectl("get", "secret", f"handoff-redis-{AGENT}", "-n", bank,
                                        "-o", "json", who=f"{bank}/{AGENT}").stdout)  # fmt: skip
    client = redis.Redis.from_url(base64.b64decode(secret["data"]["url"]).decode())
    try:
        for command in (
            ("GET", "handoff:gateway:salt"),
            ("SETEX", "handoff:gateway:salt", 60, "0"),
            ("SETEX", "handoff:gateway:claim:some-uid", 60, "me"),
            ("SET", "handoff:gateway:claim:some-uid", "me"),
            ("SETEX", "handoff:gateway:alive:someone", 60, "1"),
            ("EVAL", "return redis.call('SET', KEYS[1], '1')", 1, "handoff:gateway:claim:x"),
            ("SCAN", 0, "MATCH", "handoff:gateway:*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    finally:
        client.close()


def test_control_characters_in_a_task_s_context_reach_the_terminal_escaped(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    hostile = "<script>alert(1)</script>\x1b[2J\x1b]0;pwned\x07\u202egnp.exe\rApproved by alice"
    arguments = {"amount": 3, "to": bank, "handoff_reasoning": hostile,
                 "handoff_blast_radius": "\x1b[31mnone\x1b[0m\u2028fake line"}  # fmt: skip
    task = create(gateway, agent_token(cluster, bank), "bank__transfer", arguments)
    shown = plugin(cluster, bank, "alice", "show", task.task_id).stdout
    for raw in ("\x1b", "\x07", "\u202e", "\r", "\u2028"):
        assert raw not in shown, repr(raw)
    assert "\\x1b[2J" in shown
    assert "\\u202egnp.exe" in shown
    assert "<script>alert(1)</script>" in shown  # a terminal shows it as text


def test_the_task_list_of_a_client_without_tasks_is_empty(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    async def use(client: Client) -> types.ListTasksResult:
        return await client.session.send_request(
            types.ListTasksRequest(params=types.PaginatedRequestParams()), types.ListTasksResult
        )

    assert session(gateway, agent_token(cluster, bank, OTHER), use).tasks == []


def test_a_get_stream_is_refused_rather_than_held_for_ever(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Reproduced: in stateless mode (any replica answers any request) the SDK still answered a
    GET on /mcp with an event stream it never writes to and never closes; each held a
    connection, a transport and a server task, with no bound. Now 405, as the spec allows a
    server that offers no such stream, and at once."""
    where = urlsplit(gateway.url)
    for version in (None, "2025-11-25", "2025-06-18"):
        connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=10)
        headers = {"Accept": "text/event-stream",
                   "Authorization": f"Bearer {agent_token(cluster, bank)}"}  # fmt: skip
        if version is not None:
            headers["MCP-Protocol-Version"] = version
        try:
            connection.request("GET", where.path, headers=headers)
            response = connection.getresponse()
            body = response.read().decode()  # times out if the stream is held
        finally:
            connection.close()
        assert response.status == 405, (version, body)
        assert response.getheader("Allow") == "POST"
        assert "POST" in json.loads(body)["error_description"]
    assert _held(gateway) == 0
