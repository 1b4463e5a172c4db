"""tests/file_durations.py: the time of each test file, and the order of the files under xdist."""

import json
import os
from pathlib import Path

import pytest

from tests import file_durations as fd

pytest_plugins = ["pytester"]
ROOT = Path(__file__).resolve().parents[2]


def test_a_files_time_is_the_sum_of_its_tests_phases() -> None:
    times: dict[str, float] = {}
    fd.add(times, "tests/integration/test_a.py::test_one[x::y]", 1.5)  # setup
    fd.add(times, "tests/integration/test_a.py::test_one[x::y]", 2.0)  # call
    fd.add(times, "tests/integration/test_a.py::Suite::test_two", 0.5)
    fd.add(times, "tests/unit/test_b.py::test_three", 0.25)
    assert times == {"tests/integration/test_a.py": 4.0, "tests/unit/test_b.py": 0.25}


def test_the_slowest_come_first_and_ties_by_name() -> None:
    times = {"c.py": 1.0, "a.py": 3.0, "b.py": 1.0, "d.py": 0.5}
    assert fd.slowest(times, 3) == [("a.py", 3.0), ("b.py", 1.0), ("c.py", 1.0)]
    lines = fd.summary_lines(times, 2)
    assert lines[0] == "     3.0s  a.py"
    assert lines[1] == "     1.0s  b.py"
    assert lines[-1].startswith("     5.5s  in all, 4 files")


def test_a_new_measurement_replaces_the_old_and_keeps_the_others() -> None:
    known = {"tests/a.py": 10.0, "tests/b.py": 2.0}
    assert fd.merged(known, {"tests/b.py": 3.14159, "tests/c.py": 1.0}) == {
        "tests/a.py": 10.0,
        "tests/b.py": 3.1,
        "tests/c.py": 1.0,
    }


def test_files_go_out_longest_first_and_unmeasured_ones_by_size() -> None:
    sizes = {
        "tests/integration/test_long.py": 1_000,
        "tests/integration/test_short_but_big.py": 50_000,
        "tests/integration/test_new_big.py": 40_000,
        "tests/integration/test_new_small.py": 100,
        "tests/unit/test_measured.py": 9_000,
        "tests/unit/test_new.py": 30_000,
        "tests/unit/test_new_tiny.py": 10,
    }
    measured = {
        "tests/integration/test_long.py": 100.0,
        "tests/integration/test_short_but_big.py": 10.0,
        "tests/unit/test_measured.py": 2.0,
    }
    # integration files cost 110 s / 51,000 bytes here: the new big one about 86 s
    assert fd.schedule(sizes, measured, sizes) == [
        "tests/integration/test_long.py",
        "tests/integration/test_new_big.py",
        "tests/integration/test_short_but_big.py",
        "tests/unit/test_new.py",  # 2 s / 9,000 bytes: about 6.7 s
        "tests/unit/test_measured.py",
        "tests/integration/test_new_small.py",
        "tests/unit/test_new_tiny.py",
    ]


def test_with_nothing_measured_integration_goes_first_the_largest_first() -> None:
    sizes = {"tests/unit/test_u.py": 9_000, "tests/integration/test_s.py": 10,
             "tests/integration/test_l.py": 2_000}  # fmt: skip
    assert fd.schedule(sizes, {}, sizes) == [
        "tests/integration/test_l.py",
        "tests/integration/test_s.py",
        "tests/unit/test_u.py",
    ]


def test_the_checked_in_durations_name_files_that_exist() -> None:
    measured = fd.load(fd.MEASURED)
    assert measured, "tests/durations.json is empty"
    missing = [path for path in measured if not (ROOT / path).exists()]
    assert missing == [], "run `make test-durations` after a full run, or remove them"


TWO_FILES = {
    "test_slow.py": "import time\n\ndef test_a():\n    time.sleep(0.3)\n\ndef test_b():\n    pass\n",
    "test_quick.py": "def test_c():\n    pass\n",
}


def _summary(pytester: pytest.Pytester, stdout: list[str]) -> dict[str, float]:
    start = stdout.index(next(line for line in stdout if "slowest 2 test files" in line))
    assert stdout[start + 1].endswith("  test_slow.py")
    assert stdout[start + 2].endswith("  test_quick.py")
    written = json.loads((pytester.path / ".handoff" / "test-durations.json").read_text())
    assert list(written) == ["test_slow.py", "test_quick.py"]
    return {str(k): float(v) for k, v in written.items()}


def test_a_run_prints_its_slowest_files_and_writes_them(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # only the plugin under test
    pytester.makepyfile(**TWO_FILES)
    result = pytester.runpytest("-p", "tests.file_durations", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    written = _summary(pytester, result.outlines)
    assert written["test_slow.py"] >= 0.3


def test_under_xdist_the_controller_adds_up_every_workers_reports(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(**TWO_FILES)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # xdist and the plugin under test
    result = pytester.runpytest_subprocess(
        "-p", "xdist", "-p", "tests.file_durations", "-p", "no:cacheprovider",
        "-n", "2", "--dist", "loadfile",
    )  # fmt: skip
    result.assert_outcomes(passed=3)
    written = _summary(pytester, result.outlines)
    assert written["test_slow.py"] >= 0.3
