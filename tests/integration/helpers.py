"""Filing requests and waiting on them through kubectl, as agents and reviewers do; reading the
operator's metrics."""

import json
from typing import Any

from handoff.testing.cluster import Cluster, OperatorProcess, eventually
from prometheus_client.parser import text_string_to_metric_families

AGENT = "payments-agent"


def policy(ns: str, name: str = "payments", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "agents": {"serviceAccounts": [AGENT]},
        "reviewers": {"groups": ["payments-approvers"]},
        "tiers": {
            "tier3": {"oversight": "HOTL", "holdFor": "10s"},
            "tier4": {"decisionWindow": "10s", "approvals": 1},
        },
        "rules": [
            {"name": "reads", "actions": ["db.query"], "tier": 1},
            {"name": "edits", "actions": ["crm.update"], "tier": 2},
            {"name": "refunds", "actions": ["payments.refund"], "when": "parameters.amount <= 100", "tier": 3},
            {"name": "money", "actions": ["payments.*"], "tier": 4, "decisionWindow": "5m"},
            {"name": "deploys", "actions": ["deploy.*"], "tier": 4},
        ],
    }  # fmt: skip
    body.update(spec)
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "AgentActionPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": body,
    }


def apply_ready_policy(cluster: Cluster, document: dict[str, Any]) -> dict[str, Any]:
    """Apply a policy and wait until the operator has compiled this generation Ready. Up to 30 s:
    the shared operator may be starting again after the previous test stopped it, and a start
    compiles every policy the worker's tests left before it lists the new one (CI saw 20 s)."""
    cluster.apply(document)
    ns, name = document["metadata"]["namespace"], document["metadata"]["name"]
    return eventually(
        lambda: (
            (p := cluster.get("agentactionpolicy", name, ns))
            and ready(p) == "True"
            and p["status"]["observedGeneration"] == p["metadata"]["generation"]
            and p
        ),
        30,
        f"policy {name} Ready",
    )


def ready(policy_body: dict[str, Any]) -> str | None:
    for condition in policy_body.get("status", {}).get("conditions", []):
        if condition["type"] == "Ready":
            return str(condition["status"])
    return None


def file(
    cluster: Cluster,
    ns: str,
    action: str,
    *,
    parameters: dict[str, Any] | None = None,
    rollback: bool = False,
    agent: str = AGENT,
    who: str | None = None,
) -> str:
    spec: dict[str, Any] = {
        "agent": agent,
        "action": action,
        "target": "test:1",
        "parameters": parameters or {"amount": 2500},
        "summary": f"test {action}",
        "reasoning": "integration test",
        "blastRadius": "none",
        "confidence": 0.9,
    }
    if rollback:
        spec["rollback"] = {"description": "undo", "action": action, "parameters": {}}
    document = {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"generateName": "req-", "namespace": ns},
        "spec": spec,
    }
    created = cluster.create(document, who=who or f"{ns}/{agent}")
    return str(json.loads(created.stdout)["metadata"]["name"])


def request(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return cluster.get("actionrequest", name, ns)


def wait_for(
    cluster: Cluster, ns: str, name: str, field: str, value: Any, timeout: float = 15
) -> dict[str, Any]:
    """Wait until status.<field> (dotted) equals value; return the request."""

    def probe() -> dict[str, Any] | None:
        body = request(cluster, ns, name)
        current: Any = body.get("status", {})
        for part in field.split("."):
            current = current.get(part) if isinstance(current, dict) else None
        return body if current == value else None

    return eventually(probe, timeout, f"{name} status.{field} == {value!r}")


def review(
    cluster: Cluster, ns: str, name: str, who: str, decision: str = "Approve", **extra: Any
) -> Any:
    patch = json.dumps(_review_patch(who, decision, extra))
    return cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=json", "-p", patch,
        who=who, check=False,
    )  # fmt: skip


def review_now(
    cluster: Cluster, ns: str, name: str, who: str, decision: str = "Approve", **extra: Any
) -> dict[str, Any]:
    """The same review as ``review``, written straight to the API server: it lands within
    milliseconds, where kubectl's start can take a second on a loaded machine."""
    patch = _review_patch(who, decision, extra)
    return cluster.patch_status("actionrequest", name, ns, patch, who)


def _review_patch(who: str, decision: str, extra: dict[str, Any]) -> list[dict[str, Any]]:
    entry = {"reviewer": who, "decision": decision, "acknowledged": ["what", "impact", "rollback"]}
    return [{"op": "add", "path": "/status/reviews/-", "value": {**entry, **extra}}]


def events(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl(
        "get", "events", "-n", ns, f"--field-selector=involvedObject.name={name}", "-o", "json"
    ).stdout
    return list(json.loads(out)["items"])


def condition(body: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == kind)


def samples(operator: OperatorProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Samples by series name (histogram and counter suffixes folded into their family)."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(operator.metrics()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def value(operator: OperatorProcess, name: str, **labels: str) -> float:
    return sum(
        v
        for found, v in samples(operator).get(name, [])
        if all(found.get(k) == wanted for k, wanted in labels.items())
    )


def roll_back(cluster: Cluster, ns: str, name: str) -> None:
    """alice asks for a rollback, as ``kubectl handoff rollback`` does (on a request decided
    without reviews, status.reviews does not exist yet: a merge patch creates it)."""
    entry = {"reviewer": "alice", "decision": "Rollback", "comment": "undo it"}
    if "reviews" in (request(cluster, ns, name).get("status") or {}):
        kind, patch = (
            "json",
            json.dumps([{"op": "add", "path": "/status/reviews/-", "value": entry}]),
        )
    else:
        kind, patch = "merge", json.dumps({"status": {"reviews": [entry]}})
    cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--subresource=status", f"--type={kind}",
        "-p", patch, who="alice",
    )  # fmt: skip
