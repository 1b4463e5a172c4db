"""kopf's per-object memory, kept for no object; and how many objects it holds at once.

kopf remembers every object it has seen (a ``ResourceMemory``: a copy of the memo, an error
throttler, index and daemon records, about 1.3 KB) until the object is deleted: 130 MB for a
history of 100,000 decided requests. The operator registers only raw ``on.event`` handlers
(``handlers.py``) and no daemons, timers, indexes or change handlers, so nothing in that record
is read again after the event that made it: the handlers share the one memo, catch their own
errors (so kopf's throttler never engages), and never patch through kopf (so no patch remains).

The narrowest step around kopf: a ``ResourceMemories`` that hands each event a fresh record on
the shared memo and keeps none. ``kopf.operator(memories=...)`` is kopf's own parameter; the
class is kopf's internal one, so if a kopf release moves it the operator falls back to kopf's
default memories (correct, only larger), and ``tests/unit/test_kopf_memories.py`` says so.
"""

import logging
from typing import Any

import kopf

log = logging.getLogger("handoff.operator")
WORKERS = 256  # kopf's per-object workers at once: well above the reconciler's 16 slots
LIST_CHUNK = 500  # objects per page of a start's listing
IDLE_SECONDS = 0.2  # a worker leaves this long after its object's last event


def bound(settings: kopf.OperatorSettings) -> None:
    """A start's listing is the operator's peak of memory: by default kopf fetches it whole and
    starts a worker per object at once, each holding its object while it waits for one of the
    reconciler's slots (100,000 decided requests: every one of them parsed and held at once).
    Listed a page at a time, with at most WORKERS objects in hand, the watch waits instead.
    A worker leaves IDLE_SECONDS after its object's last event: kopf's default, 5 s, held a
    worker's place that long (with a limit of 64, only 13 new requests a second got through)."""
    settings.watching.chunk_size = LIST_CHUNK
    settings.queueing.worker_limit = WORKERS
    settings.queueing.idle_timeout = IDLE_SECONDS


try:
    from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory
except ImportError:  # pragma: no cover - a kopf release that moved its internals
    ResourceMemories = None  # type: ignore[assignment,misc]
    ResourceMemory = None  # type: ignore[assignment,misc]


def event_only_memories() -> Any:
    """Memories that keep nothing per object, or None (kopf's default) if kopf changed."""
    if ResourceMemories is None:
        log.warning("this kopf keeps a memory per object: no leaner memories available")
        return None
    return _EventOnlyMemories()


if ResourceMemories is not None:

    class _EventOnlyMemories(ResourceMemories):
        async def recall(
            self,
            raw_body: Any,
            *,
            memobase: Any = None,
            noticed_by_listing: bool = False,
            ephemeral: bool = False,
        ) -> Any:
            memory = ResourceMemory(noticed_by_listing=noticed_by_listing)
            if memobase is not None:
                memory.memo = memobase  # shared, not copied: the handlers only read it
            return memory
