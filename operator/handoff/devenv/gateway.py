"""The MCP gateway of the local environment: ``handoff gateway`` as its own ServiceAccount."""

import asyncio
import os
import secrets
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
        redis_url = gateway_redis_url(redis_url, folder)
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


def gateway_redis_url(admin_url: str, folder: Path) -> str:
    """The gateway's own Redis user (its keys only), set with the admin URL; its URL. The
    password is kept in ``folder`` so that restarts reuse it."""
    secret = folder / "gateway-redis.password"
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(18))
    password = secret.read_text().strip()
    # In a thread of its own: callers may already run an event loop.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, ensure_gateway(admin_url, password)).result()


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False
