"""LangGraph only: a thread resumed the LangGraph way, but not by Handoff's worker. The scenarios
every framework goes through are in test_framework_approvals.py."""

from pathlib import Path

import pytest
from handoff.devenv.postgres import PostgresServer
from handoff.testing.cluster import Cluster, OperatorProcess

from .framework_harness import Setup, setup
from .helpers import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def env(
    cluster: Cluster,
    operator: OperatorProcess,
    postgres_server: PostgresServer,
    namespace: str,
    tmp_path: Path,
) -> Setup:
    found = setup(cluster, namespace, tmp_path)
    found.script = "langgraph_agent.py"
    found.extra_env = {"DATABASE_URL": postgres_server.url}
    return found


def test_a_resume_that_does_not_come_from_handoff_runs_nothing(env: Setup) -> None:
    """Anyone who can invoke the graph answers the interrupt with an approval of their own: the
    tool does not run, before or after the request is approved; Handoff's worker then finds the
    thread no longer waiting and reports the approved request Failed."""
    [name] = env.run("charge")["requests"]
    thread = f"{env.namespace}-1"
    wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    [output] = env.agent(env.script, "forge", thread)["outputs"]
    assert "Handoff refused charge: it was resumed without Handoff's decision" in output
    assert env.tool_calls() == []

    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    assert env.resume()["resumed"] == 1  # the kept pause is taken; the thread is past it
    assert env.tool_calls() == []
    failed = wait_for(env.cluster, env.namespace, name, "phase", "Failed")
    assert "resumed without Handoff" in failed["status"]["execution"]["message"]
