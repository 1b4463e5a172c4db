"""The Kubernetes executor's view of a request: which object, which change, and whether the
policy lets Handoff make it. Pure; the adapter carries it out.

Everything here reads agent-written parameters, so it is total: any JSON gives either a
``KubernetesChange`` whose every part is a valid Kubernetes name, or a sentence saying why not,
and never an exception. The parts are what the executor builds its paths from, one escaped
segment each (``adapters.kube.resource_path``).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from handoff.domain.kubenames import (
    api_version_problem,
    kind_problem,
    name_problem,
    namespace_problem,
    quoted,
    split_kind_key,
)

KUBERNETES = "Kubernetes"
WEBHOOK = "Webhook"
MCP = "MCP"  # the MCP gateway calls the tool (handoff.gateway)
OPERATIONS = {
    "kubernetes.scale": "scale",
    "kubernetes.patch": "patch",
    "kubernetes.apply": "apply",
    "kubernetes.delete": "delete",
}
REPLICAS_MAX = 2**31 - 1  # the API's int32
KEPT_PREFIX = "handoff-previous-"  # the ConfigMaps where the executor keeps objects' past state
EXECUTOR_PREFIX = "handoff-executor-"  # the executors' own ServiceAccounts
_ACCOUNT_FIELDS = ("serviceAccountName", "serviceAccount")

# Kinds no policy may let the executor change, whatever an approval says: each would let an
# approved action widen someone's rights or rewrite Handoff's own record (docs/security.md).
PRIVILEGED_GROUPS = {
    "handoff.dev": "Handoff's own requests and policies (writing them could approve requests)",
    "rbac.authorization.k8s.io": "RBAC objects grant rights",
    "admissionregistration.k8s.io": "admission policies hold boundaries, Handoff's own among them",
    "apiextensions.k8s.io": "CustomResourceDefinitions define what the API serves",
    "apiregistration.k8s.io": "APIServices route API groups to other servers",
    "authentication.k8s.io": "token reviews and requests are identities",
    "authorization.k8s.io": "access reviews answer who may do what",
    "certificates.k8s.io": "certificate signing requests issue client identities",
    "coordination.k8s.io": "Leases elect leaders, Handoff's operator among them",
    "events.k8s.io": "Events are part of Handoff's audit trail",
    "wgpolicyk8s.io": "PolicyReports are part of Handoff's audit trail",
}  # fmt: skip
PRIVILEGED_CORE = {
    "Secret": "Secrets hold credentials (ServiceAccount tokens, the ones Handoff generates)",
    "ServiceAccount": "ServiceAccounts are identities, the executor's own among them",
    "Event": "Events are part of Handoff's audit trail",
}


@dataclass(frozen=True)
class KubernetesScope:
    """What a policy lets Handoff change for its agents: kinds as ``group/version/Kind``
    (``apps/v1/Deployment``; ``v1/ConfigMap`` for the core group) in these namespaces."""

    kinds: frozenset[str] = frozenset()
    namespaces: frozenset[str] = frozenset()  # empty: the policy's own namespace only

    def where(self, policy_namespace: str) -> frozenset[str]:
        return self.namespaces or frozenset({policy_namespace})


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

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


def compile_scope(raw: object, errors: list[str]) -> KubernetesScope:
    """A policy's ``executors.kubernetes``; what is wrong with it goes into ``errors``."""
    if not isinstance(raw, Mapping):
        return KubernetesScope()
    where = "executors.kubernetes"
    kinds: set[str] = set()
    for key in _strings(raw.get("kinds"), f"{where}.kinds", errors):
        parsed = split_kind_key(key, f"{where}.kinds")
        if isinstance(parsed, str):
            errors.append(parsed)
        elif (why := privileged(*parsed)) is not None:
            errors.append(
                f"{where}.kinds lists {key}, which Handoff never changes: {why}. An approved"
                " action must not widen anyone's rights or rewrite the audit trail; remove it"
            )
        else:
            kinds.add(key)
    namespaces: set[str] = set()
    for namespace in _strings(raw.get("namespaces"), f"{where}.namespaces", errors):
        problem = namespace_problem(namespace, f"{where}.namespaces")
        if problem is None:
            namespaces.add(namespace)
        else:
            errors.append(problem)
    return KubernetesScope(frozenset(kinds), frozenset(namespaces))


