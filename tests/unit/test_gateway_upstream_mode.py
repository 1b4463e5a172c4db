"""The gateway's upstream sessions (gateway/upstream.py): the 2026-07-28 revision when the
upstream speaks it, the initialize handshake when it refuses the probe (remembered per URL), and
no second try when the upstream does not answer at all."""

import asyncio
from typing import Any

import httpx2
import pytest
from handoff.gateway import upstream
from handoff.gateway.upstream import UpstreamError, Upstreams, _unreachable
from mcp.shared.exceptions import MCPError


class FakeServer:
    name = "bank"
    namespace = "ns"
    url = "http://bank.invalid/mcp"
    secret_name = None


def sessions(monkeypatch: pytest.MonkeyPatch, fail: dict[str, BaseException]) -> list[str]:
    """Replace the real sessions: opening one in a mode of ``fail`` raises as opening a real
    session does (UpstreamError from the cause); returns the modes opened, in order."""
    opened: list[str] = []

    class Session:
        def __init__(self, key: Any, server: Any, headers: Any, timeout: float, mode: str) -> None:
            self.key, self.mode, self.closed = key, mode, False

        async def open(self) -> None:
            opened.append(self.mode)
            if self.mode in fail:
                raise UpstreamError("did not answer") from fail[self.mode]

        def stale(self) -> bool:
            return False

        async def close(self) -> None:
            self.closed = True

    monkeypatch.setattr(upstream, "_Session", Session)
    return opened


def session_of(ups: Upstreams) -> Any:
    return asyncio.run(ups._session(FakeServer()))  # type: ignore[arg-type]


def test_an_upstream_that_speaks_the_new_revision_gets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    opened = sessions(monkeypatch, {})
    assert session_of(Upstreams(api=None)).mode == "auto"  # type: ignore[arg-type]
    assert opened == ["auto"]


def test_one_that_refuses_the_probe_gets_the_handshake_and_is_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened = sessions(monkeypatch, {"auto": MCPError(-32601, "Method not found")})
    ups = Upstreams(api=None)  # type: ignore[arg-type]
    assert session_of(ups).mode == "legacy"
    ups._sessions.clear()  # as when the session went stale
    assert session_of(ups).mode == "legacy"
    assert opened == ["auto", "legacy", "legacy"]  # probed once


@pytest.mark.parametrize(
    "cause",
    [
        httpx2.ConnectError("refused"),
        TimeoutError(),
        OSError("unreachable"),
        BaseExceptionGroup("g", [httpx2.ReadTimeout("slow")]),
    ],
)
def test_one_that_does_not_answer_is_not_tried_twice(
    monkeypatch: pytest.MonkeyPatch, cause: BaseException
) -> None:
    opened = sessions(monkeypatch, {"auto": cause})
    with pytest.raises(UpstreamError):
        session_of(Upstreams(api=None))  # type: ignore[arg-type]
    assert opened == ["auto"]


def test_unreachable_looks_through_causes_and_groups() -> None:
    def wrapped(cause: BaseException) -> UpstreamError:
        try:
            raise UpstreamError("x") from cause
        except UpstreamError as e:
            return e

    assert _unreachable(wrapped(BaseExceptionGroup("g", [httpx2.ConnectError("no")])))
    assert not _unreachable(wrapped(MCPError(-32601, "Method not found")))
    assert not _unreachable(wrapped(ValueError("bad answer")))
