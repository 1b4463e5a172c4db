"""A hostile agent sets what only the operator may set on a request (issue 14, item 8, and what
an attacker tries next): finalizers, which keep it past its retention for ever; owners, which let
a garbage collector delete the record; Handoff's own labels and annotations, which would steer
whoever reads them. And it cannot create the other objects the operator names predictably.
"""

import json

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess

from .helpers import AGENT, file, request
from .hostile import (
    OTHER,
    create,
    created_name,
    document,
    refused,
    two_agents,
    without_filing_policy,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def ns(cluster: Cluster, operator: OperatorProcess) -> str:
    return two_agents(cluster)


def test_finalizers_and_owners_are_the_operators(cluster: Cluster, ns: str) -> None:
    payments = cluster.get("agentactionpolicy", "payments", ns)
    owner = {"apiVersion": "handoff.dev/v1alpha1", "kind": "AgentActionPolicy", "name": "payments",
             "uid": payments["metadata"]["uid"], "blockOwnerDeletion": True}  # fmt: skip
    dangling = owner | {"name": "gone", "uid": "00000000-0000-0000-0000-000000000000",
                        "blockOwnerDeletion": False}  # fmt: skip
    for who in (f"{ns}/{AGENT}", "admin"):
        kept = create(cluster, document(ns, meta={"finalizers": ["example.com/keep"]}), who)
        refused(kept, "finalizers on an ActionRequest are reserved for the Handoff operator")
        for reference in (owner, dangling):
            owned = create(cluster, document(ns, meta={"ownerReferences": [reference]}), who)
            refused(
                owned, "ownerReferences on an ActionRequest are reserved for the Handoff operator"
            )

    # Later: an agent may not update a request at all, and nobody else may add either.
    name = file(cluster, ns, "db.query")
    add = json.dumps({"metadata": {"finalizers": ["example.com/keep"]}})
    refused(
        cluster.kubectl("patch", "actionrequest", name, "-n", ns, "--type=merge", "-p", add,
                        who=f"{ns}/{AGENT}", check=False),
        'cannot patch resource "actionrequests"',
    )  # fmt: skip
    refused(
        cluster.kubectl("patch", "actionrequest", name, "-n", ns, "--type=merge", "-p", add, check=False),
        "you may remove one, not add one (example.com/keep)",
    )  # fmt: skip
    own = json.dumps({"metadata": {"ownerReferences": [dangling]}})
    refused(
        cluster.kubectl("patch", "actionrequest", name, "-n", ns, "--type=merge", "-p", own, check=False),
        "ownerReferences on an ActionRequest are reserved for the Handoff operator",
    )  # fmt: skip
    assert "finalizers" not in request(cluster, ns, name)["metadata"]

    # One set before the policy existed can still be removed, and the request deleted.
    with without_filing_policy(cluster, ns):
        old = created_name(
            create(cluster, document(ns, meta={"finalizers": ["example.com/keep"]}), "admin")
        )
    drop = json.dumps({"metadata": {"finalizers": None}})
    cluster.kubectl("patch", "actionrequest", old, "-n", ns, "--type=merge", "-p", drop)
    cluster.kubectl("delete", "actionrequest", old, "-n", ns, "--wait=true", "--timeout=15s")


def test_handoff_labels_and_annotations_are_set_by_handoff(cluster: Cluster, ns: str) -> None:
    agent = f"{ns}/{AGENT}"
    # What the SDK sets is taken: its own name as handoff.dev/agent, and its proposal id.
    sdk = {
        "labels": {"handoff.dev/agent": AGENT},
        "annotations": {"handoff.dev/proposal-id": "p-1"},
    }
    name = created_name(create(cluster, document(ns, meta=sdk), agent))
    assert request(cluster, ns, name)["metadata"]["labels"] == {"handoff.dev/agent": AGENT}

    labels = {
        "handoff.dev/agent": OTHER,  # another agent's name
        "handoff.dev/rollback-of": name,
        "handoff.dev/post-incident-of": name,
        "handoff.dev/policy": "payments",
        "sub.handoff.dev/anything": "x",
    }
    for key, value in labels.items():
        forged = create(cluster, document(ns, meta={"labels": {key: value}}), agent)
        refused(forged, "labels under handoff.dev/ are set by Handoff",
                f"equal to spec.agent ({AGENT})", f"remove {key}={value}")  # fmt: skip
    annotations = ["handoff.dev/break-glass", "handoff.dev/anything", "Handoff.Dev/requested-by",
                   "sub.handoff.dev/requested-by"]  # fmt: skip
    for key in annotations:
        forged = create(cluster, document(ns, meta={"annotations": {key: "alice"}}), agent)
        refused(forged, "annotations under handoff.dev/ are set by Handoff", f"remove {key}")
    for bad in ("x" * 254, "line\nFiled by alice", "abc\u202edcba"):
        odd = {"annotations": {"handoff.dev/proposal-id": bad}}
        refused(create(cluster, document(ns, meta=odd), agent), "at most 253 characters")
    # A person may set labels of their own on a request, not Handoff's.
    cluster.kubectl("label", "actionrequest", name, "-n", ns, "team=payments")
    for change in (
        "handoff.dev/agent=other-agent",
        "handoff.dev/agent-",
        "handoff.dev/rollback-of=x",
    ):
        refused(
            cluster.kubectl("label", "--overwrite", "actionrequest", name, "-n", ns, change, check=False),
            "labels under handoff.dev/ are set by Handoff when a request is filed and cannot change",
        )  # fmt: skip
    refused(
        cluster.kubectl("annotate", "actionrequest", name, "-n", ns, "handoff.dev/break-glass=x",
                        check=False),
        "annotations under handoff.dev/ are set by Handoff when a request is filed",
    )  # fmt: skip


def test_an_agent_cannot_create_what_the_operator_names_predictably(
    cluster: Cluster, ns: str
) -> None:
    """Beside requests, the operator creates under predictable names: ConfigMaps
    handoff-previous-<uid> (the Kubernetes executor), Roles and RoleBindings handoff-agent-<policy>,
    handoff-reviewer-<policy>, handoff-break-glass-<policy> and handoff-redis-<agent>, credential
    Secrets, PolicyReports, Events. An agent may create none of them, nor change a request."""
    refusals = [
        ("create", "configmaps"), ("create", "secrets"), ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"), ("create", "serviceaccounts"),
        ("create", "policyreports.wgpolicyk8s.io"), ("create", "events"),
        ("create", "leases.coordination.k8s.io"), ("update", "actionrequests.handoff.dev"),
        ("patch", "actionrequests.handoff.dev"), ("delete", "actionrequests.handoff.dev"),
        ("patch", "actionrequests.handoff.dev", "--subresource=status"),
    ]  # fmt: skip
    for who in (f"{ns}/{AGENT}", f"{ns}/{OTHER}"):
        for question in refusals:
            answer = cluster.kubectl("auth", "can-i", *question, "-n", ns, who=who, check=False)
            assert answer.stdout.strip() == "no", f"{who} may {' '.join(question)}"
        answer = cluster.kubectl(
            "auth", "can-i", "create", "actionrequests.handoff.dev", "-n", ns, who=who
        )
        assert answer.stdout.strip() == "yes"
