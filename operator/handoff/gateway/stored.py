"""The arguments of a call as the API server keeps them in the request's ``spec.parameters``.
Pure.

The gateway checks the arguments (the tool's schema), maps them (the target, the rollback plan)
and keys them (the idempotency key) before filing; what runs is what the API server stored.
The two differ for numbers: the API server decodes a JSON number into a 64-bit integer, or a
double when it is not one, and encodes it again, so ``1.0`` comes back ``1`` and
``18446744073709551617`` comes back ``18446744073709552000``; NaN and infinities it cannot
encode at all. Seen on ``handoff dev up``: an identical retry with such a number filed a second
request (the request found under its name was "another call"), and a task-augmented call with
``1.0`` was answered, the next time it was made, with the earlier call's result (the tool never
ran again). So the gateway works on the stored form from the start, and refuses an integer the
API server cannot keep exactly.
"""

import math
from decimal import Decimal
from typing import Any

INT64 = 1 << 63
_PLAIN = 1e21  # Go writes a double below this without an exponent: an integral one as an integer


class NotStorable(ValueError):
    """A value the API server cannot keep exactly; the message is for the model."""


def as_stored(value: Any, where: str = "") -> Any:
    """``value`` as it reads back from the API server (a JSON value already bounded in depth
    and size), or NotStorable saying which argument cannot be kept."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if -INT64 <= value < INT64 or _double(float(value)) == value:
            return value  # an int64, or already what a double past it reads back as
        raise NotStorable(
            f"{where or 'a number'} is an integer past 64 bits, which a request cannot keep"
            " exactly; send it as a string"
        )
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotStorable(f"{where or 'a number'} is not a finite number")
        return _double(value)
    if isinstance(value, dict):
        return {str(k): as_stored(v, f"{where}/{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [as_stored(v, f"{where}/{i}") for i, v in enumerate(value)]
    raise NotStorable(f"{where or 'a value'} is not a JSON value")


def _double(value: float) -> int | float:
    """A double as Go's encoding/json writes it, read back: below 1e21 an integral one has no
    fraction nor exponent (its shortest digits, then zeros), so it reads back an integer."""
    if value.is_integer() and abs(value) < _PLAIN:
        return int(Decimal(repr(value)))
    return value
