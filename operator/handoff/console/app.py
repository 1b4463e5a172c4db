"""The console's web application (aiohttp): pages, forms and the live feed."""

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
import redis.asyncio as redis_asyncio
from aiohttp import web
from redis.exceptions import RedisError

from handoff.adapters.kube import Credentials, KubeApi, KubeError
from handoff.console import devlogin
from handoff.console.sessions import Session, Sessions
from handoff.console.signin import SignInGate
from handoff.domain.keys import AUDIT_STREAM
from handoff.domain.oversight import calibration, fatigue, reliability_svg, shadow
from handoff.review.client import ReviewClient, ReviewError, plain
from handoff.review.livediff import live_change
from handoff.review.package import Package, build, sentence, time_left
from handoff.review.untrusted import visible

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


def make_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[security_headers, end_refused_sessions])
    app["config"] = config
    app["own_api"] = KubeApi(config.credentials)
    app["templates"] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every agent-written string is escaped unless a template says otherwise
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_get("/", index)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/queue", queue)
    app.router.add_get("/requests/{namespace}/{name}", request_page)
    app.router.add_post("/requests/{namespace}/{name}/approve", approve)
    app.router.add_post("/requests/{namespace}/{name}/deny", deny)
    app.router.add_post("/requests/{namespace}/{name}/rollback", rollback)
    app.router.add_get("/reports", reports_page)
    app.router.add_get("/reports/calibration.svg", calibration_plot)
    app.router.add_get("/feed", feed_page)
    app.router.add_get("/feed/events", feed_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_static("/static", HERE / "static", show_index=False)
    if config.dev_logins is not None:
        devlogin.install(app, config.dev_logins, COOKIE)
    app.on_cleanup.append(_cleanup)
    return app


async def _cleanup(app: web.Application) -> None:
    await app["config"].sessions.close()
    await app["own_api"].close()


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


# -- helpers ---------------------------------------------------------------------------------


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


# -- sign in ---------------------------------------------------------------------------------


async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/queue" if await session_of(request) else "/login")


async def login_page(request: web.Request) -> web.StreamResponse:
    expired = "expired" in request.query
    message = "The cluster no longer accepts your token; sign in again." if expired else None
    return page(request, "login.html", None, error=message)


async def login(request: web.Request) -> web.StreamResponse:
    """Check the bearer token with a TokenReview; the session then acts with that token.
    Only from this origin: another site must not sign a browser in as someone else."""
    config = config_of(request)
    same_origin(request)
    wait = config.sign_in.wait(request.remote or "", config.clock())
    if wait:
        busy = f"Too many sign-in attempts from your address: try again in {wait} seconds."
        response = page(request, "login.html", None, status=429, error=busy)
        response.headers["Retry-After"] = str(wait)
        return response
    form = await request.post()
    token = str(form.get("token", "")).strip()
    if not token:
        return page(request, "login.html", None, status=400, error="Paste your Kubernetes token.")
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token},
    }
    try:
        answer = await request.app["own_api"].create(
            "/apis/authentication.k8s.io/v1/tokenreviews", review
        )
    except KubeError as e:
        log.warning("TokenReview failed: %s", e)
        return page(
            request,
            "login.html",
            None,
            status=503,
            error="The cluster could not check the token; try again.",
        )
    status = answer.get("status") or {}
    if not status.get("authenticated"):
        return page(
            request, "login.html", None, status=401, error="The cluster does not accept this token."
        )
    user = status.get("user") or {}
    refused = config.sign_in.refusal(str(user.get("username", "")), list(user.get("groups") or []))
    if refused:
        log.info("refused a sign-in: %s", refused.split(",")[0])
        return page(request, "login.html", None, status=403, error=refused)
    api = KubeApi(config.credentials.with_token(token))
    session = config.sessions.create(
        str(user.get("username", "")), list(user.get("groups") or []), api, config.clock()
    )
    log.info("%s signed in", session.user)
    response = web.HTTPSeeOther("/queue")
    lifetime = int(config.sessions.lifetime.total_seconds())
    response.set_cookie(
        COOKIE, session.id, httponly=True, samesite="Strict", secure=config.secure_cookies,
        path="/", max_age=lifetime,
    )  # fmt: skip
    raise response


