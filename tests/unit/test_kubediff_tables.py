"""What a reviewer sees of a Kubernetes change before it is made (``domain/kubediff.py``), row by
row: which parts of an object are compared, how a path is written, and the live diff's first lines
(created, deleted, no change). The live diff is computed by reviewers' tools with the reviewer's
own identity (``review/livediff.py``); ``status.preview`` is the spec's change alone."""

from typing import Any

import pytest
from handoff.domain.executors import KubernetesChange
from handoff.domain.kubediff import comparable, diff, preview, requested

NO_META = {"metadata": {"labels": {}, "annotations": {}}}


# Each row: an object, and what of it a reviewer compares.
@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (None, None),
        # every annotation counts: kubectl's last-applied copy steers a later apply
        ({"kind": "Deployment",
          "metadata": {"name": "web", "labels": {"app": "web"}, "uid": "u", "resourceVersion": "7",
                       "annotations": {"team": "a",
                                       "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
          "spec": {"replicas": 2}, "status": {"readyReplicas": 1}},
         {"metadata": {"labels": {"app": "web"},
                       "annotations": {"team": "a",
                                       "kubectl.kubernetes.io/last-applied-configuration": "{}"}},
          "spec": {"replicas": 2}}),
        # owner references and finalizers: the garbage collector and deletion obey them
        ({"metadata": {"ownerReferences": [{"uid": "x"}], "finalizers": ["f"],
                       "managedFields": [{"manager": "m"}]}},
         {"metadata": {"labels": {}, "annotations": {}, "ownerReferences": [{"uid": "x"}],
                       "finalizers": ["f"]}}),
        # every top-level field but identity and status (a ConfigMap's binaryData too)
        ({"kind": "ConfigMap", "metadata": {"labels": {"a": "1"}}, "data": {"k": "v"},
          "binaryData": {"b": "AA=="}},
         {"metadata": {"labels": {"a": "1"}, "annotations": {}}, "data": {"k": "v"},
          "binaryData": {"b": "AA=="}}),
        ({"kind": "ConfigMap", "data": {"k": "v"}, "stringData": {"s": "t"}},
         NO_META | {"data": {"k": "v"}, "stringData": {"s": "t"}}),
        # never a Secret's values
        ({"kind": "Secret", "metadata": {"labels": {"a": "1"}}, "data": {"k": "djE="},
          "stringData": {"s": "v1"}, "type": "Opaque"},
         {"metadata": {"labels": {"a": "1"}, "annotations": {}}, "type": "Opaque"}),
        ({"kind": "Secret", "spec": {"x": 1}}, NO_META | {"spec": {"x": 1}}),
        ({"metadata": "not a map", "spec": 1}, NO_META | {"spec": 1}),
        ({"metadata": {"labels": ["a"], "annotations": "b"}}, NO_META),
        ({"metadata": {"labels": None, "annotations": None}}, NO_META),
        ({}, NO_META),
    ],
)  # fmt: skip
def test_what_is_compared(obj: dict[str, Any] | None, expected: dict[str, Any] | None) -> None:
    assert comparable(obj) == expected


LONG = "k" * 200


# Each row: old and new values, and the diff's lines.
@pytest.mark.parametrize(
    ("old", "new", "shown"),
    [
        ({"a": 1}, {"a": 2}, ["a: 1 -> 2"]),
        ({"a": {"b": 1}}, {"a": {"b": 1}}, []),
        ({"a": [1, 2]}, {"a": [1, 3]}, ["a[1]: 2 -> 3"]),
        ({"a": [1]}, {"a": [1, 2]}, ["a: [1] -> [1, 2]"]),
        ({}, {"a": "x"}, ['a: (none) -> "x"']),
        ({"a": "x"}, {}, ['a: "x" -> (none)']),
        ({"café": 1}, {"café": 2}, ["caf\\u00e9: 1 -> 2"]),
        ({"a\nb": 1}, {"a\nb": 2}, ["a\\nb: 1 -> 2"]),
        ({LONG: 1}, {LONG: 2}, [f"{LONG}: 1 -> 2"]),
        ({LONG + "k": 1}, {LONG + "k": 2}, ["k" * 197 + "...: 1 -> 2"]),
        ({"a": "x" * 200}, {"a": "y"}, ['a: "' + "x" * 116 + '... -> "y"']),
    ],
)  # fmt: skip
def test_each_changed_field_is_one_line(old: Any, new: Any, shown: list[str]) -> None:
    assert diff(old, new) == shown


