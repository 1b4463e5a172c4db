"""``cel`` is loaded without its REPL (prompt_toolkit, rich: about 10 MB of the operator's
resident set), and the REPL is still there for whoever reads from it."""

import subprocess
import sys

PROBE = """
import sys
import handoff.domain.expressions as e
import handoff.controller.handlers
print(sorted(m for m in ("prompt_toolkit", "rich") if m in sys.modules))
print(e.compile_expression("1 + 2").source)
from handoff.domain.celload import cel
print(cel.evaluate("1 + 2", {}))
import cel.cli
print(callable(cel.cli.main), "rich" in sys.modules)
"""


def test_the_operator_imports_no_cel_repl_and_the_repl_still_loads_when_read() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split("\n")
    assert out[0] == "[]"  # neither prompt_toolkit nor rich came with the operator's modules
    assert out[1] == "1 + 2"
    assert out[2] == "3"
    assert out[3] == "True True"  # reading cel.cli loads the real one
