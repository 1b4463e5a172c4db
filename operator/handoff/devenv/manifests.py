"""The objects ``handoff dev up`` and the test fixtures install beside the CRDs."""

from typing import Any

OPERATOR_NAMESPACE = "handoff-system"
OPERATOR_ACCOUNT = "handoff-operator"
RBAC = "rbac.authorization.k8s.io"
WRITE = ["get", "list", "watch", "create", "update", "patch", "delete"]


def operator_objects() -> list[dict[str, Any]]:
    """The operator's ServiceAccount and its ClusterRole: each rule says why it is held."""
    # The operator can grant only what it holds (RBAC forbids more, and it never takes the
    # escalate or bind verbs), so it holds what each policy grants agents and reviewers.
    rules = [
        # Requests and policies: its whole input. create and approve only so it can grant them.
        _rule("handoff.dev", ["actionrequests"], ["get", "list", "watch", "create"]),
        # Decided requests are deleted after the retention period, once their audit is out.
        _rule("handoff.dev", ["actionrequests"], ["delete"]),
        _rule(
            "handoff.dev", ["agentactionpolicies"],
            ["get", "list", "watch", "approve", "rollback", "break-glass"],
        ),
        # Finalizers on policies, so their roles and credentials go with them.
        _rule("handoff.dev", ["agentactionpolicies"], ["patch", "update"]),
        # Which Secrets the MCPServers name: the MCP gateway may read those, by name, alone.
        _rule("handoff.dev", ["mcpservers"], ["get", "list", "watch"]),
        # Decisions and policy conditions; reviewers' status writes are granted from this too.
        _rule(
            "handoff.dev",
            ["actionrequests/status", "agentactionpolicies/status"],
            ["get", "patch", "update"],
        ),
        # Standing grants: read to find those that cover a request; create and delete only so
        # it can grant them to reviewers; each use counted in status, resourceVersion-guarded.
        _rule("handoff.dev", ["actiongrants"], ["get", "list", "watch", "create", "delete"]),
        _rule("handoff.dev", ["actiongrants/status"], ["get", "patch", "update"]),
        # One Event per transition (and reviewers may read them).
        _rule("", ["events"], ["get", "list", "watch", "create", "patch"]),
        _rule("events.k8s.io", ["events"], ["create", "patch"]),
        # The Roles and RoleBindings generated from each policy.
        _rule(RBAC, ["roles", "rolebindings"], WRITE),
        # Generated credentials, and the admin Secrets that policies reference.
        _rule("", ["secrets"], WRITE),
        # The Kubernetes executor: what local policies may let Handoff change (the chart makes
        # this list a value), held only so it can grant it to each policy's executor identity,
        # and where it keeps each object's state before a change.
        _rule("apps", ["deployments"], WRITE),
        _rule("", ["configmaps"], ["get", "create", "delete"]),
        # Each policy's executor ServiceAccount, which the operator impersonates to make the
        # changes: it holds exactly the kinds and namespaces the policy lists.
        _rule("", ["serviceaccounts"], ["get", "create", "patch", "delete"]),
        _rule("", ["serviceaccounts"], ["impersonate"]),
        # A PolicyReport per agent, for existing report tools.
        _rule("wgpolicyk8s.io", ["policyreports"], ["get", "create", "update", "patch"]),
        # To wait until a generated Role is in effect before a policy says Ready.
        _rule("authorization.k8s.io", ["subjectaccessreviews"], ["create"]),
        # kopf follows CRDs to learn when the watched resources are served.
        _rule("apiextensions.k8s.io", ["customresourcedefinitions"], ["get", "list", "watch"]),
        # Shards (--namespace-selector) follow the namespaces whose labels match theirs.
        _rule("", ["namespaces"], ["get", "list", "watch"]),
    ]  # fmt: skip
    # Leader election (--leader-election): the Lease, in the operator's own namespace only.
    lease_rules = [_rule("coordination.k8s.io", ["leases"], ["get", "create", "update"])]
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
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "handoff-operator-leases", "namespace": OPERATOR_NAMESPACE},
            "rules": lease_rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "handoff-operator-leases", "namespace": OPERATOR_NAMESPACE},
            "roleRef": _role_ref("Role", "handoff-operator-leases"),
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": OPERATOR_ACCOUNT,
                    "namespace": OPERATOR_NAMESPACE,
                }
            ],
        },
    ]


