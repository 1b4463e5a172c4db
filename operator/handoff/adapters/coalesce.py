"""Reads of Redis hashes asked at about the same time go out together, in one round trip.

A start hands the operator every stored request, and each decided one asks Redis once what of
its audit record is out (``RedisOutbox.present``: one ``HMGET``). Asked one by one, the
history's round trips were a third of a restart's CPU (docs/performance.md, "history"): a task
and a timer per command (redis-py's socket timeout), a socket write that wakes Redis, and a
read. Here the first ask sends at once; the asks that arrive while it is on its way wait for it
and then go out together, as one pipeline (no transaction: each ``HMGET`` reads one hash and is
answered as if sent alone). Nothing waits when nothing else is asking, so a single read costs
what it did.
"""

import asyncio
import contextlib
from typing import Any

MOST = 500  # asks per pipeline


class CoalescedReads:
    def __init__(self, client: Any) -> None:
        self._client = client  # a redis.asyncio client
        self._asked: list[tuple[str, list[str], asyncio.Future[list[Any]]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.round_trips = 0  # pipelines sent (for tests and profiles)

    async def hmget(self, key: str, fields: list[str]) -> list[Any]:
        """``HMGET key *fields``, sent with whatever else is asked meanwhile."""
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._asked.append((key, fields, answer))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="redis coalesced reads")
        return await answer

    async def _send(self) -> None:
        batch: list[tuple[str, list[str], asyncio.Future[list[Any]]]] = []
        try:
            while self._asked:
                batch, self._asked = self._asked[:MOST], self._asked[MOST:]
                batch = [ask for ask in batch if not ask[2].done()]  # its asker was cancelled
                if batch:
                    await self._round_trip(batch)
        finally:  # cancelled (the operator stops): nobody waits for an answer that cannot come
            for _, _, answer in batch + self._asked:
                if not answer.done():
                    answer.cancel()
            self._asked = []

    async def _round_trip(
        self, batch: list[tuple[str, list[str], "asyncio.Future[list[Any]]"]]
    ) -> None:
        self.round_trips += 1
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, fields, _ in batch:
                    pipe.hmget(key, fields)
                answers = await pipe.execute()
        except Exception as e:  # every ask of the batch gets the library's error
            for _, _, answer in batch:
                if not answer.done():
                    answer.set_exception(e)
            return
        for (_, _, answer), values in zip(batch, answers, strict=True):
            if not answer.done():
                answer.set_result(values)

    async def close(self) -> None:
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
