"""What a Kubernetes rollback puts back (domain/kuberestore.py) and how a reviewer's tools apply
a change locally (domain/kubemerge.py). Table-driven, pure; each plan is applied with an RFC 6902
implementation (jsonpatch, which kopf depends on) to check it does what it says."""

import copy
from typing import Any

import jsonpatch
import pytest
from handoff.domain.executors import KubernetesChange
from handoff.domain.kubemerge import after_change, applied, merge_patch
from handoff.domain.kuberestore import changed_fields, dotted, json_pointer, names, plan

META = {"name": "web", "namespace": "agents", "resourceVersion": "7", "uid": "u",
        "generation": 2, "managedFields": [{"manager": "x"}], "creationTimestamp": "t"}  # fmt: skip


def deployment(replicas: int = 1, image: str = "nginx:1.25", **extra: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": copy.deepcopy(META),
        "spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "web", "image": image}]}}},
        "status": {"replicas": replicas},
    }  # fmt: skip
    for path, value in extra.items():
        obj["metadata" if path in ("labels", "annotations") else "spec"][path] = value
    return obj


def restored(current: dict[str, Any], ops: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    result: dict[str, Any] = jsonpatch.apply_patch(current, list(ops))
    return result


def test_a_plain_rollback_restores_what_the_action_changed() -> None:
    before, after = deployment(1), deployment(3)
    restore = plan(before, after, after)
    assert restore.restored == ("spec.replicas",)
    assert restore.ops == (
        {"op": "test", "path": "/spec/replicas", "value": 3},
        {"op": "replace", "path": "/spec/replicas", "value": 1},
    )
    assert restored(after, restore.ops)["spec"]["replicas"] == 1


def test_a_later_change_to_another_field_survives() -> None:
    before, after = deployment(1), deployment(3)
    current = deployment(3, image="nginx:1.27-fixed")
    restore = plan(before, after, current)
    assert not restore.changed_since
    back = restored(current, restore.ops)
    assert back["spec"]["replicas"] == 1
    assert back["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.27-fixed"


@pytest.mark.parametrize(
    ("current", "fields"),
    [
        (deployment(5), ("spec.replicas",)),
        (deployment(1), ()),  # holds the value before already: restored already, no refusal
    ],
)
def test_a_later_change_to_the_same_field_refuses(
    current: dict[str, Any], fields: tuple[str, ...]
) -> None:
    restore = plan(deployment(1), deployment(3), current)
    assert restore.changed_since == fields
    assert restore.ops == ()


def test_fields_the_action_added_or_removed() -> None:
    before = deployment(labels={"app": "web", "tier": "gold"})
    after = deployment(labels={"app": "web", "app.kubernetes.io/name": "w~b"}, paused=True)
    restore = plan(before, after, after)
    assert set(restore.restored) == {"metadata.labels.app.kubernetes.io/name",
                                     "metadata.labels.tier", "spec.paused"}  # fmt: skip
    assert {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1name"} in restore.ops
    assert {"op": "add", "path": "/metadata/labels/tier", "value": "gold"} in restore.ops
    assert restored(after, restore.ops)["metadata"]["labels"] == {"app": "web", "tier": "gold"}
    # Someone put back a removed field with another value: refused, not overwritten.
    current = deployment(labels={"app": "web", "tier": "silver",
                                 "app.kubernetes.io/name": "w~b"}, paused=True)  # fmt: skip
    assert plan(before, after, current).changed_since == ("metadata.labels.tier",)


def test_what_a_rollback_never_compares() -> None:
    before, after = deployment(1), deployment(1)
    after["metadata"] |= {"resourceVersion": "9", "generation": 3, "managedFields": []}
    after["status"] = {"replicas": 7}
    after["metadata"]["annotations"] = {"deployment.kubernetes.io/revision": "2"}
    assert plan(before, after, after).ops == ()
    assert changed_fields(before, after) == ()


def test_lists_of_another_length_are_one_field() -> None:
    before = deployment()
    after = copy.deepcopy(before)
    after["spec"]["template"]["spec"]["containers"].append({"name": "side", "image": "x"})
    restore = plan(before, after, after)
    assert restore.restored == ("spec.template.spec.containers",)
    assert restored(after, restore.ops) == after | {"spec": before["spec"]}


def test_names_and_pointers() -> None:
    assert json_pointer(("metadata", "labels", "a/b~c")) == "/metadata/labels/a~1b~0c"
    assert dotted(("spec", "containers", 0, "image")) == "spec.containers[0].image"
    assert names(tuple("abcdefghij"), most=3) == "a, b, c and 7 more"


@pytest.mark.parametrize(
    ("target", "patch", "merged"),
    [
        ({"a": 1, "b": {"c": 2}}, {"b": {"c": None, "d": 3}}, {"a": 1, "b": {"d": 3}}),
        ({"l": [1, 2]}, {"l": [3]}, {"l": [3]}),
        (None, {"a": {"b": None}}, {"a": {}}),
        ({"a": 1}, [1], [1]),
    ],
)  # fmt: skip
def test_merge_patch_is_rfc_7386(target: Any, patch: Any, merged: Any) -> None:
    assert merge_patch(target, patch) == merged


def test_apply_merges_named_lists_by_name() -> None:
    live = {"containers": [{"name": "web", "image": "a", "env": [{"name": "K", "value": "v"}]},
                           {"name": "side", "image": "s"}]}  # fmt: skip
    manifest = {"containers": [{"name": "web", "image": "b"}]}
    assert applied(live, manifest) == {"containers": [
        {"name": "web", "image": "b", "env": [{"name": "K", "value": "v"}]},
        {"name": "side", "image": "s"}]}  # fmt: skip


def test_after_change() -> None:
    live = deployment(1)
    scale = KubernetesChange("scale", "apps/v1", "Deployment", "agents", "web",
                             {"spec": {"replicas": 4}})  # fmt: skip
    assert after_change(live, scale)["spec"]["replicas"] == 4
    assert after_change(None, scale) is None
    delete = KubernetesChange("delete", "apps/v1", "Deployment", "agents", "web")
    assert after_change(live, delete) is None
    manifest = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "b"},
    }
    apply = KubernetesChange("apply", "v1", "ConfigMap", "agents", "c", manifest)
    assert after_change(None, apply)["metadata"] == {"name": "c", "namespace": "agents"}


def test_a_map_the_object_lost_is_added_back_never_a_whole_map_removed() -> None:
    before = deployment(labels={"tier": "gold", "app": "web"})
    after = deployment()  # the action removed every label
    restore = plan(before, after, after)
    assert restore.ops == (
        {"op": "add", "path": "/metadata/labels", "value": {"app": "web"}},
        {"op": "add", "path": "/metadata/labels/tier", "value": "gold"},
    )
    assert restored(after, restore.ops)["metadata"]["labels"] == {"app": "web", "tier": "gold"}
    # The other way round: the action added the first labels; only its keys are removed.
    restore = plan(after, before, before)
    assert all(op["path"].startswith("/metadata/labels/") for op in restore.ops)
    assert not any(op["path"] in ("/metadata", "/metadata/labels") for op in restore.ops)


def test_a_field_whose_parent_is_gone_since_refuses() -> None:
    before = deployment(strategy={"type": "Recreate", "x": 1})
    after = deployment(strategy={"type": "Recreate"})
    current = deployment()
    assert plan(before, after, current).changed_since == ("spec.strategy",)
