"""``cel`` without its interactive command line.

The ``cel`` package's ``__init__`` imports ``cel.cli``, a REPL built on prompt_toolkit and rich:
about 250 modules and 10 MB of every process that evaluates a rule's ``when`` (the operator's
idle resident set, docs/performance.md), none of which Handoff uses. A stand-in for ``cel.cli``
is registered first, so the package finds it imported; the first attribute read from it
imports the real module (whole, as before) and answers from it. Import ``cel`` and ``stdlib``
from here.
"""

import importlib
import importlib.util
import sys
import types
from typing import Any

CLI = "cel.cli"


class _Deferred(types.ModuleType):
    def __getattr__(self, name: str) -> Any:  # only for what the stand-in itself lacks
        if sys.modules.get(CLI) is self:
            del sys.modules[CLI]
        real = importlib.import_module(CLI)
        parent = sys.modules.get("cel")
        if parent is not None and getattr(parent, "cli", None) is self:
            setattr(parent, "cli", real)  # noqa: B010 - the package's own attribute, untyped
        return getattr(real, name)


def _defer_cli() -> None:
    if "cel" in sys.modules or CLI in sys.modules:
        return  # imported already: nothing left to spare
    if importlib.util.find_spec("cel") is None:  # a top-level find: runs nothing
        return
    sys.modules[CLI] = _Deferred(CLI)


_defer_cli()

import cel  # noqa: E402 - after cel.cli is deferred
from cel import stdlib  # noqa: E402

__all__ = ["cel", "stdlib"]
