"""A short MCP session through Handoff's gateway (`make demo` runs it before the tour), one
tool call per tier, printed as a transcript: what the client sent and what it received. Needs
`handoff dev up` (its GATEWAY_URL); it starts the example bank (examples/mcp_bank.py) as the
upstream, declares it as an MCPServer, applies a policy for its tools, and approves the tier-4
call as alice with kubectl handoff.

The MCP client is an agent of its own, the ServiceAccount `agents/assistant` (created here, its
token from the TokenRequest API), so its policy governs none of payments-agent's actions: several
policies may govern one agent and the highest tier wins, so a policy for payments-agent's MCP
tools would send every action the tour's policy leaves to tier 1 to a person (defaultTier 4).

Run: .venv/bin/python examples/mcp_session.py
"""

import asyncio
import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
from handoff import paths
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = paths.bin_dir() / "kubectl"
PLUGIN = Path(sys.executable).parent / "kubectl-handoff"
NS = "agents"
AGENT = "assistant"
BY_ACCOUNT = "'account:' + args.account"


def main() -> int:
    env = dict(line.split("=", 1) for line in (paths.dev_dir() / "env").read_text().splitlines())
    kubeconfig, gateway = env["KUBECONFIG"], env.get("GATEWAY_URL")
    if not gateway:
        raise SystemExit("no GATEWAY_URL in the dev environment: run 'make dev-up' first")
    with bank_upstream() as (url, token):
        declare(kubeconfig, url, token)
        asyncio.run(session(gateway, agent_token(kubeconfig), kubeconfig))
    return 0


@contextlib.contextmanager
def bank_upstream() -> Iterator[tuple[str, str]]:
    """The example bank on a free port with a fresh token: its URL and token, while it runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    calls = paths.dev_dir() / "mcp-bank-calls.jsonl"
    bank = subprocess.Popen(  # noqa: S603 - our own example server
        [sys.executable, str(ROOT / "examples" / "mcp_bank.py"), str(port), str(calls), token],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.1)
        yield url, token
    finally:
        bank.terminate()
        bank.wait(10)


def kubectl(kubeconfig: str, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - our own kubectl
        [str(KUBECTL), f"--kubeconfig={kubeconfig}", "--context=admin", "-n", NS, *args],
        input=stdin, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def declare(kubeconfig: str, url: str, token: str) -> None:
    """The platform team's part, reviewed in Git: the upstream, who may use it, the policy."""
    objects = [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": AGENT, "namespace": NS}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "bank-mcp", "namespace": NS,
         "annotations": {"handoff.dev/mcp-server": "bank"}},  # sent upstream by this server only
         "stringData": {"Authorization": f"Bearer {token}"}},
        {"apiVersion": "handoff.dev/v1alpha1", "kind": "MCPServer",
         "metadata": {"name": "bank", "namespace": NS},
         "spec": {"url": url, "credentials": {"secretName": "bank-mcp"},
                  "agents": {"serviceAccounts": [AGENT]},
                  "tools": [
                      {"name": "read_account", "target": BY_ACCOUNT},
                      {"name": "set_limit", "target": BY_ACCOUNT, "inverse": {
                          "tool": "set_limit", "description": "Set the limit back",
                          "arguments": "{'account': args.account, 'limit': args.previous,"
                                       " 'previous': args.limit}"}},
                      {"name": "transfer", "target": "'account:' + args.to"},
                  ]}},
        {"apiVersion": "handoff.dev/v1alpha1", "kind": "AgentActionPolicy",
         "metadata": {"name": "mcp-bank", "namespace": NS},
         "spec": {"agents": {"serviceAccounts": [AGENT]},
                  "reviewers": {"groups": ["payments-approvers"]},
                  "rules": [
                      {"name": "reads", "actions": ["mcp.bank.read_account"], "tier": 1},
                      {"name": "limits", "actions": ["mcp.bank.set_limit"], "tier": 2},
                      {"name": "money", "actions": ["mcp.bank.transfer"], "tier": 4},
                  ]}},
    ]  # fmt: skip
    kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps({"apiVersion": "v1", "kind": "List",
                                                             "items": objects}))  # fmt: skip
    for _ in range(200):
        body = json.loads(kubectl(kubeconfig, "get", "mcps", "bank", "-o", "json"))
        ready = [c for c in body.get("status", {}).get("conditions", []) if c["type"] == "Ready"]
        policy = json.loads(kubectl(kubeconfig, "get", "aap", "mcp-bank", "-o", "json"))
        compiled = [
            c for c in policy.get("status", {}).get("conditions", []) if c["type"] == "Ready"
        ]
        if ready and ready[0]["status"] == "True" and compiled and compiled[0]["status"] == "True":
            return
        time.sleep(0.3)
    raise SystemExit(
        "the MCPServer or the policy did not become Ready: kubectl -n agents describe mcps bank"
    )


def agent_token(kubeconfig: str) -> str:
    """A short-lived token of the agent's ServiceAccount, as `kubectl create token` issues it."""
    return kubectl(kubeconfig, "create", "token", AGENT, "--duration=1h").strip()


async def session(gateway: str, token: str, kubeconfig: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    async with http, Client(streamable_http_client(gateway, http_client=http)) as client:
        tools = (await client.list_tools()).tools
        say("tools/list", {}, {"tools": [t.name for t in tools]})
        for tool, arguments in [
            ("bank__read_account", {"account": "acme", "handoff_reasoning": "the customer asked"}),
            ("bank__set_limit", {"account": "acme", "limit": 5000, "previous": 1000,
                                 "handoff_blast_radius": "acme may spend 4,000 more"}),
            ("bank__transfer", {"amount": 2500, "to": "acme",
                                "handoff_reasoning": "refund of order 881"}),
        ]:  # fmt: skip
            result = await client.call_tool(tool, arguments)
            say(f"tools/call {tool}", arguments, shown(result))
        name = (result.meta or {}).get("dev.handoff/request")
        print(f"\n# alice approves {name}: kubectl handoff approve {name}", flush=True)
        await asyncio.to_thread(
            subprocess.run,
            [str(PLUGIN), f"--kubeconfig={kubeconfig}", "--context=alice", "-n", NS, "approve",
             str(name), "--ack", "what,impact,rollback", "--comment", "matches ticket 881"],
            check=True,
        )  # fmt: skip
        arguments = {"amount": 2500, "to": "acme"}
        result = await client.call_tool("bank__transfer", arguments)
        say("tools/call bank__transfer (the same call again)", arguments, shown(result))


def shown(result: Any) -> dict[str, Any]:
    return dict(result.model_dump(by_alias=True, mode="json", exclude_none=True))


def say(what: str, sent: dict[str, Any], received: dict[str, Any]) -> None:
    print(f"\n-> {what} {json.dumps(sent)}\n<- {json.dumps(received)}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