CONSOLE_ACCOUNT = "handoff-console"


def console_objects() -> list[dict[str, Any]]:
    """The console's identity: it checks tokens and nothing else. Reviewers' reads and writes
    are made with their own tokens, so the console itself can neither read nor decide."""
    return [
        _service_account(OPERATOR_NAMESPACE, CONSOLE_ACCOUNT),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "handoff-console"},
            "rules": [_rule("authentication.k8s.io", ["tokenreviews"], ["create"])],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "handoff-console"},
            "roleRef": _role_ref("ClusterRole", "handoff-console"),
            "subjects": [
                {"kind": "ServiceAccount", "name": CONSOLE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
            ],
        },
    ]


SLACK_USERS = "handoff-slack-users"


def slack_objects(users: list[str], groups: list[str]) -> list[dict[str, Any]]:
    """What the console's Slack bridge may do beyond checking tokens: read its user mapping (one
    ConfigMap, by name), post Events about it in its namespace, and impersonate exactly the
    mapped people and groups (resourceNames, listed by the administrator; the chart takes them
    from values.slack.impersonate). Nothing else: no ServiceAccounts, no system: groups, no
    other users."""
    subjects = [
        {"kind": "ServiceAccount", "name": CONSOLE_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
    ]
    impersonate = [
        {"apiGroups": [""], "resources": [kind], "verbs": ["impersonate"], "resourceNames": names}
        for kind, names in (("users", sorted(users)), ("groups", sorted(groups)))
        if names
    ]
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "handoff-console-slack", "namespace": OPERATOR_NAMESPACE},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["configmaps"],
                    "verbs": ["get"],
                    "resourceNames": [SLACK_USERS],
                },
                # Events on the mapping: an entry it may not impersonate (SlackMappingUnusable).
                _rule("", ["events"], ["create"]),
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "handoff-console-slack", "namespace": OPERATOR_NAMESPACE},
            "roleRef": _role_ref("Role", "handoff-console-slack"),
            "subjects": subjects,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "handoff-console-slack"},
            "rules": impersonate,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "handoff-console-slack"},
            "roleRef": _role_ref("ClusterRole", "handoff-console-slack"),
            "subjects": subjects,
        },
    ]


GATEWAY_ACCOUNT = "handoff-gateway"


def gateway_objects() -> list[dict[str, Any]]:
    """The MCP gateway's identity. It files nothing (requests are filed with each agent's own
    token) and decides nothing: it checks tokens, reads the MCPServers and the requests filed
    through it, reads the upstreams' credential Secrets (only those MCPServers name: a Role per
    namespace the operator keeps, controller/gateway_access.py), writes MCPServer
    status, and records executions, which admission (handoff-gateway-execution) confines to the
    execution part of approved MCP requests."""
    rules = [
        _rule("authentication.k8s.io", ["tokenreviews"], ["create"]),
        _rule("handoff.dev", ["mcpservers", "actionrequests"], ["get", "list", "watch"]),
        # The tier-1 fast path classifies against a watch of the policies; which tools no policy
        # rule names (the MCPServer's Governed condition).
        _rule("handoff.dev", ["agentactionpolicies"], ["list", "watch"]),
        _rule("handoff.dev", ["mcpservers/status", "actionrequests/status"], ["get", "patch"]),
        # No right on Secrets here: the operator grants `get` on exactly the Secrets each
        # namespace's MCPServers name (Role handoff-gateway-credentials, controller/gateway_access).
    ]
    return [
        _service_account(OPERATOR_NAMESPACE, GATEWAY_ACCOUNT),
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "handoff-gateway"},
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "handoff-gateway"},
            "roleRef": _role_ref("ClusterRole", "handoff-gateway"),
            "subjects": [
                {"kind": "ServiceAccount", "name": GATEWAY_ACCOUNT, "namespace": OPERATOR_NAMESPACE}
            ],
        },
    ]


def agent_namespace_objects(namespace: str, agents: list[str]) -> list[dict[str, Any]]:
    """A namespace with agent ServiceAccounts. What they may do comes from the policies that
    govern them: each policy generates their Role (and its reviewers')."""
    return [_namespace(namespace), *(_service_account(namespace, agent) for agent in agents)]


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


def _role_ref(kind: str, name: str) -> dict[str, str]:
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name}
