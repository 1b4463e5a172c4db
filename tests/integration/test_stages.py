"""Approval stages against the real control plane: the operator opens the stages in order, and
the cluster (RBAC generated per stage, the handoff-reviews admission policy) refuses a review
for a stage that is not open, from someone without the stage's right, or from one person in a
second stage. Expiry and escalation follow the open stage."""

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .endpoints import Receiver
from .helpers import apply_ready_policy, condition, events, file, policy, request, review, wait_for

pytestmark = pytest.mark.integration
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")
LEDGER = {"id": "ledger", "text": "The ledger shows the refund is owed"}


def staged(namespace: str, window: str = "5m", **finance: Any) -> dict[str, Any]:
    """Large refunds: a manager (alice or bob), then finance (carol's group, or bob)."""
    stages = [
        {"name": "manager", "reviewers": {"users": ["alice", "bob"]}},
        {"name": "finance", "reviewers": {"users": ["bob"], "groups": ["sre-approvers"]},
         "checklist": [LEDGER], **finance},
    ]  # fmt: skip
    rules = [{"name": "money", "actions": ["payments.*"], "tier": 4}]  # the lane's window
    return policy(
        namespace, tiers={"tier4": {"decisionWindow": window, "stages": stages}}, rules=rules
    )


def approve(cluster: Cluster, ns: str, name: str, who: str, stage: str) -> Any:
    acknowledged = ["ledger"] if stage == "finance" else ["what", "impact", "rollback"]
    return review(cluster, ns, name, who, stage=stage, acknowledged=acknowledged)


def deny(cluster: Cluster, ns: str, name: str, who: str, stage: str) -> Any:
    return review(cluster, ns, name, who, "Deny", stage=stage, comment="not owed")


def refused(result: Any, *words: str) -> str:
    assert result.returncode != 0, result.stdout
    for word in words:
        assert word in result.stderr, result.stderr
    return str(result.stderr)


def in_stage(cluster: Cluster, ns: str, name: str, stage: str) -> dict[str, Any]:
    return wait_for(cluster, ns, name, "stage", stage)


@pytest.fixture
def refund(cluster: Cluster, operator: OperatorProcess, namespace: str) -> str:
    apply_ready_policy(cluster, staged(namespace))
    name = file(cluster, namespace, "payments.refund", parameters={"amount": 2500})
    body = in_stage(cluster, namespace, name, "manager")
    assert body["status"]["phase"] == "AwaitingApproval"
    return name


def test_two_stages_approved_in_order(cluster: Cluster, namespace: str, refund: str) -> None:
    body = request(cluster, namespace, refund)
    assert [s["name"] for s in body["status"]["stages"]] == ["manager", "finance"]
    assert body["status"]["requiredApprovals"] == 1
    assert approve(cluster, namespace, refund, "alice", "manager").returncode == 0
    body = in_stage(cluster, namespace, refund, "finance")
    assert body["status"]["stages"][0]["approvedBy"] == ["alice"]
    assert body["status"]["checklist"] == [LEDGER]  # the open stage's own checklist
    assert "stage finance (2 of 2): 0 of 1 approval(s)" in condition(body, "Decided")["message"]
    assert any(e["reason"] == "StageOpened" for e in events(cluster, namespace, refund))
    assert approve(cluster, namespace, refund, "carol", "finance").returncode == 0
    body = wait_for(cluster, namespace, refund, "phase", "Approved")
    decision = body["status"]["decision"]
    assert (decision["reason"], decision["by"]) == ("HumanApproved", ["alice", "carol"])
    assert decision["message"] == "approved by alice (stage manager); carol (stage finance)"
    assert body["status"]["stages"][1]["approvedBy"] == ["carol"]


def test_stage_2_may_not_go_first(cluster: Cluster, namespace: str, refund: str) -> None:
    message = refused(
        approve(cluster, namespace, refund, "carol", "finance"),
        "stage finance of this request is not open: it is in stage manager",
    )
    assert "only the open stage takes reviews" in message
    # ... nor may carol review the open stage, which is not hers
    refused(
        approve(cluster, namespace, refund, "carol", "manager"),
        "carol may not review stage manager of requests governed by policy payments",
        "agentactionpolicies/payments:manager",
    )
    # ... nor a Deny at a stage that is not open
    refused(deny(cluster, namespace, refund, "carol", "finance"), "stage finance")
    # a review that names no stage, or an unknown one, says which stage is open
    refused(review(cluster, namespace, refund, "alice"), "name it in your review (stage: manager)")
    refused(approve(cluster, namespace, refund, "alice", "legal"), "stage legal of this request")
    assert request(cluster, namespace, refund)["status"]["reviews"] == []


def test_one_person_counts_in_one_stage_only(cluster: Cluster, namespace: str, refund: str) -> None:
    assert approve(cluster, namespace, refund, "bob", "manager").returncode == 0
    in_stage(cluster, namespace, refund, "finance")
    refused(
        approve(cluster, namespace, refund, "bob", "finance"),
        "you approved stage manager of this request; one person counts in one stage only",
    )
    # a Deny is still taken from them: fail safe
    assert deny(cluster, namespace, refund, "bob", "finance").returncode == 0
    body = wait_for(cluster, namespace, refund, "phase", "Denied")
    assert body["status"]["decision"]["message"] == "bob denied it at stage finance"


