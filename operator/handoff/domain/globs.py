"""Shell-style globs on action names and targets, compiled once into regular expressions."""

import fnmatch
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Glob:
    """One pattern such as ``payments.*`` or ``stripe:*``; ``*`` also crosses dots and colons."""

    pattern: str
    regex: re.Pattern[str]

    @classmethod
    def compile(cls, pattern: str) -> "Glob":
        return cls(pattern, re.compile(fnmatch.translate(pattern)))

    def matches(self, value: str) -> bool:
        return self.regex.match(value) is not None

    @property
    def literal_prefix(self) -> str:
        """The part before the first wildcard: used to index rules by action prefix."""
        cut = len(self.pattern)
        for wildcard in "*?[":
            index = self.pattern.find(wildcard)
            if index != -1:
                cut = min(cut, index)
        return self.pattern[:cut]


def any_match(globs: tuple[Glob, ...], value: str) -> bool:
    return any(glob.matches(value) for glob in globs)
