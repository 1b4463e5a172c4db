"""``handoff operator``: metrics, health, leader election and kopf, in that order.

A standby replica serves /metrics (``handoff_leader 0``) and /healthz while it waits for the
Lease; only the leader runs kopf's watches. A leader that loses the Lease stops its watches and
exits non-zero, to come back as a candidate.
"""

import asyncio
import contextlib
import logging
import os
import socket
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import urlsplit

import kopf
from aiohttp import web

from handoff.adapters import metrics
from handoff.adapters.kube import KubeApi
from handoff.controller.handlers import build_registry
from handoff.controller.kopf_memories import event_only_memories
from handoff.controller.leadership import LeaderElector, LeaseSettings
from handoff.controller.lifecycle import credentials
from handoff.controller.tasks import dead

log = logging.getLogger("handoff.operator")


@dataclass
class Election:
    namespace: str | None = None  # default: $POD_NAMESPACE, else handoff-system
    name: str = "handoff-operator"
    identity: str = field(default_factory=socket.gethostname)
    duration: float = 15.0
    renew: float = 5.0

    def settings(self) -> LeaseSettings:
        namespace = self.namespace or os.environ.get("POD_NAMESPACE") or "handoff-system"
        return LeaseSettings(
            namespace, self.name, self.identity, self.duration, self.renew,
            retry=min(2.0, self.renew),
        )  # fmt: skip


@dataclass
class Health:
    """What /healthz and /readyz report."""

    memo: kopf.Memo
    elector: LeaderElector | None = None
    operator: "asyncio.Task[None] | None" = None

    def live(self) -> tuple[bool, str]:
        if self.operator is not None and self.operator.done():
            return False, "the watches have stopped"
        if self.operator is not None and not self.memo.get("started"):
            return False, "starting"
        if broken := dead(self.memo.get("tasks") or ()):
            return False, f"background task {', '.join(broken)} died: see the log; restart me"
        if self.elector is not None and self.elector.leading:
            age = asyncio.get_running_loop().time() - self.elector.last_renewal
            if age > self.elector.settings.duration:
                return False, f"the Lease was last renewed {age:.0f}s ago"
        return True, "leading" if self.leading else "standing by"

    @property
    def leading(self) -> bool:
        return self.elector.leading if self.elector is not None else self.operator is not None

    async def healthz(self, _: web.Request) -> web.Response:
        ok, text = self.live()
        return web.Response(status=200 if ok else 503, text=text + "\n")

    async def serve(self, endpoint: str) -> web.AppRunner:
        url = urlsplit(endpoint)
        app = web.Application()
        app.router.add_get(url.path or "/healthz", self.healthz)
        app.router.add_get("/readyz", self.healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, url.hostname or "0.0.0.0", url.port or 8081).start()  # noqa: S104
        return runner


def run(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    namespaces: list[str] | None = None,
    namespace_selector: str | None = None,
    metrics_address: str | None = None,
    liveness_endpoint: str | None = None,
    redis_url: str | None = None,
    console_url: str | None = None,
    notify_attempts: int = 6,
    retention: timedelta | None = None,
    election: Election | None = None,
) -> int:
    """Run the operator until interrupted; the exit status for the command line."""
    memo = kopf.Memo(
        kubeconfig=kubeconfig,
        context=context,
        redis_url=redis_url,
        console_url=console_url,
        notify_attempts=notify_attempts,
        retention=retention,
        namespace_selector=namespace_selector,
        namespaces=list(namespaces or ()),  # kopf's; the start's re-arm lists the same
    )
    if metrics_address:
        metrics.serve(metrics_address)
    return asyncio.run(_main(memo, namespaces, liveness_endpoint, election))


async def _main(
    memo: kopf.Memo,
    namespaces: list[str] | None,
    liveness_endpoint: str | None,
    election: Election | None,
) -> int:
    health = Health(memo)
    server = await health.serve(liveness_endpoint) if liveness_endpoint else None
    api: KubeApi | None = None
    try:
        if election is not None:
            api = KubeApi(credentials(memo))
            health.elector = LeaderElector(
                api, election.settings(), asyncio.get_running_loop().time
            )
            await health.elector.acquire()
        else:
            metrics.LEADER.set(1)
        stop = asyncio.Event()
        health.operator = asyncio.create_task(
            kopf.operator(
                registry=build_registry(),
                memo=memo,
                standalone=True,
                clusterwide=not namespaces,
                namespaces=namespaces or (),
                stop_flag=stop,
                memories=event_only_memories(),  # none kept per object: see kopf_memories.py
            )
        )
        if health.elector is None:
            await health.operator
            return 0
        keeper = asyncio.create_task(health.elector.keep())
        await asyncio.wait({health.operator, keeper}, return_when=asyncio.FIRST_COMPLETED)
        if not keeper.done():  # a clean stop (a signal): hand the Lease on
            keeper.cancel()
            await health.elector.release()
            return 0
        log.error("leadership lost: stopping the watches and exiting")
        stop.set()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(health.operator, 10)
        return 1
    finally:
        if api is not None:
            await api.close()
        if server is not None:
            await server.cleanup()
