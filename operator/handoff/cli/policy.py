"""``handoff policy lint | test | diff``: for the CI of a policy repository, no cluster needed."""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TextIO

from handoff.cli.tables import print_table

# The policy tools (jsonschema, YAML, the domain's compiler) load in each command below, not with
# this module: every ``handoff`` command line builds its parser from here, the operator's too.

HEADERS = ["TIER", "OVERSIGHT", "POLICY/RULE", "WINDOW", "APPROVALS", "REVIEWERS", "REASON"]


def add_commands(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    policy = commands.add_parser("policy", help="lint, test and diff policies offline")
    sub = policy.add_subparsers(dest="policy_command", required=True)
    lint_cmd = sub.add_parser(
        "lint", help="schema, CEL and review-quality checks, with file and line"
    )
    lint_cmd.add_argument("paths", nargs="+")
    lint_cmd.add_argument(
        "--min-window", default="1m", help="shortest decision window worth giving a person"
    )
    lint_cmd.add_argument(
        "--max-hitl-share",
        type=float,
        default=0.5,
        help="share of sample requests that may wait for a person",
    )
    lint_cmd.add_argument("--strict", action="store_true", help="warnings fail too")
    test_cmd = sub.add_parser("test", help="run the tests.yaml cases beside the policies")
    test_cmd.add_argument("paths", nargs="+")
    diff_cmd = sub.add_parser(
        "diff", help="which sample requests change tier, lane, window or reviewers"
    )
    diff_cmd.add_argument("old", help="a directory, or REV:PATH for a git revision")
    diff_cmd.add_argument("new", help="a directory, or REV:PATH for a git revision")
    diff_cmd.add_argument(
        "--samples",
        action="append",
        default=[],
        help="more tests.yaml files or folders to use as samples",
    )
    diff_cmd.add_argument("--format", choices=["table", "markdown"], default="table")


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout  # looked up now, not at import: tests capture it
    if args.policy_command == "lint":
        return _lint(args, out)
    if args.policy_command == "test":
        return _test(args, out)
    return _diff(args, out)


def _lint(args: argparse.Namespace, out: TextIO) -> int:
    from handoff.domain.durations import parse_duration  # noqa: PLC0415 - see the imports
    from handoff.policytools.checks import lint  # noqa: PLC0415
    from handoff.policytools.loading import load_cases, load_policies  # noqa: PLC0415

    policies = load_policies(args.paths)
    if not policies:
        print(f"no AgentActionPolicy found in {' '.join(args.paths)}", file=out)
        return 1
    findings = lint(
        policies, load_cases(args.paths), parse_duration(args.min_window), args.max_hitl_share
    )
    for finding in findings:
        print(finding, file=out)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    print(f"{len(policies)} policies: {errors} errors, {warnings} warnings", file=out)
    return 1 if errors or (args.strict and warnings) else 0


def _test(args: argparse.Namespace, out: TextIO) -> int:
    from handoff.policytools.checks import run_cases  # noqa: PLC0415 - see the imports
    from handoff.policytools.loading import load_cases, load_policies  # noqa: PLC0415

    policies = load_policies(args.paths)
    cases = load_cases(args.paths)
    if not cases:
        print(f"no tests.yaml cases found in {' '.join(args.paths)}", file=out)
        return 1
    results = run_cases(policies, cases)
    rows = [["RESULT", "CASE", *HEADERS]]
    rows += [["ok" if not r.failures else "FAIL", r.case.name, *r.got.row()] for r in results]
    print_table(rows, out)
    failed = [r for r in results if r.failures]
    for result in failed:
        print(f"\nFAIL {result.case.path}: {result.case.name}", file=out)
        for failure in result.failures:
            print(f"  {failure}", file=out)
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed", file=out)
    return 1 if failed else 0


def _diff(args: argparse.Namespace, out: TextIO) -> int:
    from handoff.policytools.checks import diff  # noqa: PLC0415 - see the imports
    from handoff.policytools.loading import load_cases, load_policies  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as scratch:
        old = _materialize(args.old, Path(scratch) / "old")
        new = _materialize(args.new, Path(scratch) / "new")
        samples = load_cases([old, new, *args.samples])
        changes = diff(load_policies([old]), load_policies([new]), samples)
    count = len({json.dumps(case.request, sort_keys=True) for case in samples})
    if args.format == "markdown":
        print(
            f"**Policy change: {len(changes)} of {count} sample requests change.**\n",
            file=out,
        )
        if changes:
            print("| sample | before | after |\n|---|---|---|", file=out)
            for change in changes:
                before = " · ".join(change.old.row()[:5])
                after = " · ".join(change.new.row()[:5])
                print(
                    f"| {change.name} (`{change.request.get('action')}`) | {before} | {after} |",
                    file=out,
                )
        return 0
    rows = [["SAMPLE", "", *HEADERS]]
    for change in changes:
        rows.append([change.name, "before", *change.old.row()])
        rows.append(["", "after", *change.new.row()])
    if changes:
        print_table(rows, out)
    print(f"{len(changes)} of {count} sample requests change", file=out)
    return 0


def _materialize(spec: str, into: Path) -> Path:
    """A directory as given, or ``REV:PATH`` checked out of git into a scratch folder."""
    if Path(spec).exists():
        return Path(spec)
    revision, _, path = spec.partition(":")
    if not path:
        raise FileNotFoundError(f"{spec} is neither a folder nor REV:PATH")
    into.mkdir(parents=True)
    # git and tar from PATH, with the user's own revision and path as arguments (no shell).
    archive = subprocess.run(["git", "archive", revision, path], capture_output=True, check=False)  # noqa: S603, S607
    if archive.returncode != 0:
        raise FileNotFoundError(
            f"git has no {path} at {revision}: {archive.stderr.decode().strip()}"
        )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)  # noqa: S603, S607
    return into / path
