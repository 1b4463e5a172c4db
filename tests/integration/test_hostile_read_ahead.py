"""A waiting request is read a second ahead of its deadline (Requests.read_ahead): what a
reviewer or the agent does in that last second, against a real kube-apiserver, is what the
deadline decides; and it is decided once, with one Event."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from handoff.domain.timefmt import parse_time
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, events, file, policy, review_now, wait_for

pytestmark = pytest.mark.integration


def _until(deadline: str, before: float) -> None:
    """Sleep until ``before`` seconds ahead of ``deadline`` (the 10 s window's last second)."""
    left = (parse_time(deadline) - datetime.now(UTC)).total_seconds() - before
    assert 0 < left < 10, f"{left:.2f} s left: the request took too long to wait"
    time.sleep(left)


def _decision_events(cluster: Cluster, ns: str, name: str) -> list[str]:
    reasons = [e["reason"] for e in events(cluster, ns, name)]
    return [r for r in reasons if r not in ("AwaitingReview", "Classified")]


@pytest.mark.parametrize(("decision", "reason"), [("Deny", "HumanDenied"),
                                                  ("Approve", "HumanApproved")])  # fmt: skip
def test_a_review_half_a_second_before_the_deadline_decides(
    cluster: Cluster, operator: OperatorProcess, namespace: str, decision: str, reason: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    name = file(cluster, ns, "deploy.production")  # tier 4, a 10 s window
    deadline = wait_for(cluster, ns, name, "phase", "AwaitingApproval")["status"]["deadline"]
    _until(deadline, 0.4)  # after the read ahead (a second ahead, half a second's lull at most)
    said = {"comment": "not in the last second"} if decision == "Deny" else {}
    review_now(cluster, ns, name, "alice", decision, **said)  # raises if refused (too late)

    decided = wait_for(cluster, ns, name, "decision.reason", reason, timeout=15)
    assert decided["status"]["decision"]["by"] == ["alice"]
    eventually(lambda: _decision_events(cluster, ns, name), 10, "the decision's Event")
    time.sleep(2.5)  # a held Event waits 2 s at most: a second one would be out by now
    assert _decision_events(cluster, ns, name) == [reason]


def test_the_agent_cannot_change_its_request_in_the_last_second(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """To make what the deadline decides differ from what was read ahead, the agent would make a
    newer version (a label, an annotation, its spec) or delete and file it again: its rights
    allow none of it. A reviewer's denial in the last half second decides."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    name = file(cluster, ns, "deploy.production")
    deadline = wait_for(cluster, ns, name, "phase", "AwaitingApproval")["status"]["deadline"]
    # Refused by RBAC whenever they come; here as early as kubectl can, so that its start (up to
    # seconds on a loaded machine) leaves the last second to the reviewer.
    agent = f"{ns}/{AGENT}"
    for attempt in (
        ("label", "actionrequest", name, "-n", ns, "x=1"),
        ("annotate", "actionrequest", name, "-n", ns, "example.com/x=1"),
        ("patch", "actionrequest", name, "-n", ns, "--type=merge", "-p",
         '{"spec":{"action":"db.query"}}'),
        ("delete", "actionrequest", name, "-n", ns, "--wait=false"),
    ):  # fmt: skip
        refused = cluster.kubectl(*attempt, who=agent, check=False)
        assert refused.returncode != 0, attempt
        assert "forbidden" in refused.stderr, attempt
    _until(deadline, 0.4)
    review_now(cluster, ns, name, "alice", "Deny", comment="no")

    decided = wait_for(cluster, ns, name, "decision.reason", "HumanDenied", timeout=15)
    assert decided["status"]["decision"]["by"] == ["alice"]
    eventually(lambda: _decision_events(cluster, ns, name), 10, "the decision's Event")
    time.sleep(2.5)
    assert _decision_events(cluster, ns, name) == ["HumanDenied"]


def _rss_kb(operator: OperatorProcess) -> int:
    assert operator.process is not None
    with open(f"/proc/{operator.process.pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


FLOOD = 100


def test_a_flood_of_the_largest_requests_expiring_together(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """An agent files 100 tier-4 requests as large as it may (64 KiB of parameters, 200 KB of its
    own annotations) in one go: their deadlines fall in the same second or two. Each expires
    once with one Event, and the operator does not hold the flood whole in its memory."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    items = [{
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"name": f"big-{i}", "namespace": ns,
                     "annotations": {f"example.com/a{j}": "y" * 4000 for j in range(50)}},
        "spec": {"agent": AGENT, "action": "deploy.production", "target": "t", "summary": "s",
                 "parameters": {f"p{j}": "x" * 1000 for j in range(60)}},
    } for i in range(FLOOD)]  # fmt: skip
    before = _rss_kb(operator)
    peak, done = [before], threading.Event()

    def sample() -> None:  # the resident set's peak, every 20 ms while the flood is handled
        while not done.wait(0.02):
            peak.append(max(peak[-1], _rss_kb(operator)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        created = cluster.kubectl(
            "create", "-f", "-", who=f"{ns}/{AGENT}", check=False,
            input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
        )  # fmt: skip
        assert created.returncode == 0, created.stderr[-2000:]
        for i in range(FLOOD):
            wait_for(cluster, ns, f"big-{i}", "decision.reason", "Expired", timeout=40)
    finally:
        done.set()
        sampler.join()
    eventually(
        lambda: all("Expired" in [e["reason"] for e in events(cluster, ns, f"big-{i}")]
                    for i in range(0, FLOOD, 10)),
        15, "the Expired Events",
    )  # fmt: skip
    listed = cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout
    expired = [e["involvedObject"]["name"] for e in json.loads(listed)["items"]
               if e["reason"] == "Expired"]  # fmt: skip
    assert sorted(expired) == sorted(f"big-{i}" for i in range(FLOOD))  # one each
    print(f"operator VmRSS {before} kB before, {peak[-1]} kB at most during the flood")
    assert peak[-1] - before < 150_000
