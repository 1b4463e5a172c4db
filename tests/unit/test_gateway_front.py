"""The gateway's /mcp front (gateway/front.py): the token first, then each POST to the SSE or
the JSON manager by whether its JSON-RPC body asks for progress, with the body handed on
byte for byte; and the SDK's OpenTelemetry middleware only when spans go somewhere."""

import asyncio
import json
from typing import Any

import pytest
from handoff.gateway.auth import Caller, Unauthenticated
from handoff.gateway.front import Front, _peeked, rpc_of, tracing_configured, untraced
from handoff.gateway.metrics import REGISTRY
from mcp.server._otel import OpenTelemetryMiddleware
from mcp.server.lowlevel import Server
from starlette.types import Message, Receive, Scope, Send

CALLER = Caller("ns", "agent", "t0ken")


class FakeAuth:
    async def caller(self, authorization: str | None) -> Caller:
        if authorization != "Bearer t0ken":
            raise Unauthenticated("send your agent's token")
        return CALLER


class Seen:
    """An ASGI app that records what reached it: the scope and the whole body it received."""

    def __init__(self) -> None:
        self.calls: list[tuple[Scope, bytes]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        self.calls.append((scope, body))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def serve(front: Front, method: str, chunks: list[bytes], token: str | None = CALLER.token,
          ) -> list[Message]:  # fmt: skip
    headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
    scope: Scope = {"type": "http", "method": method, "path": "/mcp", "headers": headers}
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
                for i, c in enumerate(chunks)] or [{"type": "http.request", "body": b""}]  # fmt: skip
    sent: list[Message] = []

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(front(scope, receive, send))
    return sent


def rpc(method: str = "tools/call", meta: dict[str, Any] | None = None) -> bytes:
    params: dict[str, Any] = {"name": "bank__read_account", "arguments": {"account": "a"}}
    if meta is not None:
        params["_meta"] = meta
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()


def front() -> tuple[Front, Seen, Seen]:
    sse, json_ = Seen(), Seen()
    return Front(FakeAuth(), sse, json_, 1 << 10), sse, json_  # type: ignore[arg-type]


def test_a_call_without_a_progress_token_gets_json_and_with_one_sse() -> None:
    app, sse, json_ = front()
    serve(app, "POST", [rpc()])
    serve(app, "POST", [rpc(meta={"progressToken": 7})])
    serve(app, "POST", [rpc(meta={"progressToken": "p-1"})])
    serve(app, "POST", [rpc(meta={"other": 1})])
    assert [b for _, b in json_.calls] == [rpc(), rpc(meta={"other": 1})]
    assert [b for _, b in sse.calls] == [rpc(meta={"progressToken": 7}),
                                         rpc(meta={"progressToken": "p-1"})]  # fmt: skip
    assert all(scope["state"]["caller"] is CALLER for scope, _ in sse.calls + json_.calls)


def test_the_body_reaches_the_sdk_whole_however_it_was_chunked() -> None:
    app, sse, json_ = front()
    body = rpc(meta={"progressToken": 1})
    serve(app, "POST", [body[:5], body[5:40], body[40:]])
    assert sse.calls[0][1] == body
    plain = rpc()
    serve(app, "POST", [plain[:1], plain[1:]])
    assert json_.calls[0][1] == plain


def test_a_body_that_is_not_one_json_rpc_object_goes_to_the_sse_manager_as_before() -> None:
    app, sse, json_ = front()
    for body in (b"{not json", b"[" + rpc() + b"]", b'"x"', b'{"id": 1}', b""):
        serve(app, "POST", [body])
    assert len(sse.calls) == 5
    assert json_.calls == []


def test_a_body_over_the_limit_is_handed_on_whole_for_the_sdk_to_refuse() -> None:
    app, sse, json_ = front()
    big = b"x" * 3000
    serve(app, "POST", [big[:1000], big[1000:2000], big[2000:]])
    assert sse.calls[0][1] == big  # the SDK's own limit answers it 413
    assert json_.calls == []


def test_a_get_is_refused_and_a_delete_goes_to_the_sse_manager() -> None:
    """The SDK's stateless GET stream is never written to nor closed: 405 and a sentence."""
    app, sse, json_ = front()
    sent = serve(app, "GET", [])
    assert sent[0]["status"] == 405
    assert (b"allow", b"POST") in sent[0]["headers"]
    assert b"opens no event stream on GET" in sent[1]["body"]
    serve(app, "DELETE", [])
    assert [s["method"] for s, _ in sse.calls] == ["DELETE"]
    assert json_.calls == []


def test_no_token_or_a_bad_one_is_401_and_nothing_reaches_the_sdk() -> None:
    app, sse, json_ = front()
    for token in (None, "wrong"):
        sent = serve(app, "POST", [rpc()], token=token)
        assert sent[0]["status"] == 401
        assert b"send your agent's token" in sent[1]["body"]
    assert sse.calls == json_.calls == []


def test_the_method_and_progress_are_read_from_the_body() -> None:
    assert rpc_of(rpc()) == ("tools/call", False)
    assert rpc_of(rpc(meta={"progressToken": 0})) == ("tools/call", True)
    assert rpc_of(rpc(meta={"progressToken": None})) == ("tools/call", False)
    assert rpc_of(rpc("tools/list")) == ("tools/list", False)
    assert rpc_of(b'{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}') == ("x", False)
    assert rpc_of(b'{"jsonrpc":"2.0","id":1,"method":"x","params":{"_meta":"p"}}') == ("x", False)
    assert rpc_of(b'{"method": 5}') == (None, False)
    assert rpc_of(b"\xff") == (None, False)


def test_a_tools_call_post_is_timed_as_http_and_auth() -> None:
    def count(step: str) -> float:
        value = REGISTRY.get_sample_value("handoff_gateway_step_seconds_count", {"step": step})
        return value or 0.0

    app, _, _ = front()
    http, auth = count("http"), count("auth")
    serve(app, "POST", [rpc()])
    serve(app, "POST", [rpc("tools/list")])
    assert count("http") == http + 1  # only the tools/call
    assert count("auth") == auth + 2


def test_peeked_hands_a_disconnect_on() -> None:
    messages: list[Message] = [{"type": "http.disconnect"}]

    async def receive() -> Message:
        return messages.pop(0)

    async def go() -> tuple[bytes, Message]:
        body, replay = await _peeked(receive, 100)
        return body, await replay()

    assert asyncio.run(go()) == (b"", {"type": "http.disconnect"})


def test_without_a_tracer_the_sdks_otel_middleware_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    assert not tracing_configured()
    server: Server[Any] = Server("s")
    mine = object()
    server.middleware.append(mine)  # type: ignore[arg-type]
    untraced(server)
    assert server.middleware == [mine]


def test_with_an_exporter_set_the_otel_middleware_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert tracing_configured()
    server: Server[Any] = Server("s")
    untraced(server)
    assert any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
