"""What a policy provisions for its agents (database roles, Redis users, their access), and the
wait until the API server's authorizer lets them file."""

import asyncio
import logging
from datetime import datetime
from typing import Any, Protocol

from handoff import GROUP
from handoff.adapters.kube import ACCESS_REVIEWS, KubeApi, service_account_review
from handoff.domain.policy import CompiledPolicy
from handoff.domain.resources import PolicyJSON

log = logging.getLogger("handoff.operator")


class ProvisionError(Exception):
    """A credential could not be put in place; the message goes on the policy's condition."""


class Provisioner(Protocol):
    """Something a policy provisions for its agents (database roles, Redis users) and removes."""

    def secret_names(self, policy: CompiledPolicy, spec: dict[str, Any]) -> list[str]:
        """The Secrets it writes for the agents, which their Role may read by name."""
        ...

    async def ensure(
        self, policy: CompiledPolicy, body: PolicyJSON, now: datetime
    ) -> datetime | None:
        """Put everything in place; return when to come back (rotation), or None."""
        ...

    async def remove(self, body: PolicyJSON) -> None:
        """Take everything away; idempotent."""
        ...


async def wait_for_access(api: KubeApi, policy: CompiledPolicy) -> None:
    """Wait (briefly) until the API server's authorizer sees the new RoleBinding, so that
    Ready=True means an agent can file right away."""
    if not policy.service_accounts:
        return
    agent = sorted(policy.service_accounts)[0]
    attributes = {"group": GROUP, "resource": "actionrequests", "verb": "create",
                  "namespace": policy.namespace}  # fmt: skip
    review = service_account_review(policy.namespace, agent, attributes)
    for _ in range(30):
        answer = await api.create(ACCESS_REVIEWS, review)
        if (answer.get("status") or {}).get("allowed"):
            return
        await asyncio.sleep(0.1)
    log.warning(
        "policy %s/%s: the agents' Role is not in effect yet", policy.namespace, policy.name
    )
