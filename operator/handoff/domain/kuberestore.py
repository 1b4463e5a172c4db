"""What a Kubernetes rollback puts back: the fields the action changed, and only those. Pure.

The executor keeps the object as it was before the action and as the action left it. The
rollback restores each field the action changed, and only if it still holds the value the
action set: a field changed since (by an administrator, by another approved request) would be
undone with it, so then the rollback is refused, naming those fields, and nothing is changed.
Fields the action did not touch are never written, so later changes to them survive.

The plan is an RFC 6902 JSON Patch: a ``test`` of each changed field's value after the action,
then the ``replace``, ``add`` or ``remove`` that restores its value before. The API server
applies a JSON Patch atomically: a failed test is a 422 and changes nothing.

Compared: labels, annotations (but kubernetes.io's, which controllers keep), owner references,
finalizers and every top-level field but ``metadata`` and ``status`` (spec, data, ...). Never:
resourceVersion, generation, managedFields, uid, creationTimestamp and the rest of metadata,
nor status.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_UNCOMPARED = ("apiVersion", "kind", "metadata", "status")
_ABSENT: Any = object()  # a field the object does not have
Path = tuple[str | int, ...]
_MAPS: tuple[Path, ...] = (("metadata", "labels"), ("metadata", "annotations"))
# An owner reference an action set has the garbage collector delete the object when that owner
# does not exist; a finalizer keeps it from being deleted: a rollback restores both.
_META_RESTORED = ("ownerReferences", "finalizers")


@dataclass(frozen=True)
class RestorePlan:
    ops: tuple[dict[str, Any], ...]  # the JSON Patch; empty when the action changed nothing
    restored: tuple[str, ...]  # the fields it puts back, as people name them
    changed_since: tuple[str, ...]  # fields that no longer hold the action's value: refuse
    already: bool = False  # every changed field holds its value before: restored already


def view(obj: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of an object a rollback compares and restores. Labels and annotations are
    always maps here (empty when the object has none), so no plan ever replaces or removes a
    whole map, nor ``metadata``: only keys in them."""
    if obj is None:
        return {}
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    shown: dict[str, Any] = {k: v for k, v in obj.items() if k not in _UNCOMPARED}
    labels, annotations = meta.get("labels"), meta.get("annotations")
    shown["metadata"] = {
        "labels": dict(labels) if isinstance(labels, Mapping) else {},
        "annotations": {k: v for k, v in annotations.items() if "kubernetes.io/" not in k}
        if isinstance(annotations, Mapping)
        else {},
    } | {k: meta[k] for k in _META_RESTORED if k in meta}
    return shown


def changes(before: Any, after: Any, path: Path = ()) -> list[tuple[Path, Any, Any]]:
    """Each field that differs: (path, value before, value after), ``_ABSENT`` for none.
    Objects are compared key by key, lists of the same length item by item; anything else
    (a list that grew, an object that appeared) is one field."""
    if before is _ABSENT or after is _ABSENT or type(before) is not type(after):
        return [] if before == after else [(path, before, after)]
    if isinstance(before, dict):
        found: list[tuple[Path, Any, Any]] = []
        for key in sorted(set(before) | set(after)):
            found += changes(before.get(key, _ABSENT), after.get(key, _ABSENT), (*path, key))
        return found
    if isinstance(before, list) and len(before) == len(after):
        found = []
        for index, (a, b) in enumerate(zip(before, after, strict=True)):
            found += changes(a, b, (*path, index))
        return found
    return [] if before == after else [(path, before, after)]


def plan(
    before: Mapping[str, Any], after: Mapping[str, Any], current: Mapping[str, Any]
) -> RestorePlan:
    """How to put back what the action changed on an object that still exists."""
    now = view(current)
    changed = changes(view(before), view(after))
    if changed and all(value_at(now, path) == old for path, old, _ in changed):
        return RestorePlan((), tuple(dotted(path) for path, _, _ in changed), (), already=True)
    tests: list[dict[str, Any]] = []
    restores: list[dict[str, Any]] = []
    created: set[Path] = set()  # maps the plan adds (labels or annotations the object lacks)
    changed_since: list[str] = []
    for path, old, new in changed:
        if value_at(now, path) != new:
            changed_since.append(dotted(path))
            continue
        pointer = json_pointer(path)
        if new is not _ABSENT:
            tests.append({"op": "test", "path": pointer, "value": new})
        if old is _ABSENT:
            restores.append({"op": "remove", "path": pointer})
            continue
        parent = path[:-1]
        if new is not _ABSENT or parent in created or value_at(current, parent) is not _ABSENT:
            restores.append({"op": "add" if new is _ABSENT else "replace", "path": pointer,
                             "value": old})  # fmt: skip
        elif parent in _MAPS:  # the object has no labels (or annotations) now: add the map
            restores.append({"op": "add", "path": json_pointer(parent), "value": {path[-1]: old}})
            created.add(parent)
        else:
            changed_since.append(dotted(parent))
    if changed_since:
        return RestorePlan((), (), tuple(changed_since))
    return RestorePlan(tuple(tests + restores), tuple(dotted(p) for p, _, _ in changed), ())


def changed_fields(expected: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[str, ...]:
    """The fields of ``current`` that differ from ``expected`` (both whole objects)."""
    return tuple(dotted(path) for path, _, _ in changes(view(expected), view(current)))


def value_at(obj: Any, path: Path) -> Any:
    for part in path:
        if isinstance(part, int):
            if not isinstance(obj, list) or part >= len(obj):
                return _ABSENT
            obj = obj[part]
        elif isinstance(obj, dict) and part in obj:
            obj = obj[part]
        else:
            return _ABSENT
    return obj


def json_pointer(path: Path) -> str:
    """RFC 6901: ``~`` is ``~0`` and ``/`` is ``~1`` in each reference token."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


def dotted(path: Path) -> str:
    """A field as people name it: ``spec.template.spec.containers[0].image``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "(the whole object)"


def names(fields: tuple[str, ...], most: int = 8) -> str:
    """A list of fields in a sentence, cut after ``most``."""
    shown = ", ".join(fields[:most])
    return shown + (f" and {len(fields) - most} more" if len(fields) > most else "")
