"""Break-glass on the real control plane: the annotation grants a group a verb for a while, the
cluster admits its marked reviews, and every approval leaves a post-incident review behind."""

import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import apply_ready_policy, file, policy, request, review, wait_for

pytestmark = pytest.mark.integration
PIR_ACK = ["why", "what", "follow-up"]


def _annotate(cluster: Cluster, ns: str, until: datetime, groups: list[str]) -> None:
    value = json.dumps({"groups": groups, "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "reason": "INC-42: the payments reviewers are unreachable"})  # fmt: skip
    cluster.kubectl("annotate", "--overwrite", "agentactionpolicy", "payments", "-n", ns,
                    f"handoff.dev/break-glass={value}")  # fmt: skip


def _condition(cluster: Cluster, ns: str, reason: str) -> dict[str, object]:
    def probe() -> dict[str, object] | None:
        body = cluster.get("agentactionpolicy", "payments", ns)
        for c in body.get("status", {}).get("conditions", []):
            if c["type"] == "BreakGlass" and c["reason"] == reason:
                return dict(c)
        return None

    return eventually(probe, 30, f"BreakGlass condition {reason}")


def _glass_review(
    cluster: Cluster, ns: str, name: str, who: str, acks: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    entry = {"reviewer": who, "decision": "Approve", "breakGlass": True,
             "acknowledged": acks or ["what", "impact", "rollback"]}  # fmt: skip
    patch = json.dumps([{"op": "add", "path": "/status/reviews/-", "value": entry}])
    return cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=json",
        "-p", patch, who=who, check=False,
    )  # fmt: skip


def test_break_glass_lets_a_named_group_approve_for_a_while_and_leaves_a_review(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    stuck = file(cluster, ns, "payments.charge")  # tier 4, five minutes, payments-approvers
    wait_for(cluster, ns, stuck, "phase", "AwaitingApproval")

    # carol (sre-approvers) is no reviewer of this policy, marked or not: RBAC stops her.
    for attempt in (
        review(cluster, ns, stuck, "carol"),
        _glass_review(cluster, ns, stuck, "carol"),
    ):
        assert attempt.returncode != 0
        assert 'User "carol" cannot' in attempt.stderr
    # alice, a normal reviewer, cannot claim break-glass she was not given: admission stops her.
    claimed = _glass_review(cluster, ns, stuck, "alice")
    assert claimed.returncode != 0
    assert "holds no break-glass on policy payments" in claimed.stderr

    # Too long a window is refused, and grants nothing.
    _annotate(cluster, ns, datetime.now(UTC) + timedelta(hours=48), ["sre-approvers"])
    invalid = _condition(cluster, ns, "BreakGlassInvalid")
    assert "more than 24h away" in str(invalid["message"])
    assert _glass_review(cluster, ns, stuck, "carol").returncode != 0

    until = datetime.now(UTC) + timedelta(seconds=25)
    _annotate(cluster, ns, until, ["sre-approvers"])
    active = _condition(cluster, ns, "BreakGlassActive")
    assert "sre-approvers" in str(active["message"])
    accepted = eventually(
        lambda: (r := _glass_review(cluster, ns, stuck, "carol")).returncode == 0 and r,
        15, "carol's break-glass approval admitted",
    )  # fmt: skip
    assert accepted
    decided = wait_for(cluster, ns, stuck, "phase", "Approved")
    assert decided["status"]["decision"]["reason"] == "BreakGlassApproved"
    assert decided["status"]["decision"]["by"] == ["carol"]

    # The review left behind: tier 4 for payments-approvers, filed by the operator.
    pir = wait_for(cluster, ns, f"{stuck}-pir", "phase", "AwaitingApproval")
    assert pir["spec"]["action"] == "handoff.post-incident-review"
    assert pir["spec"]["parameters"]["approvedBy"] == ["carol"]
    assert "INC-42" in pir["spec"]["reasoning"]
    assert pir["status"]["tier"] == 4
    assert pir["metadata"]["annotations"]["handoff.dev/requested-by"] == (
        "system:serviceaccount:handoff-system:handoff-operator"
    )
    # carol cannot close the review of her own break-glass use; a normal reviewer does.
    own = _glass_review(cluster, ns, f"{stuck}-pir", "carol", PIR_ACK)
    assert own.returncode != 0
    assert "break-glass does not cover it" in own.stderr
    assert review(cluster, ns, f"{stuck}-pir", "alice", acknowledged=PIR_ACK).returncode == 0
    done = wait_for(cluster, ns, f"{stuck}-pir", "phase", "Approved")
    assert done["status"]["decision"]["by"] == ["alice"]

    # Nobody else may file post-incident reviews: not the agent, not a person.
    attempt = cluster.kubectl(
        "create", "-f", "-", who=f"{ns}/payments-agent", check=False,
        input=json.dumps({
            "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
            "metadata": {"name": "fake-pir", "namespace": ns},
            "spec": {"agent": "payments-agent", "action": "handoff.post-incident-review",
                     "summary": "nothing to see"},
        }),
    )  # fmt: skip
    assert attempt.returncode != 0
    assert "filed by the Handoff operator" in attempt.stderr

    # When until passes, the group loses the verb again.
    ended = _condition(cluster, ns, "BreakGlassEnded")
    assert "no longer hold break-glass" in str(ended["message"])
    later = file(cluster, ns, "payments.charge")
    wait_for(cluster, ns, later, "phase", "AwaitingApproval")
    after = _glass_review(cluster, ns, later, "carol")
    assert after.returncode != 0, "break-glass still admitted after its until"
    assert request(cluster, ns, later)["status"]["phase"] == "AwaitingApproval"
