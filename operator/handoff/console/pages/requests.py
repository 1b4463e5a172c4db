"""The queue, one request's handoff package, and the forms that decide or roll it back."""

import logging
from datetime import datetime
from typing import Any

from aiohttp import web

from handoff import GROUP, POLICIES, VERSION
from handoff.adapters.kube import KubeError, resource_path
from handoff.console.web import check_form, config_of, page, require_session, visible_namespaces
from handoff.domain.durations import format_duration, parse_duration
from handoff.domain.stages import approve_name
from handoff.review.checks import check_review, may_not_decide
from handoff.review.client import ReviewClient, ReviewError, plain
from handoff.review.grants import create_grant, grant_document
from handoff.review.livediff import live_change
from handoff.review.package import Package, build, sentence, time_left

log = logging.getLogger("handoff.console")


async def queue(request: web.Request) -> web.StreamResponse:
    session = await require_session(request)
    config = config_of(request)
    namespaces = await visible_namespaces(session, config)
    client = ReviewClient(session.api)
    packages = [build(b) for b in await client.requests(namespaces, skip_forbidden=True)]
    waiting = [p for p in packages if p.waiting]
    tier, agent, namespace = (request.query.get(k, "") for k in ("tier", "agent", "namespace"))
    shown = [
        p for p in waiting
        if (not tier or str(p.tier) == tier) and (not agent or p.agent == agent)
        and (not namespace or p.namespace == namespace)
    ]  # fmt: skip
    now = config.clock()
    shown.sort(key=lambda p: p.deadline or now)
    return page(
        request, "queue.html", session,
        requests=[(p, time_left(p.seconds_left(now))) for p in shown],
        agents=sorted({p.agent for p in waiting}), namespaces=namespaces,
        filters={"tier": tier, "agent": agent, "namespace": namespace}, sentence=sentence,
    )  # fmt: skip


async def request_page(
    request: web.Request, notice: str | None = None, error: str | None = None, status: int = 200
) -> web.StreamResponse:
    session = await require_session(request)
    config = config_of(request)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    client = ReviewClient(session.api)
    try:
        body = await client.get(namespace, name)
    except ReviewError as e:
        return page(
            request,
            "error.html",
            session,
            status=403 if "may not" in str(e) else 404,
            message=str(e),
        )
    package = build(body)
    change = await live_change(session.api, body, session.user)  # as this reviewer reads it
    done = request.query.get("done")
    if notice is None and done in ("Approve", "Deny"):
        verb = "approval" if done == "Approve" else "denial"
        later = "" if package.decided else " The decision follows in a moment."
        notice = f"Your {verb} is recorded.{later}"
    now = config.clock()
    opened = session.opened.setdefault(package.uid, now)
    hold = max(0, package.min_review_seconds - int((now - opened).total_seconds()))
    decides = package.waiting and await may_decide(client, package)
    may_roll_back = package.reversible and await _may_roll_back(client, package)
    grantable = await grantable_rule(client, package) if decides else None
    return page(
        request, "request.html", session, status=status, p=package, notice=notice, error=error,
        left=time_left(package.seconds_left(now)), hold=hold, may_decide=decides,
        may_roll_back=may_roll_back, sentence=sentence, change=change, grantable=grantable,
        grant_durations=grant_durations(grantable),
    )  # fmt: skip


async def grantable_rule(client: ReviewClient, package: Package) -> dict[str, Any] | None:
    """The rule's ``grantable`` bounds, when a grant may be offered while approving: never for
    a request that takes more than one person (stages, or more than one approval), which no
    grant covers."""
    if not package.rule or package.stages or package.required_approvals > 1:
        return None
    try:
        body = await client.api.get(
            resource_path(GROUP, VERSION, POLICIES, package.namespace, package.policy)
        )
    except KubeError:
        return None
    rules: list[dict[str, Any]] = (body.get("spec") or {}).get("rules") or []
    rule: dict[str, Any] = next((r for r in rules if r.get("name") == package.rule), {})
    found = rule.get("grantable")
    return dict(found) if isinstance(found, dict) else None


