"""Calls to the upstream MCP servers, with the credentials only the gateway reads.

One MCP session per upstream and credentials is held open and reused (opening one costs more
than a call). A session unused for ``_FRESH`` seconds is replaced before a call, so a call never
rides a session the upstream may have dropped; a call that fails is never sent again here (the
execution is recorded Failed): only a tools listing is tried again on a fresh session.
"""

import asyncio
import base64
import contextlib
import functools
import hashlib
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar, cast

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from handoff.adapters.kube import KubeApi, KubeError, resource_path
from handoff.domain.mcpsecrets import CREDENTIALS_FOR, marked_for
from handoff.gateway.servers import Server

IDEMPOTENCY_KEY = "dev.handoff/idempotency-key"  # in _meta: the request's uid, for the upstream
_TOOLS_TTL = 60.0
_SECRET_TTL = 30.0
_FRESH = 30.0  # seconds a held session stays trusted without use
_MAX_SESSIONS = 256
CALL_TIMEOUT = 60.0
T = TypeVar("T")


class UpstreamError(Exception):
    """The upstream could not be reached or did not answer; the message says which and why."""


class Upstreams:
    def __init__(self, api: KubeApi, timeout: float = CALL_TIMEOUT) -> None:
        self.api = api
        self.timeout = timeout
        self._tools: dict[tuple[str, str, str], tuple[float, dict[str, types.Tool]]] = {}
        self._headers: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self._sessions: dict[tuple[str, str], _Session] = {}
        self._opening: dict[tuple[str, str], asyncio.Lock] = {}
        self._legacy: set[str] = set()  # upstream URLs that refused the 2026-07-28 probe

    async def tools(self, server: Server, fresh: bool = False) -> dict[str, types.Tool]:
        """The upstream's tools by name (cached for a minute)."""
        key = (server.namespace, server.name, server.url)
        now = time.monotonic()
        if not fresh and (cached := self._tools.get(key)) is not None and cached[0] > now:
            return cached[1]
        try:
            listed = await self._with_session(server, lambda c: c.list_tools())
        except UpstreamError:  # a dropped session: once more on a new one (listing is safe)
            listed = await self._with_session(server, lambda c: c.list_tools())
        tools = {t.name: t for t in listed.tools}
        self._tools[key] = (now + _TOOLS_TTL, tools)
        return tools

    async def call(
        self, server: Server, tool: str, arguments: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        """The upstream's CallToolResult as JSON (a tool error is a result with isError)."""
        meta = cast(types.RequestParamsMeta, {IDEMPOTENCY_KEY: idempotency_key})
        result = await self._with_session(
            server,
            lambda c: c.call_tool(tool, dict(arguments), read_timeout_seconds=self.timeout,
                                  meta=meta),
        )  # fmt: skip
        return result_json(result)

    async def _with_session(self, server: Server, use: Callable[[Client], Awaitable[T]]) -> T:
        session = await self._session(server)
        try:
            return await use(session.client)
        except Exception as e:
            await self._drop(session)
            raise UpstreamError(_why(server, e)) from e
        finally:
            session.used = time.monotonic()

    async def _session(self, server: Server) -> "_Session":
        headers = await self._credentials(server)
        key = (server.url, hashlib.sha256(json.dumps(sorted(headers.items())).encode()).hexdigest())
        async with self._opening.setdefault(key, asyncio.Lock()):
            session = self._sessions.get(key)
            if session is not None and (session.closed or session.stale()):
                await self._drop(session)
                session = None
            if session is None:
                if len(self._sessions) >= _MAX_SESSIONS:
                    await self._drop(next(iter(self._sessions.values())))
                session = await self._open(key, server, headers)
                self._sessions[key] = session
            return session

    async def _open(
        self, key: tuple[str, str], server: Server, headers: dict[str, str]
    ) -> "_Session":
        """A session in the 2026-07-28 revision when the upstream speaks it (one JSON response
        a call, no SSE stream: about a quarter less time a call on this machine), else with the
        initialize handshake; an upstream that refused the probe is remembered as such."""
        if key[0] not in self._legacy:
            session = _Session(key, server, headers, self.timeout, "auto")
            try:
                await session.open()
                return session
            except UpstreamError as e:
                if _unreachable(e):
                    raise
                self._legacy.add(key[0])
        session = _Session(key, server, headers, self.timeout, "legacy")
        await session.open()
        return session

    async def _drop(self, session: "_Session") -> None:
        if self._sessions.get(session.key) is session:
            del self._sessions[session.key]
        await session.close()

    async def close(self) -> None:
        for session in list(self._sessions.values()):
            await self._drop(session)

    async def _credentials(self, server: Server) -> dict[str, str]:
        if server.secret_name is None:
            return {}
        key = (server.namespace, server.secret_name)
        now = time.monotonic()
        if (cached := self._headers.get(key)) is not None and cached[0] > now:
            return cached[1]
        try:
            secret = await self.api.get(
                resource_path("", "v1", "secrets", server.namespace, server.secret_name)
            )
        except KubeError as e:
            hint = (
                f" (the gateway may read only a Secret annotated {CREDENTIALS_FOR}={server.name};"
                " whoever may write the Secret decides)"
                if e.status == 403
                else ""
            )
            raise UpstreamError(
                f"the credentials of {server.name} (Secret {server.secret_name}) could not be"
                f" read: {e.message}{hint}; nothing was sent upstream"
            ) from e
        # Writing an MCPServer must not be a way to read a Secret: the gateway sends upstream
        # only one whose owner marked it for this server.
        if not marked_for(secret, {server.name}):
            raise UpstreamError(
                f"Secret {server.secret_name} is not marked for this server: annotate it"
                f" {CREDENTIALS_FOR}={server.name} (whoever may write the Secret decides where"
                " it may be sent); nothing was sent upstream"
            )
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        self._headers[key] = (now + _SECRET_TTL, data)
        return data


class _Session:
    """An MCP client session held open by a task of its own (the SDK's sessions live in the
    task that opened them); other tasks send their requests through it."""

    def __init__(
        self, key: tuple[str, str], server: Server, headers: dict[str, str], timeout: float,
        mode: str = "auto",
    ) -> None:  # fmt: skip
        self.key = key
        self.mode = mode
        self.server = server
        self.timeout = timeout
        self.http = httpx2.AsyncClient(
            headers=headers, timeout=httpx2.Timeout(timeout), verify=tls_context()
        )
        self.used = time.monotonic()
        self.closed = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.client: Client = cast(Client, None)

    def stale(self) -> bool:
        return time.monotonic() - self.used > _FRESH

    async def open(self) -> None:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._hold(ready))
        try:
            self.client = await asyncio.wait_for(ready, self.timeout)
        except BaseException as e:
            await self.close()
            error = e.__cause__ if isinstance(e, UpstreamError) else e
            raise UpstreamError(_why(self.server, error or e)) from e

    async def _hold(self, ready: "asyncio.Future[Client]") -> None:
        try:
            client = Client(
                streamable_http_client(self.server.url, http_client=self.http),
                read_timeout_seconds=self.timeout, cache=None, mode=self.mode,
            )  # fmt: skip
            async with client:
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e)
        finally:
            self.closed = True
            await self.http.aclose()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 5)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The one TLS context of every upstream client: what httpx2 builds for ``verify=True``
    (the system's or ``SSL_CERT_FILE``'s roots), built once. Built per client it took 70 to 110 ms
    of CPU on this machine, paid by each session opened: after an idle upstream's session went
    stale, on each retry against an upstream that is down, and twice for a handshake-era one."""
    return httpx2.create_ssl_context()


def result_json(result: types.CallToolResult) -> dict[str, Any]:
    out = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    out.pop("_meta", None)  # the upstream's own server info: not part of what the tool did
    out.pop("resultType", None)
    return dict(out)


def _unreachable(error: BaseException) -> bool:
    """Whether opening a session failed for want of an answer (the upstream is down or slow),
    not because it refused the 2026-07-28 probe: then the handshake is not tried as well."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, BaseExceptionGroup) and seen.exceptions:
            seen = seen.exceptions[0]
            continue
        if isinstance(seen, OSError | TimeoutError | httpx2.TransportError):
            return True
        seen = seen.__cause__
    return False


def _why(server: Server, error: BaseException) -> str:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    detail = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return f"the upstream {server.name} ({server.url}) did not answer: {detail}"
