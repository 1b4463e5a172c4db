"""``handoff gateway``: the MCP server agents point at instead of their tool servers.

Streamable HTTP at ``/mcp`` (every request authenticated with the agent's ServiceAccount token,
401 without one), ``/healthz`` and ``/metrics``; or stdio, for a local agent that launches it,
with the agent's token from a file.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from handoff.adapters.kube import Credentials, KubeApi
from handoff.adapters.sandbox import Sandbox
from handoff.gateway import metrics
from handoff.gateway.auth import Authenticator, Caller
from handoff.gateway.calls import Calls, Refused
from handoff.gateway.execute import Executor
from handoff.gateway.front import Front, untraced
from handoff.gateway.holds import DEFAULT as DEFAULT_HELD
from handoff.gateway.holds import Holds
from handoff.gateway.policyview import PolicyView
from handoff.gateway.rates import DEFAULT as DEFAULT_READS
from handoff.gateway.rates import Rates
from handoff.gateway.registry import Registry
from handoff.gateway.store import RedisStore
from handoff.gateway.tasks import Tasks, TaskServer
from handoff.gateway.upstream import CALL_TIMEOUT, Upstreams
from handoff.gateway.watcher import Watcher

log = logging.getLogger(__name__)
INVALID_PARAMS = -32602
MAX_BODY = 1 << 20  # bytes of a request's body (413 over it): far above a request's bounds


@dataclass
class Settings:
    kubeconfig: str | None
    context: str | None
    redis_url: str
    listen: str = "127.0.0.1:8090"
    wait: float = 25.0
    stdio_token: str | None = None  # --stdio: the agent's own token
    max_held: int = DEFAULT_HELD  # requests one agent holds open at once (holds.py)
    task_reads: int = DEFAULT_READS  # tasks/* reads a second per agent (rates.py)


class Gateway_:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.credentials = Credentials.load(settings.kubeconfig, settings.context)
        self.api = KubeApi(self.credentials)
        self.store = RedisStore(settings.redis_url)
        self.upstreams = Upstreams(self.api)
        self.policies = PolicyView(self.api)
        self.sandbox = Sandbox()  # costly mappings and `when`s: a child with a CPU budget
        self.registry = Registry(self.api, self.upstreams, self.policies)
        self.executor = Executor(
            self.api,
            self.registry,
            self.upstreams,
            self.store,
            stale=4 * CALL_TIMEOUT,
            sandbox=self.sandbox,
        )
        self.calls = Calls(
            api=self.api, credentials=self.credentials, registry=self.registry,
            upstreams=self.upstreams, executor=self.executor, store=self.store, wait=settings.wait,
            policies=self.policies, sandbox=self.sandbox,
        )  # fmt: skip
        self.auth = Authenticator(self.api)
        self.holds = Holds(settings.max_held)
        self.server: Server[Any] = TaskServer("handoff-gateway", on_list_tools=self._list_tools)
        # A handler answers with the result as JSON: no model built only to be dumped again.
        self.server.add_request_handler("tools/call", types.CallToolRequestParams, self._call_tool)
        self.mcp_tasks = Tasks(  # MCP Tasks
            self.api, self.calls, self._caller, self.holds, Rates(settings.task_reads)
        )
        self.mcp_tasks.install(self.server)
        untraced(self.server)  # no span per message when no tracer is configured
        self.tasks: list[asyncio.Task[None]] = []

    # -- MCP -----------------------------------------------------------------------------------

    async def _caller(self, ctx: ServerRequestContext[Any, Any]) -> Caller:
        if self.settings.stdio_token is not None:
            return await self.auth.caller(f"Bearer {self.settings.stdio_token}")
        request = ctx.request
        caller = getattr(getattr(request, "state", None), "caller", None)
        if not isinstance(caller, Caller):  # the HTTP wrapper sets it; never reached without
            raise MCPError(INVALID_PARAMS, "unauthenticated")
        return caller

    async def _list_tools(
        self, ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = await self._caller(ctx)
        await self.registry.synced.wait()
        tools = await self.registry.tools_for(caller.namespace, caller.agent)
        return types.ListToolsResult(tools=Tasks.listed(tools, ctx.protocol_version))

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> dict[str, Any]:
        caller = await self._caller(ctx)
        await self.registry.synced.wait()

        async def progress(done: float, message: str) -> None:
            with contextlib.suppress(Exception):  # a client without a progress token
                await ctx.session.report_progress(done, self.settings.wait, message)

        try:
            with self.holds.hold(caller.namespace, caller.agent, "tools/call"):
                answer = await self.calls.call(caller, params.name, params.arguments, progress)
        except Refused as e:
            raise MCPError(INVALID_PARAMS, str(e), {"reason": e.reason}) from None
        # As JSON, as a CallToolResult dumps (the SDK checks its shape as it serializes it).
        return {"resultType": "complete", **answer}

    # -- HTTP ----------------------------------------------------------------------------------

    def http_app(self) -> Starlette:
        host = self.settings.listen.rpartition(":")[0]
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=host in ("127.0.0.1", "localhost", "::1"),
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        )
        sse, json = (
            StreamableHTTPSessionManager(
                app=self.server,
                stateless=True,
                json_response=json_response,
                security_settings=security,
                max_request_body_size=MAX_BODY,
            )
            for json_response in (False, True)
        )
        mcp = Front(self.auth, sse.handle_request, json.handle_request, MAX_BODY)

        @contextlib.asynccontextmanager
        async def lifespan(_: Starlette) -> AsyncIterator[None]:
            async with sse.run(), json.run():
                self.start()
                try:
                    yield
                finally:
                    await self.stop()

        return Starlette(
            routes=[
                Route("/mcp", endpoint=mcp, methods=["GET", "POST", "DELETE"]),
                Route("/healthz", endpoint=self._healthz),
                Route("/metrics", endpoint=_metrics),
            ],
            lifespan=lifespan,
        )

    async def _healthz(self, _: Request) -> Response:
        for task in self.tasks:
            if task.done():
                return PlainTextResponse(f"a background task stopped: {task.get_name()}", 500)
        if not self.registry.synced.is_set():
            return PlainTextResponse("listing the MCPServers", 503)
        return PlainTextResponse("ok")

    def start(self) -> None:
        self.tasks = [
            asyncio.create_task(self.registry.run(), name="mcpservers"),
            asyncio.create_task(self.policies.run(), name="policies"),
            asyncio.create_task(self.store.heartbeat(), name="heartbeat"),
            asyncio.create_task(self.registry.retry(), name="upstreams"),
            asyncio.create_task(
                Watcher(self.api, self.executor, self.calls.decisions).run(), name="requests"
            ),
        ]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.sandbox.close()
        await self.calls.close()
        await self.upstreams.close()
        await self.store.close()
        await self.api.close()


async def _metrics(_: Request) -> Response:
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)


def serve(settings: Settings) -> int:
    gateway = Gateway_(settings)
    host, _, port = settings.listen.rpartition(":")
    config = uvicorn.Config(gateway.http_app(), host=host or "127.0.0.1", port=int(port),
                            log_level="warning", lifespan="on")  # fmt: skip
    uvicorn.Server(config).run()
    return 0


def serve_stdio(settings: Settings) -> int:
    from mcp.server.stdio import stdio_server  # noqa: PLC0415 - the stdio mode only

    async def main() -> None:
        gateway = Gateway_(settings)
        gateway.start()
        try:
            async with stdio_server() as (read, write):
                await gateway.server.run(
                    read, write, gateway.server.create_initialization_options()
                )
        finally:
            await gateway.stop()

    asyncio.run(main())
    return 0
