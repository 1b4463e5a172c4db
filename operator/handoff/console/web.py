"""What every page of the console shares: its configuration, the session of a request,
the CSRF and origin checks, rendering, and the security headers."""

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from handoff.adapters.kube import Credentials, KubeError
from handoff.console.sessions import Session, Sessions
from handoff.console.signin import SignInGate
from handoff.review.client import ReviewClient

log = logging.getLogger("handoff.console")
HERE = Path(__file__).parent
COOKIE = "handoff_session"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Config:
    credentials: Credentials  # the console's own identity (renewed): TokenReview only
    namespaces: list[str]
    redis_url: str | None = None  # read access to the audit stream
    secure_cookies: bool = False
    sessions: Sessions = field(default_factory=Sessions)
    sign_in: SignInGate = field(default_factory=SignInGate)  # who may sign in, how often
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    dev_logins: Path | None = None  # handoff dev up's folder: redeem its one-time sign-in links


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on form posts.
    response.headers["Referrer-Policy"] = "same-origin"
    if not request.path.startswith("/static/"):
        response.headers["Cache-Control"] = "no-store"
    return response


@web.middleware
async def end_refused_sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A session whose token the cluster stopped accepting (revoked, expired, its account
    deleted) ends at once, rather than living on as a signed-in page that can do nothing."""
    try:
        return await handler(request)
    finally:
        session: Session | None = request.get("session")
        if session is not None and session.api.unauthorized:
            await config_of(request).sessions.end(session.id)
            log.info("%s signed out: the cluster no longer accepts their token", session.user)


def config_of(request: web.Request) -> Config:
    config: Config = request.app["config"]
    return config


async def session_of(request: web.Request) -> Session | None:
    config = config_of(request)
    return await config.sessions.get(request.cookies.get(COOKIE), config.clock())


async def require_session(request: web.Request) -> Session:
    session = await session_of(request)
    if session is None:
        raise web.HTTPSeeOther("/login")
    if session.api.unauthorized:
        await config_of(request).sessions.end(session.id)
        raise web.HTTPSeeOther("/login?expired=1")
    request["session"] = session
    return session


def same_origin(request: web.Request) -> None:
    """Browsers send Origin on every POST: one from elsewhere is a cross-site request."""
    origin = request.headers.get("Origin")
    if origin and origin != f"{request.scheme}://{request.host}":
        raise web.HTTPForbidden(text="cross-site request refused")


async def check_form(request: web.Request, session: Session) -> dict[str, Any]:
    """A POST must carry the session's CSRF token and come from this origin."""
    same_origin(request)
    form = await request.post()
    if not hmac.compare_digest(str(form.get("csrf", "")), session.csrf):
        raise web.HTTPForbidden(
            text="the form expired or did not come from this console; reload the page"
        )
    return {key: form.getall(key) for key in set(form.keys())}


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    environment: jinja2.Environment = request.app["templates"]
    html = environment.get_template(template).render(**context)
    return web.Response(text=html, content_type="text/html", status=status)


def page(
    request: web.Request, template: str, session: Session | None, status: int = 200, **context: Any
) -> web.Response:
    return render(request, template, status=status, session=session, **context)


async def visible_namespaces(session: Session, config: Config) -> list[str]:
    """The configured namespaces this person may list requests in (asked once per session)."""
    client = ReviewClient(session.api)
    for namespace in config.namespaces:
        if namespace not in session.namespaces:
            try:
                session.namespaces[namespace] = await client.can(
                    "list", "actionrequests", namespace
                )
            except KubeError:
                session.namespaces[namespace] = False
    return [ns for ns in config.namespaces if session.namespaces.get(ns)]
