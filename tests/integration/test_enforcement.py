"""The boundaries hold in the cluster itself: RBAC and admission refuse, with a clear message,
whatever the agent or a careless reviewer tries, and the legitimate path still works."""

import json
from typing import Any

import pytest
import yaml
from handoff.testing.cluster import Cluster, OperatorProcess

from .helpers import AGENT, apply_ready_policy, file, policy, request, review, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def waiting(cluster: Cluster, operator: OperatorProcess, namespace: str) -> tuple[str, str]:
    """A tier 4 request waiting for a reviewer, in a namespace with the payments policy."""
    apply_ready_policy(cluster, policy(namespace))
    name = file(cluster, namespace, "payments.charge")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    return namespace, name


def patch_status(cluster: Cluster, ns: str, name: str, who: str, ops: list[dict[str, Any]]) -> Any:
    return cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=json",
        "-p", json.dumps(ops), who=who, check=False,
    )  # fmt: skip


def refused(result: Any, *phrases: str) -> None:
    assert result.returncode != 0, result.stdout
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def test_the_cluster_stamps_who_filed(cluster: Cluster, waiting: tuple[str, str]) -> None:
    ns, name = waiting
    annotations = request(cluster, ns, name)["metadata"]["annotations"]
    assert annotations["handoff.dev/requested-by"] == f"system:serviceaccount:{ns}:{AGENT}"
    forged = cluster.kubectl(
        "annotate", "--overwrite", "actionrequest", name, "-n", ns, "handoff.dev/requested-by=bob",
        check=False,
    )  # fmt: skip
    refused(forged, "handoff.dev/requested-by annotation records who filed the request")


def test_agent_cannot_approve_itself(cluster: Cluster, waiting: tuple[str, str]) -> None:
    ns, name = waiting
    result = patch_status(cluster, ns, name, f"{ns}/{AGENT}", [
        {"op": "add", "path": "/status/reviews/-", "value": {
            "reviewer": f"system:serviceaccount:{ns}:{AGENT}", "decision": "Approve",
            "acknowledged": ["what", "impact", "rollback"]}},
    ])  # fmt: skip
    refused(result, "is forbidden", 'resource "actionrequests/status"')
    forged_decision = patch_status(cluster, ns, name, f"{ns}/{AGENT}", [
        {"op": "add", "path": "/status/decision", "value": {"outcome": "Approved", "reason": "HumanApproved"}},
    ])  # fmt: skip
    refused(forged_decision, "forbidden")
    assert request(cluster, ns, name)["status"]["phase"] == "AwaitingApproval"


def test_agent_cannot_edit_or_delete_its_request(
    cluster: Cluster, waiting: tuple[str, str]
) -> None:
    ns, name = waiting
    edit = cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--type=merge",
        "-p", json.dumps({"spec": {"parameters": {"amount": 1}}}), who=f"{ns}/{AGENT}", check=False,
    )  # fmt: skip
    refused(edit, 'cannot patch resource "actionrequests"')
    delete = cluster.kubectl(
        "delete", "actionrequest", name, "-n", ns, who=f"{ns}/{AGENT}", check=False
    )
    refused(delete, 'cannot delete resource "actionrequests"')


