"""The SDK keeps within what the agent's Redis user may do: states that expire (SETEX), and no
state over the 1 MiB a value may take (issue 14, item 9)."""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from handoff.sdk.errors import HandoffError
from handoff.sdk.state import MAX_STATE_BYTES, RedisStateStore


class Recorder:
    """Stands in for the Redis client: records the commands sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    async def execute_command(self, *args: Any) -> bool:
        self.sent.append(args)
        return True


def test_a_state_is_written_with_a_ttl() -> None:
    client = Recorder()
    asyncio.run(RedisStateStore(client).put("k", b"v", timedelta(hours=2)))  # type: ignore[arg-type]
    assert client.sent == [("SETEX", "k", 7200, b"v")]
    asyncio.run(RedisStateStore(client).put("k", b"v", timedelta(0)))  # type: ignore[arg-type]
    assert client.sent[-1] == ("SETEX", "k", 1, b"v")  # never 0: Redis refuses that


def test_a_state_over_one_mebibyte_is_refused_before_it_is_sent() -> None:
    client = Recorder()
    store = RedisStateStore(client)  # type: ignore[arg-type]
    asyncio.run(store.put("k", b"x" * MAX_STATE_BYTES, timedelta(hours=1)))
    with pytest.raises(HandoffError, match="Redis takes at most 1048576"):
        asyncio.run(store.put("k", b"x" * (MAX_STATE_BYTES + 1), timedelta(hours=1)))
    assert len(client.sent) == 1
