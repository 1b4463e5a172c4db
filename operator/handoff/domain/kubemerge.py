"""A Kubernetes change applied to an object locally, for a reviewer's live diff. Pure.

A reviewer's tools read the object with the reviewer's own rights and apply the change here,
rather than asking the API server for a dry run (which takes the right to make the change, and
is a write made in the reviewer's name by a tool that only shows). ``scale`` and ``patch`` are
JSON merge patches (RFC 7386), which this applies exactly; ``apply`` is server-side apply, which
this approximates: objects merge, lists of objects merge by the keys the API server's schema
gives them (a mount by its path, a port by its number and protocol, a host alias by its IP; any
other list of objects that all have a ``name`` by it, as containers, env and volumes), items
already there first, then the new ones; other lists are replaced. The API server's defaults and
admission may add to the result: the diff says it was computed locally.
"""

import json
from collections.abc import Mapping
from typing import Any

from handoff.domain.executors import KubernetesChange


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` removes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    merged = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def applied(target: Any, manifest: Any, field: str = "") -> Any:
    """Server-side apply, approximately (see the module's note); ``field`` is the key whose
    value ``manifest`` is."""
    if isinstance(manifest, Mapping):
        merged = dict(target) if isinstance(target, Mapping) else {}
        for key, value in manifest.items():
            merged[key] = applied(merged.get(key), value, str(key))
        return merged
    keys = _list_keys(field, manifest)
    if keys and isinstance(target, list) and all(isinstance(i, Mapping) for i in target):
        asked = {_key(item, keys): item for item in manifest}
        merged_items = [applied(item, asked.pop(_key(item, keys), {})) for item in target]
        return merged_items + [applied(None, item) for item in asked.values()]
    return manifest


def after_change(current: Mapping[str, Any] | None, change: KubernetesChange) -> Any:
    """The object as the change would leave it (None: deleted, or a patch of nothing)."""
    if change.operation == "delete":
        return None
    if change.operation == "apply":
        manifest = dict(change.body)
        manifest["metadata"] = dict(manifest.get("metadata") or {}) | {
            "namespace": change.namespace
        }
        return applied(current, manifest)
    if current is None:
        return None  # a patch of an object that does not exist fails
    return merge_patch(current, change.body)


# Lists whose items the API server merges by keys other than ``name`` (x-kubernetes-list-map-keys
# of the built-in kinds); their items often have a ``name`` too, which is not their key.
_KEYED_BY: dict[str, tuple[str, ...]] = {
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "hostAliases": ("ip",),
}


def _list_keys(field: str, value: Any) -> tuple[str, ...]:
    """The keys the items of list ``field`` merge by; () when the list is replaced whole."""
    if not (isinstance(value, list) and value and all(isinstance(i, Mapping) for i in value)):
        return ()
    if field in _KEYED_BY:
        return _KEYED_BY[field]
    if field == "ports":  # a container's ports by number, a Service's by port; and protocol
        number = "containerPort" if any("containerPort" in i for i in value) else "port"
        return (number, "protocol")
    return ("name",) if all(isinstance(i.get("name"), str) for i in value) else ()


def _key(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return json.dumps([item.get(k) for k in keys])
