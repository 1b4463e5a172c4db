"""Calls to the upstream MCP servers, with the credentials only the gateway reads."""

import time
from collections.abc import Mapping
from typing import Any, cast

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from handoff.adapters.kube import KubeApi, KubeError
from handoff.gateway.servers import Server

IDEMPOTENCY_KEY = "dev.handoff/idempotency-key"  # in _meta: the request's uid, for the upstream
_TOOLS_TTL = 60.0
_SECRET_TTL = 30.0
CALL_TIMEOUT = 60.0


class UpstreamError(Exception):
    """The upstream could not be reached or did not answer; the message says which and why."""


class Upstreams:
    def __init__(self, api: KubeApi, timeout: float = CALL_TIMEOUT) -> None:
        self.api = api
        self.timeout = timeout
        self._tools: dict[tuple[str, str, str], tuple[float, dict[str, types.Tool]]] = {}
        self._headers: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}

    async def tools(self, server: Server, fresh: bool = False) -> dict[str, types.Tool]:
        """The upstream's tools by name (cached for a minute)."""
        key = (server.namespace, server.name, server.url)
        now = time.monotonic()
        if not fresh and (cached := self._tools.get(key)) is not None and cached[0] > now:
            return cached[1]
        async with await self._client(server) as client:
            try:
                listed = await client.list_tools()
            except Exception as e:
                raise UpstreamError(_why(server, e)) from e
        tools = {t.name: t for t in listed.tools}
        self._tools[key] = (now + _TOOLS_TTL, tools)
        return tools

    async def call(
        self, server: Server, tool: str, arguments: Mapping[str, Any], idempotency_key: str
    ) -> dict[str, Any]:
        """The upstream's CallToolResult as JSON (a tool error is a result with isError)."""
        async with await self._client(server) as client:
            try:
                result = await client.call_tool(
                    tool, dict(arguments), read_timeout_seconds=self.timeout,
                    meta=cast(types.RequestParamsMeta, {IDEMPOTENCY_KEY: idempotency_key}),
                )  # fmt: skip
            except Exception as e:
                raise UpstreamError(_why(server, e)) from e
        return result_json(result)

    async def _client(self, server: Server) -> "_Connection":
        headers = await self._credentials(server)
        return _Connection(server, headers, self.timeout)

    async def _credentials(self, server: Server) -> dict[str, str]:
        if server.secret_name is None:
            return {}
        key = (server.namespace, server.secret_name)
        now = time.monotonic()
        if (cached := self._headers.get(key)) is not None and cached[0] > now:
            return cached[1]
        try:
            data = await self.api.read_secret(server.namespace, server.secret_name)
        except KubeError as e:
            raise UpstreamError(
                f"the credentials of {server.name} (Secret {server.secret_name}) could not be"
                f" read: {e.message}"
            ) from e
        self._headers[key] = (now + _SECRET_TTL, data)
        return data


class _Connection:
    """One session with an upstream; failures to connect become UpstreamError."""

    def __init__(self, server: Server, headers: dict[str, str], timeout: float) -> None:
        self.server = server
        self.http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout))
        self.client = Client(
            streamable_http_client(server.url, http_client=self.http),
            read_timeout_seconds=timeout, cache=None, mode="legacy",
        )  # fmt: skip

    async def __aenter__(self) -> Client:
        try:
            return await self.client.__aenter__()
        except BaseException as e:
            await self.http.aclose()
            raise UpstreamError(_why(self.server, e)) from e

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.client.__aexit__(None, None, None)
        finally:
            await self.http.aclose()


def result_json(result: types.CallToolResult) -> dict[str, Any]:
    out = result.model_dump(by_alias=True, mode="json", exclude_none=True)
    out.pop("_meta", None)  # the upstream's own server info: not part of what the tool did
    out.pop("resultType", None)
    return dict(out)


def _why(server: Server, error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    detail = str(error).splitlines()[0][:300] if str(error) else type(error).__name__
    return f"the upstream {server.name} ({server.url}) did not answer: {detail}"
