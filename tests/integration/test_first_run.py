"""The first five minutes, as a newcomer meets them: `handoff dev up` on a machine that lacks a
server, the one-time sign-in link the demo ends with, and the sentences (never a traceback) that
the command lines, the SDK and the example agent say when the environment is stopped or refuses.

CI's machine has every server installed, so these tests hide them (a PATH without redis-server,
an empty $HANDOFF_PG_BIN) to walk the fresh machine's path.
"""

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from handoff import paths
from handoff.console.devlogin import LIFETIME, issue
from handoff.devenv.environment import DevEnvironment
from handoff.testing.programs import hidden_path

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
NOISE = ("Traceback", "Unclosed", "Exception ignored", "Warning")


def run(
    argv: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    """A command as a user runs it, with ResourceWarnings loud: a leak shows in its stderr."""
    return subprocess.run(
        argv, env=env | {"PYTHONWARNINGS": "error::ResourceWarning"},
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


def handoff(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run([str(BIN / "handoff"), *args], env)


def assert_one_sentence(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Failed, said so in a sentence with ``expected`` in it, and nothing else on stderr."""
    said = result.stderr.strip()
    assert result.returncode != 0, result.stdout
    for noise in NOISE:
        assert noise not in said, said
    for text in expected:
        assert text in said, said
    return said


def private_folder() -> Path:
    """Outside pytest's root-only temp tree: PostgreSQL runs as the postgres user under root."""
    folder = Path(tempfile.mkdtemp(prefix="handoff-first-run-"))
    folder.chmod(0o755)
    return folder


def running_in(folder: Path) -> list[str]:
    """Every process whose command line names ``folder``: what an environment there left."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(folder) in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


# -- a missing server stops `handoff dev up` with one sentence ---------------------------------


def test_dev_up_without_redis_refuses_and_says_how_to_get_it(tmp_path: Path) -> None:
    path = hidden_path(tmp_path / "bin", "redis-server")
    env = os.environ | {"PATH": path, "HANDOFF_DEV_DIR": str(tmp_path / "dev")}
    result = handoff("dev", "up", env=env)
    said = assert_one_sentence(
        result, "Redis is not installed", f"no redis-server on PATH ({path})",
        "sudo apt-get install redis-server", "make demo",
    )  # fmt: skip
    assert "ready:" not in result.stdout
    assert len(said.splitlines()) <= 2, said
    assert running_in(tmp_path / "dev") == []
    assert all(pid is None for pid in DevEnvironment(tmp_path / "dev").status().values())
    # Leaving PostgreSQL out does not leave Redis out: the agents need it.
    result = handoff("dev", "up", "--without-postgres", env=env)
    assert_one_sentence(result, "Redis is not installed")


def test_dev_up_without_postgres_refuses_unless_left_out_on_purpose(tmp_path: Path) -> None:
    empty = tmp_path / "no-postgres"
    empty.mkdir()
    path = hidden_path(tmp_path / "bin", "postgres", "pg_ctl", "initdb")
    env = os.environ | {
        "PATH": path, "HANDOFF_PG_BIN": str(empty), "HANDOFF_DEV_DIR": str(tmp_path / "dev"),
    }  # fmt: skip
    result = handoff("dev", "up", env=env)
    assert_one_sentence(
        result, "PostgreSQL is not installed", f"no postgres program in {empty} ($HANDOFF_PG_BIN)",
        "sudo apt-get install postgresql", "make demo", "handoff dev up --without-postgres",
    )  # fmt: skip
    assert "ready:" not in result.stdout
    assert running_in(tmp_path / "dev") == []
    # Without $HANDOFF_PG_BIN the sentence names Debian's folder and the PATH it searched.
    del env["HANDOFF_PG_BIN"]
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        assert_one_sentence(handoff("dev", "up", env=env), "/usr/lib/postgresql/*/bin", path)


def test_a_server_that_will_not_start_stops_everything_up_had_started() -> None:
    """PostgreSQL is there but fails (here: an initdb that refuses): no half environment."""
    folder = private_folder()
    fake = folder / "pgbin"
    fake.mkdir()
    for name in ("postgres", "pg_ctl"):
        (fake / name).write_text("#!/bin/sh\nexit 0\n")
    (fake / "initdb").write_text("#!/bin/sh\necho 'initdb: error: the disk is full' >&2\nexit 1\n")
    for program in fake.iterdir():
        program.chmod(0o755)
    fake.chmod(0o755)
    env = os.environ | {"HANDOFF_PG_BIN": str(fake), "HANDOFF_DEV_DIR": str(folder / "dev")}
    try:
        result = handoff("dev", "up", env=env)
        assert_one_sentence(
            result, "PostgreSQL did not start (initdb failed: initdb: error: the disk is full)",
            "nothing it started is left running",
        )  # fmt: skip
        assert "redis:" in result.stdout  # the control plane and Redis had started...
        assert "ready:" not in result.stdout
        assert running_in(folder / "dev") == []  # ...and were stopped again
    finally:
        handoff("dev", "down", "--quiet", env=env)
        shutil.rmtree(folder, ignore_errors=True)


# -- a running environment: the way on, and refusals in sentences -------------------------------


@pytest.fixture(scope="module")
def dev() -> Iterator[tuple[Path, dict[str, str]]]:
    """`handoff dev up` in a folder of its own, first without PostgreSQL (on purpose), then
    again with it: the second `up` adds what the first left out and keeps the rest."""
    if not (paths.bin_dir() / "kube-apiserver").exists():
        pytest.fail(f"no control plane in {paths.bin_dir()}: run 'make controlplane' first")
    folder = private_folder()
    env = os.environ | {"HANDOFF_DEV_DIR": str(folder / "dev")}
    try:
        empty = folder / "no-postgres"
        empty.mkdir()
        first = handoff("dev", "up", "--without-postgres", env=env | {"HANDOFF_PG_BIN": str(empty)})
        assert first.returncode == 0, first.stderr
        assert "postgres: left out (--without-postgres)" in first.stdout
        assert "DATABASE_URL" not in (folder / "dev" / "env").read_text()
        second = handoff("dev", "up", env=env)
        assert second.returncode == 0, second.stderr
        assert "ready:" in second.stdout
        assert "'handoff dev login alice' prints a one-time link" in second.stdout
        yield folder / "dev", env
    finally:
        handoff("dev", "down", "--quiet", env=env)
        assert running_in(folder / "dev") == []
        shutil.rmtree(folder, ignore_errors=True)


def settings(folder: Path) -> dict[str, str]:
    return DevEnvironment(folder).settings()


def get(url: str, cookie: str = "") -> http.client.HTTPResponse:
    """One GET, redirects not followed."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=10)
    connection.request("GET", parts.path, headers={"Cookie": cookie} if cookie else {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_up_starts_every_server_it_promises(dev: tuple[Path, dict[str, str]]) -> None:
    folder, _ = dev
    env = settings(folder)
    assert {
        "KUBECONFIG",
        "REDIS_URL",
        "DATABASE_URL",
        "CONSOLE_URL",
        "METRICS_URL",
        "GATEWAY_URL",
    } <= set(env)
    assert all(pid for pid in DevEnvironment(folder).status().values())
    assert env["GATEWAY_URL"].endswith("/mcp")
    assert get(env["GATEWAY_URL"]).status == 401  # the MCP gateway, asking for an agent's token


def test_the_one_time_link_signs_alice_in_once(dev: tuple[Path, dict[str, str]]) -> None:
    folder, env = dev
    result = handoff("dev", "login", "alice", env=env)
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    console = settings(folder)["CONSOLE_URL"]
    assert link.startswith(f"{console}/dev-login/")
    tokens = json.loads((folder / "state.json").read_text())["tokens"]
    assert all(token not in link for token in tokens.values())  # never a token in a URL
    assert "within 5 minutes" in result.stderr
    signed_in = get(link)
    assert signed_in.status == 303
    assert signed_in.getheader("Location") == "/queue"
    cookie = signed_in.getheader("Set-Cookie", "").split(";", 1)[0]
    assert cookie.startswith("handoff_session=")
    queue = get(f"{console}/queue", cookie)
    assert queue.status == 200  # not sent back to /login
    again = get(link)
    assert again.status == 410
    assert again.getheader("Set-Cookie") is None


def test_the_console_refuses_expired_and_foreign_links(dev: tuple[Path, dict[str, str]]) -> None:
    folder, _ = dev
    console = settings(folder)["CONSOLE_URL"]
    alice = json.loads((folder / "state.json").read_text())["tokens"]["alice"]
    cases = {
        "expired": (issue(folder, "alice", alice, time.time() - LIFETIME - 1), 410),
        "a token the cluster rejects": (issue(folder, "alice", "not-a-token", time.time()), 401),
        "alice's token for admin": (issue(folder, "admin", alice, time.time()), 401),
    }
    for what, (code, status) in cases.items():
        response = get(f"{console}/dev-login/{code}")
        assert response.status == status, what
        assert response.getheader("Set-Cookie") is None, what


def test_an_agent_without_a_policy_is_told_why(dev: tuple[Path, dict[str, str]]) -> None:
    """The fresh machine's crash: no traceback, no unclosed session, but what to do."""
    folder, env = dev
    kubeconfig = str(folder / "kubeconfig")
    result = run([sys.executable, str(ROOT / "examples" / "agent.py"), "propose",
                  f"--kubeconfig={kubeconfig}"], env)  # fmt: skip
    said = assert_one_sentence(
        result, "example agent (propose): payments-agent cannot read its Redis credentials",
        "handoff-redis-payments-agent", "Ready policy governs payments-agent",
        "kubectl -n agents get aap",
    )  # fmt: skip
    assert len(said.splitlines()) == 1, said


def test_a_forbidden_reviewer_is_told_in_a_sentence(dev: tuple[Path, dict[str, str]]) -> None:
    folder, env = dev
    kubeconfig = f"--kubeconfig={folder / 'kubeconfig'}"
    report = handoff("report", "shadow", kubeconfig, "--context=mallory", "-n", "agents", env=env)
    assert_one_sentence(report, "handoff report:", "mallory may not do this")
    plugin = run([str(BIN / "kubectl-handoff"), kubeconfig, "--context=mallory", "pending"], env)
    assert_one_sentence(plugin, 'mallory may not do this: User "mallory" cannot list')


def test_the_demos_mcp_session_leaves_the_tour_its_tiers(dev: tuple[Path, dict[str, str]]) -> None:
    """`make demo` runs the MCP session, then the tour, in one environment. A fresh machine found
    the session's policy governing payments-agent too (highest tier wins: its default tier 4 sent
    the tour's tier-1 read to a person, and the tour failed waiting)."""
    _, env = dev
    session = run([sys.executable, str(ROOT / "examples" / "mcp_session.py")], env)
    assert session.returncode == 0, session.stderr
    assert "moved 2500 to acme" in session.stdout
    tour = run([sys.executable, str(ROOT / "examples" / "demo.py")], env, timeout=300)
    assert tour.returncode == 0, tour.stdout[-2000:] + tour.stderr
    assert "step 1: db.query -> tier 1, Approved at once (AutoApproved)" in tour.stdout
    assert not any(noise in tour.stderr for noise in NOISE), tour.stderr


def test_a_stopped_environment_answers_in_sentences(dev: tuple[Path, dict[str, str]]) -> None:
    """Last: stops the environment (the fixture's `down` after it is a no-op)."""
    folder, env = dev
    down = handoff("dev", "down", env=env)
    assert down.returncode == 0, down.stderr
    assert running_in(folder) == []
    kubeconfig = str(folder / "kubeconfig")
    unreachable = "cannot reach the API server"
    agent = run([sys.executable, str(ROOT / "examples" / "agent.py"), "resume",
                 f"--kubeconfig={kubeconfig}"], env)  # fmt: skip
    assert_one_sentence(agent, "example agent (resume):", unreachable, "handoff dev up")
    plugin = run([str(BIN / "kubectl-handoff"), f"--kubeconfig={kubeconfig}", "pending"], env)
    assert_one_sentence(plugin, unreachable, "is the cluster running?")
    report = handoff("report", "fatigue", f"--kubeconfig={kubeconfig}", env=env)
    assert_one_sentence(report, "handoff report:", unreachable)
    login = handoff("dev", "login", "alice", env=env)
    assert_one_sentence(login, "the local environment", "is not running", "handoff dev up")
    demo = run([sys.executable, str(ROOT / "examples" / "demo.py")], env)
    assert demo.returncode == 1
    assert "is not running: run 'make demo'" in demo.stdout
    assert not any(noise in demo.stderr for noise in NOISE), demo.stderr
