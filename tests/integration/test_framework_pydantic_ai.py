"""Pydantic AI only: a paused run's stored history changed behind Handoff's back, and the example.
The scenarios every framework goes through are in test_framework_approvals.py."""

import subprocess
import sys
from pathlib import Path

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, redis_client

from .framework_harness import Setup, setup
from .helpers import AGENT, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def env(cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path) -> Setup:
    found = setup(cluster, namespace, tmp_path)
    found.script = "pydantic_ai_agent.py"
    return found


def test_arguments_changed_in_the_stored_run_are_refused_and_reported_failed(
    env: Setup, redis_server: object
) -> None:
    """Whoever can write the agent's Redis keys changes the paused run's history: the model's
    call now asks for 5000. The approved request says 5: the tool does not run."""
    [name] = env.run("charge")["requests"]
    wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    admin = redis_client(redis_server.url)  # type: ignore[attr-defined]
    [key] = list(admin.scan_iter(f"handoff:state:{env.namespace}:{AGENT}:pause-*"))
    stored = admin.get(key)
    assert b'\\"amount\\":5,' in stored
    admin.set(key, stored.replace(b'\\"amount\\":5,', b'\\"amount\\":5000,'), keepttl=True)

    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    [output] = env.resume()["outputs"]
    assert "Handoff refused charge" in output
    assert env.tool_calls() == []
    failed = wait_for(env.cluster, env.namespace, name, "phase", "Failed")
    assert "5000" in failed["status"]["execution"]["message"]


def test_the_example_runs_pauses_and_resumes(env: Setup) -> None:
    """examples/pydantic_ai_approvals.py, as docs/frameworks.md tells a reader to run it."""
    example = Path(__file__).parents[2] / "examples" / "pydantic_ai_approvals.py"
    environment = {"KUBECONFIG": env.agent_kubeconfig, "HANDOFF_NAMESPACE": env.namespace,
                   "PATH": "/usr/bin:/bin"}  # fmt: skip

    def run(mode: str) -> str:
        done = subprocess.run([sys.executable, str(example), mode], capture_output=True, text=True,
                              env=environment, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    ran = run("run")
    assert "waiting for a person: refund({'charge': 'ch_124', 'amount': 2500})" in ran
    name = ran.split(" is ", 1)[1].split()[0]
    waiting = wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    assert waiting["spec"]["target"] == "stripe:charge/ch_124"
    assert waiting["spec"]["blastRadius"] == "$2,500 leaves the company account"
    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    assert "Finished: refunded $2,500 of ch_124" in run("resume")
    wait_for(env.cluster, env.namespace, name, "phase", "Executed")
