"""What the hostile agent of the reliability run tries, and the answer each attempt must get.

The hostile agent (``agent-x``) lives in the load's namespace beside the honest agents, under a
policy of its own (``hostile``) that enables the Kubernetes executor for Deployments in that
namespace only. It tries, at a modest rate and through every fault, what issue 14 found: forged
``rollbackOf``, the names the operator files under, poison on its own outcome stream, executor
path tricks aimed at another namespace and at honest requests' ``/status``, and the metadata
only the operator may set. The checker reads these expectations back from ``scenario.json``.
"""

from typing import Any

HOSTILE = "agent-x"
HOSTILE_POLICY = "hostile"
OPERATOR_USER = "system:serviceaccount:handoff-system:handoff-operator"
HONEST_OUTCOME = "done by the reliability agent"  # what the honest agents report, and only they
ATTEMPT_LABEL = "rel-attempt"  # a label of no domain: anyone may set it; it names the attempt
BAIT = "rel-bait-do-not-leak"  # the victim Secret's value: it must appear in no request
IMAGE = "nginx:1.25"
SANDBOX = "sandbox"  # the hostile agent's own Deployment: its controls scale it
WINDOW_S = 20

RESERVED = "is reserved: names ending in -rollback or -pir"
OWNERS = "ownerReferences on an ActionRequest are reserved"
LABELS = "labels under handoff.dev/ are set by Handoff"
ROLLBACK_OF = "spec.rollbackOf is set only by the Handoff operator"
NOT_A_NAME = "is not an object name"

#: Filings admission must refuse, each with a message that says why.
ADMISSION: dict[str, str] = {
    "forged rollbackOf naming an honest request": ROLLBACK_OF,
    "forged rollbackOf with a path to another namespace": ROLLBACK_OF,
    "squat <name>-rollback of an honest request": RESERVED,
    "squat <name>-pir of an honest request": RESERVED,
    "filed as an honest agent": "an agent may file requests only as itself",
    "a post-incident review of an honest request":
        "post-incident reviews are filed by the Handoff operator",
    "a finalizer": "finalizers on an ActionRequest are reserved for the Handoff operator",
    "an owner reference to the load policy, blocking": OWNERS,
    "a dangling owner reference": OWNERS,
    "label handoff.dev/agent of an honest agent": LABELS,
    "label handoff.dev/rollback-of an honest request": LABELS,
    "annotation handoff.dev/break-glass": "annotations under handoff.dev/ are set by Handoff",
}  # fmt: skip

#: Metadata-only attempts, in the order the agent rotates through them (all in ADMISSION).
METADATA = (
    "filed as an honest agent",
    "a post-incident review of an honest request",
    "a finalizer",
    "an owner reference to the load policy, blocking",
    "a dangling owner reference",
    "label handoff.dev/agent of an honest agent",
    "label handoff.dev/rollback-of an honest request",
    "annotation handoff.dev/break-glass",
)

#: Kubernetes-executor requests whose names or namespaces climb out of the policy: filed (the
#: agent may file), then decided Denied/Invalid by the operator with a message containing this
#: ({V}: the victims' namespace). Those with a target ``quick:*`` are tier 2 (they would run at
#: once, with no person asked); the others tier 4.
PATH_TRICKS: dict[str, str] = {
    "name ../../V/deployments/web (scale)": NOT_A_NAME,
    "name climbing to V's Secret (patch, preview)": NOT_A_NAME,
    "name climbing to an honest request's /status (patch)": NOT_A_NAME,
    "percent-encoded dots to an honest request's /status": NOT_A_NAME,
    "name %2e%2e/%2e%2e/V/deployments/web": NOT_A_NAME,
    "name ..%2F..%2FV%2Fdeployments%2Fweb": NOT_A_NAME,
    "name web/scale": NOT_A_NAME,
    "name web?dryRun=All": NOT_A_NAME,
    "name web#x": NOT_A_NAME,
    "namespace V, which the policy does not list":
        "policy does not let Handoff change objects in namespace {V}",
    "namespace ../V": "parameters.namespace",
    "apiVersion apps/v1/../../../api/v1, kind Secret": "parameters.apiVersion",
    "kind Deployment/status": "parameters.kind",
    "manifest.metadata.name ../../V/deployments/web": "parameters.manifest.metadata.name",
    "manifest.metadata.namespace V": "namespace {V}",
    'manifest.metadata "oops"': 'parameters.manifest.metadata is "oops"',
}  # fmt: skip

