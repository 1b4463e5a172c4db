"""Reports: are people still reading, and does the agent's confidence mean anything."""

import logging
from typing import Any

from aiohttp import web

from handoff.console.sessions import Session
from handoff.console.web import config_of, page, require_session, visible_namespaces
from handoff.domain.oversight import calibration, fatigue, reliability_svg, shadow
from handoff.review.client import ReviewClient

log = logging.getLogger("handoff.console")


async def _history(request: web.Request) -> tuple[Session, list[str], list[dict[str, Any]]]:
    """The requests this person may read, in the namespaces the console shows (or the one
    asked for): the reports are computed with their own rights."""
    session = await require_session(request)
    namespaces = await visible_namespaces(session, config_of(request))
    wanted = request.query.get("namespace", "")
    chosen = [wanted] if wanted in namespaces else namespaces
    bodies = await ReviewClient(session.api).requests(chosen, skip_forbidden=True)
    return session, namespaces, bodies


async def reports_page(request: web.Request) -> web.StreamResponse:
    session, namespaces, bodies = await _history(request)
    try:
        fast = min(max(float(request.query.get("fast", "30")), 1.0), 3600.0)
    except ValueError:
        fast = 30.0
    reviewers, policies = fatigue(bodies, fast)
    by_agent = calibration(bodies)
    return page(
        request, "reports.html", session, namespaces=namespaces, fast=fast,
        namespace=request.query.get("namespace", ""), reviewers=reviewers, policies=policies,
        calibration=sorted(by_agent.items()), shadow=shadow(bodies), total=len(bodies),
    )  # fmt: skip


async def calibration_plot(request: web.Request) -> web.StreamResponse:
    """One agent's reliability plot, as an image (an SVG in an <img> runs no script)."""
    _, _, bodies = await _history(request)
    agent = request.query.get("agent", "")
    bins = calibration(bodies).get(agent)
    if bins is None:
        raise web.HTTPNotFound(text="no decided request of that agent carries a confidence")
    return web.Response(text=reliability_svg(agent, bins), content_type="image/svg+xml")
