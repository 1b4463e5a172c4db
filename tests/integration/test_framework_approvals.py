"""Each framework's own approvals, decided in Handoff, through the same scenarios: each run is a
real process of its own that exits; reviewers use ``kubectl handoff``; the resume worker is
another process (every framework object is built again from the stored state)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from handoff.devenv.postgres import PostgresServer
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, redis_client

from .framework_harness import Setup, setup
from .helpers import AGENT, request, wait_for

pytestmark = pytest.mark.integration
FRAMEWORKS = ["pydantic_ai", "langgraph", "openai_agents"]


@pytest.fixture(params=FRAMEWORKS)
def env(
    request: pytest.FixtureRequest,
    cluster: Cluster,
    operator: OperatorProcess,
    postgres_server: PostgresServer,
    namespace: str,
    tmp_path: Path,
) -> Setup:
    """The scenario's world, with the framework's agent script (LangGraph's checkpoints in the
    fixture's PostgreSQL)."""
    found = setup(cluster, namespace, tmp_path)
    found.script = f"{request.param}_agent.py"
    found.extra_env = {"DATABASE_URL": postgres_server.url}
    return found


def test_a_tier1_tool_runs_at_once(env: Setup) -> None:
    ran = env.run("lookup")
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
    paused = env.run("charge")  # the process exits here
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

    nothing = env.resume()  # undecided: the worker leaves it waiting
    assert nothing["resumed"] == 0
    assert env.tool_calls() == []

    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    resumed = env.resume()
    assert resumed["resumed"] == 1
    assert env.tool_calls() == [{"tool": "charge", "args": {"amount": 5, "currency": "USD"}}]
    assert "charge ran with" in resumed["outputs"][0]
    wait_for(env.cluster, env.namespace, name, "phase", "Executed")

    again = env.resume()  # once: nothing runs twice
    assert again["resumed"] == 0
    assert len(env.tool_calls()) == 1


def test_a_denial_reaches_the_model_with_the_reviewers_words(env: Setup) -> None:
    [name] = env.run("charge")["requests"]
    wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    env.decide("deny", name, who="bob", comment="ticket 881 was refunded already")
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanDenied")
    resumed = env.resume()
    [output] = resumed["outputs"]
    assert output.startswith("done: ")  # the run finished, the model read the refusal
    assert "HumanDenied" in output
    assert "ticket 881 was refunded already" in output
    assert env.tool_calls() == []
    assert request(env.cluster, env.namespace, name)["status"]["phase"] == "Denied"


def test_an_expiry_reaches_the_model_as_a_refusal(env: Setup) -> None:
    [name] = env.run("deploy")["requests"]  # deploy.*: a 10 s window
    wait_for(env.cluster, env.namespace, name, "decision.reason", "Expired", timeout=30)
    [output] = env.resume()["outputs"]
    assert "Expired" in output
    assert "denied, fail safe" in output
    assert env.tool_calls() == []


def test_two_pending_calls_approved_in_reverse_order_each_resume_their_own(env: Setup) -> None:
    first, second = env.run("two")["requests"]
    for name in (first, second):
        wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    params = [
        request(env.cluster, env.namespace, n)["spec"]["parameters"]["amount"]
        for n in (first, second)
    ]
    assert params == [1, 2]

    env.decide("approve", second)
    wait_for(env.cluster, env.namespace, second, "decision.reason", "HumanApproved")
    assert env.resume()["resumed"] == 0  # the run still waits for the first
    assert env.tool_calls() == []

    env.decide("approve", first)
    wait_for(env.cluster, env.namespace, first, "decision.reason", "HumanApproved")
    resumed = env.resume()
    assert resumed["resumed"] == 1
    assert sorted(c["args"]["amount"] for c in env.tool_calls()) == [1, 2]
    said = json.loads(resumed["outputs"][0].removeprefix("done: "))
    assert said == {
        "call-two-0": 'charge ran with {"amount": 1, "currency": "USD"}',
        "call-two-1": 'charge ran with {"amount": 2, "currency": "USD"}',
    }
    for name in (first, second):
        wait_for(env.cluster, env.namespace, name, "phase", "Executed")


def tamper(stored: bytes, drop_invocations: bool) -> bytes:
    """The paused run with the model's call asking for 5000 instead of 5, wherever it says so
    (JSON in JSON: the history or RunState is a string inside Handoff's record)."""
    record = json.loads(stored)
    key = "messages" if "messages" in record["data"] else "state"
    inner, count = re.subn(r'(amount\\?":)5,', r"\g<1>5000,", record["data"][key])
    assert count >= 1, inner
    if drop_invocations:  # the Agents SDK's own fingerprints of each call: gone, not stale
        state = json.loads(inner)
        state["context"]["tool_invocations"] = {}
        inner = json.dumps(state)
    record["data"][key] = inner
    return json.dumps(record).encode()


@pytest.mark.parametrize(
    ("env", "drop_invocations", "refused_by"),
    [
        ("pydantic_ai", False, "Handoff"),
        ("openai_agents", False, "the framework"),  # its fingerprint of the call no longer matches
        ("openai_agents", True, "Handoff"),  # a careful attacker removed the fingerprints too
    ],
    indirect=["env"],
)
def test_arguments_changed_in_the_stored_run_are_refused_and_reported_failed(
    env: Setup, redis_server: RedisServer, drop_invocations: bool, refused_by: str
) -> None:
    """Whoever can write the agent's Redis keys changes the paused run (a message history, a
    RunState): the model's call now asks for 5000. The approved request says 5: the tool does not
    run, the request is Failed, and the worker goes on. (LangGraph's paused threads are in its
    checkpointer, outside Handoff's keys.)"""
    [name] = env.run("charge")["requests"]
    wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    admin = redis_client(redis_server.url)
    [key] = list(admin.scan_iter(f"handoff:state:{env.namespace}:{AGENT}:pause-*"))
    admin.set(key, tamper(admin.get(key), drop_invocations), keepttl=True)

    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    outputs = env.resume()["outputs"]
    assert env.tool_calls() == []
    failed = wait_for(env.cluster, env.namespace, name, "phase", "Failed")
    message = failed["status"]["execution"]["message"]
    if refused_by == "Handoff":  # the framework took the run; the call met the approved spec
        [output] = outputs
        assert "Handoff refused charge" in output
        assert '{"amount":5000,"currency":"USD"}, but' in message
    else:  # the framework refused the stored run itself: the worker reports it and goes on
        assert outputs == []
        assert "the paused run could not be restored (ModelBehaviorError" in message


def test_the_example_runs_pauses_and_resumes(env: Setup) -> None:
    """examples/<framework>_approvals.py, as docs/frameworks.md tells a reader to run it."""
    example = (
        Path(__file__).parents[2] / "examples" / env.script.replace("_agent.py", "_approvals.py")
    )
    environment = {"KUBECONFIG": env.agent_kubeconfig, "HANDOFF_NAMESPACE": env.namespace,
                   "PATH": "/usr/bin:/bin", **env.extra_env}  # fmt: skip

    def run(mode: str) -> str:
        done = subprocess.run([sys.executable, str(example), mode], capture_output=True, text=True,
                              env=environment, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return done.stdout

    ran = run("run")
    assert "waiting for a person: refund(" in ran
    name = ran.split(" is ", 1)[1].split()[0]
    waiting = wait_for(env.cluster, env.namespace, name, "phase", "AwaitingApproval")
    assert waiting["spec"]["parameters"] == {"charge": "ch_124", "amount": 2500}
    assert waiting["spec"]["target"] == "stripe:charge/ch_124"
    assert waiting["spec"]["blastRadius"] == "$2,500 leaves the company account"
    env.decide("approve", name)
    wait_for(env.cluster, env.namespace, name, "decision.reason", "HumanApproved")
    assert "Finished: refunded $2,500 of ch_124" in run("resume")
    wait_for(env.cluster, env.namespace, name, "phase", "Executed")
