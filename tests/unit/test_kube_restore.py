"""What a Kubernetes rollback puts back (domain/kuberestore.py) and how a reviewer's tools apply
a change locally (domain/kubemerge.py). Table-driven, pure; each plan is applied with an RFC 6902
implementation (jsonpatch, which kopf depends on) to check it does what it says."""

import copy
from typing import Any

import jsonpatch
import pytest
from handoff.domain.executors import KubernetesChange
from handoff.domain.kubemerge import after_change, applied, merge_patch
from handoff.domain.kuberestore import (
    _ABSENT,
    changed_fields,
    dotted,
    json_pointer,
    names,
    plan,
    value_at,
)

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


# Each row: an object, and the part of it a rollback compares (``view``, through changed_fields
# against an empty object: every field it compares, as people name them).
@pytest.mark.parametrize(
    ("obj", "fields"),
    [
        ({}, ()),
        ({"apiVersion": "v1", "kind": "ConfigMap", "status": {"a": 1}}, ()),
        ({"metadata": {"name": "c", "uid": "u", "resourceVersion": "1"}}, ()),
        ({"metadata": "not a map", "data": {"k": "v"}}, ("data",)),
        ({"metadata": {"labels": ["a"], "annotations": "b"}}, ()),
        ({"metadata": {"labels": {"a": "1"}, "annotations": {"n": "2"}}},
         ("metadata.annotations.n", "metadata.labels.a")),
        ({"metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}",
                                       "example.com/owner": "b"}}},
         ("metadata.annotations.example.com/owner",)),
        ({"spec": {"b": 1, "a": 2}, "data": {"k": "v"}}, ("data", "spec")),
    ],
)  # fmt: skip
def test_what_a_rollback_compares(obj: dict[str, Any] | None, fields: tuple[str, ...]) -> None:
    assert changed_fields({}, obj) == fields  # type: ignore[arg-type]
    assert changed_fields(obj, {}) == fields  # type: ignore[arg-type]


# Each row: two values, and the fields that differ between them (path, before, after).
@pytest.mark.parametrize(
    ("before", "after", "fields"),
    [
        ({"spec": {"a": 1}}, {"spec": {"a": 1}}, ()),
        ({"spec": {"b": 1, "a": 1}}, {"spec": {"b": 2, "a": 2}}, ("spec.a", "spec.b")),
        ({"spec": {"l": [1, 2]}}, {"spec": {"l": [1, 3]}}, ("spec.l[1]",)),
        ({"spec": {"l": [1, 2]}}, {"spec": {"l": [3, 4]}}, ("spec.l[0]", "spec.l[1]")),
        ({"spec": {"a": 1}}, {"spec": {"a": 1.0}}, ()),  # one JSON number, two Python types
        ({"spec": {"l": [1, 2]}}, {"spec": {"l": [1]}}, ("spec.l",)),
        ({"spec": {"l": [1]}}, {"spec": {"l": [1]}}, ()),
        ({"spec": {"a": 1}}, {"spec": {"a": "1"}}, ("spec.a",)),
        ({"spec": {"a": {"b": 1}}}, {"spec": {"a": [1]}}, ("spec.a",)),
        ({"spec": {"a": None}}, {"spec": {}}, ("spec.a",)),  # null is not absent
        ({"spec": 1}, {"data": 1}, ("data", "spec")),
    ],
)  # fmt: skip
def test_changed_fields(
    before: dict[str, Any], after: dict[str, Any], fields: tuple[str, ...]
) -> None:
    assert changed_fields(before, after) == fields


def test_a_field_set_to_null_is_put_back_not_removed() -> None:
    before, after = deployment(), deployment(strategy=None)
    restore = plan(before, after, after)
    assert restore.ops == (
        {"op": "test", "path": "/spec/strategy", "value": None},
        {"op": "remove", "path": "/spec/strategy"},
    )
    back = plan(after, before, before)
    assert back.ops == ({"op": "add", "path": "/spec/strategy", "value": None},)


@pytest.mark.parametrize(
    ("current", "already", "restored_fields"),
    [
        (deployment(1), True, ("spec.replicas",)),  # holds its value before: restored already
        (deployment(3), False, ("spec.replicas",)),
        (deployment(5), False, ()),
    ],
)
def test_already_restored(
    current: dict[str, Any], already: bool, restored_fields: tuple[str, ...]
) -> None:
    restore = plan(deployment(1), deployment(3), current)
    assert restore.already is already
    assert restore.restored == restored_fields


def test_an_action_that_changed_nothing_plans_nothing_and_is_not_restored_already() -> None:
    restore = plan(deployment(1), deployment(1), deployment(1))
    assert restore == type(restore)((), (), ())
    assert restore.already is False


