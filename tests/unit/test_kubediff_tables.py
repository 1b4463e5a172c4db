"""What a reviewer sees of a Kubernetes change before it is made (``domain/kubediff.py``), row by
row: which parts of an object are compared, how a path is written, and the live diff's first lines
(created, deleted, no change). The live diff is computed by reviewers' tools with the reviewer's
own identity (``review/livediff.py``); ``status.preview`` is the spec's change alone."""

from typing import Any

import pytest
from handoff.domain.kubediff import comparable, diff, preview

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
