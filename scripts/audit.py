"""Audit the installed dependencies for known vulnerabilities: `make audit`, run by `make test`.

pip-audit does the work. It fails on any known vulnerability that is not listed in IGNORED
below, each with the reason it is accepted; where a fix exists, upgrade the pin instead.

Where pip-audit cannot reach a vulnerability service (OSV's API is not reachable from the
project's machines, and the PyPI mirror they use serves no per-version JSON), it skips every
package and says "No known vulnerabilities found". That is no audit, so this script says so and
falls back on what PyPI does answer: the project JSON, whose `vulnerabilities` are those of the
latest release. Each runtime dependency installed at its latest release is checked that way; one
that is older is named as not checked, and one with a known vulnerability fails the audit.
"""

import importlib.metadata
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PROJECT = "kube-handoff"

#: Vulnerability ids accepted for now, each with the reason. Empty: nothing is accepted.
IGNORED: dict[str, str] = {}


def main() -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    argv = [str(pip_audit), "--local", "--skip-editable", "--format", "json",
            "--progress-spinner", "off"]  # fmt: skip
    for vuln in IGNORED:
        argv += ["--ignore-vuln", vuln]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    try:
        report = json.loads(result.stdout)
    except ValueError:
        print(result.stdout + result.stderr, file=sys.stderr)
        print("audit: pip-audit gave no report", file=sys.stderr)
        return 1
    dependencies = report.get("dependencies", [])
    found = [d for d in dependencies if d.get("vulns")]
    audited = [d for d in dependencies if "skip_reason" not in d]
    for dependency in found:
        for vuln in dependency["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fix yet"
            print(f"audit: {dependency['name']} {dependency['version']}: {vuln['id']} ({fixes})")
    if found:
        return 1
    if audited:
        print(f"audit: pip-audit checked {len(audited)} packages: no known vulnerabilities")
        return 0
    print(
        f"audit: pip-audit could not reach a vulnerability service, so it checked none of the"
        f" {len(dependencies)} installed packages; falling back on PyPI's project JSON"
    )
    return fallback()


def runtime_closure() -> dict[str, str]:
    """The installed runtime dependencies of the project, transitively: name -> version."""
    seen: dict[str, str] = {}
    todo = [PROJECT]
    while todo:
        name = todo.pop()
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in distribution.requires or []:
            requirement = Requirement(line)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            key = canonical(requirement.name)
            if key not in seen:
                try:
                    seen[key] = importlib.metadata.version(requirement.name)
                except importlib.metadata.PackageNotFoundError:
                    continue
                todo.append(requirement.name)
    return seen


def fallback() -> int:
    vulnerable, unchecked, checked = [], [], 0
    for name, installed in sorted(runtime_closure().items()):
        url = f"https://pypi.org/pypi/{name}/json"
        try:
            with urllib.request.urlopen(url, timeout=30) as answer:
                project = json.load(answer)
        except OSError as e:
            unchecked.append(f"{name} {installed} ({e})")
            continue
        latest = project["info"]["version"]
        if Version(installed) != Version(latest):
            unchecked.append(f"{name} {installed} (latest is {latest})")
            continue
        checked += 1
        for vuln in project.get("vulnerabilities") or []:
            if vuln.get("withdrawn") or vuln["id"] in IGNORED:
                continue
            fixes = ", ".join(vuln.get("fixed_in") or []) or "no fix yet"
            vulnerable.append(f"{name} {installed}: {vuln['id']} ({fixes})")
    for line in vulnerable:
        print(f"audit: {line}")
    print(f"audit: {checked} runtime dependencies at their latest release checked against PyPI")
    if unchecked:
        print("audit: not checked (PyPI lists vulnerabilities of the latest release only):")
        for line in unchecked:
            print(f"  {line}")
    return 1 if vulnerable else 0


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


if __name__ == "__main__":
    sys.exit(main())
