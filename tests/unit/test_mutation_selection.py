"""scripts/mutation.py runs the unit tests in a staging folder that holds the package, the tests
and ALSO_COPY, nothing else: a unit test that reads another folder of the checkout (benchmarks/)
must be left out of its selection, or mutmut's first run stops at collecting it."""

import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_unit_test_reading_an_unstaged_folder_is_left_out_of_mutation() -> None:
    spec = importlib.util.spec_from_file_location("mutation", ROOT / "scripts" / "mutation.py")
    assert spec is not None
    assert spec.loader is not None
    mutation = importlib.util.module_from_spec(spec)
    sys.modules["mutation"] = mutation  # its dataclasses look their module up
    spec.loader.exec_module(mutation)
    staged = {"operator", *mutation.ALSO_COPY}
    folders = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")}
    unstaged = sorted(folders - staged)
    reading = set()
    for test in sorted((ROOT / "tests" / "unit").glob("test_*.py")):
        text = test.read_text()
        if any(re.search(rf'/ "{re.escape(folder)}"', text) for folder in unstaged):
            reading.add(f"tests/unit/{test.name}")
    assert "tests/unit/test_bench_parts.py" in reading  # the check sees what it must
    assert reading <= set(mutation.NOT_THE_DOMAINS), sorted(reading - set(mutation.NOT_THE_DOMAINS))
