"""Give memory back to the system after a burst.

A burst of thousands of watch events (a restart's listing, a flood of new requests) parses each
object several times over; once it is handled, the freed memory mostly stays in the C heap, so
the operator's resident set would keep the burst's peak for good. After a burst settles the
reconciler collects garbage and asks glibc to return free pages (``malloc_trim``); elsewhere
(musl, macOS) only the collection runs.
"""

import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


def _trimmer() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        trim: Callable[[int], int] | None = getattr(libc, "malloc_trim", None)
    except OSError:
        return None
    return trim


_TRIM = _trimmer()


def release() -> None:
    """Collect garbage and return free heap pages to the system where the C library can."""
    gc.collect()
    trim()


def trim() -> None:
    """Return the C heap's free pages to the system (glibc only): a millisecond or so, where a
    full collection walks every object (hundreds of milliseconds with 10,000 pending)."""
    if _TRIM is not None:
        _TRIM(0)


def settle_start() -> None:
    """Once the start's work is done (imports, policies, the re-arm's listing): collect what it
    left, and move every object still alive into the permanent generation (``gc.freeze``), so
    that the collections of the process's life no longer walk the 100,000 objects of its
    modules and settings again and again; then trim the C heap of the listing's pages."""
    gc.collect()
    gc.freeze()
    trim()
