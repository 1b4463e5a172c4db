"""How a reviewer's tools apply a Kubernetes change locally (``domain/kubemerge.py``), row by
row: RFC 7386 merge patches exactly, server-side apply approximately (named lists merge by name,
other lists are replaced), and which change leaves which object. The inputs are never changed."""

import copy
from typing import Any

import pytest
from handoff.domain.executors import KubernetesChange
from handoff.domain.kubemerge import after_change, applied, merge_patch


# Each row: the target, the merge patch, and the result (RFC 7386, its appendix A among them).
@pytest.mark.parametrize(
    ("target", "patch", "merged"),
    [
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
        ({"a": "b"}, {"z": None}, {"a": "b"}),  # removing what is not there: nothing
        ({"a": {"b": "c"}}, {"a": {"d": "e"}}, {"a": {"b": "c", "d": "e"}}),
        ({"a": {"b": "c", "d": "e"}}, {"a": {"b": None}}, {"a": {"d": "e"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        (["a", "b"], ["c", "d"], ["c", "d"]),
        ({"a": "b"}, ["c"], ["c"]),
        ({"a": "foo"}, None, None),
        ({"a": "foo"}, "bar", "bar"),
        ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
        (["a", "b"], {"a": "b", "c": None}, {"a": "b"}),  # a list target is dropped, not merged
        ("text", {"a": 1}, {"a": 1}),
        (None, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
        ({"a": 1}, {}, {"a": 1}),
        ({"a": {"b": 1}}, {"a": 2}, {"a": 2}),
        ({"a": 2}, {"a": {"b": 1}}, {"a": {"b": 1}}),
    ],
)  # fmt: skip
def test_merge_patch(target: Any, patch: Any, merged: Any) -> None:
    kept = copy.deepcopy((target, patch))
    assert merge_patch(target, patch) == merged
    assert (target, patch) == kept  # neither input is changed


# Each row: the live value, the manifest, and what server-side apply (approximately) leaves.
@pytest.mark.parametrize(
    ("target", "manifest", "result"),
    [
        ({"a": 1, "b": 2}, {"b": 3, "c": 4}, {"a": 1, "b": 3, "c": 4}),
        ({"a": {"x": 1}}, {"a": {"y": 2}}, {"a": {"x": 1, "y": 2}}),
        (None, {"a": {"y": 2}}, {"a": {"y": 2}}),
        ([1, 2], {"a": 1}, {"a": 1}),
        ({"a": 1}, 5, 5),
        ({"a": 1}, None, None),
        ([1, 2], [3], [3]),  # lists of plain values are replaced
        # Named lists merge by name: the items already there first, in their order, then new ones.
        ([{"name": "a", "x": 1}, {"name": "b", "x": 2}, {"name": "c"}],
         [{"name": "b", "y": 3}, {"name": "d"}],
         [{"name": "a", "x": 1}, {"name": "b", "x": 2, "y": 3}, {"name": "c"}, {"name": "d"}]),
        # Only when both sides are named lists.
        (None, [{"name": "a"}], [{"name": "a"}]),
        ([1, 2], [{"name": "a"}], [{"name": "a"}]),
        ([{"name": "a", "x": 1}], [1], [1]),
        ([], [{"name": "a"}], [{"name": "a"}]),
        ([{"name": "a"}], [], []),  # an empty list replaces
        ([{"name": 1, "x": 1}], [{"name": 1}], [{"name": 1}]),  # a name that is no string
        ([{"name": "a", "x": 1}], [{"name": "a"}, {"id": "b"}], [{"name": "a"}, {"id": "b"}]),
        ([{"name": "a", "x": 1}, 2], [{"name": "a"}], [{"name": "a"}]),
        ([{"name": "a", "x": 1}], [{"name": "a"}, "b"], [{"name": "a"}, "b"]),
    ],
)  # fmt: skip
def test_applied(target: Any, manifest: Any, result: Any) -> None:
    kept = copy.deepcopy((target, manifest))
    assert applied(target, manifest) == result
    assert (target, manifest) == kept


MOUNT_X = {"name": "data", "mountPath": "/x"}
MOUNT_Y = {"name": "data", "mountPath": "/y"}


# Each row: a pod template's containers[0] as it is, the manifest's, and what server-side apply
# leaves: the lists the API server merges by other keys than the name (a mount by its path, a
# device by its path, a host alias by its IP, a container's port by containerPort and protocol,
# a Service's by port and protocol), items already there first. The key is the list's field.
@pytest.mark.parametrize(
    ("live", "manifest", "result"),
    [
        # A second mount of one volume at another path: both mounts (by name: one, moved).
        ({"volumeMounts": [MOUNT_X]}, {"volumeMounts": [MOUNT_Y]},
         {"volumeMounts": [MOUNT_X, MOUNT_Y]}),
        ({"volumeMounts": [MOUNT_X]}, {"volumeMounts": [MOUNT_X | {"readOnly": True}]},
         {"volumeMounts": [MOUNT_X | {"readOnly": True}]}),
        ({"volumeDevices": [{"name": "d", "devicePath": "/dev/a"}]},
         {"volumeDevices": [{"name": "d", "devicePath": "/dev/b"}]},
         {"volumeDevices": [{"name": "d", "devicePath": "/dev/a"},
                            {"name": "d", "devicePath": "/dev/b"}]}),
        ({"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]}]},
         {"hostAliases": [{"ip": "10.0.0.2", "hostnames": ["a"]}]},
         {"hostAliases": [{"ip": "10.0.0.1", "hostnames": ["a"]},
                          {"ip": "10.0.0.2", "hostnames": ["a"]}]}),
        # A container's port at another number: the old one stays open (by name: one, changed).
        ({"ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}]},
         {"ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]},
         {"ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"},
                    {"name": "http", "containerPort": 8080, "protocol": "TCP"}]}),
        ({"ports": [{"containerPort": 80, "protocol": "TCP"}]},
         {"ports": [{"containerPort": 80, "protocol": "TCP", "hostPort": 8080}]},
         {"ports": [{"containerPort": 80, "protocol": "TCP", "hostPort": 8080}]}),
        # One number, another protocol: another port.
        ({"ports": [{"containerPort": 53, "protocol": "UDP"}]},
         {"ports": [{"containerPort": 53, "protocol": "TCP"}]},
         {"ports": [{"containerPort": 53, "protocol": "UDP"},
                    {"containerPort": 53, "protocol": "TCP"}]}),
        # A Service's ports: by port and protocol (its items have no containerPort).
        ({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]},
         {"ports": [{"port": 443, "protocol": "TCP"}]},
         {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080},
                    {"port": 443, "protocol": "TCP"}]}),
        ({"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}]},
         {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 9090}]},
         {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 9090}]}),
        # Keyed by the field, not by where it is: "ports" at the top is a list of ports too.
        ({"spec": {"ports": [{"port": 80}]}}, {"spec": {"ports": [{"port": 81}]}},
         {"spec": {"ports": [{"port": 80}, {"port": 81}]}}),
    ],
)  # fmt: skip
def test_applied_lists_merge_by_the_keys_the_api_server_uses(
    live: Any, manifest: Any, result: Any
) -> None:
    kept = copy.deepcopy((live, manifest))
    assert applied(live, manifest) == result
    assert (live, manifest) == kept


