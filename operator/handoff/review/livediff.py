"""What a Kubernetes action would change, computed in the reviewer's tools with the reviewer's
own rights (``kubectl handoff show`` with their kubeconfig, the console with their token).

The operator never puts the live object's values in the request: its status is readable by
every agent and reviewer of the namespace (``status.preview`` holds the change as the spec asks
for it, nothing more). Here the reviewer's own credentials GET the object and the change is
applied to it locally (``domain/kubemerge.py``): no dry run, no write in the reviewer's name.
A reviewer who may not read the object is told so in one sentence and sees the change as the
request asks for it. A Secret's ``data`` and ``stringData`` are never shown.
"""

from collections.abc import Mapping
from typing import Any

from handoff.adapters.kube import KubeApi, KubeError, NotFound, resource_path
from handoff.domain.executors import (
    KUBERNETES,
    KubernetesChange,
    kubernetes_change,
    returned_problem,
)
from handoff.domain.kubediff import preview, requested
from handoff.domain.kubemerge import after_change
from handoff.review.client import plain
from handoff.review.untrusted import inline

LOCAL = "computed here from the object as you read it now; the API server may add defaults"


async def live_change(api: KubeApi, body: Mapping[str, Any], reader: str = "You") -> list[str]:
    """Lines saying what the request's Kubernetes change would do to the object as ``reader``
    (whose credentials ``api`` holds) reads it; no lines for a request that is not one."""
    spec = body.get("spec") or {}
    if spec.get("execution") != KUBERNETES:
        return []
    meta = body.get("metadata") or {}
    change = kubernetes_change(spec, str(meta.get("namespace", "")))
    if isinstance(change, str):
        return [f"Not a change Handoff can make: {inline(change)}"]
    asked = requested(change).split("\n")
    if (body.get("status") or {}).get("decision"):
        return ["Decided: the change as the request asked for it (the object may differ now):",
                *asked]  # fmt: skip
    current, why_not = await _read(api, change, reader)
    if why_not:
        return [f"{why_not}; here is only the change the request asks for:", *asked]
    target = f"{change.kind} {change.namespace}/{change.name}"
    if current is None and change.operation in ("scale", "patch"):
        return [f"{target} does not exist: the {change.operation} would fail.", *asked]
    after = after_change(current, change)
    return [f"What would change in {target} ({LOCAL}):", *preview(current, after).split("\n")]


async def _read(api: KubeApi, change: KubernetesChange, reader: str) -> tuple[Any, str]:
    """The object as the reader reads it (None: it does not exist), or why it cannot be."""
    target = f"{change.kind} {change.namespace}/{change.name}"
    try:
        plural = await api.plural(change.api_version, change.kind)
    except KubeError as e:
        return None, f"{target} could not be read ({inline(plain(e))})"
    try:
        path = resource_path(change.group, change.version, plural, change.namespace, change.name)
        current = await api.get(path)
    except NotFound:
        return None, ""
    except KubeError as e:
        if e.status == 403:
            return (
                None,
                f"{inline(reader)} may not read {target}, so its current values are not shown",
            )
        return None, f"{target} could not be read ({inline(plain(e))})"
    if returned_problem(change, current) is not None:
        return None, f"{target} could not be read as asked"
    return current, ""