def privileged(api_version: str, kind: str) -> str | None:
    """Why no policy may list this kind, or None."""
    group = api_version.rpartition("/")[0]
    if group in PRIVILEGED_GROUPS:
        return PRIVILEGED_GROUPS[group]
    return PRIVILEGED_CORE.get(kind) if not group else None


def kubernetes_change(spec: Mapping[str, Any], namespace: str) -> KubernetesChange | str:
    """The change a request asks for, or a sentence saying why it is not one."""
    action = spec.get("action")
    operation = OPERATIONS.get(action) if isinstance(action, str) else None
    if operation is None:
        known = ", ".join(sorted(OPERATIONS))
        return f"the Kubernetes executor runs {known}, not {quoted(action)}"
    parameters = spec.get("parameters")
    if not isinstance(parameters, Mapping):
        return f"{action} needs parameters, an object"
    if operation == "apply":
        return _apply(parameters, namespace)
    missing = [k for k in ("apiVersion", "kind", "name") if not parameters.get(k)]
    if missing:
        return f"{action} needs parameters.{', parameters.'.join(missing)}"
    body = _body(operation, parameters)
    if isinstance(body, str):
        return body
    where = parameters.get("namespace") or namespace
    return _checked(
        KubernetesChange(operation, parameters["apiVersion"], parameters["kind"], where,
                         parameters["name"], body),
        "parameters.namespace",
        {"api_version": "parameters.apiVersion", "kind": "parameters.kind",
         "name": "parameters.name"},
    )  # fmt: skip


def _apply(parameters: Mapping[str, Any], namespace: str) -> KubernetesChange | str:
    usage = (
        "kubernetes.apply needs parameters.manifest, an object with apiVersion, kind and"
        " metadata.name"
    )
    manifest = parameters.get("manifest")
    if not isinstance(manifest, Mapping):
        return f"{usage}; parameters.manifest is {quoted(manifest)}"
    meta = manifest.get("metadata")
    if not isinstance(meta, Mapping):
        return f"{usage}; parameters.manifest.metadata is {quoted(meta)}"
    if not manifest.get("apiVersion") or not manifest.get("kind") or not meta.get("name"):
        return usage
    if meta.get("generateName") is not None:
        return "kubernetes.apply needs a fixed metadata.name, not generateName"
    if _holds_null(manifest):
        return (
            "kubernetes.apply cannot remove a field: a null in parameters.manifest is no"
            " removal to the API server (a label set to null becomes an empty one); remove"
            " fields with kubernetes.patch"
        )
    where = meta.get("namespace") or namespace
    return _checked(
        KubernetesChange("apply", manifest["apiVersion"], manifest["kind"], where, meta["name"],
                         manifest),
        "parameters.manifest.metadata.namespace",
        {"api_version": "parameters.manifest.apiVersion", "kind": "parameters.manifest.kind",
         "name": "parameters.manifest.metadata.name"},
    )  # fmt: skip


def _body(operation: str, parameters: Mapping[str, Any]) -> dict[str, Any] | str:
    if operation == "scale":
        replicas = parameters.get("replicas")
        # bool is an int to Python, not to the API server.
        if isinstance(replicas, bool) or not isinstance(replicas, int):
            return "kubernetes.scale needs parameters.replicas, a whole number from 0"
        if not 0 <= replicas <= REPLICAS_MAX:
            return f"kubernetes.scale needs parameters.replicas from 0 to {REPLICAS_MAX}"
        return {"spec": {"replicas": replicas}}
    if operation == "patch":
        patch = parameters.get("patch")
        if not isinstance(patch, Mapping):
            return "kubernetes.patch needs parameters.patch, a JSON merge patch (an object)"
        return dict(patch)
    return {}


