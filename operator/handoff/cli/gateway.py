"""``handoff gateway``: the MCP gateway (docs/mcp-gateway.md)."""

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any


def add_gateway_command(commands: Any) -> None:
    gateway = commands.add_parser(
        "gateway", help="serve MCP to agents: their tool calls become ActionRequests"
    )
    gateway.add_argument(
        "--kubeconfig", help="the gateway's own identity (default: $KUBECONFIG, in-cluster)"
    )
    gateway.add_argument("--context")
    gateway.add_argument("--listen", default="127.0.0.1:8090", help="host:port to serve /mcp on")
    gateway.add_argument(
        "--redis-url", default=os.environ.get("HANDOFF_GATEWAY_REDIS_URL"),
        help="Redis URL where the gateway keeps call keys and results",
    )  # fmt: skip
    gateway.add_argument(
        "--wait", type=float, default=25.0,
        help="seconds a call waits for its decision before answering that it awaits a person"
        " (default 25, under common clients' time-outs)",
    )  # fmt: skip
    gateway.add_argument(
        "--max-held-per-agent", type=_positive, default=16, metavar="N",
        help="requests one agent may hold open at once on this gateway: tools/call waiting for"
        " a decision and tasks/result waiting for an outcome; past it a clear error, nothing"
        " filed (default 16)",
    )  # fmt: skip
    gateway.add_argument(
        "--task-reads-per-agent", type=_positive, default=20, metavar="N",
        help="tasks/get, tasks/list, tasks/cancel and tasks/result one agent may send a second"
        " on this gateway (each is a read of the API server as the gateway), in bursts of"
        " twice that; past it a clear error (default 20)",
    )  # fmt: skip
    gateway.add_argument(
        "--stdio", action="store_true",
        help="speak MCP on stdin and stdout, for a local agent that launches the gateway",
    )  # fmt: skip
    gateway.add_argument(
        "--token-file",
        help="with --stdio: the agent's ServiceAccount token (default: $HANDOFF_TOKEN)",
    )
    gateway.add_argument("--verbose", "-v", action="store_true")


def run_gateway(args: argparse.Namespace) -> int:
    from handoff.gateway.app import Settings, serve, serve_stdio  # noqa: PLC0415 - loads the SDK

    if not args.redis_url:
        print("handoff gateway: --redis-url (or $HANDOFF_GATEWAY_REDIS_URL) is required: the"
              " gateway keeps call keys and results there", file=sys.stderr)  # fmt: skip
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,  # stdout is the MCP stream with --stdio
    )
    settings = Settings(args.kubeconfig, args.context, args.redis_url, args.listen, args.wait,
                        max_held=args.max_held_per_agent,
                        task_reads=args.task_reads_per_agent)  # fmt: skip
    if not args.stdio:
        return serve(settings)
    token = os.environ.get("HANDOFF_TOKEN", "")
    if args.token_file:
        token = Path(args.token_file).read_text().strip()
    if not token:
        print("handoff gateway --stdio: give the agent's token with --token-file or"
              " $HANDOFF_TOKEN", file=sys.stderr)  # fmt: skip
        return 2
    settings.stdio_token = token
    return serve_stdio(settings)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value
