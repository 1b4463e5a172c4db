"""The MCP gateway of the local environment: ``handoff gateway`` as its own ServiceAccount."""

import asyncio
import hashlib
import hmac
import os
import sys
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from handoff.adapters.redis_acl import ensure_gateway
from handoff.devenv import processes
from handoff.devenv.controlplane import ControlPlane
from handoff.devenv.manifests import GATEWAY_ACCOUNT, OPERATOR_NAMESPACE


def start_gateway(
    cp: ControlPlane, folder: Path, port: int, redis_url: str, say: Callable[[str], None]
) -> str:
    """Start the gateway unless it runs; wait for its /healthz; its /mcp URL (GATEWAY_URL)."""
    base = f"http://127.0.0.1:{port}"
    if processes.read_pid(folder / "gateway.pid") is None:
        say(f"gateway: {base}/mcp (its log: gateway.log)")
        redis_url = gateway_redis_url(redis_url)
        token = cp.service_account_token(OPERATOR_NAMESPACE, GATEWAY_ACCOUNT)
        kubeconfig = cp.write_kubeconfig(folder / "gateway.kubeconfig", {"handoff-gateway": token})
        processes.spawn(
            "gateway",
            [sys.executable, "-m", "handoff", "gateway", f"--kubeconfig={kubeconfig}",
             f"--listen=127.0.0.1:{port}", f"--redis-url={redis_url}"],
            folder,
            env=os.environ | {"PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
    processes.wait_until(lambda: _ok(f"{base}/healthz"), 60, "the gateway", folder / "gateway.log")
    return f"{base}/mcp"


def gateway_redis_url(admin_url: str) -> str:
    """The gateway's own Redis user (its keys only), set with the admin URL; its URL. Its
    password derives from the admin URL, so every gateway of one Redis (a restart, a second
    replica in a test) shares it: setting the user anew never locks out a running one."""
    password = hmac.new(admin_url.encode(), b"handoff-gateway", hashlib.sha256).hexdigest()
    # In a thread of its own: callers may already run an event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, ensure_gateway(admin_url, password)).result()


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False
