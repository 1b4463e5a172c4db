"""What ``handoff operator`` imports before it starts its work (issue #21: the re-arm and the
history start after the imports). The command line loads its other commands' tools (the agent
SDK, the policy tools' jsonschema, the report's statistics) and the operator its PostgreSQL
driver only where they are used; an eager import of any of them again fails here."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from handoff.adapters.postgres import AdminConnection, DatabaseError
from handoff.cli.failures import sentence
from handoff.cli.main import KOPF_OPTIONAL_CLIENTS

PROBE = """
import json, sys
{imports}
print(json.dumps(sorted(sys.modules)))
"""
# Never needed before the operator's first log line: other commands' tools, or used on one path.
NOT_AT_THE_OPERATORS_START = (
    "handoff.sdk",  # the agent SDK (cli/failures.py named its errors)
    "handoff.policytools",  # `handoff policy` (cli/policy.py)
    "jsonschema",
    "handoff.domain.oversight",  # `handoff report` (cli/report.py)
    "statistics",
    "psycopg",  # a policy's PostgreSQL credentials (adapters/postgres.py), at the first connection
    "handoff.console",
    "handoff.devenv",
    "handoff.gateway",
    "handoff.cli.kubectl_plugin",
    "prompt_toolkit",  # cel's REPL (domain/celload.py)
    "rich",
)
# Not even a client: `handoff --help` and `handoff policy lint` need no cluster and no Redis.
NOT_WITH_THE_COMMAND_LINE = ("aiohttp", "redis", "handoff.adapters.kube", "kopf")


def _loaded(*modules: str) -> set[str]:
    imports = "\n".join(f"import {m}" for m in modules)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return set(json.loads(done.stdout))


def _under(loaded: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(
        m for m in loaded if m in packages or m.startswith(tuple(f"{p}." for p in packages))
    )


def test_the_operators_start_loads_no_other_commands_tools() -> None:
    loaded = _loaded(
        "handoff.cli.main", "handoff.controller.runner"
    )  # what `handoff operator` runs
    assert "kopf" in loaded  # the probe did load the operator
    assert _under(loaded, NOT_AT_THE_OPERATORS_START) == []


def test_the_command_line_alone_loads_no_client() -> None:
    assert _under(_loaded("handoff.cli.main"), NOT_WITH_THE_COMMAND_LINE) == []


def test_the_lazily_loaded_failures_still_read_as_sentences() -> None:
    from handoff.adapters.kube import KubeError  # noqa: PLC0415 - loaded by the test, not the CLI
    from redis.exceptions import ConnectionError as RedisConnectionError  # noqa: PLC0415

    assert "is the cluster running?" in str(sentence(KubeError(0, "connection refused")))
    assert str(sentence(RedisConnectionError("refused"))).startswith("Redis: refused")
    assert sentence(ValueError("a bug")) is None


def test_postgresql_loads_at_the_first_connection_and_its_failure_is_a_sentence() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    admin = AdminConnection("127.0.0.1", port, "postgres", "admin", "secret")
    with pytest.raises(DatabaseError, match=f"PostgreSQL at 127.0.0.1:{port} is unreachable"):
        asyncio.run(admin.drop_role("agent_ro", "postgres"))


def test_the_operator_never_loads_the_client_libraries_kopf_would_take(tmp_path: Path) -> None:
    """kopf imports the official ``kubernetes`` client and pykube wherever they are installed
    (17 MB of the operator's resident set for the first); the operator's command keeps them out
    of its process. Stand-ins on the path note their own import, so that this holds (and can
    fail) whether or not the real libraries are installed here."""
    marks = tmp_path / "imported"
    marks.mkdir()
    for name in KOPF_OPTIONAL_CLIENTS:
        package = tmp_path / "path" / name
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(
            f"import pathlib\npathlib.Path({str(marks / name)!r}).touch()\n"
        )
    env = os.environ | {"PYTHONPATH": str(tmp_path / "path")}

    # Without the operator's switch, kopf does import them: the stand-ins are seen.
    subprocess.run([sys.executable, "-c", "import kopf"], env=env, check=True, timeout=120)
    assert sorted(p.name for p in marks.iterdir()) == sorted(KOPF_OPTIONAL_CLIENTS)
    for mark in marks.iterdir():
        mark.unlink()

    # The operator's command: it loads kopf, then stops at the kubeconfig nobody wrote.
    done = subprocess.run(
        [sys.executable, "-m", "handoff", "operator", "--kubeconfig", str(tmp_path / "none")],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "kubeconfig" in done.stderr.lower()
    assert list(marks.iterdir()) == []
