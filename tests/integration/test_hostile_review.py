"""What a reviewer's live diff shows must be what the executor then does (against the real API
server and operator). A hostile agent that makes the two differ gets an approval for a change
the reviewer never saw:

- a server-side apply removes the fields its field manager applied before and applies no more:
  with one manager for every request, an "add a label" apply that omitted a container's env
  removed the env an earlier request had set, while the diff (which adds what the manifest
  says) showed only the label (fixed: each request applies as its own field manager);
- the diff showed labels, annotations, spec and data only: a patch setting an owner reference
  (the garbage collector deletes an object whose owner does not exist), a finalizer, another
  top-level field (a ConfigMap's ``binaryData``, ``immutable``) or a kubernetes.io annotation
  (``kubectl.kubernetes.io/restartedAt`` restarts every Pod) read "no change" (fixed: the diff
  shows every field but status and the API server's bookkeeping).

The diff is computed here as the reviewer's tools compute it (``review/livediff.py`` applies the
change locally with ``domain/kubemerge.py`` and prints ``domain/kubediff.preview``), from the
object as it is just before the request is filed; what the executor did is every field that
differs afterwards.
"""

import json
from typing import Any

import pytest
from handoff.domain.executors import kubernetes_change
from handoff.domain.kubediff import diff, preview
from handoff.domain.kubemerge import after_change
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, policy, request, roll_back, wait_for

pytestmark = pytest.mark.integration
BOOKKEEPING = ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp")


def deployment(ns: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": ns, "labels": {"team": "pay"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}}},
    }  # fmt: skip


@pytest.fixture
def scene(cluster: Cluster, operator: OperatorProcess, namespace: str) -> str:
    cluster.apply(deployment(namespace))
    document = policy(
        namespace,
        executors={"kubernetes": {"kinds": ["apps/v1/Deployment"]}},
        rules=[{"name": "logged", "actions": ["kubernetes.*"], "tier": 2}],  # runs at once
    )
    apply_ready_policy(cluster, document)
    return namespace


def everything(obj: dict[str, Any]) -> dict[str, Any]:
    """The object but its status and the API server's bookkeeping: what a change can change."""
    meta = {k: v for k, v in obj["metadata"].items() if k not in BOOKKEEPING}
    return {k: v for k, v in obj.items() if k != "status"} | {"metadata": meta}


def shown_then_done(cluster: Cluster, ns: str, action: str, parameters: dict[str, Any]) -> tuple[list[str], list[str]]:  # fmt: skip
    """The reviewer's live diff of a request, and what the executor then did, as lines."""
    parameters = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", **parameters}
    if action == "kubernetes.apply":
        parameters = {"manifest": parameters["manifest"]}
    spec = {"agent": AGENT, "action": action, "execution": "Kubernetes", "target": "web",
            "parameters": parameters, "summary": action, "rollback": {"description": "undo"}}  # fmt: skip
    change = kubernetes_change(spec, ns)
    assert not isinstance(change, str), change
    before = cluster.get("deployment", "web", ns)
    shown = preview(before, after_change(before, change)).splitlines()
    document = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                "metadata": {"generateName": "review-", "namespace": ns}, "spec": spec}  # fmt: skip
    filed = json.loads(cluster.create(document, who=f"{ns}/{AGENT}").stdout)["metadata"]["name"]
    wait_for(cluster, ns, filed, "phase", "Executed")
    done = diff(everything(before), everything(cluster.get("deployment", "web", ns)))
    return shown, done


def manifest(ns: str, containers: list[dict[str, Any]], **labels: str) -> dict[str, Any]:
    body = deployment(ns)
    body["metadata"] = {"name": "web", "labels": {"team": "pay", **labels}}
    body["spec"]["template"]["spec"]["containers"] = containers
    return {"manifest": body}


def test_an_apply_removes_nothing_its_diff_does_not_show(cluster: Cluster, scene: str) -> None:
    """An earlier approved apply set the env; a later one, approved as "add a label", omits it."""
    safe = [{"name": "web", "image": "nginx:1.25", "env": [{"name": "MODE", "value": "safe"}]}]
    shown, done = shown_then_done(cluster, scene, "kubernetes.apply", manifest(scene, safe))
    assert done == shown
    bare = [{"name": "web", "image": "nginx:1.25"}]
    shown, done = shown_then_done(
        cluster, scene, "kubernetes.apply", manifest(scene, bare, reviewed="yes")
    )
    assert shown == ['metadata.labels.reviewed: (none) -> "yes"']
    assert done == shown  # before the fix: the env was removed too
    web = cluster.get("deployment", "web", scene)
    assert web["spec"]["template"]["spec"]["containers"][0]["env"] == safe[0]["env"]


