"""A rule's ``grantable``: its consent to standing grants (``ActionGrant``), compiled.

Whether a grant covers a request is ``grants.py``; this is only the bounds a policy's rule sets,
checked once when the policy is applied.
"""

from dataclasses import dataclass
from datetime import timedelta

from handoff.domain.policyparts import compile_duration
from handoff.domain.resources import GrantableJSON

#: The bounds of ``grantable`` (the CRD enforces the same; a test keeps them equal).
MAX_GRANT_COUNT = 1000


@dataclass(frozen=True)
class Grantable:
    """A rule's consent to standing grants (``ActionGrant``): for at most ``max_duration`` and
    ``max_count`` uses each. A rule without it cannot be granted in advance."""

    max_duration: timedelta
    max_count: int


def compile_grantable(raw: GrantableJSON | None, where: str, errors: list[str]) -> Grantable | None:
    if raw is None:
        return None
    text, count = raw.get("maxDuration"), raw.get("maxCount")
    if text is None or count is None:
        errors.append(f"{where}: grantable needs both maxDuration (such as 4h) and maxCount")
        return None
    if not 1 <= count <= MAX_GRANT_COUNT:
        errors.append(f"{where}: grantable.maxCount must be 1 to {MAX_GRANT_COUNT}, not {count}")
        return None
    longest = compile_duration(text, None, f"{where}: grantable.maxDuration", errors)
    return Grantable(longest, count) if longest is not None else None
