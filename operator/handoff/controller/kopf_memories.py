"""kopf's per-object memory, kept for no object; and how long it holds each object.

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
LIST_CHUNK = 500  # objects per page of a start's listing
IDLE_SECONDS = 0.2  # a worker leaves this long after its object's last event


def bound(settings: kopf.OperatorSettings) -> None:
    """A start's listing is the operator's peak of memory: by default kopf fetches it whole, and
    each object's worker stays 5 s after its last event, holding its place and its last event.
    Listed a page at a time, with workers that leave IDLE_SECONDS after their object's last
    event, a history of decided requests left about 7 KB per request in the resident set
    instead of 15 KB (docs/performance.md). kopf's ``worker_limit`` was tried and left out: a
    worker over the limit waits in kopf's queue with its event, so it bounds no memory."""
    settings.watching.chunk_size = LIST_CHUNK
    settings.queueing.idle_timeout = IDLE_SECONDS
    settings.persistence.diffbase_storage = NoDiffBase()


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's diff base, for handlers that never read one. On every watch event kopf builds the
    object's "essence" (a deep copy of the whole body less its metadata and status), reads the
    last-handled one from an annotation and diffs the two, before it knows whether any handler
    wants a diff: only change handlers (on.create/update/resume) and daemons do, and the
    operator registers neither (only on.event, ``handlers.py``). Building nothing makes the diff
    kopf's EMPTY and skips the deep copy: 3% of the operator's CPU per tier 1 request
    (docs/performance.md). kopf writes no annotation with it, as it wrote none before (``store``
    is only called after change handlers)."""

    def build(self, *, body: Any, extra_fields: Any = None) -> Any:
        return None

    def fetch(self, *, body: Any) -> Any:
        return None

    def store(self, *, body: Any, patch: Any, essence: Any) -> None:
        return None


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
