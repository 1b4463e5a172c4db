"""The objects ``handoff dev up`` and the test fixtures install beside the CRDs."""

from typing import Any

OPERATOR_NAMESPACE = "handoff-system"
OPERATOR_ACCOUNT = "handoff-operator"


def operator_objects() -> list[dict[str, Any]]:
    """The operator's ServiceAccount and its ClusterRole: each rule says why it is held."""
    rules = [
        # Watch requests and policies: the operator's whole input.
        _rule("handoff.dev", ["actionrequests", "agentactionpolicies"], ["get", "list", "watch"]),
        # Write decisions and policy conditions, and nothing else of those objects.
        _rule(
            "handoff.dev",
            ["actionrequests/status", "agentactionpolicies/status"],
            ["patch", "update"],
        ),
        # One Event per transition, for `kubectl describe` and `kubectl events`.
        _rule("", ["events"], ["create", "patch"]),
        _rule("events.k8s.io", ["events"], ["create", "patch"]),
        # kopf follows CRDs to learn when the watched resources are served.
        _rule("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"]),
    ]  # fmt: skip
    return [
        _namespace(OPERATOR_NAMESPACE),
        _service_account(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "handoff-operator"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "handoff-operator"},
            "roleRef": _role_ref("ClusterRole", "handoff-operator"),
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": OPERATOR_ACCOUNT,
                    "namespace": OPERATOR_NAMESPACE,
                }
            ],
        },
    ]


def agent_namespace_objects(
    namespace: str, agents: list[str], reviewer_groups: list[str]
) -> list[dict[str, Any]]:
    """A namespace with agent ServiceAccounts, and static roles for agents and reviewers.

    Until RBAC is generated from each policy, these roles let the agents file requests (and do
    nothing else to them) and let the reviewer groups append reviews through the status
    subresource.
    """
    agent_role = [
        _rule("handoff.dev", ["actionrequests"], ["create", "get", "list", "watch"]),
        _rule("handoff.dev", ["agentactionpolicies"], ["get", "list", "watch"]),
    ]
    reviewer_role = [
        _rule("handoff.dev", ["actionrequests", "agentactionpolicies"], ["get", "list", "watch"]),
        _rule("handoff.dev", ["actionrequests/status"], ["get", "patch", "update"]),
        _rule("", ["events"], ["get", "list", "watch"]),
    ]
    objects: list[dict[str, Any]] = [_namespace(namespace)]
    objects += [_service_account(namespace, agent) for agent in agents]
    objects += [
        _role(namespace, "handoff-agent", agent_role),
        _role(namespace, "handoff-reviewer", reviewer_role),
        _binding(
            namespace,
            "handoff-agent",
            [{"kind": "ServiceAccount", "name": a, "namespace": namespace} for a in agents],
        ),
        _binding(
            namespace,
            "handoff-reviewer",
            [
                {"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"}
                for group in reviewer_groups
            ],
        ),
    ]  # fmt: skip
    return objects


def as_list(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "List", "items": objects}


def _rule(group: str, resources: list[str], verbs: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": resources, "verbs": verbs}


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def _service_account(namespace: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "namespace": namespace},
    }


def _role(namespace: str, name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": rules,
    }


def _binding(namespace: str, name: str, subjects: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": _role_ref("Role", name),
        "subjects": subjects,
    }


def _role_ref(kind: str, name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}