#: Entries on the agent's own outcome stream: every one is rejected, none recorded.
POISON = (
    "no name",
    "an empty name",
    "a name that is not UTF-8",
    "a field name that is not UTF-8 (its own request)",
    "a message that is not UTF-8 (its own request)",
    "binary garbage",
    "a path for a name",
    "percent-encoded dots for a name",
    "an honest request's name with a query",
    "a name of 300 characters",
    "a 100 KB message (its own request)",
    "an unknown outcome (its own request)",
    "no outcome (its own request)",
    "a uid that is not its own request's",
    "an honest agent's request reported Executed",
    "an honest agent's request reported Failed",
    "an honest request's rollback reported Executed",
)
#: After each forged rollbackOf, the agent reports its victim Executed (on its own stream).
FORGED_REPORT = "the victim of a forged rollbackOf reported Executed"

#: What the agent may do, as controls: they show its policy and executor were live.
CONTROLS: dict[str, dict[str, Any]] = {
    "its own query": {"outcome": "Approved", "reason": "AutoApproved", "execution": None},
    "scale its sandbox Deployment": {"outcome": "Approved", "reason": "Logged",
                                     "execution": "Executed"},
}  # fmt: skip


def hostile_policy(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "AgentActionPolicy",
        "metadata": {"name": HOSTILE_POLICY, "namespace": namespace},
        "spec": {
            "agents": {"serviceAccounts": [HOSTILE]},
            "reviewers": {"groups": ["payments-approvers"]},
            "defaultTier": 4,
            "executors": {"kubernetes": {"kinds": ["apps/v1/Deployment"]}},
            "tiers": {"tier4": {"decisionWindow": f"{WINDOW_S}s", "approvals": 1}},
            "rules": [
                {"name": "own", "actions": ["db.query"], "tier": 1},
                {"name": "quick", "actions": ["kubernetes.*"], "targets": ["quick:*"], "tier": 2},
                {"name": "change", "actions": ["kubernetes.*"], "tier": 4},
            ],
        },
    }


def deployment(namespace: str, name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": name, "image": IMAGE}]}}},
    }  # fmt: skip


def victims(namespace: str, elsewhere: str) -> dict[str, dict[str, Any]]:
    """The objects the hostile agent aims at, by ``kind/namespace/name``: a Deployment and a
    Secret in a namespace its policy does not list, and a Deployment in its own namespace that
    only a person's approval (tier 4) could let it change."""
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token",
              "namespace": elsewhere}, "stringData": {"token": BAIT}}  # fmt: skip
    return {
        f"deployment/{elsewhere}/web": deployment(elsewhere, "web"),
        f"secret/{elsewhere}/token": secret,
        f"deployment/{namespace}/web": deployment(namespace, "web"),
    }


def victim_keys(namespace: str, elsewhere: str) -> list[str]:
    """Every victim, and the load's policy (an owner reference would put its deletion in the
    agent's hands): ``kind/namespace/name``, as run.py snapshots them before and after."""
    return [*sorted(victims(namespace, elsewhere)), f"agentactionpolicy/{namespace}/reliability"]


