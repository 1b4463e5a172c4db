"""The MCP gateway end to end: a real upstream MCP server (examples/mcp_bank.py)
that counts its calls, the real mcp SDK client over Streamable HTTP with the agent's own token,
the real control plane, Redis and operator, and reviewers through kubectl handoff."""

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from handoff.devenv import processes
from handoff.testing.cluster import Cluster, eventually
from handoff.testing.gateway import GatewayProcess
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .helpers import AGENT, apply_ready_policy
from .mcp_helpers import (
    Upstream,
    agent_token,
    approve,
    call,
    leaves,
    list_tools,
    mcp_server,
    plugin,
    ready,
    refusal,
    request_of,
    requests,
    text,
)

pytestmark = pytest.mark.integration


# -- tiers -----------------------------------------------------------------------------------


def test_tier_1_is_forwarded_at_once_and_recorded(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    tools = {t.name: t for t in list_tools(gateway, token)}
    assert set(tools) == {
        "bank__read_account",
        "bank__set_limit",
        "bank__transfer",
        "bank__close_account",
    }
    assert "handoff_reasoning" in tools["bank__transfer"].input_schema["properties"]
    assert "handoff_blast_radius" in tools["bank__transfer"].input_schema["properties"]

    result = call(gateway, token, "bank__read_account",
                  {"account": bank, "handoff_reasoning": "the customer asked for the balance"})  # fmt: skip
    assert not result.is_error
    assert text(result) == f"account {bank}: balance 1000"
    assert [c["args"] for c in upstream.calls(bank)] == [{"account": bank}]
    # Forwarded before the operator's decision (the fast path): recorded once it is Approved.
    (filed,) = eventually(
        lambda: (found := requests(cluster, bank))[0].get("status", {}).get("phase") == "Executed"
        and found, 30, "the execution recorded",
    )  # fmt: skip
    assert filed["spec"]["action"] == "mcp.bank.read_account"
    assert filed["spec"]["target"] == f"account:{bank}"
    assert filed["spec"]["parameters"] == {"account": bank}  # the context fields are stripped
    assert filed["spec"]["reasoning"] == "the customer asked for the balance"
    assert (
        filed["metadata"]["annotations"]["handoff.dev/requested-by"]
        == f"system:serviceaccount:{bank}:{AGENT}"
    )
    assert filed["status"]["decision"]["reason"] == "AutoApproved"
    assert filed["status"]["phase"] == "Executed"
    assert filed["status"]["execution"]["resultDigest"].startswith("sha256:")
    assert upstream.calls(bank)[0]["key"] == filed["metadata"]["uid"]


def test_tier_2_runs_with_its_inverse_as_the_rollback_plan(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    result = call(
        gateway, token, "bank__set_limit", {"account": bank, "limit": 500, "previous": 100}
    )
    assert text(result) == f"limit of {bank} is now 500 (was 100)"
    (filed,) = requests(cluster, bank)
    assert filed["status"]["decision"]["reason"] == "Logged"
    assert filed["spec"]["rollback"] == {
        "description": "Set the limit back", "action": "mcp.bank.set_limit",
        "parameters": {"account": bank, "limit": 100, "previous": 500},
    }  # fmt: skip

    # A reviewer rolls it back: the operator files the inverse, the gateway calls it.
    plugin(
        cluster, bank, "alice", "rollback", filed["metadata"]["name"], "--comment", "wrong account"
    )
    eventually(lambda: len(upstream.calls(bank)) == 2, 30, "the inverse call at the upstream")
    assert upstream.calls(bank)[1]["args"] == {"account": bank, "limit": 100, "previous": 500}
    eventually(
        lambda: cluster.get("actionrequest", filed["metadata"]["name"], bank)["status"]["phase"]
        == "RolledBack", 20, "the original RolledBack",
    )  # fmt: skip


def test_tier_4_approval_runs_the_stored_arguments_once_whatever_the_retries_say(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    asked = {"amount": 2500, "to": bank}
    first = call(gateway, token, "bank__transfer", asked)
    assert not first.is_error
    assert "awaits a person's decision" in text(first)
    name = request_of(first)
    again = call(gateway, token, "bank__transfer", asked)  # a retry attaches, files nothing
    assert request_of(again) == name
    other = call(gateway, token, "bank__transfer", {"amount": 9999, "to": bank})
    assert request_of(other) != name  # other arguments are another request, with its own review
    assert len(requests(cluster, bank)) == 2

    approve(cluster, bank, name)
    eventually(lambda: upstream.calls(bank), 20, "the approved transfer at the upstream")
    done = call(gateway, token, "bank__transfer", asked)
    assert text(done) == f"moved 2500 to {bank}"
    assert [c["args"] for c in upstream.calls(bank)] == [{"amount": 2500, "to": bank}]
    body = cluster.get("actionrequest", name, bank)
    assert body["status"]["phase"] == "Executed"
    pending = cluster.get("actionrequest", request_of(other), bank)
    assert pending["status"]["phase"] == "AwaitingApproval"  # never run, never approved


def test_deny_reaches_the_client_as_an_error_with_the_reason_and_comment(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    asked = {"amount": 70, "to": bank}
    name = request_of(call(gateway, token, "bank__transfer", asked))
    plugin(cluster, bank, "bob", "deny", name, "--comment", "no ticket for this")
    result = call(gateway, token, "bank__transfer", asked)
    assert result.is_error
    assert "Denied (HumanDenied)" in text(result)
    assert "no ticket for this" in text(result)
    assert upstream.calls(bank) == []


def test_expiry_reaches_the_client_as_an_error(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank)
    name = request_of(call(gateway, token, "bank__close_account", {"account": bank}))
    eventually(lambda: cluster.get("actionrequest", name, bank)["status"].get("phase") == "Denied",
               20, "the request to expire")  # fmt: skip
    result = call(gateway, token, "bank__close_account", {"account": bank})
    assert result.is_error
    assert "Denied (Expired)" in text(result)
    assert upstream.calls(bank) == []


# -- identity and bad input ------------------------------------------------------------------


def _post(url: str, token: str | None) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, body, headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as r:  # noqa: S310 - loopback
            return r.status, {}
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def test_no_token_or_a_bad_one_is_401_and_files_nothing(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    for token, said in [(None, "Authorization: Bearer"), ("not-a-token", "does not accept this token"),
                        (cluster.token("alice"), "not a ServiceAccount")]:  # fmt: skip
        status, body = _post(gateway.url, token)
        assert status == 401, token
        assert said in body["error_description"]
    with pytest.raises(ExceptionGroup) as raised:  # the SDK's client raises a group
        call(gateway, "forged", "bank__transfer", {"amount": 1, "to": bank})
    assert any(isinstance(e, MCPError) for e in leaves(raised.value))  # it says no more than that
    assert requests(cluster, bank) == []


def test_an_agent_the_server_does_not_list_is_refused(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    token = agent_token(cluster, bank, "other-agent")
    assert list_tools(gateway, token) == []
    assert "other-agent may not use the MCP server bank" in refusal(
        gateway, token, "bank__read_account", {"account": bank}
    )
    assert requests(cluster, bank) == []
    assert upstream.calls(bank) == []


def test_the_agent_cannot_read_the_upstream_credentials(cluster: Cluster, bank: str) -> None:
    for verb in (["get", "secret", "bank-credentials"], ["get", "secrets"]):
        out = cluster.kubectl(*verb, "-n", bank, who=f"{bank}/{AGENT}", check=False)
        assert out.returncode != 0
        assert "forbidden" in out.stderr.lower()


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ({"amount": "lots", "to": "x"}, "invalid arguments at amount"),
        ({"to": "x"}, "'amount' is a required property"),
        ({"amount": 1, "to": "x", "handoff_reasoning": {"not": "text"}}, "handoff_reasoning is a string"),
        ({"amount": 1, "to": "x" * 70_000}, "too large for a request"),
    ],
)  # fmt: skip
def test_bad_arguments_are_refused_before_anything_is_filed(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream,
    arguments: dict[str, Any], said: str,
) -> None:  # fmt: skip
    result = call(gateway, agent_token(cluster, bank), "bank__transfer", arguments)
    assert result.is_error
    assert said in text(result)
    assert "nothing was filed" in text(result)
    assert requests(cluster, bank) == []


def test_unknown_tools_and_servers_are_refused(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    token = agent_token(cluster, bank)
    for name in ("bank__mint_money", "vault__transfer", "transfer", "bank__"):
        assert "there is no tool" in refusal(gateway, token, name, {})
    assert requests(cluster, bank) == []


# -- durability ------------------------------------------------------------------------------


def test_a_gateway_killed_while_a_call_waits_completes_it_once_after_restart(
    cluster: Cluster, bank: str, redis_server: Any, upstream: Upstream, tmp_path: Path
) -> None:
    own = GatewayProcess(cluster, tmp_path, redis_server.url, wait=30).start()
    try:
        token = agent_token(cluster, bank)
        asked = {"amount": 300, "to": bank}
        holding = subprocess.Popen(
            [sys.executable, "-c", _HELD_CALL, own.url, token, json.dumps(asked)]
        )
        filed = eventually(lambda: requests(cluster, bank), 60, "the held call's request")
        own.kill()  # while the client is held
        holding.wait(30)
        name = filed[0]["metadata"]["name"]
        approve(cluster, bank, name)
        own.start()
        eventually(lambda: upstream.calls(bank), 30, "the approved call at the upstream")
        result = call(own, token, "bank__transfer", asked)
        assert text(result) == f"moved 300 to {bank}"
        assert len(upstream.calls(bank)) == 1
        assert len(requests(cluster, bank)) == 1
    finally:
        own.stop()


_HELD_CALL = """
import asyncio, json, sys
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

async def go():
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer " + sys.argv[2]}, timeout=60)
    async with http, Client(streamable_http_client(sys.argv[1], http_client=http)) as client:
        await client.call_tool("bank__transfer", json.loads(sys.argv[3]))

try:
    asyncio.run(go())
except BaseException:
    pass
"""


def test_a_request_filed_around_the_gateway_is_not_run_on_a_forged_target(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """The agent files an MCP request itself, with a target the mapping would not give: a
    reviewer approves what it shows, but the gateway runs only what the mapping makes of the
    stored arguments."""
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "forged-", "namespace": bank},
        "spec": {"agent": AGENT, "action": "mcp.bank.transfer", "target": "account:petty-cash",
                 "parameters": {"amount": 5, "to": bank}, "summary": "a small transfer",
                 "execution": "MCP"},
    }  # fmt: skip
    name = json.loads(cluster.create(document, who=f"{bank}/{AGENT}").stdout)["metadata"]["name"]
    eventually(lambda: cluster.get("actionrequest", name, bank)["status"].get("phase") == "AwaitingApproval",
               20, "the forged request to wait")  # fmt: skip
    approve(cluster, bank, name)
    body = eventually(
        lambda: (b := cluster.get("actionrequest", name, bank))["status"].get("phase") == "Failed" and b,
        20, "the gateway to refuse it",
    )  # fmt: skip
    assert "not what bank's mapping makes of them" in body["status"]["execution"]["message"]
    assert upstream.calls(bank) == []


def test_the_gateway_may_write_only_the_execution_of_approved_mcp_requests(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    token = agent_token(cluster, bank)
    name = request_of(call(gateway, token, "bank__transfer", {"amount": 8, "to": bank}))
    me = "handoff-system/handoff-gateway"
    attempts = [
        ({"status": {"execution": {"outcome": "Executed"}, "phase": "Executed"}}, "only once the request is Approved"),
        ({"status": {"decision": {"outcome": "Approved", "reason": "HumanApproved"}}}, "only once the request is Approved"),
    ]  # fmt: skip
    for patch, said in attempts:
        out = cluster.kubectl("patch", "actionrequest", name, "-n", bank, "--subresource=status",
                              "--type=merge", "-p", json.dumps(patch), who=me, check=False)  # fmt: skip
        assert out.returncode != 0
        assert said in out.stderr
    out = cluster.kubectl("create", "-f", "-", who=me, check=False, input=json.dumps({
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "x-", "namespace": bank},
        "spec": {"agent": AGENT, "action": "mcp.bank.transfer", "summary": "x", "execution": "MCP"}}))  # fmt: skip
    assert out.returncode != 0
    assert "forbidden" in out.stderr.lower()


def test_health_and_metrics(gateway: GatewayProcess) -> None:
    assert gateway.healthz() == 200
    base = gateway.url.removesuffix("/mcp")
    with urllib.request.urlopen(f"{base}/metrics", timeout=5) as r:  # noqa: S310 - loopback
        assert "handoff_gateway_calls_total" in r.read().decode()


def test_over_stdio_a_local_agent_gets_the_same_tools_and_files_as_itself(
    cluster: Cluster, bank: str, redis_server: Any, upstream: Upstream, tmp_path: Path
) -> None:
    """``handoff gateway --stdio``, launched by the agent as a command, with its token in a file."""
    control = cluster.control_plane
    kubeconfig = control.write_kubeconfig(tmp_path / "gateway.kubeconfig", {
        "gateway": control.service_account_token("handoff-system", "handoff-gateway", 1)})  # fmt: skip
    token_file = tmp_path / "agent.token"
    token_file.write_text(agent_token(cluster, bank))
    token_file.chmod(0o600)
    server = StdioServerParameters(
        command=sys.executable,
        args=["-m", "handoff", "gateway", "--stdio", f"--kubeconfig={kubeconfig}",
              f"--redis-url={redis_server.url}", f"--token-file={token_file}", "--wait=3"],
        env=dict(os.environ),
    )  # fmt: skip

    async def go() -> tuple[list[str], types.CallToolResult]:
        with (tmp_path / "stderr.log").open("w") as errors:
            async with Client(stdio_client(server, errlog=errors)) as client:
                tools = [t.name for t in (await client.list_tools()).tools]
                return tools, await client.call_tool("bank__read_account", {"account": bank})

    tools, result = asyncio.run(go())
    assert "bank__transfer" in tools
    assert text(result) == f"account {bank}: balance 1000"
    (filed,) = requests(cluster, bank)
    assert (
        filed["metadata"]["annotations"]["handoff.dev/requested-by"]
        == f"system:serviceaccount:{bank}:{AGENT}"
    )


def test_an_approval_while_the_call_is_held_answers_that_same_call(
    cluster: Cluster, bank: str, redis_server: Any, upstream: Upstream, tmp_path: Path
) -> None:
    own = GatewayProcess(cluster, tmp_path, redis_server.url, wait=30).start()
    try:
        token = agent_token(cluster, bank)
        asked = {"amount": 44, "to": bank}
        answers: list[types.CallToolResult] = []
        holding = threading.Thread(
            target=lambda: answers.append(call(own, token, "bank__transfer", asked))
        )
        holding.start()
        (filed,) = eventually(lambda: requests(cluster, bank), 20, "the held call's request")
        eventually(lambda: cluster.get("actionrequest", filed["metadata"]["name"], bank)["status"].get("phase")
                   == "AwaitingApproval", 20, "the request to wait")  # fmt: skip
        approve(cluster, bank, filed["metadata"]["name"])
        holding.join(40)
        (answer,) = answers
        assert text(answer) == f"moved 44 to {bank}"
        assert [c["args"] for c in upstream.calls(bank)] == [asked]
    finally:
        own.stop()


def test_an_upstream_that_does_not_answer_is_an_error_and_files_nothing(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    dead = mcp_server(bank, f"http://127.0.0.1:{processes.free_port()}/mcp")
    dead["metadata"]["name"] = "vault"
    del dead["spec"]["credentials"]
    cluster.apply(dead)
    body = eventually(
        lambda: (b := cluster.get("mcpserver", "vault", bank)).get("status", {}).get("conditions") and b,
        30, "the vault's status",
    )  # fmt: skip
    (ready,) = [c for c in body["status"]["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "UpstreamUnavailable")
    token = agent_token(cluster, bank)
    assert not [t for t in list_tools(gateway, token) if t.name.startswith("vault__")]
    result = call(gateway, token, "vault__read_account", {"account": bank})
    assert result.is_error
    assert "the upstream vault" in text(result)
    assert "did not answer" in text(result)
    assert "nothing was filed" in text(result)
    assert requests(cluster, bank) == []


def test_an_mcpserver_cannot_send_a_secret_not_marked_for_it_upstream(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Whoever may write MCPServers but not read Secrets must not get one sent to a URL of their
    choice: the gateway reads (and sends) only a Secret annotated handoff.dev/mcp-server: <that
    server>."""
    cluster.apply({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "database-admin", "namespace": bank},
                   "stringData": {"Authorization": f"Bearer {upstream.token}"}})  # fmt: skip
    thief = mcp_server(bank, upstream.url)
    thief["metadata"]["name"] = "thief"
    thief["spec"]["credentials"]["secretName"] = "database-admin"
    cluster.apply(thief)
    # The operator grants the gateway no read of a Secret not marked for the server naming it:
    # its status says the Secret could not be read, and how to mark it.
    body = eventually(
        lambda: "could not be read" in json.dumps((b := cluster.get("mcpserver", "thief", bank)).get("status"))
        and b, 30, "the thief's status",
    )  # fmt: skip
    (ready,) = [c for c in body["status"]["conditions"] if c["type"] == "Ready"]
    assert ready["status"] == "False"
    assert "annotated handoff.dev/mcp-server=thief" in ready["message"]
    token = agent_token(cluster, bank)
    assert not [t for t in list_tools(gateway, token) if t.name.startswith("thief__")]


def test_a_hidden_tool_filed_around_the_gateway_is_not_run_even_approved(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """A hidden tool runs only as another tool's inverse: an agent filing a request for it itself
    gets nothing run, whatever a reviewer approves."""
    hidden = mcp_server(bank, upstream.url)
    hidden["spec"]["tools"][3]["hidden"] = True  # close_account
    cluster.apply(hidden)
    eventually(lambda: not [t for t in list_tools(gateway, agent_token(cluster, bank))
                            if t.name == "bank__close_account"], 20, "close_account hidden")  # fmt: skip
    # Time for a reviewer on a busy machine: the bank's 10 s window for closing is for the
    # expiry tests (a plugin's start alone took longer than 10 s at a load of 25).
    payments = cluster.get("agentactionpolicy", "payments", bank)
    for rule in payments["spec"]["rules"]:
        if rule["name"] == "closing":
            rule["decisionWindow"] = "5m"
    apply_ready_policy(cluster, {"apiVersion": payments["apiVersion"], "kind": payments["kind"],
                                 "metadata": {"name": "payments", "namespace": bank},
                                 "spec": payments["spec"]})  # fmt: skip
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "around-", "namespace": bank},
        "spec": {"agent": AGENT, "action": "mcp.bank.close_account", "target": f"account:{bank}",
                 "parameters": {"account": bank}, "summary": "close it", "execution": "MCP"},
    }  # fmt: skip
    name = json.loads(cluster.create(document, who=f"{bank}/{AGENT}").stdout)["metadata"]["name"]
    eventually(lambda: cluster.get("actionrequest", name, bank)["status"].get("phase") == "AwaitingApproval",
               20, "the request to wait")  # fmt: skip
    approve(cluster, bank, name)
    body = eventually(
        lambda: (b := cluster.get("actionrequest", name, bank))["status"].get("phase") == "Failed" and b,
        20, "the gateway to refuse it",
    )  # fmt: skip
    assert "close_account is hidden" in body["status"]["execution"]["message"]
    assert upstream.calls(bank) == []


def test_the_status_says_which_tools_no_policy_rule_names(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    governed = cluster.get("mcpserver", "bank", bank)["status"]
    assert {c["type"]: c["status"] for c in governed["conditions"]} == {
        "Ready": "True",
        "Governed": "True",
    }
    assert governed["ungoverned"] == []
    cluster.apply({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "teller-credentials", "namespace": bank,
                                "annotations": {"handoff.dev/mcp-server": "teller"}},
                   "stringData": {"Authorization": f"Bearer {upstream.token}"}})  # fmt: skip
    teller = mcp_server(bank, upstream.url)
    teller["metadata"]["name"] = "teller"  # its actions are mcp.teller.*: no rule names them
    teller["spec"]["credentials"]["secretName"] = "teller-credentials"
    cluster.apply(teller)
    status = eventually(  # Ready once the operator's Role lets the gateway read the Secret
        lambda: ready(cluster.get("mcpserver", "teller", bank))
        and cluster.get("mcpserver", "teller", bank)["status"],
        30, "the teller's status",
    )  # fmt: skip
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["status"] == "True"
    assert (conditions["Governed"]["status"], conditions["Governed"]["reason"]) == (
        "False",
        "UngovernedTools",
    )
    assert status["ungoverned"] == ["close_account", "read_account", "set_limit", "transfer"]


# -- JSON or SSE (gateway/front.py) ----------------------------------------------------------
# A tools/call is answered as one JSON response unless it asked for progress: the real client,
# with and without a progress callback, gets the same correct result either way, and a held call
# that asked for progress still gets its progress notifications on an SSE stream.


def call_answered(
    gateway: GatewayProcess,
    token: str,
    tool: str,
    arguments: dict[str, Any],
    progress: bool,
    mode: str = "legacy",
) -> tuple[types.CallToolResult, list[tuple[float, str | None]], list[str]]:
    """The result, the progress notifications the client saw, and the Content-Type of each
    tools/call response."""
    kinds: list[str] = []
    seen: list[tuple[float, str | None]] = []

    async def response(r: httpx2.Response) -> None:
        body = r.request.content
        if body and json.loads(body).get("method") == "tools/call":
            kinds.append(r.headers.get("content-type", "").split(";")[0])

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, message))

    async def go() -> types.CallToolResult:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60,
                                  event_hooks={"response": [response]})  # fmt: skip
        async with (
            http,
            Client(streamable_http_client(gateway.url, http_client=http), mode=mode) as client,
        ):
            return await client.call_tool(
                tool, arguments, progress_callback=on_progress if progress else None
            )

    return asyncio.run(go()), seen, kinds


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("progress", [False, True])
def test_tier_1_gets_the_upstreams_result_as_json_or_sse(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream, progress: bool,
    mode: str,
) -> None:  # fmt: skip
    account = f"resp-{uuid.uuid4().hex[:8]}"
    result, seen, kinds = call_answered(gateway, agent_token(cluster, bank), "bank__read_account",
                               {"account": account}, progress, mode)  # fmt: skip
    assert not result.is_error, text(result)
    assert account in text(result)
    # A legacy (2025) session streams a call that asked for progress; the 2026-07-28 exchange
    # answers JSON anyway when no notification was sent (the SDK's modern path).
    sse = progress and mode == "legacy"
    assert kinds == (["text/event-stream"] if sse else ["application/json"])
    assert seen == []  # a tier 1 is answered at once
    assert [c["args"]["account"] for c in upstream.calls(account)] == [account]
    filed = [r for r in requests(cluster, bank) if r["spec"]["parameters"] == {"account": account}]
    assert len(filed) == 1  # filed with the agent's token, as ever
    requested_by = filed[0]["metadata"]["annotations"]["handoff.dev/requested-by"]
    assert requested_by == f"system:serviceaccount:{bank}:{AGENT}"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
def test_a_held_call_that_asked_for_progress_gets_its_notifications(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream, mode: str
) -> None:
    to = f"held-{uuid.uuid4().hex[:8]}"
    arguments = {"to": to, "amount": 5}
    result, seen, kinds = call_answered(gateway, agent_token(cluster, bank), "bank__transfer", arguments,
                               progress=True, mode=mode)  # fmt: skip
    assert kinds == ["text/event-stream"]
    assert seen, "no progress notification reached the client"
    assert all(message and "awaits a decision" in message for _, message in seen)
    assert not result.is_error
    assert "awaits a person's decision" in text(result)
    assert upstream.calls(to) == []  # tier 4: nothing ran


def test_a_held_call_without_progress_is_answered_as_json(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    to = f"held-{uuid.uuid4().hex[:8]}"
    arguments = {"to": to, "amount": 5}
    result, seen, kinds = call_answered(gateway, agent_token(cluster, bank), "bank__transfer", arguments,
                               progress=False)  # fmt: skip
    assert kinds == ["application/json"]
    assert seen == []
    assert "awaits a person's decision" in text(result)
    assert upstream.calls(to) == []
