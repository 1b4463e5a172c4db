"""What is read ahead: requests read a moment before their deadline (``Requests.read_ahead``),
kept until the deadline falls or a newer version comes by the watch, bounded in count and bytes.

Creation times are whole seconds, so deadlines fall in waves of tens; a wave's worth is kept.
A flood whose deadlines fall in the same second keeps no more than the bounds: past them, a
deadline reads its request when it falls, as it would without a read ahead.
"""

import json
from collections.abc import Iterator

from handoff.domain.resources import RequestJSON

Key = tuple[str, str]  # namespace, name
# Requests kept at most (a wave of deadlines is tens), so that a flood of requests whose
# deadlines fall in the same second cannot make the operator hold each whole request at once.
READ_AHEAD_LIMIT = 500
# And at most this much of them, counted as compact JSON: an agent may make each request a few
# hundred KB (64 KiB of parameters, as much of rollback parameters, 256 KiB of annotations), and
# a flood of 500 of those held at once was 130 MB of JSON, several times that in the heap.
READ_AHEAD_BYTES = 4 << 20


class ReadAhead:
    def __init__(self) -> None:
        self._kept: dict[Key, tuple[RequestJSON, int]] = {}  # the body, its JSON size
        self.bytes = 0  # the sizes' sum
        # Reads on their way: a watch event or a deletion that comes meanwhile takes the key out
        # (``take``), and the answer, older than the event, is not kept.
        self._reading: set[Key] = set()

    @property
    def full(self) -> bool:
        return len(self._kept) >= READ_AHEAD_LIMIT or self.bytes >= READ_AHEAD_BYTES

    def reading(self, key: Key) -> None:
        """A read of ``key`` starts."""
        self._reading.add(key)

    def read(self, key: Key) -> bool:
        """The read of ``key`` is back: whether it is still the newest (nothing took it out)."""
        newest = key in self._reading
        self._reading.discard(key)
        return newest

    def keep(self, key: Key, body: RequestJSON) -> None:
        """Keep ``body`` for its deadline, unless that would pass the byte bound."""
        size = len(json.dumps(body, separators=(",", ":")))
        if self.bytes + size <= READ_AHEAD_BYTES:
            self.take(key)
            self._kept[key] = (body, size)
            self.bytes += size

    def take(self, key: Key) -> RequestJSON | None:
        """What was kept for ``key``, if anything, no longer kept; a read on its way is not kept
        either."""
        self._reading.discard(key)
        body, size = self._kept.pop(key, (None, 0))
        self.bytes -= size
        return body

    def get(self, key: Key) -> RequestJSON | None:
        kept = self._kept.get(key)
        return kept[0] if kept else None

    def __contains__(self, key: object) -> bool:
        return key in self._kept

    def __iter__(self) -> Iterator[Key]:
        return iter(self._kept)

    def __len__(self) -> int:
        return len(self._kept)
