"""A Kubernetes change applied to an object locally, for a reviewer's live diff. Pure.

A reviewer's tools read the object with the reviewer's own rights and apply the change here,
rather than asking the API server for a dry run (which takes the right to make the change, and
is a write made in the reviewer's name by a tool that only shows). ``scale`` and ``patch`` are
JSON merge patches (RFC 7386), which this applies exactly; ``apply`` is server-side apply, which
this approximates: objects merge, lists of objects that all have a ``name`` merge by it (as
containers, env, ports and volumes do), other lists are replaced. The API server's defaults and
admission may add to the result: the diff says it was computed locally.
"""

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


def applied(target: Any, manifest: Any) -> Any:
    """Server-side apply, approximately (see the module's note)."""
    if isinstance(manifest, Mapping):
        merged = dict(target) if isinstance(target, Mapping) else {}
        for key, value in manifest.items():
            merged[key] = applied(merged.get(key), value)
        return merged
    if _named_items(manifest) and _named_items(target):
        by_name = {item["name"]: item for item in target}
        wanted = [applied(by_name.get(item["name"]), item) for item in manifest]
        asked = {item["name"] for item in manifest}
        return wanted + [item for item in target if item["name"] not in asked]
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


def _named_items(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in value)
    )
