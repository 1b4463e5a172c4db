"""The Kubernetes executor's identity: one ServiceAccount per policy that lists kinds, holding
exactly what the policy lists and nothing else.

``handoff-executor-<policy>`` lives in the policy's namespace, owned by the policy. In each
namespace the policy lists, the Role and RoleBinding
``handoff-executor.<policy namespace>.<policy>`` grant it get, create, update, patch and
delete on exactly the listed kinds (plurals from the API server's discovery). The operator
makes every executor call as that ServiceAccount, by impersonation, so whatever an agent
writes into a request, the API server itself keeps the change inside the policy; and the
review admission policy's exemption, which names the operator's own user, never covers an
executor's write.

Roles in other namespaces than the policy's cannot be owned by it (owner references do not
cross namespaces): they carry the label ``handoff.dev/executor-of: <policy uid>``, by which
they are found again to be removed with the policy or when a namespace leaves its list.
"""

import asyncio
import contextlib
import hashlib
import logging
from typing import Any

from handoff import API_VERSION
from handoff.adapters.kube import (
    ACCESS_REVIEWS,
    KubeApi,
    KubeError,
    NotFound,
    resource_path,
    service_account_review,
)
from handoff.domain.executors import EXECUTOR_PREFIX
from handoff.domain.kubenames import SUBDOMAIN_MAX
from handoff.domain.policy import CompiledPolicy
from handoff.domain.resources import PolicyJSON

log = logging.getLogger("handoff.operator")

RBAC = "rbac.authorization.k8s.io"
VERBS = ["get", "create", "update", "patch", "delete"]
EXECUTOR_OF = "handoff.dev/executor-of"
_PREFIX = EXECUTOR_PREFIX


def executor_account(policy: str) -> str:
    """The ServiceAccount's name: a DNS-1123 subdomain even for the longest policy name."""
    name = _PREFIX + policy
    if len(name) <= SUBDOMAIN_MAX:
        return name
    digest = hashlib.sha256(policy.encode()).hexdigest()[:10]
    kept = policy[: SUBDOMAIN_MAX - len(_PREFIX) - len(digest) - 1].rstrip(".-")
    return f"{_PREFIX}{kept}-{digest}"


def executor_user(namespace: str, policy: str) -> str:
    return f"system:serviceaccount:{namespace}:{executor_account(policy)}"


def executor_role_name(namespace: str, policy: str) -> str:
    """Unique per policy in every namespace: a namespace's name has no dots."""
    return f"handoff-executor.{namespace}.{policy}"


def is_executor_account(name: object) -> bool:
    return isinstance(name, str) and name.startswith(_PREFIX)


