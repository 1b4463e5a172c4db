"""The first command works from nothing: `make demo` installs its servers as `make test` does.

CI's machine has Redis and PostgreSQL from the test run, so only these checks notice a demo
that forgot to install them (a fresh machine found it once: the demo crashed in the agent).
"""

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from handoff.testing.programs import hidden_path

ROOT = Path(__file__).resolve().parents[2]
SERVICES = "scripts/services.sh"


def dry_run(target: str) -> list[list[str]]:
    """The commands `make -n TARGET` would run, split as the shell would."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    commands = []
    for line in result.stdout.splitlines():
        for command in line.split("&&"):
            try:
                words = shlex.split(command.strip())
            except ValueError:  # a shell line continued on the next (smoke's recipe)
                continue
            if words and words[0] not in ("echo", "make", "mkdir", "touch", "rm", "cd", "test"):
                commands.append(words)
    return commands


def services_call(commands: list[list[str]]) -> list[str]:
    calls = [c for c in commands if c[:2] == ["bash", SERVICES]]
    assert len(calls) == 1, f"expected one '{SERVICES}' step, got {calls}"
    return calls[0]


def test_demo_installs_its_servers_with_the_same_step_as_test() -> None:
    demo, test = dry_run("demo"), dry_run("test")
    demo_call, test_call = services_call(demo), services_call(test)
    assert demo_call[:2] == test_call[:2] == ["bash", SERVICES]
    assert test_call[2:] == []  # make test installs all of them
    assert set(demo_call[2:]) == {"redis", "postgresql"}  # the demo needs no Chromium
    up = next(i for i, c in enumerate(demo) if c[0].endswith("/handoff") and c[1:] == ["dev", "up"])
    assert demo.index(demo_call) < up, "the servers must be installed before 'handoff dev up'"


def test_the_services_step_installs_what_a_fresh_machine_lacks(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    path = hidden_path(tmp_path / "bin", "redis-server", "redis-cli", "postgres", "psql")
    empty = tmp_path / "no-postgres"
    empty.mkdir()
    env = os.environ | {"PATH": path, "HANDOFF_PG_BIN": str(empty)}
    result = subprocess.run(
        ["bash", SERVICES, "--dry-run", "redis", "postgresql"],
        cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    would = result.stdout.strip().removeprefix("would install: ").split()
    assert set(would) == {"redis-server", "redis-tools", "postgresql", "postgresql-client"}
    assert "chromium" not in result.stdout


def test_the_services_step_refuses_a_part_it_does_not_know() -> None:
    result = subprocess.run(
        ["bash", SERVICES, "--dry-run", "redis", "mongodb"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown part 'mongodb'" in result.stderr


def test_the_cold_build_says_what_it_builds_and_how_long_before_it_starts(tmp_path: Path) -> None:
    """`make -n` of a fresh checkout's control plane: the estimate comes before the first build."""
    result = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", "controlplane"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = result.stdout.splitlines()
    first_build = next(i for i, line in enumerate(lines) if "go build" in line)
    before = " ".join(lines[:first_build])
    assert "etcd, kube-apiserver and kubectl" in before
    assert "minutes on 2 cores" in before
    assert all("scripts/progress.sh" in line for line in lines if "go build" in line)


def test_without_apt_the_services_step_says_what_to_install(tmp_path: Path) -> None:
    path = hidden_path(tmp_path / "bin", "redis-server", "redis-cli", "apt-get")
    result = subprocess.run(
        ["bash", SERVICES, "redis"],
        cwd=ROOT, env=os.environ | {"PATH": path}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "missing redis-server redis-tools, and there is no apt-get here" in result.stderr