def test_a_non_member_may_not_review_any_stage(
    cluster: Cluster, namespace: str, refund: str
) -> None:
    # mallory reviews nothing: RBAC refuses her the status subresource altogether
    refused(approve(cluster, namespace, refund, "mallory", "manager"), 'User "mallory" cannot')
    assert approve(cluster, namespace, refund, "alice", "manager").returncode == 0
    in_stage(cluster, namespace, refund, "finance")
    refused(approve(cluster, namespace, refund, "mallory", "finance"), 'User "mallory" cannot')
    # the policy's own reviewers (payments-approvers: alice, bob) hold approve on the policy,
    # which decides no stage: alice, a manager only, may not approve finance
    refused(
        approve(cluster, namespace, refund, "alice", "finance"),
        "alice may not review stage finance of requests governed by policy payments",
        "agentactionpolicies/payments:finance",
    )
    # and nobody may move the stage by hand
    patch = json.dumps({"status": {"stage": "finance-done"}})
    result = cluster.kubectl(
        "patch", "actionrequest", refund, "-n", namespace, "--subresource=status",
        "--type=merge", "-p", patch, who="carol", check=False,
    )  # fmt: skip
    refused(result, "reviewers may only append to status.reviews")


def test_deny_at_stage_2_decides(cluster: Cluster, namespace: str, refund: str) -> None:
    assert approve(cluster, namespace, refund, "alice", "manager").returncode == 0
    in_stage(cluster, namespace, refund, "finance")
    assert deny(cluster, namespace, refund, "carol", "finance").returncode == 0
    body = wait_for(cluster, namespace, refund, "phase", "Denied")
    decision = body["status"]["decision"]
    assert (decision["reason"], decision["by"]) == ("HumanDenied", ["carol"])
    assert decision["message"] == "carol denied it at stage finance"


def test_expiry_in_the_middle_of_stage_2(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, staged(namespace, window="12s"))
    name = file(cluster, namespace, "payments.refund")
    in_stage(cluster, namespace, name, "manager")
    assert approve(cluster, namespace, name, "alice", "manager").returncode == 0
    in_stage(cluster, namespace, name, "finance")
    body = wait_for(cluster, namespace, name, "phase", "Denied", timeout=25)
    decision = body["status"]["decision"]
    assert decision["reason"] == "Expired"
    assert (
        "in stage finance (2 of 2) with 0 of 1 approval(s): denied, fail safe"
        in (decision["message"])
    )
    refused(approve(cluster, namespace, name, "carol", "finance"), "already decided")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    endpoint = Receiver()
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def test_the_open_stage_is_announced_and_escalated(
    cluster: Cluster, operator: OperatorProcess, namespace: str, receiver: Receiver
) -> None:
    document = staged(namespace, window="2m", escalateAfter="10s", escalateTo=["cfo"])
    document["spec"]["notifications"] = [
        {"name": "finance", "url": receiver.url, "events": ["Pending", "Escalated"]}
    ]
    apply_ready_policy(cluster, document)
    name = file(cluster, namespace, "payments.refund")

    def seen() -> list[tuple[str, str]]:
        return [(body["event"], body.get("stage", "")) for _, body in receiver.received]

    eventually(lambda: seen() == [("Pending", "manager")], what="stage manager announced")
    assert receiver.received[0][1]["stageReviewers"] == {"users": ["alice", "bob"], "groups": []}
    assert "escalation" not in request(cluster, namespace, name)["status"]  # manager: none
    assert approve(cluster, namespace, name, "alice", "manager").returncode == 0
    body = in_stage(cluster, namespace, name, "finance")
    assert body["status"]["escalation"]["to"] == ["cfo"]
    eventually(
        lambda: seen() == [("Pending", "manager"), ("Pending", "finance")],
        what="stage finance announced to its reviewers",
    )
    stage_reviewers = receiver.received[1][1]["stageReviewers"]
    assert stage_reviewers == {"users": ["bob"], "groups": ["sre-approvers"]}
    eventually(
        lambda: seen()[2:] == [("Escalated", "finance")], timeout=20, what="finance escalated"
    )
    assert receiver.received[2][1]["escalateTo"] == ["cfo"]
    assert receiver.received[2][0]["X-Handoff-Delivery"].endswith(":Escalated:finance")


def test_the_plugin_shows_the_stage_and_pending_lists_it_for_its_reviewers(
    cluster: Cluster, namespace: str, refund: str, tmp_path: Path
) -> None:
    people = {who: cluster.token(who) for who in ("alice", "carol")}
    kubeconfig = str(
        cluster.control_plane.write_kubeconfig(tmp_path / "people.kubeconfig", people, namespace)
    )

    def plugin(who: str, *args: str) -> str:
        return subprocess.run(
            [PLUGIN, "--kubeconfig", kubeconfig, "--context", who, *args],
            capture_output=True, text=True, check=True, timeout=120,
        ).stdout  # fmt: skip

    assert refund in plugin("alice", "pending")
    assert refund not in plugin("carol", "pending")  # finance is not open yet
    assert approve(cluster, namespace, refund, "alice", "manager").returncode == 0
    in_stage(cluster, namespace, refund, "finance")
    listed = plugin("carol", "pending")
    assert refund in listed
    assert "0/1 finance" in listed
    assert refund not in plugin("alice", "pending")
    shown = plugin("carol", "show", refund)
    assert "in stage finance (2 of 2), waits for 1 approval(s)" in shown
    assert "1. manager: approved by alice" in shown
    assert "2. finance: open: needs 1 more from bob, group:sre-approvers" in shown
    assert "alice approved at stage manager" in shown
    for who, answer in (("carol", "yes"), ("alice", "no"), ("bob", "yes")):
        can = cluster.kubectl(
            "auth", "can-i", "approve", "agentactionpolicies/payments:finance", "-n", namespace,
            who=who, check=False,
        )  # fmt: skip
        assert can.stdout.strip() == answer, (who, can.stdout, can.stderr)
    approved = plugin("carol", "approve", refund, "--ack", "ledger")
    assert "Recorded carol's approval" in approved
    wait_for(cluster, namespace, refund, "phase", "Approved")
