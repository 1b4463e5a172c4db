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
from datetime import datetime, timedelta
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
_NO_TIME = timedelta(0)


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


def fresh(value: T) -> T:
    """``value`` again in newly allocated objects (strings, tuples and times, the keys and times
    the operator keeps per waiting request; anything else as it is).

    Why: a request's key is carved out of the JSON its first event was parsed from, amid the
    thousands of short-lived objects of a filing burst. pymalloc gives an arena back only when
    every block in it is free, so one kept string in each arena keeps the whole burst resident
    (about 6 KB per waiting request after 10,000 were filed, against 1.6 KB re-armed from a
    listing). Copied after the burst, the keys fill the arenas that are already the fullest
    (pymalloc allocates from those first), and the burst's arenas empty and go back."""
    copy: Any = value
    if isinstance(value, str):
        copy = value.encode().decode() if len(value) > 1 else value
    elif isinstance(value, tuple):
        copy = tuple([fresh(item) for item in value])
    elif isinstance(value, datetime):
        copy = value + _NO_TIME
    return copy  # type: ignore[no-any-return]
