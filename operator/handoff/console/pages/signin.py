"""Signing in with a Kubernetes token (checked by a TokenReview), signing out, and health."""

import logging

from aiohttp import web

from handoff.adapters.kube import KubeApi, KubeError
from handoff.console.web import (
    COOKIE,
    check_form,
    config_of,
    page,
    require_session,
    same_origin,
    session_of,
)

log = logging.getLogger("handoff.console")


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
