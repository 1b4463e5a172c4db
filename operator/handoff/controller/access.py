"""The RBAC a policy grants, as Kubernetes objects. Pure: built here, applied by the reconciler.

For the agents a policy governs: file requests and watch them, read the policies, and read only
their own generated Secrets. Never update, patch or delete a request, never touch its status.
For the policy's reviewers: read requests, append reviews through the status subresource, and
the custom verb ``approve`` on this policy by name, which the admission policy checks on every
review (as Kubernetes checks ``approve`` on signers for CSRs), and ``rollback``, which the
console and the plugin check before undoing one of its actions.
For each approval stage of its lanes: a Role and RoleBinding of their own, with the verb
``approve`` on ``<policy>:<stage>`` only (``stage_objects``), so a stage's reviewers can review
that stage and no other.
"""

from typing import Any

from handoff import API_VERSION
from handoff.domain.breakglass import BreakGlass
from handoff.domain.policy import CompiledPolicy
from handoff.domain.policystages import Stage
from handoff.domain.stages import approve_name

RBAC = "rbac.authorization.k8s.io"
READ = ["get", "list", "watch"]
MANAGED_BY = {"app.kubernetes.io/managed-by": "handoff"}


def agent_role_name(policy: str) -> str:
    return f"handoff-agent-{policy}"


def reviewer_role_name(policy: str) -> str:
    return f"handoff-reviewer-{policy}"


def break_glass_role_name(policy: str) -> str:
    return f"handoff-break-glass-{policy}"


def break_glass_objects(
    policy: CompiledPolicy, uid: str, grant: BreakGlass
) -> list[dict[str, Any]]:
    """While a break-glass annotation holds: its groups may read the policy's requests and
    append reviews marked breakGlass, which admission admits on the verb ``break-glass``."""
    owner = _owner(policy, uid)
    rules = [
        _rule("handoff.dev", ["actionrequests", "agentactionpolicies"], ["get", "list", "watch"]),
        _rule("handoff.dev", ["actionrequests/status"], ["get", "patch", "update"]),
        _rule("handoff.dev", ["agentactionpolicies"], ["break-glass"], [policy.name]),
        _rule("", ["events"], ["get", "list", "watch"]),
    ]
    subjects = [{"kind": "Group", "apiGroup": RBAC, "name": name} for name in grant.groups]
    name = break_glass_role_name(policy.name)
    return [
        _object("Role", name, policy, owner, rules=rules),
        _object("RoleBinding", name, policy, owner, roleRef=_ref(name), subjects=subjects),
    ]


def access_objects(
    policy: CompiledPolicy, uid: str, secret_names: list[str]
) -> list[dict[str, Any]]:
    """Roles and RoleBindings for ``policy``, owned by it (uid) so a cluster's GC removes them."""
    owner = _owner(policy, uid)
    agent_rules = [
        _rule("handoff.dev", ["actionrequests"], ["create", "get", "list", "watch"]),
        _rule("handoff.dev", ["agentactionpolicies"], ["get", "list", "watch"]),
    ]
    if secret_names:
        agent_rules.append(_rule("", ["secrets"], ["get"], sorted(secret_names)))
    reviewer_rules = [
        _rule("handoff.dev", ["actionrequests", "agentactionpolicies"], ["get", "list", "watch"]),
        _rule("handoff.dev", ["actionrequests/status"], ["get", "patch", "update"]),
        _rule("handoff.dev", ["agentactionpolicies"], ["approve", "rollback"], [policy.name]),
        # Standing grants: admission admits one only from who holds approve on its policy.
        _rule("handoff.dev", ["actiongrants"], ["create", "get", "list", "watch", "delete"]),
        _rule("", ["events"], ["get", "list", "watch"]),
    ]
    agents = [
        {"kind": "ServiceAccount", "name": name, "namespace": policy.namespace}
        for name in sorted(policy.service_accounts)
    ]
    reviewers = [
        {"kind": "User", "apiGroup": RBAC, "name": name} for name in sorted(policy.reviewers.users)
    ] + [
        {"kind": "Group", "apiGroup": RBAC, "name": name}
        for name in sorted(policy.reviewers.groups)
    ]
    return [
        _object("Role", agent_role_name(policy.name), policy, owner, rules=agent_rules),
        _object("Role", reviewer_role_name(policy.name), policy, owner, rules=reviewer_rules),
        _object(
            "RoleBinding", agent_role_name(policy.name), policy, owner,
            roleRef=_ref(agent_role_name(policy.name)), subjects=agents,
        ),
        _object(
            "RoleBinding", reviewer_role_name(policy.name), policy, owner,
            roleRef=_ref(reviewer_role_name(policy.name)), subjects=reviewers,
        ),
    ]  # fmt: skip


def stage_role_name(policy: str, stage: str) -> str:
    """A stage name has no dot and a policy name may: the first dot ends the stage's name."""
    return f"handoff-stage-{stage}.{policy}"


def stages_of(policy: CompiledPolicy) -> list[Stage]:
    """The policy's stages, once each by name (compile refuses one name for two sets of people)."""
    found: dict[str, Stage] = {}
    rules = [stage for rule in policy.rules for stage in rule.stages or ()]
    for stage in (*policy.tier3.stages, *policy.tier4.stages, *rules):
        found.setdefault(stage.name, stage)
    return list(found.values())


def stage_objects(policy: CompiledPolicy, uid: str) -> list[dict[str, Any]]:
    """A Role and RoleBinding per approval stage: read the requests, append reviews, and the verb
    ``approve`` on ``<policy>:<stage>``, which admission checks for a review of that stage."""
    owner = _owner(policy, uid)
    documents: list[dict[str, Any]] = []
    for stage in stages_of(policy):
        name = stage_role_name(policy.name, stage.name)
        rules = [
            _rule("handoff.dev", ["actionrequests", "agentactionpolicies"], READ),
            _rule("handoff.dev", ["actionrequests/status"], ["get", "patch", "update"]),
            _rule("handoff.dev", ["agentactionpolicies"], ["approve"],
                  [approve_name(policy.name, stage.name)]),
            _rule("", ["events"], READ),
        ]  # fmt: skip
        subjects = [
            {"kind": "User", "apiGroup": RBAC, "name": n} for n in sorted(stage.reviewers.users)
        ] + [{"kind": "Group", "apiGroup": RBAC, "name": n} for n in sorted(stage.reviewers.groups)]
        labels = {"handoff.dev/stage": stage.name}
        role = _object("Role", name, policy, owner, rules=rules)
        binding = _object("RoleBinding", name, policy, owner, roleRef=_ref(name), subjects=subjects)
        for document in (role, binding):
            document["metadata"]["labels"] |= labels
            documents.append(document)
    return documents


def _owner(policy: CompiledPolicy, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AgentActionPolicy",
        "name": policy.name,
        "uid": uid,
        "blockOwnerDeletion": False,
    }


def _object(
    kind: str, name: str, policy: CompiledPolicy, owner: dict[str, Any], **body: Any
) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC}/v1",
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": policy.namespace,
            "labels": MANAGED_BY | {"handoff.dev/policy": policy.name},
            "ownerReferences": [owner],
        },
        **body,
    }


def _ref(role: str) -> dict[str, str]:
    return {"apiGroup": RBAC, "kind": "Role", "name": role}


def _rule(
    group: str, resources: list[str], verbs: list[str], names: list[str] | None = None
) -> dict[str, Any]:
    rule: dict[str, Any] = {"apiGroups": [group], "resources": resources, "verbs": verbs}
    if names:
        rule["resourceNames"] = names
    return rule
