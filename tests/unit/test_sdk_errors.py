"""The SDK's failures say what happened and what to do, and leave nothing open behind them.

An agent's first run often meets a stopped cluster, a closed Redis or no policy yet: each arrives
as one HandoffError sentence (Unavailable: retry; Forbidden: fix the rights), never as a library
traceback followed by "Unclosed client session". pytest runs with warnings as errors, so a
leaked session or event loop fails these tests.
"""

import asyncio
import gc
import socket
import threading
from pathlib import Path

import pytest
import yaml
from handoff.adapters.kube import KubeError
from handoff.sdk import Agent, Forbidden, HandoffError, SyncAgent, Unavailable
from handoff.sdk.errors import kube_failure, redis_failure
from redis.exceptions import AuthenticationError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kubeconfig(tmp_path: Path, port: int) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "payments-agent",
        "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}",
                                               "insecure-skip-tls-verify": True}}],
        "users": [{"name": "payments-agent", "user": {"token": "t"}}],
        "contexts": [{"name": "payments-agent",
                      "context": {"cluster": "c", "user": "payments-agent"}}],
    }))  # fmt: skip
    return str(path)


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (0, Unavailable, ["could not file it", "cannot reach", "is the cluster running?",
                          "handoff dev up"]),
        (401, Forbidden, ["does not accept payments-agent's token", "fresh one"]),
        (403, Forbidden, ["refused it (User \"x\" cannot create)", "Ready policy",
                          "kubectl -n agents get aap"]),
        (404, HandoffError, ["the API server said gone"]),
        (500, HandoffError, ["the API server said gone"]),
    ],
)  # fmt: skip
def test_api_server_failures_read_as_sentences(
    status: int, kind: type[HandoffError], words: list[str]
) -> None:
    message = {0: "cannot reach the API server: ClientConnectorError",
               403: 'actionrequests is forbidden: User "x" cannot create'}.get(status, "gone")  # fmt: skip
    error = kube_failure(KubeError(status, message), "file it", "payments-agent", "agents")
    assert type(error) is kind
    for word in words:
        assert word in str(error)


@pytest.mark.parametrize(
    ("error", "kind", "words"),
    [
        (RedisConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
         Unavailable, ["Redis does not answer (Error 111", "is it running?", "handoff dev up"]),
        (RedisTimeoutError("Timeout reading from socket"), Unavailable, ["does not answer"]),
        (AuthenticationError("invalid username-password pair"), Forbidden,
         ["refused this agent's user", "the agent's Secret"]),
        (ResponseError("NOPERM this user has no permissions to access the key"), Forbidden,
         ["refused this agent's user"]),
        (ResponseError("WRONGTYPE Operation against a key"), HandoffError, ["Redis said WRONGTYPE"]),
    ],
)  # fmt: skip
def test_redis_failures_read_as_sentences(
    error: Exception, kind: type[HandoffError], words: list[str]
) -> None:
    translated = redis_failure(error, "save the state")  # type: ignore[arg-type]
    assert type(translated) is kind
    assert str(translated).startswith("could not save the state: ")
    for word in words:
        assert word in str(translated)


def test_no_kubeconfig_says_where_it_looked(tmp_path: Path) -> None:
    agent = Agent("agents", "payments-agent", kubeconfig=str(tmp_path / "missing"))
    with pytest.raises(HandoffError, match=r"no usable kubeconfig in .*missing") as caught:
        asyncio.run(agent.connect())
    assert "Service host/port" not in str(caught.value)  # the in-cluster fallback hides nothing
    assert "KUBECONFIG" in str(caught.value)


def test_a_stopped_cluster_is_unavailable_and_nothing_stays_open(tmp_path: Path) -> None:
    agent = Agent("agents", "payments-agent", kubeconfig=kubeconfig(tmp_path, closed_port()))

    async def first_run() -> None:
        async with agent:
            pytest.fail("connected to nothing")

    with pytest.raises(Unavailable, match="cannot reach the API server") as caught:
        asyncio.run(first_run())
    assert "handoff-redis-payments-agent" in str(caught.value)
    assert agent._api is None  # closed: no "Unclosed client session" at exit
    assert agent._redis is None
    gc.collect()


def test_a_closed_redis_is_unavailable_at_connect(tmp_path: Path) -> None:
    agent = Agent(
        "agents", "payments-agent", kubeconfig=kubeconfig(tmp_path, closed_port()),
        redis_url=f"redis://:p@127.0.0.1:{closed_port()}/0",
    )  # fmt: skip
    with pytest.raises(Unavailable, match="could not connect to Redis as payments-agent"):
        asyncio.run(agent.connect())
    assert agent._api is None
    assert agent._redis is None
    gc.collect()


def test_the_blocking_agent_stops_its_thread_when_it_cannot_connect(tmp_path: Path) -> None:
    before = {t.ident for t in threading.enumerate()}
    with pytest.raises(Unavailable):
        SyncAgent("agents", "payments-agent", kubeconfig=kubeconfig(tmp_path, closed_port()))
    left = [t for t in threading.enumerate() if t.ident not in before and t.name == "handoff-sdk"]
    assert left == []
    gc.collect()