def grant_durations(grantable: dict[str, Any] | None) -> list[str]:
    """The durations offered: common ones up to the rule's maximum, and the maximum itself."""
    if not grantable:
        return []
    longest = parse_duration(str(grantable.get("maxDuration", "0s")))
    offered = [d for d in ("15m", "1h", "4h", "24h") if parse_duration(d) < longest]
    return [*offered, format_duration(longest)]


def grant_asked(form: Any, body: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The grant the form asks for (checked before the approval is written), or None."""
    duration = (form.get("grant") or [""])[0].strip()
    if not duration:
        return None
    try:
        count = int((form.get("count") or ["1"])[0])
    except ValueError as e:
        raise ReviewError("the number of requests to grant must be a whole number") from e
    return grant_document(body, "", duration, count, now)


async def may_decide(client: ReviewClient, package: Package) -> bool:
    """Whether the caller holds the right to decide the request (its open stage, if staged)."""
    name = approve_name(package.policy, package.stage) if package.stage else package.policy
    try:
        return await client.can("approve", "agentactionpolicies", package.namespace, name)
    except KubeError:
        return False


async def _may_roll_back(client: ReviewClient, package: Package) -> bool:
    try:
        return await client.can(
            "rollback", "agentactionpolicies", package.namespace, package.policy
        )
    except KubeError:
        return False


async def approve(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "Approve")


async def deny(request: web.Request) -> web.StreamResponse:
    return await _decide(request, "Deny")


async def _decide(request: web.Request, decision: str) -> web.StreamResponse:
    session = await require_session(request)
    form = await check_form(request, session)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    client = ReviewClient(session.api)
    comment = (form.get("comment") or [""])[0].strip()
    try:
        body = await client.get(namespace, name)
        package = build(body)
        if package.waiting and not await may_decide(client, package):
            refused = may_not_decide(session.user, package.policy, package.stage)
            return await request_page(request, error=refused, status=403)
        acknowledged = [str(a) for a in form.get("ack", [])] if decision == "Approve" else []
        now = config_of(request).clock()
        grant = grant_asked(form, body, now) if decision == "Approve" else None
        check_review(
            package,
            decision,
            acknowledged,
            comment,
            opened=session.opened.get(package.uid),
            now=now,
        )
        shown = str((form.get("stage") or [""])[0]) or None  # the stage the page showed
        await client.review(
            namespace, name, session.user, decision, acknowledged=acknowledged, comment=comment,
            stage=shown,
        )  # fmt: skip
        if grant is not None:
            grant["spec"]["grantedBy"] = session.user
            granted = await create_grant(session.api, grant)
            log.info("%s granted %s/%s", session.user, namespace, granted)
    except ReviewError as e:
        return await request_page(request, error=str(e), status=409)
    except KubeError as e:
        return await request_page(request, error=plain(e), status=409)
    log.info("%s %s %s/%s", session.user, decision.lower(), namespace, name)
    raise web.HTTPSeeOther(f"/requests/{namespace}/{name}?done={decision}")


async def rollback(request: web.Request) -> web.StreamResponse:
    session = await require_session(request)
    await check_form(request, session)
    namespace, name = request.match_info["namespace"], request.match_info["name"]
    client = ReviewClient(session.api)
    try:
        package = build(await client.get(namespace, name))
    except ReviewError as e:
        return page(request, "error.html", session, status=404, message=str(e))
    if not await _may_roll_back(client, package):
        return await request_page(
            request,
            error=f"{session.user} may not roll back actions of policy {package.policy}.",
            status=403,
        )
    try:
        await client.review(namespace, name, session.user, "Rollback", after_decision=True)
    except ReviewError as e:
        return await request_page(request, error=str(e), status=409)
    except KubeError as e:
        return await request_page(request, error=plain(e), status=409)
    log.info("%s asked to roll back %s/%s", session.user, namespace, name)
    notice = "Your rollback is recorded: Handoff files the rollback plan as a new request."
    return await request_page(request, notice=notice)
