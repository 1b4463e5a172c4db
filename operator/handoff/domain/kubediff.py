"""What a reviewer sees of a Kubernetes change before it is made: one line per changed field.

The preview sits in the request's status, which the agent that filed it can read. So it never
shows the data of a Secret, and when the agent may not read the object itself it shows which
fields change, without their values. Pure.
"""

import json
from collections.abc import Mapping
from typing import Any

PREVIEW_MAX = 8000
SECRET_FIELDS = ("data", "stringData")


def comparable(obj: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """What a reviewer cares about in an object: labels, annotations, spec and data (never a
    Secret's data, and no annotation of kubernetes.io, such as kubectl's last-applied copy)."""
    if obj is None:
        return None
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    annotations = {
        k: v for k, v in _mapping(meta.get("annotations")).items() if "kubernetes.io/" not in k
    }
    view: dict[str, Any] = {
        "metadata": {"labels": _mapping(meta.get("labels")), "annotations": annotations}
    }
    secret = obj.get("kind") == "Secret"
    for field in ("spec", *SECRET_FIELDS):
        if field in obj and not (secret and field in SECRET_FIELDS):
            view[field] = obj[field]
    return view


def diff(old: Any, new: Any, path: str = "", *, values: bool = True) -> list[str]:
    """What changes between two JSON values, one line per leaf: ``path: old -> new``, or
    ``path: changed`` without ``values``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            where = f"{path}.{key}" if path else str(key)
            lines += diff(old.get(key), new.get(key), where, values=values)
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        lines = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            lines += diff(a, b, f"{path}[{index}]", values=values)
        return lines
    if old == new:
        return []
    if not values:
        what = "added" if old is None else "removed" if new is None else "changed"
        return [f"{_path(path)}: {what}"]
    return [f"{_path(path)}: {_short(old)} -> {_short(new)}"]


def preview(
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    *,
    values: bool,
    hidden_because: str = "",
) -> str:
    """The text of ``status.preview`` for a dry run that turned ``before`` into ``after``."""
    lines = diff(comparable(before), comparable(after), values=values)
    if before is None:
        lines.insert(0, "the object would be created")
    if not values and lines:
        lines.insert(0, f"values hidden: {hidden_because}" if hidden_because else "values hidden")
    return "\n".join(lines)[:PREVIEW_MAX] or "no change"


def _path(path: str) -> str:
    """A path as it goes in a line: keys are the object's, so escape what could break it."""
    text = json.dumps(path, ensure_ascii=True)[1:-1]
    return text if len(text) <= 200 else text[:197] + "..."


def _mapping(value: object) -> dict[str, Any]:
    return dict(value) if isinstance(value, Mapping) else {}


def _short(value: Any) -> str:
    text = "(none)" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
