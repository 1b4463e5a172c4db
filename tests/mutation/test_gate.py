"""`make mutation` is a check that can fail: scripts/mutation.py fails the run when a mutant
survives that is not listed as equivalent, or when the equivalent list is out of date. Tested on
result files written the way mutmut 3.8.1 writes them (no mutmut needed)."""

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_script", ROOT / "scripts/mutation.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


mutation = load_script()

F = "handoff.domain.a.x_f__mutmut_"
KILLED, SURVIVED, NOT_CHECKED, NO_TESTS, TIMEOUT = 1, 0, None, 33, 36


def staged(tmp_path: Path, codes: dict[str, int | None]) -> tuple[Path, Path]:
    """A stage with mutmut's result file for domain/a.py, and a domain/ with a.py and b.py."""
    domain = tmp_path / "domain"
    domain.mkdir()
    (domain / "a.py").write_text("")
    (domain / "b.py").write_text("")  # no mutants: no result file
    meta = tmp_path / "stage/mutants/src/handoff/domain/a.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": {F + k: v for k, v in codes.items()}}))
    return tmp_path / "stage", domain


def listed(number: str, line: str = "x = 1") -> dict[str, object]:
    name = F + number
    return {name: mutation.Equivalent(name, line, "changes nothing", f"equivalent.txt:{number}")}


def diff(mutant: str, path: Path) -> list[str]:
    return ["- x = 0", "+ x = 1"]


# Each row: exit codes by mutant, the equivalent list, then (mutants, killed, equivalent,
# survivors) of a.py and whether the run fails, with the words of its first failure.
@pytest.mark.parametrize(
    ("codes", "equivalents", "row", "failure"),
    [
        pytest.param({"1": KILLED, "2": TIMEOUT}, {}, (2, 2, 0, []), None, id="all killed"),
        pytest.param({"1": KILLED, "2": SURVIVED}, listed("2"), (2, 1, 1, []), None,
                     id="the survivor is listed as equivalent"),
        pytest.param({"1": KILLED, "2": SURVIVED}, {}, (2, 1, 0, [F + "2"]),
                     "a.py: 1 mutant(s) survived, not listed as equivalent", id="one survivor"),
        pytest.param({"1": KILLED, "2": NO_TESTS}, {}, (2, 1, 0, [F + "2"]),
                     "a.py: 1 mutant(s) survived", id="a mutant no test reaches survives"),
        pytest.param({"1": KILLED, "2": NOT_CHECKED}, {}, (2, 1, 0, [F + "2"]),
                     "a.py: 1 mutant(s) survived (1 never checked)", id="a mutant never checked"),
        pytest.param({"1": KILLED, "2": SURVIVED}, listed("2", "y = 1"), (2, 1, 0, [F + "2"]),
                     "a.py: 1 mutant(s) survived", id="listed for a line it no longer changes"),
        pytest.param({"1": KILLED}, listed("1"), (1, 1, 0, []),
                     f"equivalent.txt:1: {F}1 is killed now", id="listed but killed now"),
        pytest.param({"1": KILLED}, listed("7"), (1, 1, 0, []),
                     f"equivalent.txt:7: {F}7 is not a mutant any more", id="listed but gone"),
    ],
)  # fmt: skip
def test_the_run_fails_on_every_survivor_and_a_stale_list(
    tmp_path: Path,
    codes: dict[str, int | None],
    equivalents: dict[str, object],
    row: tuple[int, int, int, list[str]],
    failure: str | None,
) -> None:
    stage, domain = staged(tmp_path, codes)
    rows, problems = mutation.tally([], equivalents, stage=stage, domain=domain, diff=diff)
    a, b = rows
    assert (a.name, b.name) == ("a.py", "b.py")
    assert (a.mutants, a.killed, a.equivalent, a.survivors) == row
    assert (b.mutants, b.survivors) == (0, [])
    failed = mutation.failures(rows, problems)
    if failure is None:
        assert failed == []
        assert a.score == 100.0
    else:
        assert failed[0].startswith(failure)


def test_one_survivor_in_a_thousand_still_fails_the_run(tmp_path: Path) -> None:
    codes: dict[str, int | None] = {str(n): KILLED for n in range(1, 1000)} | {"1000": SURVIVED}
    stage, domain = staged(tmp_path, codes)
    rows, problems = mutation.tally([], {}, stage=stage, domain=domain, diff=diff)
    assert rows[0].score > 99.8
    assert mutation.failures(rows, problems) != []


def test_the_equivalent_list_reads_and_names_files_of_the_domain() -> None:
    equivalents = mutation.load_equivalents()
    assert equivalents
    for name, entry in equivalents.items():
        assert name.startswith("handoff.domain.")
        assert (mutation.DOMAIN / (name.split(".")[2] + ".py")).is_file(), entry.where
        assert "__mutmut_" in name, entry.where


def test_a_listed_line_may_hold_a_type_union(tmp_path: Path) -> None:
    listing = tmp_path / "equivalent.txt"
    listing.write_text(
        "# a comment\n\n"
        'm.x_f__mutmut_1 | b: B | None = "" | "" is false, like None\n'
        "m.x_f__mutmut_2 | x = 1 | no reason to doubt\n"
    )
    listed = mutation.load_equivalents(listing)
    assert [(e.mutant, e.line, e.reason) for e in listed.values()] == [
        ("m.x_f__mutmut_1", 'b: B | None = ""', '"" is false, like None'),
        ("m.x_f__mutmut_2", "x = 1", "no reason to doubt"),
    ]


def test_a_listing_without_a_reason_stops_the_run(tmp_path: Path) -> None:
    listing = tmp_path / "equivalent.txt"
    listing.write_text("m.x_f__mutmut_1 | x = 1\n")
    with pytest.raises(SystemExit, match=re.escape("expected `mutant | mutated line | reason`")):
        mutation.load_equivalents(listing)


def test_a_listed_mutant_stopped_for_cpu_time_stays_listed(tmp_path: Path) -> None:
    stage, domain = staged(tmp_path, {"1": KILLED, "2": TIMEOUT})
    rows, problems = mutation.tally([], listed("2"), stage=stage, domain=domain, diff=diff)
    assert (rows[0].mutants, rows[0].killed, rows[0].equivalent, rows[0].survivors) == (2, 1, 1, [])
    assert mutation.failures(rows, problems) == []
