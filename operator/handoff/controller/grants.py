"""Standing grants at the moment a request would start waiting for people.

When ``decide`` sends a request to review under a rule that says ``grantable``, the request
handler asks here whether an ActionGrant covers it (``domain/grants.py`` judges). The grants are
read from the API server then, not from a cache: a deleted grant is revoked at once. A grant's
first use checks it against the request that prompted it (a grant wider than that request is
marked refused and covers nothing, ever). Each use is counted in the grant's status by a
merge patch carrying the resourceVersion it was judged at: two requests racing for the last use
cannot both take it (the loser reads the grant again, finds it used up, and goes to people).
Taking the use comes before the request's own decision is written: a crash in between loses a
use (fails safe), and a retry finds its own uid among the uses and takes no second one.

A grant is one person's approval in advance, so it never covers a request that takes more than
one (approval stages, or a lane's ``approvals`` over 1), nor one its agent did not file itself.
Its author's right is asked again at each use, by a SubjectAccessReview for the verb ``approve``
on the policy with the user and groups admission stamped on the grant: a grant whose author lost
that right is refused for good (``GrantAuthorUnentitled``), with a Warning Event on the grant.
"""

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from handoff import GROUP, VERSION
from handoff.adapters.kube import (
    ACCESS_REVIEWS,
    Conflict,
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
from handoff.domain.filing import requested_by
from handoff.domain.grants import (
    Answer,
    Grant,
    GrantError,
    approve,
    bounds_problem,
    covers,
    prompt_problem,
    request_problem,
    undecided,
    usable,
)
from handoff.domain.model import Event, RequestState, Step
from handoff.domain.policy import CompiledPolicy
from handoff.domain.reasons import Reason
from handoff.domain.timefmt import format_time

log = logging.getLogger("handoff.operator")
GRANTS = "actiongrants"
ATTEMPTS = 8  # conflicting writes of one grant in a row before it is left for people
COVERABLE = (Reason.AWAITING_REVIEW, Reason.IN_VETO_WINDOW)  # not a spent budget, no rollback


def grants_path(namespace: str, name: str | None = None) -> str:
    return resource_path(GROUP, VERSION, GRANTS, namespace, name)


class Grants:
    def __init__(
        self, api: KubeApi, clock: Callable[[], datetime], sandbox: Sandbox | None = None,
        events: Events | None = None,
    ) -> None:  # fmt: skip
        self.api, self.clock, self.sandbox, self.events = api, clock, sandbox, events

    async def cover(
        self, body: Any, state: RequestState, step: Step, policies: Sequence[CompiledPolicy]
    ) -> Step:
        """``step`` as it is, or, when an active grant covers the request, its approval by that
        grant, the use already counted."""
        patch = step.patch or {}
        if not step.started_waiting or step.event is None or step.event.reason not in COVERABLE:
            return step
        by_name = {p.name: p for p in policies}
        classified = (str(patch.get("policy", "")), patch.get("rule"))
        rule = next(
            (
                r
                for r in getattr(by_name.get(classified[0]), "rules", ())
                if r.name == classified[1]
            ),
            None,
        )
        if rule is None or rule.grantable is None:
            return step  # the usual case: nothing to read
        facts, uid = state.facts, str(body["metadata"]["uid"])
        try:
            listing = await self.api.get(grants_path(facts.namespace))
        except KubeError as e:
            log.warning("cannot list actiongrants in %s (%s): people decide", facts.namespace, e)
            return step
        now = self.clock()
        found: list[tuple[Grant, Any]] = []
        for item in listing.get("items") or ():
            try:
                found.append((Grant.from_json(item), item))
            except GrantError as e:
                log.warning("%s", e)
        found.sort(key=lambda g: (g[0].expires, g[0].name))  # what ends first is used first
        for grant, raw in found:
            if not _candidate(grant, facts, classified, uid, now):
                continue
            if bounds_problem(grant, by_name) is not None:
                continue
            if await self._checked(grant) is None:  # wider than its prompt: refused, for good
                continue
            if (problem := request_problem(patch, requested_by(body), grant)) is not None:
                log.info("actiongrant %s/%s does not cover %s: %s", grant.namespace, grant.name,
                         body["metadata"]["name"], problem)  # fmt: skip
                continue
            answer = await self._condition(grant, facts)
            approved = await self._use(grant, raw, body, facts, classified=classified,
                                       answer=answer, now=now)  # fmt: skip
            if approved is not None:
                return approve(step, approved, approved.used_by.index(uid) + 1, now)
        return step

    async def _use(
        self, grant: Grant, raw: Any, body: Any, facts: RequestFacts, *,
        classified: tuple[str, str | None], answer: Answer, now: datetime,
    ) -> Grant | None:  # fmt: skip
        """Take one use of ``grant`` for the request ``body``: the grant as written, or None."""
        uid, name = str(body["metadata"]["uid"]), str(body["metadata"]["name"])
        for _ in range(ATTEMPTS):
            if uid in grant.used_by:
                return grant  # taken already, by an earlier pass over this request
            checked = await self._checked(grant)
            if (
                checked is None
                or not covers(checked, facts, classified, now, answer)
                or not await self._entitled(checked)
            ):
                return None
            earlier = list((raw.get("status") or {}).get("usedBy") or [])
            used = [*earlier, {"uid": uid, "request": name, "at": format_time(now)}]
            document = {
                "metadata": {"resourceVersion": grant.resource_version},
                "status": {"checked": True, "used": len(used), "usedBy": used},
            }
            path = grants_path(grant.namespace, grant.name)
            try:
                return Grant.from_json(await self.api.merge_patch(path + "/status", document))
            except Conflict:
                try:
                    raw = await self.api.get(path)
                    grant = Grant.from_json(raw)
                except (NotFound, GrantError):
                    return None  # deleted meanwhile: revoked
            except NotFound:
                return None
        log.warning("actiongrant %s/%s kept changing: people decide", grant.namespace, grant.name)
        return None

    async def _checked(self, grant: Grant) -> Grant | None:
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
        return prompt_problem(grant, prompt, await self._condition(grant, facts))

    async def _entitled(self, grant: Grant) -> bool:
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

    async def _condition(self, grant: Grant, facts: RequestFacts) -> Answer:
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


def _candidate(
    grant: Grant, facts: RequestFacts, classified: tuple[str, str | None], uid: str, now: datetime
) -> bool:
    """Worth a closer look: for this agent, action and rule, and usable now (or already used
    by this very request, on an earlier pass)."""
    named = (grant.agent, grant.action, grant.policy, grant.rule)
    return uid in grant.used_by or (
        named == (facts.agent, facts.action, *classified) and usable(grant, now)
    )
