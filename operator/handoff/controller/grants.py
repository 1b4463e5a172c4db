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
Those questions to the API server, and the refusals, are ``grant_checks.py``.
"""

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from handoff.adapters.kube import Conflict, KubeApi, KubeError, NotFound
from handoff.adapters.sandbox import Sandbox
from handoff.controller.events import Events
from handoff.controller.grant_checks import GRANTS, GrantChecks, grants_path
from handoff.domain.classify import RequestFacts
from handoff.domain.filing import requested_by
from handoff.domain.grants import (
    Answer,
    Grant,
    GrantError,
    approve,
    bounds_problem,
    covers,
    request_problem,
    usable,
)
from handoff.domain.model import RequestState, Step
from handoff.domain.policy import CompiledPolicy
from handoff.domain.reasons import Reason
from handoff.domain.timefmt import format_time

__all__ = ["GRANTS", "Grants", "grants_path"]
log = logging.getLogger("handoff.operator")
ATTEMPTS = 8  # conflicting writes of one grant in a row before it is left for people
COVERABLE = (Reason.AWAITING_REVIEW, Reason.IN_VETO_WINDOW)  # not a spent budget, no rollback


class Grants:
    def __init__(
        self, api: KubeApi, clock: Callable[[], datetime], sandbox: Sandbox | None = None,
        events: Events | None = None,
    ) -> None:  # fmt: skip
        self.api, self.clock = api, clock
        self.checks = GrantChecks(api, sandbox, events)  # prompt, author, condition; refusals

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
            if await self.checks.checked(grant) is None:  # wider than its prompt: refused, for good
                continue
            if (problem := request_problem(patch, requested_by(body), grant)) is not None:
                log.info("actiongrant %s/%s does not cover %s: %s", grant.namespace, grant.name,
                         body["metadata"]["name"], problem)  # fmt: skip
                continue
            answer = await self.checks.condition(grant, facts)
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
            checked = await self.checks.checked(grant)
            if (
                checked is None
                or not covers(checked, facts, classified, now, answer)
                or not await self.checks.entitled(checked)
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


def _candidate(
    grant: Grant, facts: RequestFacts, classified: tuple[str, str | None], uid: str, now: datetime
) -> bool:
    """Worth a closer look: for this agent, action and rule, and usable now (or already used
    by this very request, on an earlier pass)."""
    named = (grant.agent, grant.action, grant.policy, grant.rule)
    return uid in grant.used_by or (
        named == (facts.agent, facts.action, *classified) and usable(grant, now)
    )
