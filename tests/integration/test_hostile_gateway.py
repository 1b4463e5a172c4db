"""A hostile agent against the MCP gateway, with only an agent's rights: its ServiceAccount token
(kubectl and the gateway's /mcp), its Redis credentials, and raw HTTP. Each attack that got
through is reproduced here; the ones that held are kept too, so they keep holding."""

import base64
import http.client
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from handoff.gateway.filing import call_key
from handoff.testing.cluster import Cluster, eventually
from handoff.testing.gateway import GatewayProcess

from .helpers import AGENT, apply_ready_policy, policy
from .mcp_helpers import (
    Upstream,
    agent_token,
    call,
    mcp_server,
    plugin,
    ready,
    refusal,
    request_of,
    requests,
    text,
)

pytestmark = pytest.mark.integration
MALLORY = "other-agent"  # a second agent of the namespace, governed and hostile


@pytest.fixture
def bank(cluster: Cluster, upstream: Upstream, gateway: GatewayProcess) -> str:
    """As test_mcp_gateway's, but small transfers are logged (tier 2): a tool without an inverse
    there must still go to a person (MissingRollbackPlan)."""
    ns = cluster.new_namespace(agents=(AGENT, MALLORY))
    rules = [
        {"name": "reads", "actions": ["mcp.bank.read_account"], "tier": 1},
        {"name": "limits", "actions": ["mcp.bank.set_limit"], "tier": 2},
        {"name": "money", "actions": ["mcp.bank.transfer"], "tier": 2},
        {"name": "closing", "actions": ["mcp.bank.close_account"], "tier": 4},
    ]
    body = policy(ns, rules=rules)
    body["spec"]["agents"]["serviceAccounts"] = [AGENT, MALLORY]
    apply_ready_policy(cluster, body)
    cluster.apply({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "bank-credentials", "namespace": ns,
                                "annotations": {"handoff.dev/mcp-server": "bank"}},
                   "stringData": {"Authorization": f"Bearer {upstream.token}"}})  # fmt: skip
    server = mcp_server(ns, upstream.url)
    server["spec"]["agents"]["serviceAccounts"] = [AGENT, MALLORY]
    cluster.apply(server)
    eventually(lambda: ready(cluster.get("mcpserver", "bank", ns)), 30, "MCPServer bank Ready")
    return ns


def _file(cluster: Cluster, ns: str, spec: dict[str, Any], who: str = AGENT, **meta: Any) -> str:
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"namespace": ns, **(meta or {"generateName": "around-"})},
        "spec": {"agent": who, "summary": "a call", "execution": "MCP", **spec},
    }  # fmt: skip
    out = cluster.create(document, who=f"{ns}/{who}")
    return str(json.loads(out.stdout)["metadata"]["name"])


def _settled(cluster: Cluster, ns: str, name: str, timeout: float = 30) -> dict[str, Any]:
    """The request once its execution is recorded (Executed or Failed)."""
    return eventually(
        lambda: (b := cluster.get("actionrequest", name, ns))["status"].get("phase")
        in ("Executed", "Failed", "RolledBack") and b,
        timeout, f"{name} to be carried out or refused",
    )  # fmt: skip


# -- requests filed around the gateway -------------------------------------------------------


