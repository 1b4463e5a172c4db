"""A lock per key, dropped when its last user leaves (a lock kept for every key ever seen grows
without bound at scale). The controller holds one per request being worked on; the CEL sandbox
one per agent, so that each agent's requests take turns."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def __contains__(self, key: Hashable) -> bool:
        """Whether someone holds or waits for ``key``'s lock."""
        return key in self._locks

    @contextlib.asynccontextmanager
    async def holding(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users > 1:
                self._locks[key] = (lock, users - 1)
            else:
                del self._locks[key]
