"""Mutation testing of the decision core (operator/handoff/domain/) with mutmut and the unit tests.

`make mutation` runs this. mutmut 3 names a mutant after its file's path with a leading `src/`
taken off, and puts only `./`, `src/` and `source/` on the tests' import path, so the run happens
in a staging folder (.handoff/mutation) where `src` is a link to `operator/`. mutmut copies the
package and the tests into `mutants/` there, mutates domain/ in the copy, and runs, for each
mutant, only the unit tests that call the mutated function. The checkout itself is never touched.

Then this prints each surviving mutant with its diff, then one row per file of domain/: mutants,
killed, equivalent (listed with a reason in tests/mutation/equivalent.txt, and not counted),
survived, and the score, killed / (mutants - equivalent). It exits 1 when any mutant survives that
is not listed as equivalent (a test is missing), or when an entry of the equivalent list is out of
date (its mutant is killed now, changes another line, or is gone).

    scripts/mutation.py                       every file of domain/
    scripts/mutation.py classify.py decide.py only these files (the others' rows are left out)
    scripts/mutation.py --keep                reuse the last run's mutants and results
    scripts/mutation.py --survivors           run again only the mutants that survived the last
                                              run (after adding tests: minutes, not the hour)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".handoff" / "mutation"
DOMAIN = ROOT / "operator" / "handoff" / "domain"
EQUIVALENT = ROOT / "tests" / "mutation" / "equivalent.txt"

# The unit tests that never call the domain: they check repository files (the chart, the
# Dockerfile, the Makefile), the reliability checker, the controller's timer or the benchmarks'
# own parts (benchmarks/ is not staged). Leaving them out keeps mutmut's two full runs (to learn
# which test calls what, then once clean) short.
NOT_THE_DOMAINS = [
    "tests/unit/test_bench_cpu.py",
    "tests/unit/test_bench_paired.py",
    "tests/unit/test_bench_parts.py",
    "tests/unit/test_chart_sources.py",
    "tests/unit/test_dockerfile.py",
    "tests/unit/test_make_demo.py",
    "tests/unit/test_mutation_selection.py",
    "tests/unit/test_reliability_checker.py",
    "tests/unit/test_scheduler.py",
]
# pytest's unraisable-exception check runs gc.collect() at the end of every session: in mutmut's
# forked workers, which hold every test module and mutmut's own state, that is over a second per
# mutant, three times what the tests of most mutants take. Without it: no cache files either.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-p", "no:unraisableexception"]
# What the remaining unit tests read from the checkout besides the package and the tests.
ALSO_COPY = ["tests", "policies", "crds"]
# The property tests run once per mutant of every function they call: 10 examples each there
# (50 in `make test`) keep a surviving mutant's run to seconds; the decision tables are what
# must kill mutants, the properties are a second net.
PROPERTY_EXAMPLES = "10"

# mutmut stops a mutant's tests after 2 x this x (their time in the clean run + 1 s) of CPU, and
# after half that of wall-clock time, which on 2 cores shared with other test runs is less than
# most mutants' tests take: they are then reported as killed (timeout) whatever they do.
TIMEOUT_MULTIPLIER = float(os.environ.get("HANDOFF_MUTATION_TIMEOUT_MULTIPLIER", "2.0"))

KILLED = {"killed", "timeout", "segfault", "suspicious"}
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped"}
STATUS |= {35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout"}
STATUS |= {255: "timeout", -11: "segfault", -9: "segfault", 2: "interrupted"}


@dataclass
class Row:
    name: str
    mutants: int = 0
    killed: int = 0
    equivalent: int = 0
    survivors: list[str] = field(default_factory=list)
    unchecked: int = 0

    @property
    def counted(self) -> int:
        return self.mutants - self.equivalent

    @property
    def score(self) -> float:
        return 100.0 if self.counted == 0 else 100.0 * self.killed / self.counted


@dataclass(frozen=True)
class Equivalent:
    mutant: str
    line: str
    reason: str
    where: str


def load_equivalents(path: Path = EQUIVALENT) -> dict[str, Equivalent]:
    """`mutant | the mutated line, stripped | why it changes nothing`, one a line; # comments.
    The mutated line may hold " | " (a type union); the reason may not."""
    listed: dict[str, Equivalent] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        # The mutated line may hold " | " itself (a type union): the reason never does.
        mutant, _, rest = text.partition(" | ")
        line, _, reason = rest.rpartition(" | ")
        parts = [mutant.strip(), line.strip(), reason.strip()]
        if not all(parts):
            sys.exit(f"{path}:{number}: expected `mutant | mutated line | reason`, got {raw!r}")
        listed[parts[0]] = Equivalent(parts[0], parts[1], parts[2], f"{path.name}:{number}")
    return listed


def stage(keep: bool) -> None:
    if not keep and STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True, exist_ok=True)
    links = {"src": ROOT / "operator", **{name: ROOT / name for name in ALSO_COPY}}
    for name, target in links.items():
        link = STAGE / name
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    selection = ["tests/unit", *(f"--ignore={path}" for path in NOT_THE_DOMAINS)]
    config = [
        "",
        "[tool.mutmut]",
        'source_paths = ["src/handoff"]',
        'only_mutate = ["src/handoff/domain/*"]',
        f"also_copy = {json.dumps(ALSO_COPY)}",
        f"pytest_add_cli_args_test_selection = {json.dumps(selection)}",
        f"pytest_add_cli_args = {json.dumps(PYTEST_ARGS)}",
        # A mutant that loops forever is stopped after 2 x 2 x (its tests' CPU time + 1 s) of
        # CPU, or half that of wall-clock time; mutmut's default of 15 x 2 x gave each of them
        # ten minutes of a core. On a loaded machine the wall-clock half stops most mutants
        # (and counts them killed): HANDOFF_MUTATION_TIMEOUT_MULTIPLIER=10 gives them room.
        f"timeout_multiplier = {TIMEOUT_MULTIPLIER}",
        "",
    ]
    pyproject = (ROOT / "pyproject.toml").read_text()
    (STAGE / "pyproject.toml").write_text(pyproject + "\n".join(config))


def run_mutmut(files: list[str], jobs: int, names: list[str] | None = None) -> float:
    patterns = names or [f"handoff.domain.{Path(f).stem}.*" for f in files]
    log = STAGE / "mutmut.log"
    command = [sys.executable, "-m", "mutmut", "run", "--max-children", str(jobs), *patterns]
    env = os.environ | {"HANDOFF_PROPERTY_EXAMPLES": PROPERTY_EXAMPLES}
    started = time.monotonic()
    what = f"{len(names)} mutant(s)" if names else f"{len(patterns) or 'all'} file(s) of domain/"
    print(f"mutmut: {what}, {jobs} at once, log {log}")
    with log.open("w") as out:
        done = subprocess.run(  # noqa: S603 - our own interpreter, our own arguments
            command, cwd=STAGE, env=env, stdout=out, stderr=subprocess.STDOUT, check=False
        )
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        print("\n".join(tail))
        sys.exit(f"mutmut stopped with exit code {done.returncode}; the whole log is in {log}")
    return elapsed


def diff_of(mutant: str, path: Path) -> list[str]:
    """The changed lines of one mutant, as `- old` and `+ new` (mutmut's own diff)."""
    # Imported here: mutmut is in the `mutation` extra only, and reads its settings on import.
    from mutmut.mutation.diff_apply import get_diff_for_mutant  # noqa: PLC0415

    cwd = Path.cwd()
    os.chdir(STAGE)
    try:
        diff = get_diff_for_mutant(mutant, path=path)
    finally:
        os.chdir(cwd)
    lines = diff.splitlines()[2:]  # past the --- and +++ header
    return [line for line in lines if line[:1] in "-+"]


def tally(
    files: list[str],
    equivalents: dict[str, Equivalent],
    *,
    stage: Path = STAGE,
    domain: Path = DOMAIN,
    diff: Callable[[str, Path], list[str]] = diff_of,
) -> tuple[list[Row], list[str]]:
    """Each file's row from mutmut's result files in ``stage``, and what is wrong with the
    equivalent list. ``diff`` gives a mutant's changed lines (mutmut's own, by default)."""
    rows: list[Row] = []
    problems: list[str] = []
    used: set[str] = set()
    for source in sorted(domain.glob("*.py")):
        if files and source.name not in files:
            continue
        row = Row(source.name)
        rows.append(row)
        path = Path("src") / "handoff" / "domain" / source.name
        meta = stage / "mutants" / (str(path) + ".meta")
        if not meta.exists():
            continue
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for mutant, code in sorted(codes.items(), key=lambda item: natural(item[0])):
            status = STATUS.get(code, "not checked") if code is not None else "not checked"
            if status == "skipped":
                continue
            row.mutants += 1
            # A listed mutant stopped for CPU time says nothing about its behaviour (a loaded
            # machine): it is checked against its listing like a survivor.
            if status in KILLED and not (status == "timeout" and mutant in equivalents):
                row.killed += 1
                if mutant in equivalents:
                    used.add(mutant)
                    problems.append(f"{equivalents[mutant].where}: {mutant} is killed now")
                continue
            if status == "not checked":
                row.unchecked += 1
            listed = equivalents.get(mutant)
            if listed is not None:
                used.add(mutant)
                mutated = [line[1:].strip() for line in diff(mutant, path) if line[0] == "+"]
                if listed.line in mutated:
                    row.equivalent += 1
                    continue
                problems.append(
                    f"{listed.where}: {mutant} no longer changes the line {listed.line!r}"
                    " (the function changed): look at it again"
                )
            row.survivors.append(mutant)
    stale = [e for name, e in equivalents.items() if name not in used and in_scope(name, files)]
    problems += [f"{e.where}: {e.mutant} is not a mutant any more" for e in stale]
    return rows, problems


def failures(rows: list[Row], problems: list[str]) -> list[str]:
    """Why the run fails: every surviving mutant that is not listed as equivalent is a missing
    test, whatever the file's score; and a stale equivalent list hides mutants."""
    failed = []
    for row in rows:
        if row.survivors:
            unchecked = f" ({row.unchecked} never checked)" if row.unchecked else ""
            failed.append(
                f"{row.name}: {len(row.survivors)} mutant(s) survived{unchecked}, not listed as"
                " equivalent: add a test that kills each, or list it with a reason in"
                " tests/mutation/equivalent.txt if it changes nothing a caller can see"
            )
    return failed + problems


def last_survivors(files: list[str], equivalents: dict[str, Equivalent]) -> list[str]:
    """The mutants the last run left alive (or never checked) that are not listed as equivalent:
    mutmut runs mutants named on its command line again, with any tests added since."""
    names = []
    for meta in sorted((STAGE / "mutants" / "src" / "handoff" / "domain").glob("*.py.meta")):
        if files and meta.name.removesuffix(".meta") not in files:
            continue
        codes: dict[str, int | None] = json.loads(meta.read_text())["exit_code_by_key"]
        for mutant, code in codes.items():
            status = STATUS.get(code, "not checked") if code is not None else "not checked"
            if status not in KILLED and status != "skipped" and mutant not in equivalents:
                names.append(mutant)
    return names


def in_scope(mutant: str, files: list[str]) -> bool:
    return not files or mutant.split(".")[2] + ".py" in files


def natural(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number) if number.isdigit() else 0


def table(rows: list[Row]) -> str:
    lines = [f"{'file':<16}{'mutants':>8}{'killed':>8}{'equiv.':>8}{'survived':>9}{'score':>8}"]
    for r in rows:
        lines.append(
            f"{r.name:<16}{r.mutants:>8}{r.killed:>8}{r.equivalent:>8}"
            f"{len(r.survivors):>9}{r.score:>7.1f}%"
        )
    total = Row(
        "total", *(sum(getattr(r, a) for r in rows) for a in ("mutants", "killed", "equivalent"))
    )
    total.survivors = [s for r in rows for s in r.survivors]
    lines.append(
        f"{'total':<16}{total.mutants:>8}{total.killed:>8}{total.equivalent:>8}"
        f"{len(total.survivors):>9}{total.score:>7.1f}%"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="file names in domain/, e.g. classify.py")
    parser.add_argument("--keep", action="store_true", help="reuse the last run's results")
    parser.add_argument(
        "--survivors", action="store_true", help="run only the last run's survivors again"
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--report-only", action="store_true", help="print the last run's table")
    args = parser.parse_args()
    files = [Path(f).name for f in args.files]
    unknown = [f for f in files if not (DOMAIN / f).is_file()]
    if unknown:
        sys.exit(f"not files of operator/handoff/domain/: {', '.join(unknown)}")
    equivalents = load_equivalents()

    elapsed = 0.0
    if args.survivors:
        names = last_survivors(files, equivalents)
        if names:
            stage(keep=True)
            elapsed = run_mutmut(files, args.jobs, names)
    elif not args.report_only:
        stage(args.keep)
        elapsed = run_mutmut(files, args.jobs)
    rows, problems = tally(files, equivalents)

    for row in rows:
        if not row.survivors:
            continue
        print(f"\nsurvivors in {row.name}:")
        for mutant in row.survivors:
            print(f"  {mutant}")
            path = Path("src") / "handoff" / "domain" / row.name
            for line in diff_of(mutant, path):
                print(f"      {line.strip()}")
    print()
    print(table(rows))
    if elapsed:
        print(f"\nmutmut ran {elapsed / 60:.1f} minutes")
    failed = failures(rows, problems)
    for failure in failed:
        print(failure)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
