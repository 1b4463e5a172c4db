"""The MCP gateway's tests' client and bank: a real upstream MCP server (examples/mcp_bank.py)
that counts its calls, the real mcp SDK client over Streamable HTTP with the agent's own token, and
reviewers through kubectl handoff. The fixtures that start them are in mcp_fixtures.py."""

import asyncio
import json
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from handoff.testing.cluster import Cluster
from handoff.testing.gateway import GatewayProcess
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from .helpers import AGENT, policy

PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")
UPSTREAM = Path(__file__).resolve().parents[2] / "examples" / "mcp_bank.py"


@dataclass
class Upstream:
    url: str
    calls_file: Path
    token: str

    def calls(self, marker: str) -> list[dict[str, Any]]:
        """The calls the upstream received whose arguments mention ``marker``."""
        if not self.calls_file.exists():
            return []
        lines = self.calls_file.read_text().splitlines()
        return [c for line in lines if marker in json.dumps((c := json.loads(line))["args"])]


def mcp_server(ns: str, url: str) -> dict[str, Any]:
    by_account = "'account:' + args.account"
    return {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "MCPServer",
        "metadata": {"name": "bank", "namespace": ns},
        "spec": {
            "url": url,
            "credentials": {"secretName": "bank-credentials"},
            "agents": {"serviceAccounts": [AGENT]},
            "tools": [
                {"name": "read_account", "target": by_account},
                {"name": "set_limit", "target": by_account, "inverse": {
                    "tool": "set_limit", "description": "Set the limit back",
                    "arguments": "{'account': args.account, 'limit': args.previous, 'previous': args.limit}"}},
                {"name": "transfer", "target": "'account:' + args.to"},
                {"name": "close_account", "target": by_account},
            ],
        },
    }  # fmt: skip


def ready(body: dict[str, Any]) -> bool:
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1)  # noqa: S310 - the test's own loopback server
    except urllib.error.HTTPError:
        return True  # it answered (401 without the token)
    except OSError:
        return False
    return True


# -- the client ------------------------------------------------------------------------------


def call(
    gateway: GatewayProcess, token: str, tool: str, arguments: dict[str, Any],
    transcript: list[str] | None = None,
) -> types.CallToolResult:  # fmt: skip
    async def go() -> types.CallToolResult:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        async with http, Client(streamable_http_client(gateway.url, http_client=http)) as client:
            return await client.call_tool(tool, arguments)

    result = asyncio.run(go())
    if transcript is not None:
        transcript.append(f"-> tools/call {tool} {json.dumps(arguments)}")
        transcript.append(f"<- {result.model_dump_json(by_alias=True, exclude_none=True)}")
    return result


def list_tools(gateway: GatewayProcess, token: str) -> list[types.Tool]:
    async def go() -> list[types.Tool]:
        http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
        async with http, Client(streamable_http_client(gateway.url, http_client=http)) as client:
            return list((await client.list_tools()).tools)

    return asyncio.run(go())


def text(result: types.CallToolResult) -> str:
    return " ".join(getattr(c, "text", "") for c in result.content)


def requests(cluster: Cluster, ns: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "actionrequests", "-n", ns, "-o", "json").stdout
    return list(json.loads(out)["items"])


def plugin(cluster: Cluster, ns: str, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    kubeconfig = cluster.control_plane.write_kubeconfig(
        cluster.folder / f"{ns}-{who}.kubeconfig", {who: cluster.token(who)}, ns
    )
    return subprocess.run(
        [PLUGIN, "--kubeconfig", str(kubeconfig), "--context", who, *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip


def approve(cluster: Cluster, ns: str, name: str) -> None:
    plugin(cluster, ns, "alice", "approve", name, "--ack", "what,impact,rollback",
           "--comment", "matches the ticket")  # fmt: skip


def request_of(result: types.CallToolResult) -> str:
    return str((result.meta or {})["dev.handoff/request"])


def agent_token(cluster: Cluster, ns: str, agent: str = AGENT) -> str:
    return cluster.token(f"{ns}/{agent}")


def refusal(gateway: GatewayProcess, token: str, tool: str, arguments: dict[str, Any]) -> str:
    """The JSON-RPC error a call gets (the SDK's client raises it inside exception groups)."""
    with pytest.raises(ExceptionGroup) as raised:
        call(gateway, token, tool, arguments)
    (error,) = [e for e in leaves(raised.value) if isinstance(e, MCPError)]
    return str(error)


def leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in leaves(e)]
    return [error]


def bank_policy(ns: str, read_tier: int = 1) -> dict[str, Any]:
    """The bank's policy: reads in ``read_tier``, limits tier 2 (with an inverse), closing tier 4
    in 10 s (the expiry tests), money tier 4 in 5 minutes; for the agent and ``other-agent``."""
    rules = [
        {"name": "reads", "actions": ["mcp.bank.read_account"], "tier": read_tier}
        | ({"decisionWindow": "5m"} if read_tier == 4 else {}),
        {"name": "limits", "actions": ["mcp.bank.set_limit"], "tier": 2},
        {"name": "closing", "actions": ["mcp.bank.close_account"], "tier": 4, "decisionWindow": "10s"},
        {"name": "money", "actions": ["mcp.bank.transfer"], "tier": 4, "decisionWindow": "5m"},
    ]  # fmt: skip
    body = policy(ns, rules=rules)
    body["spec"]["agents"]["serviceAccounts"] = [AGENT, "other-agent"]
    return body