def test_a_forged_rollback_plan_does_not_buy_tier_2(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """transfer has no inverse, so at tier 2 it goes to a person (MissingRollbackPlan). Filed
    around the gateway with a rollback plan of the agent's own, it was Logged and run at once."""
    token = agent_token(cluster, bank)
    through = call(gateway, token, "bank__transfer", {"amount": 5, "to": bank})
    assert "awaits a person's decision" in text(through)
    assert upstream.calls(bank) == []

    name = _file(cluster, bank, {
        "action": "mcp.bank.transfer", "target": f"account:{bank}",
        "parameters": {"amount": 6, "to": bank},
        "rollback": {"description": "transfer it back", "action": "mcp.bank.read_account",
                     "parameters": {"account": bank}},
    })  # fmt: skip
    body = _settled(cluster, bank, name)
    assert body["status"]["phase"] == "Failed"
    assert "rollback plan" in body["status"]["execution"]["message"]
    assert upstream.calls(bank) == []


def test_a_rollback_runs_only_the_inverse_the_mapping_declares(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """set_limit's inverse is set_limit. Filed around the gateway with a plan that transfers
    money to mallory, a reviewer's rollback of the (harmless) limit change moved the money: the
    operator files the plan as the rollback, and the gateway ran rollbacks unchecked."""
    name = _file(cluster, bank, {
        "action": "mcp.bank.set_limit", "target": f"account:{bank}",
        "parameters": {"account": bank, "limit": 500, "previous": 100},
        "rollback": {"description": "Set the limit back", "action": "mcp.bank.transfer",
                     "parameters": {"amount": 1000000, "to": f"mallory-{bank}"}},
    })  # fmt: skip
    _settled(cluster, bank, name)
    plugin(cluster, bank, "alice", "rollback", name, "--comment", "undo it")
    undo = eventually(
        lambda: [r for r in requests(cluster, bank) if r["spec"].get("rollbackOf") == name],
        30, "the rollback request",
    )[0]  # fmt: skip
    body = _settled(cluster, bank, undo["metadata"]["name"])
    assert body["status"]["phase"] == "Failed"
    assert upstream.calls(f"mallory-{bank}") == []


# -- idempotency -----------------------------------------------------------------------------


def test_a_squatted_request_name_does_not_make_retries_file_again(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Request names are a digest of the call, so another agent of the namespace can file under
    the name the victim's call will use. The gateway then fell back to a generated name on every
    try: each retry filed (and could run) the call once more."""
    asked = {"account": bank}
    squat = f"mcp-{call_key('bank', 'close_account', asked)[:32]}-0"  # what the gateway named it
    _file(cluster, bank, {"action": "mcp.bank.close_account", "target": f"account:{bank}",
                          "parameters": asked}, who=MALLORY, name=squat)  # fmt: skip
    token = agent_token(cluster, bank)
    first = call(gateway, token, "bank__close_account", asked)
    again = call(gateway, token, "bank__close_account", asked)
    assert request_of(first) == request_of(again)
    mine = [r for r in requests(cluster, bank) if r["spec"]["agent"] == AGENT]
    assert len(mine) == 1


# -- the agent's other rights ----------------------------------------------------------------


def test_the_agent_cannot_patch_status_or_read_the_gateways_secrets(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held: no right to write a request's status (an approval, an execution mark), nor to read
    the credentials, nor to write MCPServers."""
    name = request_of(call(gateway, agent_token(cluster, bank), "bank__close_account",
                           {"account": bank}))  # fmt: skip
    me = f"{bank}/{AGENT}"
    for patch in ({"status": {"execution": {"outcome": "Executing", "at": "2000-01-01T00:00:00Z"}}},
                  {"status": {"decision": {"outcome": "Approved", "reason": "HumanApproved"}}}):  # fmt: skip
        out = cluster.kubectl("patch", "actionrequest", name, "-n", bank, "--subresource=status",
                              "--type=merge", "-p", json.dumps(patch), who=me, check=False)  # fmt: skip
        assert out.returncode != 0
        assert "forbidden" in out.stderr.lower()
    for verb in (["get", "secret", "bank-credentials"], ["patch", "mcpserver", "bank", "--type=merge",
                 "-p", '{"spec":{"url":"http://127.0.0.1:1/mcp"}}']):  # fmt: skip
        out = cluster.kubectl(*verb, "-n", bank, who=me, check=False)
        assert out.returncode != 0
        assert "forbidden" in out.stderr.lower()


def test_the_agents_redis_user_cannot_touch_the_gateways_keys(
    cluster: Cluster, bank: str, gateway: GatewayProcess, redis_server: Any
) -> None:
    """Held: the gateway trusts its Redis keys (a kept result is returned as the tool's result
    and never called again); the agent's ACL user reaches none of them."""
    secret = json.loads(cluster.kubectl("get", "secret", f"handoff-redis-{AGENT}", "-n", bank,
                                        "-o", "json", who=f"{bank}/{AGENT}").stdout)  # fmt: skip
    url = base64.b64decode(secret["data"]["url"]).decode()
    client = redis.Redis.from_url(url)
    try:
        key = call_key("bank", "transfer", {"amount": 1, "to": bank})
        for command in (
            ("SETEX", "handoff:gateway:result:x", 60, '{"content":[]}'),
            ("SETEX", f"handoff:gateway:generation:{bank}:{AGENT}:{key}", 60, "7"),
            ("GET", "handoff:gateway:result:x"),
            ("DEL", f"handoff:gateway:generation:{bank}:{AGENT}:{key}"),
            ("KEYS", "handoff:gateway:*"),
            ("SETEX", f"handoff:state:{bank}:{AGENT}:../../gateway:result:x", 60, "{}"),
        ):
            if command[1].startswith(f"handoff:state:{bank}:{AGENT}:"):
                client.execute_command(*command)  # its own key, whatever it is called
                continue
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    finally:
        client.close()


def test_a_token_for_another_audience_is_refused(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held: a token the agent was given for another service is not a token for this one."""
    other = cluster.kubectl("create", "token", AGENT, "-n", bank, "--audience=https://vault.example",
                            "--duration=1h").stdout.strip()  # fmt: skip
    status, _ = _raw(gateway, other, _rpc("tools/list"))
    assert status == 401
    assert requests(cluster, bank) == []


# -- the /mcp endpoint -----------------------------------------------------------------------


def _rpc(method: str, params: dict[str, Any] | None = None, id_: Any = 1) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": id_, "method": method, "params": params or {}}
    ).encode()


def _raw(
    gateway: GatewayProcess, token: str | None, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    where = urlsplit(gateway.url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    sent = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-06-18", **(headers or {})}  # fmt: skip
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request("POST", where.path, body, sent)
        response = connection.getresponse()
        return response.status, response.read()
    except (BrokenPipeError, ConnectionResetError):
        response = connection.getresponse()  # the answer came before the whole body was sent
        return response.status, response.read()
    finally:
        connection.close()


# -- the gateway's own rights (least privilege) ------------------------------------------------


GATEWAY = "handoff-system/handoff-gateway"


def _can_get(cluster: Cluster, ns: str, secret: str) -> bool:
    out = cluster.kubectl("auth", "can-i", "get", f"secret/{secret}", "-n", ns, who=GATEWAY,
                          check=False)  # fmt: skip
    return out.stdout.strip() == "yes"


def test_the_gateway_reads_only_the_secrets_mcpservers_name(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """The gateway could get every Secret of the cluster (the agents' Redis passwords, the
    operator's, PostgreSQL admins'); now only those an MCPServer of their namespace names."""
    assert _can_get(cluster, bank, "bank-credentials")
    for ns, secret in ((bank, f"handoff-redis-{AGENT}"), (bank, "anything-else"),
                       ("handoff-system", "anything"), ("default", "anything")):  # fmt: skip
        assert not _can_get(cluster, ns, secret), (ns, secret)
    vault = mcp_server(bank, "http://127.0.0.1:1/mcp")
    vault["metadata"]["name"] = "vault"
    vault["spec"]["credentials"]["secretName"] = "vault-credentials"
    cluster.apply(vault)
    cluster.apply(_secret(bank, "vault-credentials", "vault"))
    eventually(lambda: _can_get(cluster, bank, "vault-credentials"), 20, "the vault's Secret")
    cluster.kubectl("delete", "mcpserver", "vault", "-n", bank)
    eventually(lambda: not _can_get(cluster, bank, "vault-credentials"), 20, "the grant to go")
    assert _can_get(cluster, bank, "bank-credentials")


def _secret(ns: str, name: str, server: str | None) -> dict[str, Any]:
    annotations = {"handoff.dev/mcp-server": server} if server else {}
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations},
            "stringData": {"password": "s3cret"}}  # fmt: skip


def test_an_mcpserver_naming_another_secret_does_not_let_the_gateway_read_it(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Whoever may write MCPServers (but not read Secrets) named the agent's Redis password, a
    database password, and a Secret marked for another server: the operator granted the gateway
    `get` on each by name. Now only a Secret marked for the server that names it is readable,
    and only once marked."""
    redis_secret = f"handoff-redis-{AGENT}"
    cluster.apply(_secret(bank, "db-password", None))
    cluster.apply(_secret(bank, "bank-only", "bank"))  # marked, but for another server
    for server, secret in (("steal", redis_secret), ("db", "db-password"),
                           ("borrow", "bank-only")):  # fmt: skip
        body = mcp_server(bank, "http://127.0.0.1:1/mcp")
        body["metadata"]["name"] = server
        body["spec"]["credentials"]["secretName"] = secret
        cluster.apply(body)
    # Its owner marks the database password for db: the operator follows the Secret's change.
    cluster.apply(_secret(bank, "db-password", "db"))
    eventually(lambda: _can_get(cluster, bank, "db-password"), 30, "the marked Secret granted")
    for secret in (redis_secret, "bank-only"):  # synced after every MCPServer above: still not
        assert not _can_get(cluster, bank, secret), secret
    assert _can_get(cluster, bank, "bank-credentials")
    cluster.apply(_secret(bank, "db-password", None))  # unmarked again: the grant goes
    eventually(lambda: not _can_get(cluster, bank, "db-password"), 30, "the grant to go")
    for server in ("steal", "db", "borrow"):
        cluster.kubectl("delete", "mcpserver", server, "-n", bank)


def test_the_gateways_redis_user_reaches_only_its_own_keys(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """The gateway ran with the admin URL: whoever took it could rewrite decisions streams,
    the audit stream and every agent's ACL user. Now its user reaches handoff:gateway:* alone."""
    assert gateway.process is not None
    argv = Path(f"/proc/{gateway.process.pid}/cmdline").read_bytes().split(b"\0")
    (url,) = [a.decode().split("=", 1)[1] for a in argv if a.startswith(b"--redis-url=")]
    client = redis.Redis.from_url(url)
    try:
        client.set("handoff:gateway:probe", "1", ex=10)
        for command in (
            ("XADD", f"handoff:decisions:{bank}:{AGENT}", "*", "k", "v"),
            ("XADD", "handoff:audit", "*", "k", "v"),
            ("GET", f"handoff:state:{bank}:{AGENT}:x"),
            ("ACL", "LIST"),
            ("KEYS", "*"),
            ("FLUSHALL",),
            ("CONFIG", "GET", "*"),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                client.execute_command(*command)
    finally:
        client.close()


def test_an_oversized_body_is_refused_before_it_is_read(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held at 64 MB (the SDK's 4 MiB bound); 2 MiB was read and parsed whole before the
    arguments' bounds (64 KiB) refused it: the body's bound is now 1 MiB."""
    for size in (64 << 20, 2 << 20):
        body = _rpc("tools/call", {"name": "bank__transfer",
                                   "arguments": {"amount": 1, "to": bank, "pad": "x" * size}})  # fmt: skip
        status, answer = _raw(gateway, agent_token(cluster, bank), body)
        assert status == 413, (size, answer[:200])
    assert requests(cluster, bank) == []


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'{"jsonrpc":"2.0"}', b'{"jsonrpc":"2.0","id":1,"method":"tools/call"}',
     b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}',
     b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"bank__transfer","arguments":[1]}}',
     b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"bank__transfer",'
     b'"arguments":{"amount":1e400,"to":"x"}}}',
     b'{"jsonrpc":"2.0","id":1,"method":"tasks/get","params":{"taskId":"mcp-0"}}',
     b'{"jsonrpc":"2.0","id":1,"method":"tasks/list","params":{}}',
     b'\xff\xfe'],
)  # fmt: skip
def test_malformed_json_rpc_gets_an_error_and_files_nothing(
    cluster: Cluster, bank: str, gateway: GatewayProcess, body: bytes
) -> None:
    status, answer = _raw(gateway, agent_token(cluster, bank), body)
    assert status < 500, answer
    if status == 200:
        assert b'"error"' in answer or b'"isError":true' in answer, answer
    assert requests(cluster, bank) == []


def test_tool_names_with_tricks_are_unknown(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held: only <server>__<tool> exactly as listed, on a server of the agent's own namespace."""
    token = agent_token(cluster, bank)
    for name in ("bank__transfer ", "BANK__transfer", "bank__Transfer", "bank__transfer\u200b",
                 "bank__trans*", "bank__../transfer", "bank/transfer", "bank.transfer",
                 "mcp.bank.transfer", "bank__transfer\x00", "bаnk__transfer", "__bank__transfer",
                 f"{bank}/bank__transfer", "bank____transfer"):  # fmt: skip
        assert "there is no tool" in refusal(gateway, token, name, {"amount": 1, "to": bank}), name
    assert requests(cluster, bank) == []


def test_context_fields_are_bounded_text_and_never_reach_the_upstream(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Held: the reviewer's context is a bounded string; anything else is refused before filing."""
    token = agent_token(cluster, bank)
    for value in ({"a": 1}, ["x"], 7, True, "x" * 5000):
        result = call(gateway, token, "bank__read_account",
                      {"account": bank, "handoff_reasoning": value})  # fmt: skip
        assert result.is_error
        assert "nothing was filed" in text(result)
    html = "<img src=x onerror=alert(1)>\u202e\x1b[2J"
    result = call(gateway, token, "bank__read_account",
                  {"account": bank, "handoff_reasoning": html, "handoff_blast_radius": None})  # fmt: skip
    assert not result.is_error
    (filed,) = requests(cluster, bank)
    assert filed["spec"]["reasoning"] == html  # kept as text: the console and show escape it
    assert [c["args"] for c in upstream.calls(bank)] == [{"account": bank}]


def test_another_agents_pending_call_is_not_attached_to(
    cluster: Cluster, bank: str, gateway: GatewayProcess, upstream: Upstream
) -> None:
    """Held: the same call from another agent is another request, judged and run as that agent."""
    asked = {"account": bank}
    mine = call(gateway, agent_token(cluster, bank), "bank__close_account", asked)
    theirs = call(gateway, agent_token(cluster, bank, MALLORY), "bank__close_account", asked)
    assert request_of(mine) != request_of(theirs)
    body = cluster.get("actionrequest", request_of(theirs), bank)
    assert body["spec"]["agent"] == MALLORY


def test_a_held_connection_does_not_block_other_calls(
    cluster: Cluster, bank: str, gateway: GatewayProcess
) -> None:
    """Held: a client that sends half a body and stalls holds only its own request."""
    where = urlsplit(gateway.url)
    stalled = http.client.HTTPConnection(where.hostname or "", where.port, timeout=30)
    stalled.putrequest("POST", where.path)
    stalled.putheader("Authorization", f"Bearer {agent_token(cluster, bank)}")
    stalled.putheader("Content-Type", "application/json")
    stalled.putheader("Content-Length", "100000")
    stalled.endheaders()
    stalled.send(b'{"jsonrpc":"2.0",')
    try:
        result = call(gateway, agent_token(cluster, bank), "bank__read_account", {"account": bank})
        assert not result.is_error
    finally:
        stalled.close()