def _checked(
    change: KubernetesChange, namespace_field: str, fields: dict[str, str]
) -> KubernetesChange | str:
    """Every part of the change a valid name, or the first that is not."""
    return (
        api_version_problem(change.api_version, fields["api_version"])
        or kind_problem(change.kind, fields["kind"])
        or namespace_problem(change.namespace, namespace_field)
        or name_problem(change.name, fields["name"])
        or _renames(change)
        or _owns_fields(change)
        or change
    )


def _renames(change: KubernetesChange) -> str | None:
    """A patch may not move, rename or re-kind the object it names."""
    meta = change.body.get("metadata") if change.operation == "patch" else None
    if isinstance(meta, Mapping) and ({"name", "namespace", "generateName"} & set(meta)):
        return "kubernetes.patch may not change metadata.name, .namespace or .generateName"
    if change.operation == "patch" and ({"apiVersion", "kind"} & set(change.body)):
        return "kubernetes.patch may not change apiVersion or kind"
    return None


def _owns_fields(change: KubernetesChange) -> str | None:
    """managedFields say which field manager owns which field: written by a change, they steer
    what a later server-side apply by someone else removes, and no diff shows them."""
    meta = change.body.get("metadata")
    if isinstance(meta, Mapping) and "managedFields" in meta:
        return (
            f"kubernetes.{change.operation} may not set metadata.managedFields (which manager"
            " owns which field is the API server's record)"
        )
    return None


def allowed(change: KubernetesChange, scope: KubernetesScope, policy_namespace: str) -> str | None:
    """None when the policy lets Handoff make this change; else why not."""
    if change.kind_key not in scope.kinds:
        return (
            f"the policy does not let Handoff change {change.kind_key} (executors.kubernetes.kinds)"
        )
    if (why := privileged(change.api_version, change.kind)) is not None:
        return f"Handoff never changes {change.kind_key}: {why}"
    if change.namespace not in scope.where(policy_namespace):
        return f"policy does not let Handoff change objects in namespace {change.namespace}"
    if change.kind_key == "v1/ConfigMap" and change.name.startswith(KEPT_PREFIX):
        return f"{change.name} is where Handoff keeps an object's state for its rollback"
    if _runs_as_executor(change.body):
        return (
            "a Pod may not run as one of Handoff's executor ServiceAccounts"
            f" ({EXECUTOR_PREFIX}*): it would act with the executor's rights without approval"
        )
    return None


def _holds_null(body: Mapping[str, Any]) -> bool:
    """Is any value in the body null? Walked without recursion, as below."""
    stack: list[object] = [body]
    while stack:
        value = stack.pop()
        if value is None:
            return True
        if isinstance(value, Mapping):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _runs_as_executor(body: Mapping[str, Any]) -> bool:
    """Does any pod template in the body name an executor ServiceAccount? Walked without
    recursion: parameters may be nested thousands deep."""
    stack: list[object] = [body]
    while stack:
        value = stack.pop()
        if isinstance(value, Mapping):
            for key, item in value.items():
                if key in _ACCOUNT_FIELDS and str(item).startswith(EXECUTOR_PREFIX):
                    return True
                stack.append(item)
        elif isinstance(value, list):
            stack.extend(value)
    return False


def returned_problem(change: KubernetesChange, obj: object) -> str | None:
    """What the API server answered must be the object asked for: same kind, namespace and
    name. None when it is; else what it was instead."""
    if not isinstance(obj, Mapping):
        return "the API server answered with something that is not an object"
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    asked = (change.api_version, change.kind, change.namespace, change.name)
    got = (obj.get("apiVersion"), obj.get("kind"), meta.get("namespace"), meta.get("name"))
    if got == asked:
        return None
    return (
        f"asked for {change.kind_key} {change.namespace}/{change.name} but the API server"
        f" answered with {quoted(got[0])} {quoted(got[1])} {quoted(got[2])}/{quoted(got[3])}:"
        " nothing was changed by Handoff after that answer"
    )


def _strings(raw: object, where: str, errors: list[str]) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        errors.append(f"{where} must be a list of strings")
        return []
    return list(raw)