LIVE: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "agents", "labels": {"app": "web"}},
        "spec": {"replicas": 1, "paused": True}}  # fmt: skip


def change(operation: str, body: dict[str, Any] | None = None) -> KubernetesChange:
    return KubernetesChange(operation, "apps/v1", "Deployment", "agents", "web", body or {})


# Each row: the object as it is, the change, and the object as the change would leave it.
@pytest.mark.parametrize(
    ("current", "asked", "left"),
    [
        (LIVE, change("delete"), None),
        (None, change("delete"), None),
        (LIVE, change("scale", {"spec": {"replicas": 4}}),
         LIVE | {"spec": {"replicas": 4, "paused": True}}),
        (LIVE, change("patch", {"spec": {"paused": None}, "metadata": {"labels": {"t": "1"}}}),
         LIVE | {"metadata": LIVE["metadata"] | {"labels": {"app": "web", "t": "1"}},
                 "spec": {"replicas": 1}}),
        (None, change("patch", {"spec": {"paused": False}}), None),  # patch of nothing: fails
        (None, change("scale", {"spec": {"replicas": 4}}), None),
        (LIVE, change("patch"), LIVE),
        # apply: the change's namespace, whatever the manifest says or lacks.
        (None, change("apply", {"metadata": {"name": "web", "namespace": "other"}, "spec": {}}),
         {"metadata": {"name": "web", "namespace": "agents"}, "spec": {}}),
        (None, change("apply", {"spec": {"replicas": 2}}),
         {"metadata": {"namespace": "agents"}, "spec": {"replicas": 2}}),
        (None, change("apply", {"metadata": None, "spec": {"replicas": 2}}),
         {"metadata": {"namespace": "agents"}, "spec": {"replicas": 2}}),
        (LIVE, change("apply", {"metadata": {"labels": {"t": "1"}}, "spec": {"replicas": 2}}),
         LIVE | {"metadata": LIVE["metadata"] | {"labels": {"app": "web", "t": "1"}},
                 "spec": {"replicas": 2, "paused": True}}),
    ],
)  # fmt: skip
def test_after_change(current: Any, asked: KubernetesChange, left: Any) -> None:
    kept = copy.deepcopy((current, dict(asked.body)))
    assert after_change(current, asked) == left
    assert (current, dict(asked.body)) == kept
