"""The standing grants' tests' shared parts: the policy's rules, a refund filed as the agent, a
grant's document, and the request's phase once classified."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.testing.cluster import Cluster, eventually

from .helpers import AGENT, policy, request, review, wait_for

RULES = [
    {"name": "small-refunds", "actions": ["payments.refund"], "when": "parameters.amount <= 100",
     "tier": 4, "decisionWindow": "5m", "grantable": {"maxDuration": "1h", "maxCount": 3}},
    {"name": "money", "actions": ["payments.*"], "tier": 4, "decisionWindow": "5m"},
]  # fmt: skip


def grants_policy(ns: str) -> dict[str, Any]:
    return policy(ns, rules=RULES)


def refund_request(
    cluster: Cluster, ns: str, amount: int, target: str = "stripe:charge/ch_1"
) -> str:
    document = {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"generateName": "refund-", "namespace": ns},
        "spec": {
            "agent": AGENT, "action": "payments.refund", "target": target,
            "parameters": {"amount": amount}, "summary": "refund", "reasoning": "test",
            "blastRadius": f"${amount}",
        },
    }  # fmt: skip
    created = cluster.create(document, who=f"{ns}/{AGENT}")
    return str(json.loads(created.stdout)["metadata"]["name"])


def grant_document(
    ns: str, prompted_by: str, name: str = "g", *, who: str = "alice", minutes: float = 30,
    uses: int = 2, target: str = "stripe:charge/*", rule: str = "small-refunds",
    condition: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    expires = datetime.now(UTC) + timedelta(minutes=minutes)
    spec: dict[str, Any] = {
        "grantedBy": who, "agent": AGENT, "action": "payments.refund", "policy": "payments",
        "rule": rule, "target": target, "expiresAt": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "maxUses": uses, "request": prompted_by,
    }  # fmt: skip
    if condition is not None:
        spec["condition"] = condition
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionGrant",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def approved_prompt(cluster: Cluster, ns: str) -> str:
    """A small refund, waiting, then approved by alice: what a grant is made from."""
    first = refund_request(cluster, ns, 50)
    wait_for(cluster, ns, first, "phase", "AwaitingApproval")
    assert review(cluster, ns, first, "alice").returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanApproved")
    return first


def decided(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    """The request once classified: decided (by a grant) or waiting for people."""
    return eventually(
        lambda: (
            (body := request(cluster, ns, name)).get("status", {}).get("phase")
            in ("Approved", "AwaitingApproval", "Denied")
            and body
        ),
        what=f"{name} classified",
    )


def phase_of(cluster: Cluster, ns: str, name: str) -> tuple[str, str | None]:
    status = decided(cluster, ns, name)["status"]
    return status["phase"], (status.get("decision") or {}).get("reason")


WAITS = ("AwaitingApproval", None)
GRANTED = ("Approved", "GrantApproved")
