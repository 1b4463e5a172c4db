"""The gateway's ``/mcp`` endpoint in front of the SDK: the agent's token first (401 with a
sentence, and nothing else runs), then each POST to one of two stateless Streamable HTTP
managers, chosen by its JSON-RPC body.

A request that carries a ``progressToken`` is answered as an SSE stream (the gateway sends
progress notifications on it while a tier-3/4 call is held); any other is answered with one JSON
response, which the spec lets the server choose when the client accepts both, and which costs the
gateway an SSE stream, its writer task and its events per call. A body that is not one JSON-RPC
object goes to the SSE manager, as before, whose own checks answer it.

Also: without a tracer configured (an OpenTelemetry SDK or an ``OTEL_*`` exporter setting), the
SDK's OpenTelemetry middleware is dropped from the server: it is a span per message that nobody
exports (``tracing_configured``).
"""

import collections
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic_core
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.lowlevel import Server
from opentelemetry import trace
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from handoff.domain.reasons import Gateway
from handoff.gateway import metrics
from handoff.gateway.auth import Authenticator, Unauthenticated
from handoff.gateway.steps import observe

App = Callable[[Scope, Receive, Send], Awaitable[None]]
NO_STREAM = (
    "this gateway opens no event stream on GET: every answer, and its progress, comes on the"
    " response to the POST that asked; POST JSON-RPC requests to /mcp"
)
_OTEL_SETTINGS = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")  # fmt: skip


class Front:
    """``/mcp``: authenticate, then hand the request to ``sse`` or ``json`` (see above)."""

    def __init__(self, auth: Authenticator, sse: App, json: App, max_body: int) -> None:
        self.auth = auth
        self.sse = sse
        self.json = json
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        request = Request(scope, receive)
        try:
            caller = await self.auth.caller(request.headers.get("authorization"))
        except Unauthenticated as e:
            metrics.REFUSED.labels(reason=Gateway.UNAUTHENTICATED).inc()
            body = {"error": "unauthorized", "error_description": str(e)}
            response = JSONResponse(
                body, 401, headers={"WWW-Authenticate": 'Bearer realm="handoff"'}
            )
            await response(scope, receive, send)
            return
        observe("auth", time.perf_counter() - began)
        if scope.get("method") == "GET":
            # The SDK's stateless mode would answer with an event stream it never writes to nor
            # closes: one held connection and server task per GET, without a bound. The spec lets
            # a server that offers no such stream answer 405.
            body = {"error": "method_not_allowed", "error_description": NO_STREAM}
            await JSONResponse(body, 405, headers={"Allow": "POST"})(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller
        if scope.get("method") != "POST":
            await self.sse(scope, receive, send)
            return
        raw, replay = await _peeked(receive, self.max_body)
        method, progress = rpc_of(raw)
        app = self.sse if progress or method is None else self.json
        await app(scope, replay, send)
        if method == "tools/call":
            observe("http", time.perf_counter() - began)


async def _peeked(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """The request's body (or its first ``limit`` bytes and more), and a ``receive`` that
    hands the same messages to the SDK again and then the connection's own."""
    held: collections.deque[Message] = collections.deque()
    size, body = 0, bytearray()
    while size <= limit:
        message = await receive()
        held.append(message)
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        body += chunk
        if not message.get("more_body", False):
            break

    async def replay() -> Message:
        return held.popleft() if held else await receive()

    return bytes(body), replay


def rpc_of(body: bytes) -> tuple[str | None, bool]:
    """The JSON-RPC method of ``body`` (None unless it is one JSON-RPC object), and whether it
    asks for progress notifications (a ``progressToken`` in its ``params._meta``)."""
    try:
        message: Any = pydantic_core.from_json(body)
    except ValueError:
        return None, False
    if not isinstance(message, dict) or not isinstance(message.get("method"), str):
        return None, False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    progress = isinstance(meta, dict) and meta.get("progressToken") is not None
    return message["method"], progress


def tracing_configured() -> bool:
    """Whether spans go anywhere: a real tracer provider, or an exporter set in ``OTEL_*``."""
    provider = trace.get_tracer_provider()
    real = not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)
    return real or any(os.environ.get(name) for name in _OTEL_SETTINGS)


def untraced(server: Server[Any]) -> None:
    """Drop the SDK's OpenTelemetry middleware from ``server`` when no tracer is configured."""
    if not tracing_configured():
        server.middleware = [
            m for m in server.middleware if not isinstance(m, OpenTelemetryMiddleware)
        ]
