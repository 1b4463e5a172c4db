"""The Kubernetes executor's view of a request: which object, which change, and whether the
policy lets Handoff make it. Pure; the adapter carries it out."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

KUBERNETES = "Kubernetes"
WEBHOOK = "Webhook"
OPERATIONS = {
    "kubernetes.scale": "scale",
    "kubernetes.patch": "patch",
    "kubernetes.apply": "apply",
    "kubernetes.delete": "delete",
}


@dataclass(frozen=True)
class KubernetesScope:
    """What a policy lets Handoff change for its agents: kinds as ``group/version/Kind``
    (``apps/v1/Deployment``; ``v1/ConfigMap`` for the core group) in these namespaces."""

    kinds: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()  # empty: the policy's own namespace only


@dataclass(frozen=True)
class KubernetesChange:
    operation: str  # scale | patch | apply | delete
    api_version: str
    kind: str
    namespace: str
    name: str
    body: Mapping[str, Any] = field(default_factory=dict)  # the merge patch or the manifest

    @property
    def kind_key(self) -> str:
        return f"{self.api_version}/{self.kind}"


def kubernetes_change(  # noqa: PLR0911 - one early answer per way a request can be malformed
    spec: Mapping[str, Any], namespace: str
) -> KubernetesChange | str:
    """The change a request asks for, or a sentence saying why it is not one."""
    operation = OPERATIONS.get(str(spec.get("action", "")))
    if operation is None:
        known = ", ".join(sorted(OPERATIONS))
        return f"the Kubernetes executor runs {known}, not {spec.get('action')}"
    parameters = spec.get("parameters") or {}
    if operation == "apply":
        manifest = parameters.get("manifest")
        if (
            not isinstance(manifest, dict)
            or not manifest.get("kind")
            or not manifest.get("apiVersion")
        ):
            return (
                "kubernetes.apply needs parameters.manifest with apiVersion, kind and metadata.name"
            )
        meta = manifest.get("metadata") or {}
        where = str(meta.get("namespace") or namespace)
        return KubernetesChange(
            operation, manifest["apiVersion"], manifest["kind"], where, str(meta.get("name", "")),
            manifest,
        )  # fmt: skip
    missing = [k for k in ("apiVersion", "kind", "name") if not parameters.get(k)]
    if missing:
        return f"{spec.get('action')} needs parameters.{', parameters.'.join(missing)}"
    body: dict[str, Any] = {}
    if operation == "scale":
        if not isinstance(parameters.get("replicas"), int) or parameters["replicas"] < 0:
            return "kubernetes.scale needs parameters.replicas, a whole number from 0"
        body = {"spec": {"replicas": parameters["replicas"]}}
    elif operation == "patch":
        if not isinstance(parameters.get("patch"), dict):
            return "kubernetes.patch needs parameters.patch, a JSON merge patch"
        body = parameters["patch"]
    return KubernetesChange(
        operation, str(parameters["apiVersion"]), str(parameters["kind"]),
        str(parameters.get("namespace") or namespace), str(parameters["name"]), body,
    )  # fmt: skip


def allowed(change: KubernetesChange, scope: KubernetesScope, policy_namespace: str) -> str | None:
    """None when the policy lets Handoff make this change; else why not."""
    namespaces = scope.namespaces or frozenset({policy_namespace})
    if change.kind_key not in scope.kinds:
        return (
            f"the policy does not let Handoff change {change.kind_key} (executors.kubernetes.kinds)"
        )
    if change.namespace not in namespaces:
        return f"policy does not let Handoff change objects in namespace {change.namespace}"
    if not change.name:
        return "the object has no name"
    return None


def diff(old: Any, new: Any, path: str = "") -> list[str]:
    """What changes between two JSON values, one line per leaf: ``path: old -> new``."""
    if isinstance(old, dict) and isinstance(new, dict):
        lines: list[str] = []
        for key in sorted(set(old) | set(new)):
            lines += diff(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return lines
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        lines = []
        for index, (a, b) in enumerate(zip(old, new, strict=True)):
            lines += diff(a, b, f"{path}[{index}]")
        return lines
    if old == new:
        return []
    return [f"{path}: {_short(old)} -> {_short(new)}"]


def _short(value: Any) -> str:
    text = "(none)" if value is None else json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."
