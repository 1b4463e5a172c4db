"""Where the time of a run goes, a test file at a time, and the order that uses it.

Each test's setup, call and teardown report their duration; a file's wall time is their sum (on
whichever xdist worker ran it: the controller receives every worker's reports). At the end of a
run the terminal summary lists the slowest files and ``.handoff/test-durations.json`` holds them
all; ``make test-durations`` copies those into the checked-in ``tests/durations.json``, which
orders the files of the next run (see ``schedule``).

A file's first test also carries the setup of the session fixtures of its worker (the control
plane, Redis, the operator: some seconds), so a file that a worker runs first looks that much
longer than it is; the ordering needs the files' relative cost, not their exact one.
"""

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

MEASURED = Path(__file__).with_name("durations.json")
REPORT = Path(".handoff") / "test-durations.json"
SHOWN = 15


def file_of(nodeid: str) -> str:
    """The test file of a test's id (``tests/x/test_y.py::test_z[1]`` is ``tests/x/test_y.py``)."""
    return nodeid.split("::", 1)[0]


def add(times: dict[str, float], nodeid: str, seconds: float) -> None:
    path = file_of(nodeid)
    times[path] = times.get(path, 0.0) + seconds


def slowest(times: Mapping[str, float], count: int = SHOWN) -> list[tuple[str, float]]:
    """The ``count`` files that took longest, longest first (ties by name, for a stable list)."""
    return sorted(times.items(), key=lambda kv: (-kv[1], kv[0]))[:count]


def summary_lines(times: Mapping[str, float], count: int = SHOWN) -> list[str]:
    total = sum(times.values())
    lines = [f"{seconds:8.1f}s  {path}" for path, seconds in slowest(times, count)]
    lines.append(f"{total:8.1f}s  in all, {len(times)} files (the sum over every worker)")
    return lines


def merged(known: Mapping[str, float], measured: Mapping[str, float]) -> dict[str, float]:
    """``known`` with the files of ``measured`` measured again, to a tenth of a second, by name."""
    both = {**known, **{path: round(seconds, 1) for path, seconds in measured.items()}}
    return dict(sorted(both.items()))


def load(path: Path) -> dict[str, float]:
    if not path.exists():
        return {}
    return {str(k): float(v) for k, v in json.loads(path.read_text()).items()}


def schedule(
    paths: Iterable[str], measured: Mapping[str, float], sizes: Mapping[str, int]
) -> list[str]:
    """The files in the order to hand them out: longest-processing-time first, by the measured
    seconds of each file. A file not measured yet (a new one) counts its size at the seconds per
    byte of the measured files of its kind (integration or unit tests); with no integration file
    measured, the integration files go first, the largest first, and the unit files after them.
    """
    paths = list(paths)

    def integration(path: str) -> bool:
        return "integration" in Path(path).parts

    def rate(kind: bool) -> float:
        known = [p for p in paths if p in measured and integration(p) == kind]
        total = sum(sizes[p] for p in known)
        if not total:
            return 1.0 if kind else 0.0
        return sum(measured[p] for p in known) / total

    rates = {True: rate(True), False: rate(False)}

    def cost(path: str) -> tuple[float, int, str]:
        seconds = measured.get(path, sizes[path] * rates[integration(path)])
        return (-seconds, -sizes[path], path)

    return sorted(paths, key=cost)


def order_items(items: list[pytest.Item], root: Path, measured: Mapping[str, float]) -> None:
    """Sort ``items`` in place by ``schedule`` of their files; a file's tests keep their order."""
    names: dict[Path, str] = {}
    for item in items:
        if item.path not in names:
            inside = item.path.is_relative_to(root)
            names[item.path] = (item.path.relative_to(root) if inside else item.path).as_posix()
    sizes = {name: path.stat().st_size for path, name in names.items()}
    rank = {name: i for i, name in enumerate(schedule(names.values(), measured, sizes))}
    items.sort(key=lambda item: rank[names[item.path]])


# -- the hooks -------------------------------------------------------------------------------


class Recorder:
    """Adds up the durations of the reports of a run by file (on the controller under xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.times: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        add(self.times, report.nodeid, report.duration)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.times:
            return
        terminalreporter.write_sep("=", f"slowest {min(SHOWN, len(self.times))} test files")
        for line in summary_lines(self.times):
            terminalreporter.write_line(line)
        report = self.config.rootpath / REPORT
        report.parent.mkdir(exist_ok=True)
        report.write_text(json.dumps(dict(slowest(self.times, len(self.times))), indent=1) + "\n")
        terminalreporter.write_line(
            f"(all {len(self.times)} files in {REPORT}; `make test-durations` keeps them)"
        )


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # an xdist worker: its controller adds up
        config.pluginmanager.register(Recorder(config), "file-durations")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist (``make test``), the order in which ``--dist loadfile`` hands out the files;
    a run without xdist keeps pytest's own order."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        order_items(items, config.rootpath, load(MEASURED))


def main() -> None:
    """``make test-durations``: keep the files measured by the last run in tests/durations.json."""
    measured = load(REPORT)
    if not measured:
        raise SystemExit(f"{REPORT} is missing or empty: run the tests first (make test)")
    MEASURED.write_text(json.dumps(merged(load(MEASURED), measured), indent=1) + "\n")
    print(f"{MEASURED.relative_to(Path.cwd())}: {len(measured)} files measured again")


if __name__ == "__main__":
    main()
