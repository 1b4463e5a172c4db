"""Pydantic AI's deferred tools decided in Handoff: each run is a real process of its own that
exits; reviewers use ``kubectl handoff``; the resume worker is another process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, redis_client

from .framework_harness import Setup, setup
from .helpers import AGENT, request, wait_for

pytestmark = pytest.mark.integration
SCRIPT = "pydantic_ai_agent.py"


@pytest.fixture
def env(cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path) -> Setup:
    return setup(cluster, namespace, tmp_path)


def test_a_tier1_tool_runs_at_once(env: Setup) -> None:
    ran = env.agent(SCRIPT, "run", "lookup")
    assert ran["requests"] == []
    assert ran["output"].startswith("done: ")
    assert "lookup ran with" in ran["output"]
    assert env.tool_calls() == [{"tool": "lookup", "args": {"query": "orders of ch_123"}}]
    listing = json.loads(env.cluster.kubectl("get", "ar", "-n", env.namespace, "-o", "json").stdout)
    [filed] = listing["items"]
    assert filed["spec"]["action"] == "db.query"
    assert filed["spec"]["parameters"] == {"query": "orders of ch_123"}
    wait_for(env.cluster, env.namespace, filed["metadata"]["name"], "phase", "Executed")


def test_a_tier4_tool_pauses_and_a_fresh_process_resumes_it_with_the_approved_arguments(
    env: Setup,
) -> None:
    paused = env.agent(SCRIPT, "run", "charge")  # the process exits here
    [name] = paused["requests"]
    assert paused["output"] is None
    assert env.tool_calls() == []
    waiting = wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    spec = waiting["spec"]
    assert (spec["action"], spec["parameters"]) == (
        "payments.charge",
        {"amount": 5, "currency": "USD"},
    )
    assert spec["reasoning"] == "The customer was charged twice for order 881"
    assert spec["summary"].startswith("charge(")

    nothing = env.agent(SCRIPT, "resume")  # undecided: the worker leaves it waiting
    assert nothing["resumed"] == 0
    assert env.tool_calls() == []

    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    resumed = env.agent(SCRIPT, "resume")
    assert resumed["resumed"] == 1
    assert env.tool_calls() == [{"tool": "charge", "args": {"amount": 5, "currency": "USD"}}]
    assert "charge ran with" in resumed["outputs"][0]
    wait_for(env.cluster, env.namespace, name, "phase", "Executed")

    again = env.agent(SCRIPT, "resume")  # once: nothing runs twice
    assert again["resumed"] == 0
    assert len(env.tool_calls()) == 1


def test_a_denial_reaches_the_model_with_the_reviewers_words(env: Setup) -> None:
    [name] = env.agent(SCRIPT, "run", "charge")["requests"]
    wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    env.decide("deny", name, who="bob", comment="ticket 881 was refunded already")
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanDenied")
    resumed = env.agent(SCRIPT, "resume")
    [output] = resumed["outputs"]
    assert output.startswith("done: ")  # the run finished, the model read the refusal
    assert "HumanDenied" in output
    assert "ticket 881 was refunded already" in output
    assert env.tool_calls() == []
    assert request(env.cluster, env.namespace, name)["status"]["phase"] == "Denied"


def test_an_expiry_reaches_the_model_as_a_refusal(env: Setup) -> None:
    [name] = env.agent(SCRIPT, "run", "deploy")["requests"]  # deploy.*: a 10 s window
    wait_for(env.cluster, env.namespace, name, "decision.reason", "Expired", timeout=30)
    [output] = env.agent(SCRIPT, "resume")["outputs"]
    assert "Expired" in output
    assert "denied, fail safe" in output
    assert env.tool_calls() == []


def test_two_pending_calls_approved_in_reverse_order_each_resume_their_own(env: Setup) -> None:
    first, second = env.agent(SCRIPT, "run", "two")["requests"]
    for name in (first, second):
        wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    params = [
        request(env.cluster, env.namespace, n)["spec"]["parameters"]["amount"]
        for n in (first, second)
    ]
    assert params == [1, 2]

    env.decide("approve", second)
    wait_for(env.cluster, env.namespace, second, "decision.reason", "HumanApproved")
    assert env.agent(SCRIPT, "resume")["resumed"] == 0  # the run still waits for the first
    assert env.tool_calls() == []

    env.decide("approve", first)
    wait_for(env.cluster, env.namespace, first, "decision.reason", "HumanApproved")
    resumed = env.agent(SCRIPT, "resume")
    assert resumed["resumed"] == 1
    assert sorted(c["args"]["amount"] for c in env.tool_calls()) == [1, 2]
    said = json.loads(resumed["outputs"][0].removeprefix("done: "))
    assert said == {
        "call-two-0": 'charge ran with {"amount": 1, "currency": "USD"}',
        "call-two-1": 'charge ran with {"amount": 2, "currency": "USD"}',
    }
    for name in (first, second):
        wait_for(env.cluster, env.namespace, name, "phase", "Executed")


def test_arguments_changed_in_the_stored_run_are_refused_and_reported_failed(
    env: Setup, redis_server: object
) -> None:
    """Whoever can write the agent's Redis keys changes the paused run's history: the model's
    call now asks for 5000. The approved request says 5: the tool does not run."""
    [name] = env.agent(SCRIPT, "run", "charge")["requests"]
    wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    admin = redis_client(redis_server.url)  # type: ignore[attr-defined]
    [key] = list(admin.scan_iter(f"handoff:state:{env.namespace}:{AGENT}:pause-*"))
    stored = admin.get(key)
    assert b'\\"amount\\":5,' in stored
    admin.set(key, stored.replace(b'\\"amount\\":5,', b'\\"amount\\":5000,'), keepttl=True)

    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    [output] = env.agent(SCRIPT, "resume")["outputs"]
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