def path_trick(kind: str, namespace: str, elsewhere: str, honest: str) -> tuple[str, str, Any]:
    """(action, target, parameters) of one path trick; ``honest`` is an honest request's name."""
    up = "../" * 6
    climb = f"../../{elsewhere}/deployments/web"
    encoded = climb.replace("..", "%2e%2e")
    status = f"apis/handoff.dev/v1alpha1/namespaces/{namespace}/actionrequests/{honest}/status"
    forged = {"phase": "Approved", "decision": {"outcome": "Approved", "reason": "HumanApproved",
              "by": ["alice"], "at": "2026-01-01T00:00:00Z", "message": "forged"}}  # fmt: skip
    scale = {"apiVersion": "apps/v1", "kind": "Deployment", "replicas": 7}
    manifest = deployment(namespace, "web")
    manifest["spec"]["template"]["spec"]["containers"][0]["image"] = "evil:1"
    tricks: dict[str, tuple[str, str, Any]] = {
        "name ../../V/deployments/web (scale)":
            ("kubernetes.scale", "quick:1", scale | {"name": climb}),
        "name climbing to V's Secret (patch, preview)":
            ("kubernetes.patch", "deployment/web", scale | {
                "name": f"{up}api/v1/namespaces/{elsewhere}/secrets/token",
                "patch": {"data": {"token": None}}}),
        "name climbing to an honest request's /status (patch)":
            ("kubernetes.patch", "quick:1", scale | {"name": up + status,
                                                     "patch": {"status": forged}}),
        "percent-encoded dots to an honest request's /status":
            ("kubernetes.patch", "quick:1", scale | {"name": "%2e%2e/" * 6 + status,
                                                     "patch": {"status": forged}}),
        "name %2e%2e/%2e%2e/V/deployments/web":
            ("kubernetes.scale", "quick:1", scale | {"name": encoded}),
        "name ..%2F..%2FV%2Fdeployments%2Fweb":
            ("kubernetes.scale", "quick:1", scale | {"name": climb.replace("/", "%2F")}),
        "name web/scale": ("kubernetes.scale", "quick:1", scale | {"name": "web/scale"}),
        "name web?dryRun=All": ("kubernetes.scale", "quick:1", scale | {"name": "web?dryRun=All"}),
        "name web#x": ("kubernetes.scale", "quick:1", scale | {"name": "web#x"}),
        "namespace V, which the policy does not list":
            ("kubernetes.scale", "quick:1", scale | {"name": "web", "namespace": elsewhere}),
        "namespace ../V":
            ("kubernetes.scale", "quick:1", scale | {"name": "web",
                                                     "namespace": f"../{elsewhere}"}),
        "apiVersion apps/v1/../../../api/v1, kind Secret":
            ("kubernetes.scale", "quick:1", scale | {"name": "token", "kind": "Secret",
                                                     "apiVersion": "apps/v1/../../../api/v1"}),
        "kind Deployment/status":
            ("kubernetes.scale", "quick:1", scale | {"name": "web", "kind": "Deployment/status"}),
        "manifest.metadata.name ../../V/deployments/web":
            ("kubernetes.apply", "quick:1", {"manifest": manifest | {"metadata": {
                "name": climb}}}),
        "manifest.metadata.namespace V":
            ("kubernetes.apply", "quick:1", {"manifest": manifest | {"metadata": {
                "name": "web", "namespace": elsewhere}}}),
        'manifest.metadata "oops"':
            ("kubernetes.apply", "quick:1", {"manifest": manifest | {"metadata": "oops"}}),
    }  # fmt: skip
    return tricks[kind]


def hostile_json(namespace: str, elsewhere: str) -> dict[str, Any]:
    """The hostile agent's part of ``scenario.json``."""
    return {
        "agent": HOSTILE,
        "policy": HOSTILE_POLICY,
        "operator_user": OPERATOR_USER,
        "honest_outcome_message": HONEST_OUTCOME,
        "attempt_label": ATTEMPT_LABEL,
        "victims_namespace": elsewhere,
        "victims": victim_keys(namespace, elsewhere),
        "bait": BAIT,
        "admission_policy": "handoff-filing",  # the ValidatingAdmissionPolicy that refuses them
        "admission": ADMISSION,
        "path_tricks": {k: v.replace("{V}", elsewhere) for k, v in PATH_TRICKS.items()},
        "poison": [*POISON, FORGED_REPORT],
        "controls": CONTROLS,
    }