def test_each_field_that_changed_since_is_named_in_order() -> None:
    before = deployment(1, image="a", labels={"x": "1"})
    after = deployment(3, image="b", labels={"x": "2"})
    current = deployment(4, image="c", labels={"x": "2"})
    restore = plan(before, after, current)
    assert restore.changed_since == ("spec.replicas", "spec.template.spec.containers[0].image")
    assert restore.ops == ()
    assert restore.restored == ()


def test_a_list_item_is_restored_by_index() -> None:
    before, after = deployment(image="a"), deployment(image="b")
    restore = plan(before, after, after)
    pointer = "/spec/template/spec/containers/0/image"
    assert restore.ops == (
        {"op": "test", "path": pointer, "value": "b"},
        {"op": "replace", "path": pointer, "value": "a"},
    )
    assert restore.restored == ("spec.template.spec.containers[0].image",)
    # The container is gone since: its index points at nothing, refused.
    current = copy.deepcopy(after)
    current["spec"]["template"]["spec"]["containers"] = []
    assert plan(before, after, current).changed_since == ("spec.template.spec.containers[0].image",)


def test_tests_come_first_then_restores_in_field_order() -> None:
    before = deployment(1, labels={"a": "1"}, paused=False)
    after = deployment(2, labels={"a": "2"})
    restore = plan(before, after, after)
    assert [op["op"] for op in restore.ops] == ["test", "test", "replace", "add", "replace"]
    assert restore.restored == ("metadata.labels.a", "spec.paused", "spec.replicas")


def test_a_field_removed_from_a_map_the_object_has_lost_since() -> None:
    # The action removed spec.strategy.x; since, spec.strategy itself is gone: refused, named
    # by the map that is gone, and nothing is written. A label or annotation map is different:
    # the object may lose it whole (its last key went), and the plan adds it back.
    before = deployment(strategy={"type": "Recreate", "x": 1})
    after = deployment(strategy={"type": "Recreate"})
    current = deployment()
    restore = plan(before, after, current)
    assert restore == type(restore)((), (), ("spec.strategy",))
    before = deployment(annotations={"note": "a", "keep": "b"})
    after = deployment(annotations={"keep": "b"})
    current = deployment(annotations={"keep": "b"})
    current["metadata"].pop("annotations")
    restore = plan(before, after, current)
    assert restore.ops == ({"op": "add", "path": "/metadata/annotations", "value": {"note": "a"}},)
    assert restore.restored == ("metadata.annotations.note",)


def test_two_keys_into_a_map_the_object_lacks() -> None:
    before = deployment(annotations={"a": "1", "b": "2"})
    after = deployment()
    restore = plan(before, after, after)
    assert restore.ops == (
        {"op": "add", "path": "/metadata/annotations", "value": {"a": "1"}},
        {"op": "add", "path": "/metadata/annotations/b", "value": "2"},
    )
    assert restored(after, restore.ops)["metadata"]["annotations"] == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    ("path", "pointer", "name"),
    [
        ((), "", "(the whole object)"),
        (("spec",), "/spec", "spec"),
        ((0,), "/0", "[0]"),
        (("spec", "l", 10, "x"), "/spec/l/10/x", "spec.l[10].x"),
        (("metadata", "labels", "a/b"), "/metadata/labels/a~1b", "metadata.labels.a/b"),
        (("a~1",), "/a~01", "a~1"),
        (("~/",), "/~0~1", "~/"),
    ],
)
def test_pointers_and_dotted_names(path: tuple[Any, ...], pointer: str, name: str) -> None:
    assert json_pointer(path) == pointer
    assert dotted(path) == name


@pytest.mark.parametrize(
    ("fields", "most", "text"),
    [
        ((), 8, ""),
        (("a",), 8, "a"),
        (tuple("abcdefgh"), 8, "a, b, c, d, e, f, g, h"),
        (tuple("abcdefghi"), 8, "a, b, c, d, e, f, g, h and 1 more"),
        (tuple("abc"), 3, "a, b, c"),
        (tuple("abcd"), 3, "a, b, c and 1 more"),
    ],
)
def test_names(fields: tuple[str, ...], most: int, text: str) -> None:
    assert names(fields, most) == text
    if most == 8:
        assert names(fields) == text


@pytest.mark.parametrize(
    ("obj", "path", "found"),
    [
        ({"a": [1, 2]}, ("a", 1), 2),
        ({"a": [1, 2]}, ("a", 2), "absent"),
        ({"a": [1, 2]}, ("a", "1"), "absent"),
        ({"a": {"1": 3}}, ("a", 1), "absent"),
        ({"a": {"1": 3}}, ("a", "1"), 3),
        ({"a": None}, ("a",), None),
        ({"a": None}, ("a", "b"), "absent"),
        ({}, ("a",), "absent"),
        ([5], (0,), 5),
        ({"a": 1}, (), {"a": 1}),
    ],
)  # fmt: skip
def test_value_at(obj: Any, path: tuple[Any, ...], found: Any) -> None:
    value = value_at(obj, path)
    assert ("absent" if value is _ABSENT else value) == found
