"""The MCP gateway's tests' fixtures (a plugin of tests/conftest.py, so that every test file
that needs them asks for them by name): the counting upstream bank and a gateway, once per test
module, and ``bank``, a namespace with the agent, its policy and the MCPServer ``bank``."""

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from handoff.devenv import processes
from handoff.testing.cluster import Cluster, OperatorProcess, eventually
from handoff.testing.gateway import GatewayProcess

from .helpers import AGENT, apply_ready_policy
from .mcp_helpers import UPSTREAM, Upstream, answers, bank_policy, mcp_server, ready


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    folder = tmp_path_factory.mktemp("upstream")
    port, token = processes.free_port(), uuid.uuid4().hex
    process = processes.spawn(
        "upstream", [sys.executable, str(UPSTREAM), str(port), str(folder / "calls.jsonl"), token],
        folder,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/mcp"
    processes.wait_until(
        lambda: answers(url), 30, "the upstream MCP server", folder / "upstream.log"
    )
    yield Upstream(url, folder / "calls.jsonl", token)
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def gateway(
    cluster: Cluster, operator: OperatorProcess, redis_server: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:  # fmt: skip
    process = GatewayProcess(cluster, tmp_path_factory.mktemp("gateway"), redis_server.url).start()
    yield process
    process.stop()


@pytest.fixture
def bank(cluster: Cluster, upstream: Upstream, gateway: GatewayProcess) -> str:
    """A namespace with the agent, a policy for the bank's tools and the MCPServer ``bank``."""
    ns = cluster.new_namespace(agents=(AGENT, "other-agent"))
    apply_ready_policy(cluster, bank_policy(ns))
    cluster.apply({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "bank-credentials", "namespace": ns,
                                "annotations": {"handoff.dev/mcp-server": "bank"}},
                   "stringData": {"Authorization": f"Bearer {upstream.token}"}})  # fmt: skip
    cluster.apply(mcp_server(ns, upstream.url))
    server = lambda: cluster.get("mcpserver", "bank", ns)  # noqa: E731
    try:
        eventually(lambda: ready(server()), 30, "MCPServer bank Ready")
    except AssertionError as e:  # say what the gateway wrote, or that it wrote nothing
        raise AssertionError(f"{e}; its status: {server().get('status')}") from None
    return ns
