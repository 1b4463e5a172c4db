"""Lint: a lenient rule that bounds an agent's number from one side only.

``when: parameters.amount <= 100`` on a tier 3 rule also takes ``amount: -1000000000``: agents
choose their parameters, and a negative refund is not a small one. Warned about when a rule below
tier 4 compares ``parameters.X`` with a number from above and nowhere from below. Read from the
text (the CEL is not evaluated): only plain comparisons of a parameter path with a numeric
literal count, so it says nothing about what it cannot read, rather than guess.
"""

import re
from typing import Any

_PATH = r"parameters(?:\.[A-Za-z_]\w*|\[(?:'[^']*'|\"[^\"]*\")\])+"
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
_UPPER = (re.compile(rf"({_PATH})\s*<=?\s*{_NUMBER}"), re.compile(rf"{_NUMBER}\s*>=?\s*({_PATH})"))
_LOWER = (re.compile(rf"({_PATH})\s*>=?\s*{_NUMBER}"), re.compile(rf"{_NUMBER}\s*<=?\s*({_PATH})"))


def _paths(patterns: tuple[re.Pattern[str], ...], when: str) -> set[str]:
    return {m.group(1).replace(" ", "") for p in patterns for m in p.finditer(when)}


def one_sided(rules: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(rule index, message) for each parameter a lenient rule bounds from above only."""
    found = []
    for index, rule in enumerate(rules):
        when = str(rule.get("when") or "")
        if not when or int(rule.get("tier") or 4) >= 4:
            continue
        for path in sorted(_paths(_UPPER, when) - _paths(_LOWER, when)):
            found.append((
                index,
                f"rule {rule.get('name')!r} (tier {rule.get('tier')}) bounds {path} from above"
                f" only: an agent's {path} of -1000000000 matches it too; bound it from below"
                f" as well (for example {path} > 0)",
            ))  # fmt: skip
    return found
