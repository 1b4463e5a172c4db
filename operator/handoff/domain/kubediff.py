"""What a Kubernetes change does, in lines a person reads. Pure.

Two texts, for two kinds of reader:

- ``requested``: the change as the request asks for it, from its spec alone. It goes into
  ``status.preview``, which every agent and reviewer of the namespace may read, so nothing in it
  depends on the object as it is: not its values, not whether it exists, not even which fields
  would change (a patch that sets a field to the value it holds would preview as "no change",
  and one request per guess would tell whether a value the agent may not read equals it).
- ``preview``: the live diff, one line per changed field, which a reviewer's own tools compute
  from the object as the reviewer reads it (``review/livediff.py``).

Neither ever shows the ``data`` or ``stringData`` of a Secret.
"""

import json
from collections.abc import Mapping
from typing import Any

from handoff.domain.executors import KubernetesChange

PREVIEW_MAX = 8000
SECRET_FIELDS = ("data", "stringData")
_IDENTITY = ("apiVersion", "kind")
_NOT_SHOWN = (*_IDENTITY, "metadata", "status")
_META_SHOWN = ("ownerReferences", "finalizers")


def comparable(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a change can do to an object, as a reviewer reads it: every field but status and
    the API server's bookkeeping; in metadata, labels, annotations, owner references and
    finalizers (an owner that does not exist has the garbage collector delete the object; a
    finalizer keeps it from being deleted); every annotation, kubectl's last-applied copy too (a
    change to it steers what a later ``kubectl apply`` deletes). Never a Secret's data."""
    if obj is None:
        return None
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    labels, annotations = _mapping(meta.get("labels")), _mapping(meta.get("annotations"))
    shown_meta = {"labels": labels, "annotations": annotations} | {
        k: meta[k] for k in _META_SHOWN if k in meta
    }
    view: dict[str, Any] = {"metadata": shown_meta}
    secret = obj.get("kind") == "Secret"
    for field, value in obj.items():
        if field not in _NOT_SHOWN and not (secret and field in SECRET_FIELDS):
            view[field] = value
    return view


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """What changes between two JSON values, one line per leaf: ``path: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            where = f"{path}.{key}" if path else str(key)
            lines += diff(old.get(key), new.get(key), where)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        lines = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            lines += diff(a, b, f"{path}[{index}]")
        return lines
    if old == new:
        return []
    return [f"{_path(path)}: {_short(old)} -> {_short(new)}"]


def preview(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """The live diff of a change that turns ``before`` into ``after`` (None: no object)."""
    if after is None:
        return "the object would be deleted" if before is not None else "the object does not exist"
    lines = diff(comparable(before), comparable(after))
    if before is None:
        lines.insert(0, "the object would be created")
    return "\n".join(lines)[:PREVIEW_MAX] or "no change"


def requested(change: KubernetesChange) -> str:
    """``status.preview``: what the request asks to change, from its spec alone."""
    target = f"{change.kind} {change.namespace}/{change.name}"
    if change.operation == "delete":
        return f"delete {target}"
    body = dict(change.body)
    if change.operation == "apply":
        head = f"apply {target} (server-side apply: creates it if it does not exist), setting:"
        meta = {k: v for k, v in _mapping(body.get("metadata")).items()
                if k not in ("name", "namespace")}  # fmt: skip
        body = {k: v for k, v in body.items() if k not in _IDENTITY} | {"metadata": meta}
    else:
        head = f"{change.operation} {target} (a JSON merge patch), setting:"
    secret = change.kind == "Secret" and not change.group
    lines = [head, *_settings(body, "", secret=secret)]
    return "\n".join(lines)[:PREVIEW_MAX]


def _settings(value: Any, path: str, *, secret: bool) -> list[str]:
    """One line per value the change sets: ``path = value``, ``path: removed`` for a null."""
    if isinstance(value, Mapping) and (value or not path):
        lines: list[str] = []
        for key in sorted(value, key=str):
            where = f"{path}.{key}" if path else str(key)
            if secret and not path and key in SECRET_FIELDS:
                lines.append(f"{_path(where)}: (a Secret's data is never shown)")
                continue
            lines += _settings(value[key], where, secret=secret)
        return lines
    if value is None:
        return [f"{_path(path)}: removed"]
    return [f"{_path(path)} = {_short(value, 400)}"]


def _path(path: str) -> str:
    """A path as it goes in a line: keys are the object's, so escape what could break it."""
    text = json.dumps(path, ensure_ascii=True)[1:-1]
    return text if len(text) <= 200 else text[:197] + "..."


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _short(value: Any, limit: int = 120) -> str:
    text = "(none)" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."
