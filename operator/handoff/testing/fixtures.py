"""pytest fixtures: ``cluster``, ``redis_server``, ``postgres_server`` and ``operator`` (one each
per session), and ``namespace`` (one per test).

Use them from a conftest.py with ``pytest_plugins = ["handoff.testing.fixtures"]``.
"""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from handoff import paths
from handoff.devenv.postgres import PostgresServer
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, close_clients


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not (paths.bin_dir() / "kube-apiserver").exists():
        pytest.fail(f"no control plane in {paths.bin_dir()}: run 'make controlplane' first")
    folder = tmp_path_factory.mktemp("controlplane")
    control = Cluster(folder).start()
    yield control
    control.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private Redis with append-only persistence and a password on the default user."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A private PostgreSQL. Its folder is outside pytest's (root-only) temp tree, because the
    server runs as the postgres user when the tests run as root."""
    folder = Path(tempfile.mkdtemp(prefix="handoff-pg-"))
    folder.chmod(0o755)
    server = PostgresServer(folder / "pg")
    server.start()
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the session; tests that kill it start it again before they end."""
    folder = tmp_path_factory.mktemp("operator")
    process = OperatorProcess(cluster, folder, redis_url=redis_server.url).start()
    yield process
    process.stop()


@pytest.fixture(autouse=True)
def _close_redis_clients() -> Iterator[None]:
    yield
    close_clients()


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    """A fresh namespace with the ServiceAccount payments-agent (rights come from policies)."""
    return cluster.new_namespace()