CREATED = {"kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
BEFORE = {"kind": "ConfigMap", "data": {"k": "v"}}
AFTER = {"kind": "ConfigMap", "data": {"k": "w"}}


# Each row: the object before and after, and the live diff's first lines (all of it when short).
@pytest.mark.parametrize(
    ("before", "after", "first_lines"),
    [
        (BEFORE, AFTER, ['data.k: "v" -> "w"']),
        (BEFORE, BEFORE, ["no change"]),
        (None, CREATED, ["the object would be created"]),
        (BEFORE, None, ["the object would be deleted"]),
        (None, None, ["the object does not exist"]),
    ],
)  # fmt: skip
def test_the_preview_says_what_kind_of_change_it_is(
    before: Any, after: Any, first_lines: list[str]
) -> None:
    lines = preview(before, after).split("\n")
    assert lines[: len(first_lines)] == first_lines
    if before is not None or after is None:
        assert len(lines) == len(first_lines)  # nothing else changed
    else:
        assert len(lines) > len(first_lines)  # and then what it would hold


def test_a_long_preview_is_cut_at_8000_characters() -> None:
    old = {"spec": {f"f{n:04}": 0 for n in range(2000)}}
    new = {"spec": {f"f{n:04}": 1 for n in range(2000)}}
    text = preview(old, new)
    assert len(text) == 8000
    assert text.startswith("spec.f0000: 0 -> 1\nspec.f0001: 0 -> 1\n")


HEAD_APPLY = "(server-side apply: creates it if it does not exist), setting:"
HEAD_PATCH = "(a JSON merge patch), setting:"
HIDDEN = "(a Secret's data is never shown)"


def asked(operation: str, body: dict[str, Any], kind: str = "ConfigMap",
          api_version: str = "v1") -> KubernetesChange:  # fmt: skip
    return KubernetesChange(operation, api_version, kind, "ns", "c", body)


# Each row: a change, and status.preview's lines (from the spec alone).
@pytest.mark.parametrize(
    ("change", "lines"),
    [
        (asked("delete", {"spec": {"a": 1}}), ["delete ConfigMap ns/c"]),
        (asked("patch", {}), [f"patch ConfigMap ns/c {HEAD_PATCH}"]),
        (asked("scale", {"spec": {"replicas": 3}}, "Deployment", "apps/v1"),
         [f"scale Deployment ns/c {HEAD_PATCH}", "spec.replicas = 3"]),
        # Keys in order, a null removes, an empty map and a list are values.
        (asked("patch", {"data": None, "b": [1, {"x": None}], "a": {}}),
         [f"patch ConfigMap ns/c {HEAD_PATCH}", "a = {}", 'b = [1, {"x": null}]', "data: removed"]),
        # apply: the identity (apiVersion, kind, name, namespace) is not a setting.
        (asked("apply", {"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {"name": "c", "namespace": "x", "labels": {"a": "1"}},
                         "data": {"k": "v"}}),
         [f"apply ConfigMap ns/c {HEAD_APPLY}", 'data.k = "v"', 'metadata.labels.a = "1"']),
        (asked("apply", {"apiVersion": "v1", "kind": "ConfigMap", "data": {}}),
         [f"apply ConfigMap ns/c {HEAD_APPLY}", "data = {}", "metadata = {}"]),
        (asked("apply", {"metadata": "not a map", "data": {"k": "v"}}),
         [f"apply ConfigMap ns/c {HEAD_APPLY}", 'data.k = "v"', "metadata = {}"]),
        # A core Secret's data and stringData are never shown, in a patch or an apply.
        (asked("apply", {"kind": "Secret", "data": {"k": "djE="}, "stringData": {"s": "x"},
                         "type": "Opaque"}, "Secret"),
         [f"apply Secret ns/c {HEAD_APPLY}", f"data: {HIDDEN}", "metadata = {}",
          f"stringData: {HIDDEN}", 'type = "Opaque"']),
        (asked("patch", {"data": None}, "Secret"),
         [f"patch Secret ns/c {HEAD_PATCH}", f"data: {HIDDEN}"]),
        # Only a core Secret's, and only at the top: another group's Secret is another kind.
        (asked("patch", {"data": {"k": "v"}}, "Secret", "example.com/v1"),
         [f"patch Secret ns/c {HEAD_PATCH}", 'data.k = "v"']),
        (asked("patch", {"spec": {"data": {"k": "v"}}}, "Secret"),
         [f"patch Secret ns/c {HEAD_PATCH}", 'spec.data.k = "v"']),
        (asked("patch", {"data": {"k": "v"}}, "ConfigMap"),
         [f"patch ConfigMap ns/c {HEAD_PATCH}", 'data.k = "v"']),
        # A value is cut at 400 characters.
        (asked("patch", {"data": {"k": "x" * 398}}),
         [f"patch ConfigMap ns/c {HEAD_PATCH}", 'data.k = "' + "x" * 398 + '"']),
        (asked("patch", {"data": {"k": "x" * 399}}),
         [f"patch ConfigMap ns/c {HEAD_PATCH}", 'data.k = "' + "x" * 396 + "..."]),
    ],
)  # fmt: skip
def test_status_preview_lines(change: KubernetesChange, lines: list[str]) -> None:
    assert requested(change).splitlines() == lines


def test_a_long_status_preview_is_cut_at_8000_characters() -> None:
    text = requested(asked("patch", {"data": {f"k{n:04}": "v" for n in range(2000)}}))
    assert len(text) == 8000
    assert text.startswith(f'patch ConfigMap ns/c {HEAD_PATCH}\ndata.k0000 = "v"\n')


def test_status_preview_of_keys_that_are_no_strings() -> None:
    # A body built in Python rather than read from JSON: keys are sorted as text, never compared
    # across types.
    text = requested(asked("patch", {"b": 1, 2: "x"}))  # type: ignore[dict-item]
    assert text.splitlines()[1:] == ['2 = "x"', "b = 1"]


def test_a_secrets_data_stays_hidden_behind_an_empty_key() -> None:
    text = requested(asked("patch", {"": {"data": {"k": "c2VjcmV0"}}}, "Secret"))
    assert "c2VjcmV0" not in text
    assert HIDDEN in text