async def logout(request: web.Request) -> web.StreamResponse:
    session = await require_session(request)
    await check_form(request, session)
    await config_of(request).sessions.end(session.id)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/")
    raise response


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


# -- the queue and a request ---------------------------------------------------------------


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
    may_decide = package.waiting and await _may_decide(client, package)
    may_roll_back = package.reversible and await _may_roll_back(client, package)
    return page(
        request, "request.html", session, status=status, p=package, notice=notice, error=error,
        left=time_left(package.seconds_left(now)), hold=hold, may_decide=may_decide,
        may_roll_back=may_roll_back, sentence=sentence, change=change,
    )  # fmt: skip


async def _may_decide(client: ReviewClient, package: Package) -> bool:
    try:
        return await client.can("approve", "agentactionpolicies", package.namespace, package.policy)
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
        package = build(await client.get(namespace, name))
        if package.waiting and not await _may_decide(client, package):
            refused = (
                f"{session.user} may not decide requests of policy {package.policy}: that takes"
                f" the verb approve on agentactionpolicies/{package.policy}, which the policy"
                " grants to its reviewers."
            )
            return await request_page(request, error=refused, status=403)
        acknowledged: list[str] = []
        if decision == "Approve":
            acknowledged = [str(a) for a in form.get("ack", [])]
            missing = [item for item, _ in package.checklist if item not in acknowledged]
            if missing:
                raise ReviewError(
                    "Tick every checklist item before approving: " + ", ".join(missing)
                )
            opened = session.opened.get(package.uid)
            now = config_of(request).clock()
            hold = package.min_review_seconds
            if hold and (opened is None or (now - opened).total_seconds() < hold):
                raise ReviewError(f"This lane asks for at least {hold}s of review; read it again.")
        elif not comment:
            raise ReviewError("Say why you deny it: the agent and the audit trail need the reason.")
        await client.review(
            namespace, name, session.user, decision, acknowledged=acknowledged, comment=comment
        )
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


# -- the live feed -------------------------------------------------------------------------


# -- reports: are people still reading, and does the agent's confidence mean anything ----------


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


async def feed_page(request: web.Request) -> web.StreamResponse:
    session = await require_session(request)
    return page(request, "feed.html", session)


async def feed_events(request: web.Request) -> web.StreamResponse:
    """Server-sent events from the audit stream, limited to what this person may see."""
    session = await require_session(request)
    config = config_of(request)
    if not config.redis_url:
        raise web.HTTPServiceUnavailable(
            text="the console has no Redis to read the audit stream from"
        )
    allowed = set(await visible_namespaces(session, config))
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
    )
    await response.prepare(request)
    client = redis_asyncio.from_url(config.redis_url, socket_timeout=30)
    try:
        recent: Any = await client.xrevrange(AUDIT_STREAM, count=50)
        last: Any = recent[0][0] if recent else "$"
        for entry_id, fields in reversed(recent):
            await _send(response, entry_id, fields, allowed)
        while True:
            answer: Any = await client.xread({AUDIT_STREAM: last}, block=15000, count=100)
            if not answer:
                await response.write(b": keep-alive\n\n")
                continue
            for entry_id, fields in answer[0][1]:
                last = entry_id
                await _send(response, entry_id, fields, allowed)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    except RedisError as e:
        log.warning("audit feed: %s", e)
    finally:
        await client.aclose()
    return response


async def _send(
    response: web.StreamResponse, entry_id: Any, fields: dict[Any, Any], allowed: set[str]
) -> None:
    entry = {_text(k): visible(_text(v)) for k, v in fields.items()}  # bidi controls shown
    if entry.get("namespace") not in allowed:
        return
    entry["id"] = _text(entry_id)
    await response.write(f"id: {entry['id']}\ndata: {json.dumps(entry)}\n\n".encode())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
