"""A small bank as an MCP server (the mcp SDK), for the gateway's example session and tests: it
appends every call it receives (tool, arguments, Handoff's idempotency key) to a JSON-lines file,
and refuses requests without the bearer token that the gateway reads from the MCPServer's Secret.

Run: python examples/mcp_bank.py PORT CALLS_FILE TOKEN
"""

import json
import sys
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PORT, CALLS, TOKEN = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
server = MCPServer("bank")  # tools: read (tier 1), set_limit (tier 2), transfer (tier 4)


def record(tool: str, ctx: Context, **args: Any) -> None:
    meta = ctx.request_context.meta or {}
    key = meta.get("dev.handoff/idempotency-key") if isinstance(meta, dict) else None
    with CALLS.open("a") as out:
        out.write(json.dumps({"tool": tool, "args": args, "key": key}) + "\n")


@server.tool(title="Read an account")
def read_account(account: str, ctx: Context) -> str:
    record("read_account", ctx, account=account)
    return f"account {account}: balance 1000"


@server.tool(title="Set an account's limit")
def set_limit(account: str, limit: int, previous: int, ctx: Context) -> str:
    record("set_limit", ctx, account=account, limit=limit, previous=previous)
    return f"limit of {account} is now {limit} (was {previous})"


@server.tool(title="Transfer money")
def transfer(amount: int, to: str, ctx: Context) -> str:
    record("transfer", ctx, amount=amount, to=to)
    return f"moved {amount} to {to}"


@server.tool(title="Close an account")
def close_account(account: str, ctx: Context) -> str:
    record("close_account", ctx, account=account)
    return f"closed {account}"


class Bearer:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] == "http" and headers.get(b"authorization") != f"Bearer {TOKEN}".encode():
            await JSONResponse({"error": "unauthorized"}, 401)(scope, receive, send)
            return
        await self.app(scope, receive, send)


if __name__ == "__main__":
    app = server.streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(Bearer(app), host="127.0.0.1", port=PORT, log_level="warning", lifespan="on")
