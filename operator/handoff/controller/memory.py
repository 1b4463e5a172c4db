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
    if _TRIM is not None:
        _TRIM(0)