def test_agent_cannot_file_as_another_agent(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = cluster.new_namespace(agents=(AGENT, "lax-agent"))
    apply_ready_policy(cluster, policy(ns))
    lax = policy(
        ns,
        "lax",
        agents={"serviceAccounts": ["lax-agent"]},
        rules=[{"name": "all", "actions": ["*"], "tier": 1}],
    )
    apply_ready_policy(cluster, lax)
    with pytest.raises(RuntimeError) as caught:
        file(cluster, ns, "payments.charge", agent="lax-agent", who=f"{ns}/{AGENT}")
    message = str(caught.value)
    assert "an agent may file requests only as itself" in message
    assert f"you are system:serviceaccount:{ns}:{AGENT} but spec.agent says lax-agent" in message


def test_mallory_cannot_decide(cluster: Cluster, waiting: tuple[str, str]) -> None:
    ns, name = waiting
    refused(
        review(cluster, ns, name, "mallory"),
        'User "mallory" cannot',
        'resource "actionrequests/status"',
    )


def test_a_reviewer_of_another_policy_cannot_decide(
    cluster: Cluster, waiting: tuple[str, str]
) -> None:
    ns, name = waiting
    # carol reviews for the SRE policy in the same namespace, so she may patch request status...
    sre = policy(
        ns,
        "sre",
        agents={"serviceAccounts": ["sre-agent"]},
        reviewers={"groups": ["sre-approvers"]},
    )
    apply_ready_policy(cluster, sre)
    # ...but only the payments policy's reviewers hold approve on it.
    refused(
        review(cluster, ns, name, "carol"),
        "carol may not decide requests governed by policy payments",
        "verb approve on agentactionpolicies/payments",
    )


def test_a_review_is_signed_with_your_own_name(cluster: Cluster, waiting: tuple[str, str]) -> None:
    ns, name = waiting
    forged = patch_status(cluster, ns, name, "alice", [
        {"op": "add", "path": "/status/reviews/-", "value": {
            "reviewer": "bob", "decision": "Approve", "acknowledged": ["what", "impact", "rollback"]}},
    ])  # fmt: skip
    refused(
        forged,
        'a review is signed with your own user name: you are "alice", not "bob" (3 characters)',
    )


def test_reviews_cannot_be_rewritten_and_the_rest_of_status_is_the_operators(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(
        cluster, policy(namespace, tiers={"tier4": {"approvals": 2, "decisionWindow": "5m"}})
    )
    name = file(cluster, namespace, "deploy.production")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    assert review(cluster, namespace, name, "alice").returncode == 0
    rewrite = patch_status(cluster, namespace, name, "bob", [
        {"op": "replace", "path": "/status/reviews/0/reviewer", "value": "bob"},
    ])  # fmt: skip
    refused(rewrite, "append exactly one review")
    remove = patch_status(
        cluster, namespace, name, "alice", [{"op": "remove", "path": "/status/reviews/0"}]
    )
    refused(remove, "append exactly one review")
    two_at_once = patch_status(cluster, namespace, name, "bob", [
        {"op": "add", "path": "/status/reviews/-", "value": {"reviewer": "bob", "decision": "Approve"}},
        {"op": "add", "path": "/status/reviews/-", "value": {"reviewer": "bob", "decision": "Approve"}},
    ])  # fmt: skip
    refused(two_at_once, "append exactly one review")
    self_approve = patch_status(cluster, namespace, name, "bob", [
        {"op": "replace", "path": "/status/phase", "value": "Approved"},
    ])  # fmt: skip
    refused(self_approve, "reviewers may only append to status.reviews")
    assert request(cluster, namespace, name)["status"]["reviews"][0]["reviewer"] == "alice"


def test_no_review_after_the_decision(cluster: Cluster, waiting: tuple[str, str]) -> None:
    ns, name = waiting
    assert review(cluster, ns, name, "alice").returncode == 0
    wait_for(cluster, ns, name, "decision.reason", "HumanApproved")
    late = review(cluster, ns, name, "bob", "Deny", comment="too late")
    refused(
        late,
        "this request was already decided (Approved, HumanApproved): no more reviews are taken",
    )


def test_a_deny_must_say_why(cluster: Cluster, waiting: tuple[str, str]) -> None:
    ns, name = waiting
    refused(review(cluster, ns, name, "alice", "Deny"), "a Deny must say why in its comment")
    refused(review(cluster, ns, name, "alice", "Deny", comment="   "), "a Deny must say why")
    assert review(cluster, ns, name, "alice", "Deny", comment="wrong customer").returncode == 0
    assert wait_for(cluster, ns, name, "decision.reason", "HumanDenied")["status"]["decision"][
        "by"
    ] == ["alice"]


def test_a_person_who_files_a_request_cannot_review_it(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    grant = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": "file-requests", "namespace": namespace},
             "rules": [{"apiGroups": ["handoff.dev"], "resources": ["actionrequests"], "verbs": ["create"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": "alice-files", "namespace": namespace},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "file-requests"},
             "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]},
        ],
    }  # fmt: skip
    cluster.apply(yaml.safe_dump(grant))
    name = file(cluster, namespace, "payments.charge", who="alice")
    waiting = wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    assert waiting["metadata"]["annotations"]["handoff.dev/requested-by"] == "alice"
    refused(review(cluster, namespace, name, "alice"), "you filed this request")
    assert review(cluster, namespace, name, "bob").returncode == 0
    assert wait_for(cluster, namespace, name, "decision.reason", "HumanApproved")["status"][
        "decision"
    ]["by"] == ["bob"]


def test_generated_rbac_follows_the_policy(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))

    def can(who: str, *what: str) -> bool:
        result = cluster.kubectl("auth", "can-i", *what, "-n", namespace, who=who, check=False)
        return result.stdout.strip() == "yes"

    agent = f"{namespace}/{AGENT}"
    assert can(agent, "create", "actionrequests.handoff.dev")
    assert not can(agent, "patch", "actionrequests.handoff.dev")
    assert not can(agent, "delete", "actionrequests.handoff.dev")
    assert not can(agent, "patch", "actionrequests.handoff.dev", "--subresource=status")
    assert not can(agent, "get", "secrets")
    assert can("alice", "patch", "actionrequests.handoff.dev", "--subresource=status")
    assert can("alice", "approve", "agentactionpolicies.handoff.dev/payments")
    assert not can("alice", "approve", "agentactionpolicies.handoff.dev/other")
    assert not can("alice", "create", "actionrequests.handoff.dev")
    assert not can("mallory", "get", "actionrequests.handoff.dev")

    cluster.kubectl("delete", "agentactionpolicy", "payments", "-n", namespace, "--timeout=20s")
    assert not can(agent, "create", "actionrequests.handoff.dev")
    assert not can("alice", "approve", "agentactionpolicies.handoff.dev/payments")
    roles = cluster.kubectl("get", "roles,rolebindings", "-n", namespace, "-o", "name").stdout
    assert roles.strip() == ""
