"""Every upstream session's HTTP client shares one TLS context (gateway/upstream.py): building
one per client cost 70 to 110 ms of CPU, paid by every session opened (a stale session replaced,
each retry against an upstream that is down, the handshake after a refused probe)."""

import asyncio
import ssl

import httpcore2
import pytest
from handoff.gateway import upstream
from handoff.gateway.upstream import UpstreamError, Upstreams


class DownServer:
    name = "bank"
    namespace = "ns"
    url = "http://127.0.0.1:9/mcp"  # discard: nothing listens, the connection is refused
    secret_name = None


def test_sessions_share_one_tls_context_built_once(monkeypatch: pytest.MonkeyPatch) -> None:
    upstream.tls_context.cache_clear()
    built: list[ssl.SSLContext] = []
    real = httpcore2.default_ssl_context

    def counting(**kwargs: bool) -> ssl.SSLContext:
        built.append(real(**kwargs))
        return built[-1]

    monkeypatch.setattr(httpcore2, "default_ssl_context", counting)
    sessions = [
        upstream._Session(("u", str(i)), DownServer(), {}, 5.0)  # type: ignore[arg-type]
        for i in range(3)
    ]
    assert len(built) == 1
    assert upstream.tls_context() is built[0]
    for session in sessions:
        asyncio.run(session.http.aclose())


def test_retries_against_a_down_upstream_build_no_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """An upstream that is down: the listing is tried twice, each on a new session and client,
    and still no second TLS context is built; the error says which upstream did not answer."""
    upstream.tls_context()  # built before, as by the gateway's first session
    built: list[object] = []
    monkeypatch.setattr(httpcore2, "default_ssl_context", lambda **k: built.append(k))

    async def listing() -> None:
        ups = Upstreams(api=None, timeout=5.0)  # type: ignore[arg-type]
        try:
            await ups.tools(DownServer())  # type: ignore[arg-type]
        finally:
            await ups.close()

    with pytest.raises(UpstreamError, match=r"the upstream bank \(http://127.0.0.1:9/mcp\)"):
        asyncio.run(listing())
    assert built == []