@pytest.mark.parametrize(
    "patch",
    [
        {"metadata": {"ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "gone",
                                           "uid": "00000000-0000-0000-0000-000000000000"}]}},
        {"metadata": {"finalizers": ["example.com/forever"]}},
        {"metadata": {"annotations": {"x.kubernetes.io/steer": "1"}}},
        # What a later `kubectl apply` of the object deletes: the fields in this copy it lacks.
        {"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}}},
        {"spec": {"template": {"metadata": {"annotations": {
            "kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}},
    ],
    ids=["ownerReferences", "finalizers", "kubernetes.io-annotation", "last-applied", "restartedAt"],
)  # fmt: skip
def test_a_patch_changes_nothing_its_diff_does_not_show(
    cluster: Cluster, scene: str, patch: dict[str, Any]
) -> None:
    shown, done = shown_then_done(cluster, scene, "kubernetes.patch", {"patch": patch})
    assert done, "the patch changed nothing"
    assert shown == done  # before the fix: "no change" for all but restartedAt
    if "finalizers" in json.dumps(patch):  # let the namespace be deleted
        cluster.kubectl("patch", "deployment", "web", "-n", scene, "--type=merge",
                        "-p", '{"metadata":{"finalizers":null}}')  # fmt: skip


VOLUMES = [{"name": "data", "emptyDir": {}}]


@pytest.mark.parametrize(
    ("existing", "applied"),
    [
        # A mount is keyed by its path: the same volume at another path is a second mount.
        ({"volumeMounts": [{"name": "data", "mountPath": "/data"}]},
         {"volumeMounts": [{"name": "data", "mountPath": "/etc/ssl"}]}),
        # A port is keyed by number and protocol (given: the API server's default is not
        # applied locally): another number is a second port...
        ({"ports": [{"containerPort": 80, "protocol": "TCP"}]},
         {"ports": [{"containerPort": 8080, "protocol": "TCP"}]}),
        # ...and not by its name: the same number under another name is the same port.
        ({"ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}]},
         {"ports": [{"name": "metrics", "containerPort": 80, "protocol": "TCP"}]}),
    ],
    ids=["volumeMounts", "ports", "named-ports"],
)  # fmt: skip
def test_an_apply_merges_lists_by_the_keys_the_api_server_uses(
    cluster: Cluster, scene: str, existing: dict[str, Any], applied: dict[str, Any]
) -> None:
    seed = [{"name": "web", "image": "nginx:1.25", **existing}]
    body = manifest(scene, seed)
    body["manifest"]["spec"]["template"]["spec"]["volumes"] = VOLUMES
    shown_then_done(cluster, scene, "kubernetes.apply", body)
    body = manifest(scene, [{"name": "web", "image": "nginx:1.25", **applied}])
    shown, done = shown_then_done(cluster, scene, "kubernetes.apply", body)
    assert shown == done


def test_a_rollback_removes_the_owner_and_finalizer_the_action_set(
    cluster: Cluster, scene: str
) -> None:
    """Before the fix the rollback removed the label, said "nothing else was written", and left
    the owner reference (the garbage collector deletes the object) and the finalizer."""
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "name": "gone",
             "uid": "00000000-0000-0000-0000-000000000000"}  # fmt: skip
    patch = {"metadata": {"labels": {"steered": "yes"}, "ownerReferences": [owner],
                          "finalizers": ["example.com/forever"]}}  # fmt: skip
    spec = {"agent": AGENT, "action": "kubernetes.patch", "execution": "Kubernetes",
            "target": "web", "summary": "label web", "rollback": {"description": "undo"},
            "parameters": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                           "patch": patch}}  # fmt: skip
    document = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                "metadata": {"generateName": "review-", "namespace": scene}, "spec": spec}  # fmt: skip
    filed = json.loads(cluster.create(document, who=f"{scene}/{AGENT}").stdout)["metadata"]["name"]
    wait_for(cluster, scene, filed, "phase", "Executed")
    roll_back(cluster, scene, filed)
    done = wait_for(cluster, scene, filed, "rollback.done", True)
    assert done["status"]["phase"] == "RolledBack", done["status"]["rollback"]
    meta = cluster.get("deployment", "web", scene)["metadata"]
    assert "ownerReferences" not in meta
    assert "finalizers" not in meta
    assert "steered" not in meta.get("labels", {})
    message = done["status"]["rollback"]["message"]
    assert "metadata.ownerReferences" in message
    assert "metadata.finalizers" in message


def test_an_apply_with_a_null_is_refused(cluster: Cluster, scene: str) -> None:
    """Server-side apply sets a label applied as null to "" where the diff (and a reader of the
    spec) sees it removed: such an apply is invalid, and nothing changes."""
    body = manifest(scene, [{"name": "web", "image": "nginx:1.25"}])
    body["manifest"]["metadata"]["labels"]["team"] = None
    spec = {"agent": AGENT, "action": "kubernetes.apply", "execution": "Kubernetes",
            "target": "web", "parameters": body, "summary": "drop the label",
            "rollback": {"description": "undo"}}  # fmt: skip
    document = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                "metadata": {"generateName": "review-", "namespace": scene}, "spec": spec}  # fmt: skip
    filed = json.loads(cluster.create(document, who=f"{scene}/{AGENT}").stdout)["metadata"]["name"]
    invalid = wait_for(cluster, scene, filed, "decision.reason", "Invalid")
    assert "cannot remove a field" in invalid["status"]["decision"]["message"]
    assert cluster.get("deployment", "web", scene)["metadata"]["labels"]["team"] == "pay"


def test_a_rollback_does_not_delete_an_object_created_again_since(
    cluster: Cluster, scene: str
) -> None:
    """Request A creates a Deployment; B deletes it; C creates it again, the same. Rolling back
    A deleted C's object (the same values, another object): a later approved change undone."""
    fresh = deployment(scene)
    fresh["metadata"] = {"name": "fresh"}

    def run(action: str, parameters: dict[str, Any]) -> str:
        spec = {"agent": AGENT, "action": action, "execution": "Kubernetes", "target": "fresh",
                "parameters": parameters, "summary": action, "rollback": {"description": "undo"}}  # fmt: skip
        document = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                    "metadata": {"generateName": "review-", "namespace": scene}, "spec": spec}  # fmt: skip
        created = json.loads(cluster.create(document, who=f"{scene}/{AGENT}").stdout)
        name = str(created["metadata"]["name"])
        wait_for(cluster, scene, name, "phase", "Executed")
        return name

    first = run("kubernetes.apply", {"manifest": fresh})
    run("kubernetes.delete", {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fresh"})
    run("kubernetes.apply", {"manifest": fresh})
    again = cluster.get("deployment", "fresh", scene)["metadata"]["uid"]
    roll_back(cluster, scene, first)
    refused = eventually(
        lambda: (
            (b := request(cluster, scene, first))
            and "done" in (b["status"].get("rollback") or {})
            and b
        ),
        what="the rollback's outcome",
    )
    assert refused["status"]["rollback"]["done"] is False, refused["status"]["rollback"]
    assert "deleted and created again since the action" in refused["status"]["rollback"]["message"]
    assert cluster.get("deployment", "fresh", scene)["metadata"]["uid"] == again


OWNERSHIP = [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
              "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]  # fmt: skip


@pytest.mark.parametrize("action", ["kubernetes.patch", "kubernetes.apply"])
def test_a_change_may_not_rewrite_who_owns_which_field(
    cluster: Cluster, scene: str, action: str
) -> None:
    """managedFields say which manager owns which field: forged, they steer what a later
    server-side apply by someone else removes (an administrator's ``kubectl apply
    --server-side`` without spec.replicas would drop it), and no diff shows them."""
    if action == "kubernetes.patch":
        parameters = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                      "patch": {"metadata": {"managedFields": OWNERSHIP}}}  # fmt: skip
    else:
        parameters = manifest(scene, [{"name": "web", "image": "nginx:1.25"}])
        parameters["manifest"]["metadata"]["managedFields"] = OWNERSHIP
    spec = {"agent": AGENT, "action": action, "execution": "Kubernetes", "target": "web",
            "parameters": parameters, "summary": "x", "rollback": {"description": "undo"}}  # fmt: skip
    document = {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                "metadata": {"generateName": "review-", "namespace": scene}, "spec": spec}  # fmt: skip
    filed = json.loads(cluster.create(document, who=f"{scene}/{AGENT}").stdout)["metadata"]["name"]
    invalid = wait_for(cluster, scene, filed, "decision.reason", "Invalid")
    assert "metadata.managedFields" in invalid["status"]["decision"]["message"]
