"""What a grant must still be at each use, asked of the API server: no wider than the request
that prompted it (checked on its first use: one that is, is refused for good), its author still
entitled to approve (a SubjectAccessReview with the groups admission stamped on it), and its
condition on a request (in the sandbox, as the policies' ``when``). A refusal is written to the
grant's status and posted as a Warning Event on it. ``grants.py`` decides the use.
"""

import logging
from dataclasses import replace
from typing import Any

from handoff import GROUP, VERSION
from handoff.adapters.kube import (
    ACCESS_REVIEWS,
    KubeApi,
    KubeError,
    NotFound,
    access_review,
    resource_path,
)
from handoff.adapters.sandbox import Sandbox
from handoff.controller.events import Events
from handoff.domain.classify import RequestFacts
from handoff.domain.expressions import ExpressionError, compile_expression
from handoff.domain.grants import Answer, Grant, prompt_problem, undecided
from handoff.domain.model import Event
from handoff.domain.reasons import Reason

log = logging.getLogger("handoff.operator")
GRANTS = "actiongrants"


def grants_path(namespace: str, name: str | None = None) -> str:
    return resource_path(GROUP, VERSION, GRANTS, namespace, name)


class GrantChecks:
    def __init__(
        self, api: KubeApi, sandbox: Sandbox | None = None, events: Events | None = None
    ) -> None:
        self.api, self.sandbox, self.events = api, sandbox, events

    async def checked(self, grant: Grant) -> Grant | None:
        """``grant`` checked against the request that prompted it (on its first use), or None
        when it is wider than that request: then it is marked refused, for good."""
        if grant.checked:
            return grant
        path = resource_path(GROUP, VERSION, "actionrequests", grant.namespace, grant.prompted_by)
        try:
            prompt = await self.api.get(path)
        except NotFound:
            prompt = None
        problem = await self._check(grant, prompt)
        if problem is None and prompt is not None and undecided(prompt):
            return None  # its author's approval may not count yet: nothing covered, not refused
        if problem is None:
            return replace(grant, checked=True)
        await self._refuse(grant, problem)
        return None

    async def _check(self, grant: Grant, prompt: Any) -> str | None:
        """Why ``grant`` is wider than the request that prompted it, or None."""
        if prompt is None:
            return f"the request that prompted it, {grant.prompted_by}, does not exist"
        spec = prompt.get("spec") or {}
        facts = RequestFacts.from_spec(grant.namespace, spec, prompt["metadata"].get("labels"))
        return prompt_problem(grant, prompt, await self.condition(grant, facts))

    async def entitled(self, grant: Grant) -> bool:
        """Whether the grant's author holds, now, the verb approve on its policy (with the groups
        admission stamped on it). No: it is refused for good. No answer: it covers nothing now."""
        attributes = {"group": GROUP, "resource": "agentactionpolicies", "verb": "approve",
                      "namespace": grant.namespace, "name": grant.policy}  # fmt: skip
        review = access_review(grant.author, grant.groups, attributes)
        try:
            answer = await self.api.create(ACCESS_REVIEWS, review)
        except KubeError as e:
            log.warning("cannot ask whether %s may still approve for actiongrant %s/%s (%s):"
                        " people decide", grant.author, grant.namespace, grant.name, e)  # fmt: skip
            return False
        if (answer.get("status") or {}).get("allowed") is True:
            return True
        problem = (
            f"{grant.author} no longer holds the verb approve on agentactionpolicies/{grant.policy}"
            f" (asked when the grant was about to be used): a grant covers only while its author"
            f" could approve the requests it covers"
        )
        await self._refuse(grant, problem, Reason.GRANT_AUTHOR_UNENTITLED)
        return False

    async def _refuse(
        self, grant: Grant, problem: str, reason: Reason = Reason.GRANT_REFUSED
    ) -> None:
        log.warning("actiongrant %s/%s refused: %s", grant.namespace, grant.name, problem)
        document = {
            "metadata": {"resourceVersion": grant.resource_version},
            "status": {"refused": f"{reason}: {problem}"[:1024]},
        }
        try:
            written = await self.api.merge_patch(
                grants_path(grant.namespace, grant.name) + "/status", document
            )
        except KubeError as e:  # refused again on its next use
            log.warning("cannot mark actiongrant %s/%s refused: %s", grant.namespace, grant.name, e)
            return
        if self.events is not None:
            event = Event("Warning", reason, f"{problem}; it covers nothing from now on")
            self.events.post_soon(written, event, kind="ActionGrant")

    async def condition(self, grant: Grant, facts: RequestFacts) -> Answer:
        """The grant's condition on a request, in the same sandbox as the policies' ``when``."""
        if grant.condition is None:
            return None
        try:
            expression = compile_expression(grant.condition)
        except ExpressionError as e:
            return str(e)
        variables = facts.variables()
        if self.sandbox is None:
            try:
                return expression.matches(variables)
            except ExpressionError as e:
                return str(e)
        found = await self.sandbox.evaluate(
            (facts.namespace, facts.agent), variables, [[grant.condition]]
        )
        return found.get(grant.condition, "not evaluated")