def executor_objects(
    policy: CompiledPolicy, uid: str, rules: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The ServiceAccount, and a Role and RoleBinding in each namespace the policy lists."""
    owner = {"apiVersion": API_VERSION, "kind": "AgentActionPolicy", "name": policy.name,
             "uid": uid, "blockOwnerDeletion": False}  # fmt: skip
    labels = {"app.kubernetes.io/managed-by": "handoff", "handoff.dev/policy": policy.name,
              EXECUTOR_OF: uid}  # fmt: skip
    account = executor_account(policy.name)
    documents: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": account, "namespace": policy.namespace, "labels": labels,
                         "ownerReferences": [owner]},
            "automountServiceAccountToken": False,
        }
    ]  # fmt: skip
    name = executor_role_name(policy.namespace, policy.name)
    for namespace in sorted(policy.kubernetes.where(policy.namespace)):
        meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
        if namespace == policy.namespace:
            meta["ownerReferences"] = [owner]
        subject = {"kind": "ServiceAccount", "name": account, "namespace": policy.namespace}
        documents += [
            {"apiVersion": f"{RBAC}/v1", "kind": "Role", "metadata": meta, "rules": rules},
            {"apiVersion": f"{RBAC}/v1", "kind": "RoleBinding", "metadata": meta,
             "roleRef": {"apiGroup": RBAC, "kind": "Role", "name": name}, "subjects": [subject]},
        ]  # fmt: skip
    return documents


class ExecutorAccessError(Exception):
    """The identity could not be put in place; the message goes on the policy's condition."""


class ExecutorAccess:
    """Puts a policy's executor identity in place, and takes it away again."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    async def ensure(self, policy: CompiledPolicy, body: PolicyJSON) -> None:
        uid = body["metadata"]["uid"]
        if not policy.kubernetes.kinds:
            # Made before, when it listed kinds? Its ServiceAccount goes last, so it tells.
            path = resource_path("", "v1", "serviceaccounts", policy.namespace,
                                 executor_account(policy.name))  # fmt: skip
            with contextlib.suppress(NotFound):
                await self.api.get(path)
                await self.remove(body)
            return
        rules = await self._rules(policy)
        try:
            for document in executor_objects(policy, uid, rules):
                await self.api.apply(document)
        except NotFound as e:
            raise ExecutorAccessError(
                f"the Kubernetes executor's Role could not be made: {e.message}"
            ) from e
        except KubeError as e:
            raise ExecutorAccessError(
                f"the Kubernetes executor's Role could not be made: {e.message}. The operator"
                " can grant only what it holds: give it these kinds (operator.executor.rules"
                " in the chart)"
            ) from e
        await self._drop(uid, keep=policy.kubernetes.where(policy.namespace))
        await self._wait_for_access(policy, rules)

    async def remove(self, body: PolicyJSON) -> None:
        """Everything the policy's executor identity was given, in every namespace; idempotent."""
        meta = body["metadata"]
        await self._drop(meta["uid"], keep=frozenset())
        path = resource_path("", "v1", "serviceaccounts", meta["namespace"],
                             executor_account(meta["name"]))  # fmt: skip
        await self.api.delete_if_present(path)

    async def _rules(self, policy: CompiledPolicy) -> list[dict[str, Any]]:
        """One rule per listed kind, on its plural as the API server serves it."""
        rules = []
        for key in sorted(policy.kubernetes.kinds):
            api_version, _, kind = key.rpartition("/")
            try:
                plural, namespaced = await self._resource(api_version, kind)
            except KubeError as e:
                raise ExecutorAccessError(
                    f"executors.kubernetes.kinds lists {key}, which the API server does not"
                    f" serve ({e.message}); install it or remove it from the list"
                ) from e
            if not namespaced:
                raise ExecutorAccessError(
                    f"executors.kubernetes.kinds lists {key}, which is not namespaced: the"
                    " Kubernetes executor changes namespaced objects only"
                )
            group = api_version.rpartition("/")[0]
            rules.append({"apiGroups": [group], "resources": [plural], "verbs": VERBS})
        return rules

    async def _resource(self, api_version: str, kind: str) -> tuple[str, bool]:
        """The kind's plural and whether it is namespaced, from the server's discovery."""
        group, _, version = api_version.rpartition("/")
        base = "/" + "/".join(["apis", group, version] if group else ["api", version])
        for resource in (await self.api.get(base)).get("resources") or []:
            if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                return str(resource["name"]), bool(resource.get("namespaced"))
        raise NotFound(404, f"no {kind} in {api_version}")

    async def _drop(self, uid: str, keep: frozenset[str]) -> None:
        for kind in ("rolebindings", "roles"):
            selector = {"labelSelector": f"{EXECUTOR_OF}={uid}"}
            path = resource_path(RBAC, "v1", kind)
            listing = await self.api.request("GET", path, params=selector)
            for item in listing.get("items") or []:
                meta = item["metadata"]
                if meta["namespace"] not in keep:
                    path = resource_path(RBAC, "v1", kind, meta["namespace"], meta["name"])
                    await self.api.delete_if_present(path)

    async def _wait_for_access(self, policy: CompiledPolicy, rules: list[dict[str, Any]]) -> None:
        """Wait (briefly) until the authorizer sees every new RoleBinding, so that Ready=True
        means an approved change can be made at once."""
        account = executor_account(policy.name)
        group, resource = rules[0]["apiGroups"][0], rules[0]["resources"][0]
        for namespace in sorted(policy.kubernetes.where(policy.namespace)):
            attributes = {"verb": "get", "group": group, "resource": resource,
                          "namespace": namespace}  # fmt: skip
            review = service_account_review(policy.namespace, account, attributes)
            for _ in range(30):
                answer = await self.api.create(ACCESS_REVIEWS, review)
                if (answer.get("status") or {}).get("allowed"):
                    break
                await asyncio.sleep(0.1)
            else:
                log.warning(
                    "policy %s/%s: the executor's Role in %s is not in effect yet",
                    policy.namespace, policy.name, namespace,
                )  # fmt: skip
