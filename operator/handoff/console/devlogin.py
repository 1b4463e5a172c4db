"""One-time sign-in links for the local environment: ``handoff dev login alice``.

Only a console started with ``--dev-logins FOLDER`` (``handoff dev up`` passes its own folder)
redeems them. The link carries a random one-time code, never a token: ``handoff dev login`` leaves
the person's own token in a file of ``FOLDER/logins`` (mode 0600) named after the code's SHA-256.
The console takes that file away on first use (a rename: a second use, even at the same moment,
finds nothing), refuses it past its expiry, and signs in with the token through the same
TokenReview as the sign-in form, so the cluster, not the link, says who this is.
"""

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from handoff.adapters.kube import KubeApi, KubeError

log = logging.getLogger("handoff.console")
ROUTE = "/dev-login"
LIFETIME = 300.0  # seconds a link stays good
_CODE = re.compile(r"[A-Za-z0-9_-]{43}")  # secrets.token_urlsafe(32)
FOLDER = web.AppKey("dev_logins", Path)
COOKIE = web.AppKey("dev_login_cookie", str)


@dataclass(frozen=True)
class Ticket:
    user: str
    token: str


def issue(folder: Path, user: str, token: str, now: float, lifetime: float = LIFETIME) -> str:
    """Leave ``user``'s token for one sign-in within ``lifetime`` seconds; return the code."""
    tickets = folder / "logins"
    tickets.mkdir(mode=0o700, exist_ok=True)
    for old in tickets.iterdir():  # what expired or was left half-claimed goes
        if _expired(old, now):
            old.unlink(missing_ok=True)
    code = secrets.token_urlsafe(32)
    descriptor = os.open(tickets / _name(code), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"user": user, "token": token, "expires": now + lifetime}, file)
    return code


def redeem(folder: Path, code: str, now: float) -> Ticket | None:
    """The ticket of ``code`` if it exists and has not expired; it is gone afterwards either way."""
    if not _CODE.fullmatch(code):
        return None
    ticket = folder / "logins" / _name(code)
    claimed = ticket.with_name(f"{ticket.name}.{secrets.token_hex(8)}.claimed")
    try:
        ticket.rename(claimed)
    except FileNotFoundError:
        return None
    try:
        data = json.loads(claimed.read_text())
    except (OSError, ValueError):
        return None
    finally:
        claimed.unlink(missing_ok=True)
    if not isinstance(data, dict) or float(data.get("expires", 0)) < now:
        return None
    return Ticket(str(data.get("user", "")), str(data.get("token", "")))


def install(app: web.Application, folder: Path, cookie: str) -> None:
    """Serve the links of ``folder`` (the dev environment's) on this console."""
    app[FOLDER] = folder
    app[COOKIE] = cookie
    app.router.add_get(ROUTE, enabled)
    app.router.add_get(ROUTE + "/{code}", sign_in)


async def enabled(request: web.Request) -> web.StreamResponse:
    """What ``handoff dev login`` asks first, to tell an older console apart."""
    return web.Response(text="one-time sign-in links: run 'handoff dev login NAME'")


async def sign_in(request: web.Request) -> web.StreamResponse:
    config = request.app["config"]
    ticket = redeem(request.app[FOLDER], request.match_info["code"], config.clock().timestamp())
    if ticket is None:
        return _refused(
            request, 410,
            "This sign-in link was used already or has expired (a link works once, within"
            f" {LIFETIME / 60:.0f} minutes). Run 'handoff dev login NAME' for a new one.",
        )  # fmt: skip
    review = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": ticket.token},
    }
    try:
        answer = await request.app["own_api"].create(
            "/apis/authentication.k8s.io/v1/tokenreviews", review
        )
    except KubeError as e:
        log.warning("TokenReview failed: %s", e)
        return _refused(request, 503, "The cluster could not check the token; try a new link.")
    status = answer.get("status") or {}
    user = status.get("user") or {}
    if not status.get("authenticated") or user.get("username") != ticket.user:
        return _refused(request, 401, "The cluster does not accept this link's token.")
    api = KubeApi(config.credentials.with_token(ticket.token))
    session = config.sessions.create(
        ticket.user, list(user.get("groups") or []), api, config.clock()
    )
    log.info("%s signed in with a one-time link", session.user)
    response = web.HTTPSeeOther("/queue")
    response.set_cookie(
        request.app[COOKIE], session.id, httponly=True, samesite="Strict",
        secure=config.secure_cookies, path="/",
        max_age=int(config.sessions.lifetime.total_seconds()),
    )  # fmt: skip
    raise response


def _refused(request: web.Request, status: int, message: str) -> web.Response:
    template = request.app["templates"].get_template("login.html")
    html = template.render(session=None, error=message)
    return web.Response(text=html, content_type="text/html", status=status)


def _name(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _expired(ticket: Path, now: float) -> bool:
    if ticket.name.endswith(".claimed"):
        return True
    try:
        return float(json.loads(ticket.read_text()).get("expires", 0)) < now
    except (OSError, ValueError, AttributeError):
        return True
