"""pytest fixtures: ``cluster`` (one per session), ``namespace`` (one per test), ``operator``.

Use them from a conftest.py with ``pytest_plugins = ["handoff.testing.fixtures"]``.
"""

from collections.abc import Iterator

import pytest

from handoff import paths
from handoff.testing.cluster import Cluster, OperatorProcess


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if not (paths.bin_dir() / "kube-apiserver").exists():
        pytest.fail(f"no control plane in {paths.bin_dir()}: run 'make controlplane' first")
    folder = tmp_path_factory.mktemp("controlplane")
    control = Cluster(folder).start()
    yield control
    control.stop()


@pytest.fixture(scope="session")
def operator(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """One operator for the session; tests that kill it start it again before they end."""
    process = OperatorProcess(cluster, tmp_path_factory.mktemp("operator")).start()
    yield process
    process.stop()


@pytest.fixture
def namespace(cluster: Cluster) -> str:
    """A fresh namespace with the ServiceAccount payments-agent and the static roles."""
    return cluster.new_namespace()
