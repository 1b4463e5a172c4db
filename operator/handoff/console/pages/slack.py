"""Slack's interactivity callbacks: Approve and Deny from the channel, the cluster the judge.

Order matters. The body's size is capped and the timestamp checked before the body is read; the
signature (v0 HMAC-SHA256 with the app's signing secret) is checked before it is parsed. Then
every field is treated as hostile: the clicking Slack user is looked up in the administrators'
mapping (never by display name), and the request is read and the review written as the mapped
Kubernetes identity (impersonated with its groups), so RBAC and the admission policy judge the
real reviewer exactly as for kubectl. What they refuse is said in an ephemeral message.
"""

import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from handoff.adapters.kube import KubeError
from handoff.adapters.slack import (
    MAX_BODY,
    SignatureError,
    SlackApi,
    SlackError,
    check_signature,
    check_timestamp,
)
from handoff.console.pages.requests import may_decide
from handoff.console.slackidentity import Mapping as UserMapping
from handoff.console.slackidentity import Refused
from handoff.console.web import config_of
from handoff.review.checks import check_review, may_not_decide
from handoff.review.client import ReviewClient, ReviewError, plain
from handoff.review.package import Package, build
from handoff.review.slackblocks import ACK_BLOCK, APPROVE, COMMENT_BLOCK, DENY, message
from handoff.review.slackblocks import modal as modal_view
from handoff.review.slackblocks import plain as plain_text
from handoff.review.slackseal import seal, unseal
from handoff.review.slackusers import Identity

log = logging.getLogger("handoff.console")
DECISIONS = {APPROVE: "Approve", DENY: "Deny"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_UID = re.compile(r"^[0-9a-f-]{1,64}$")


@dataclass(frozen=True)
class SlackBridge:
    """The console's Slack settings: the secrets come from Kubernetes Secrets (environment)."""

    signing_secret: str
    api: SlackApi
    users_namespace: str  # where the mapping ConfigMap lives
    users_configmap: str
    team: str | None = None  # the one workspace whose callbacks count, when set

    def __repr__(self) -> str:  # never the secrets
        return f"SlackBridge({self.users_namespace}/{self.users_configmap})"


@dataclass(frozen=True)
class Click:
    """The fields of a callback that Handoff reads, each checked for shape."""

    user: str
    namespace: str
    name: str
    uid: str
    channel: str
    ts: str


async def interactivity(request: web.Request) -> web.StreamResponse:
    config = config_of(request)
    bridge: SlackBridge | None = request.app.get("slack")
    if bridge is None:
        raise web.HTTPNotFound(text="Slack is not configured on this console")
    if request.content_length is None or request.content_length > MAX_BODY:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_BODY, actual_size=request.content_length or 0
        )
    timestamp = request.headers.get("X-Slack-Request-Timestamp")
    try:
        check_timestamp(timestamp, config.clock().timestamp())
        body = await request.read()  # all of it: its length was checked above, and aiohttp
        # refuses a body longer than its Content-Length
        check_signature(
            bridge.signing_secret, str(timestamp), body, request.headers.get("X-Slack-Signature")
        )
    except SignatureError as e:
        log.warning("Slack callback refused: %s", e)
        raise web.HTTPUnauthorized(text=str(e)) from None
    payload = _payload(body)
    if bridge.team and _text(payload, "team", "id") != bridge.team:
        raise web.HTTPForbidden(text="the callback is from another Slack workspace")
    kind = payload.get("type")
    if kind == "block_actions":
        return await _clicked(request, bridge, payload)
    if kind == "view_submission":
        return await _submitted(request, bridge, payload)
    return web.Response(status=200)  # other interactions: nothing to do


def _payload(body: bytes) -> dict[str, Any]:
    try:
        form = urllib.parse.parse_qs(body.decode("utf-8"), max_num_fields=4, strict_parsing=True)
        payload = json.loads(form["payload"][0])
    except (UnicodeDecodeError, ValueError, KeyError, IndexError):
        raise web.HTTPBadRequest(text="the callback carries no payload") from None
    if not isinstance(payload, dict):
        raise web.HTTPBadRequest(text="the callback's payload is not an object")
    return payload


def _text(value: Any, *path: str | int, limit: int = 3000) -> str:
    for key in path:
        if isinstance(key, int) and isinstance(value, list) and len(value) > key:
            value = value[key]
        elif isinstance(key, str) and isinstance(value, dict):
            value = value.get(key)
        else:
            return ""
    return value[:limit] if isinstance(value, str) else ""


def _click(user: str, reference: str, channel: str, ts: str, namespaces: list[str]) -> Click:
    namespace, _, rest = reference.partition("/")
    name, _, uid = rest.partition("/")
    if not (_NAME.match(namespace) and _NAME.match(name) and _UID.match(uid)):
        raise Refused("This button does not name a Handoff request.")
    if namespace not in namespaces:
        raise Refused(f"This console does not serve namespace {namespace}.")
    return Click(user, namespace, name, uid, channel[:40], ts[:40])


def _mapping(request: web.Request) -> UserMapping:
    mapping: UserMapping = request.app["slack_mapping"]
    return mapping


async def _request(
    request: web.Request, identity: Identity, click: Click
) -> tuple[ReviewClient, Package]:
    """The request as the mapped person may read it; refused if it is not the one clicked."""
    api = request.app["own_api"].impersonating(identity.user, identity.groups)
    client = ReviewClient(api)
    try:
        package = build(await client.get(click.namespace, click.name))
    except ReviewError as e:
        raise Refused(f"{identity.user}: {e}") from e
    if package.uid != click.uid:
        raise Refused(f"{click.namespace}/{click.name} is no longer the request of this message.")
    return client, package


async def _clicked(
    request: web.Request, bridge: SlackBridge, payload: dict[str, Any]
) -> web.StreamResponse:
    config = config_of(request)
    action = _text(payload, "actions", 0, "action_id")
    if action not in DECISIONS:
        return web.Response(status=200)
    user = _text(payload, "user", "id", limit=40)
    channel = _text(payload, "channel", "id") or _text(payload, "container", "channel_id")
    ts = _text(payload, "container", "message_ts") or _text(payload, "message", "ts")
    try:
        click = _click(user, _text(payload, "actions", 0, "value"), channel, ts, config.namespaces)
        identity = await _mapping(request).identity(user)
        client, package = await _request(request, identity, click)
        if package.decided:
            await _update(bridge, click, package)
            raise Refused(f"{package.name} was already decided: {_decided(package)}.")
        if not package.waiting:
            raise Refused(f"{package.name} is not waiting for reviews (phase {package.phase}).")
        if not await may_decide(client, package):
            raise Refused(may_not_decide(identity.user, package.policy, package.stage))
        if len(package.checklist) > 10:
            raise Refused("This checklist is longer than a Slack modal holds; use the console.")
        # What the submission must match travels, sealed, in the modal itself (any replica
        # checks it): the request, the person, the decision, the stage shown and when it opened.
        facts = {"ref": f"{click.namespace}/{click.name}/{click.uid}", "channel": click.channel,
                 "ts": click.ts, "user": user, "decision": DECISIONS[action],
                 "stage": package.stage or "", "opened": config.clock().timestamp()}  # fmt: skip
        view = modal_view(package, DECISIONS[action], seal(bridge.signing_secret, facts))
        await bridge.api.open_view(_text(payload, "trigger_id", limit=200), view)
    except Refused as e:
        await _tell(bridge, channel, user, str(e))
    except SlackError as e:
        log.warning("Slack call failed: %s", e)
    return web.Response(status=200)


async def _submitted(
    request: web.Request, bridge: SlackBridge, payload: dict[str, Any]
) -> web.StreamResponse:
    config = config_of(request)
    raw_view = payload.get("view")
    view: dict[str, Any] = raw_view if isinstance(raw_view, dict) else {}
    decision = DECISIONS.get(_text(view, "callback_id"))
    if decision is None:
        return web.Response(status=200)
    user = _text(payload, "user", "id", limit=40)
    facts = unseal(bridge.signing_secret, _text(view, "private_metadata"))
    if facts is not None and (facts["user"] != user or facts["decision"] != decision):
        facts = None
    channel, ts = (facts["channel"], facts["ts"]) if facts else ("", "")
    values = _text_values(view)
    acknowledged, comment = values.get(ACK_BLOCK, []), "".join(values.get(COMMENT_BLOCK, []))
    block = ACK_BLOCK if decision == "Approve" and ACK_BLOCK in _blocks(view) else COMMENT_BLOCK
    try:
        if facts is None:
            raise Refused(
                "This form is not one Handoff opened for you for this decision; open it again"
                " from the message."
            )
        click = _click(user, facts["ref"], channel, ts, config.namespaces)
        identity = await _mapping(request).identity(user)
        client, package = await _request(request, identity, click)
        if package.decided:
            raise Refused(f"{package.name} was already decided: {_decided(package)}.")
        opened = datetime.fromtimestamp(facts["opened"], UTC)
        check_review(package, decision, acknowledged, comment, opened=opened, now=config.clock())
        await client.review(
            click.namespace, click.name, identity.user, decision, once=True,
            acknowledged=acknowledged if decision == "Approve" else (), comment=comment.strip(),
            stage=facts["stage"] or None,  # the stage the modal showed
        )  # fmt: skip
    except (Refused, ReviewError, KubeError) as e:
        said = plain(e) if isinstance(e, KubeError) else str(e)
        await _tell(bridge, channel, user, said)
        return web.json_response({"response_action": "errors", "errors": {block: said[:300]}})
    verb = "approval" if decision == "Approve" else "denial"
    log.info(
        "%s (Slack %s) %s %s/%s", identity.user, user, decision.lower(), click.namespace, click.name
    )
    await _tell(
        bridge, channel, user, f"Your {verb} of {click.namespace}/{click.name} is recorded."
    )
    return web.Response(status=200)


def _blocks(view: Mapping[str, Any]) -> set[str]:
    blocks = view.get("blocks")
    return (
        {str(b.get("block_id")) for b in blocks if isinstance(b, dict)}
        if isinstance(blocks, list)
        else set()
    )


def _text_values(view: Mapping[str, Any]) -> dict[str, list[str]]:
    """The modal's answers: the ticked checklist ids and the comment, whatever else it holds."""
    found: dict[str, list[str]] = {}
    state = view.get("state")
    values = state.get("values") if isinstance(state, dict) else None
    if not isinstance(values, dict):
        return found
    ticked = _text_path(values, ACK_BLOCK, ACK_BLOCK)
    if isinstance(ticked, dict) and isinstance(ticked.get("selected_options"), list):
        found[ACK_BLOCK] = [
            o["value"][:150] for o in ticked["selected_options"][:50]
            if isinstance(o, dict) and isinstance(o.get("value"), str)
        ]  # fmt: skip
    comment = _text_path(values, COMMENT_BLOCK, COMMENT_BLOCK)
    if isinstance(comment, dict) and isinstance(comment.get("value"), str):
        found[COMMENT_BLOCK] = [comment["value"][:2000]]
    return found


def _text_path(values: dict[str, Any], block: str, action: str) -> Any:
    inner = values.get(block)
    return inner.get(action) if isinstance(inner, dict) else None


def _decided(package: Package) -> str:
    decision = package.decision or {}
    by = ", ".join(str(b) for b in decision.get("by") or [])
    return f"{decision.get('outcome')} ({decision.get('reason')})" + (f" by {by}" if by else "")


async def _update(bridge: SlackBridge, click: Click, package: Package) -> None:
    if click.channel and click.ts:
        text, blocks = message(package)
        try:
            await bridge.api.update(click.channel, click.ts, text, blocks)
        except SlackError as e:
            log.warning("could not update the Slack message: %s", e)


async def _tell(bridge: SlackBridge, channel: str, user: str, text: str) -> None:
    """An ephemeral message only the clicking person sees."""
    if not channel or not user:
        return
    try:
        await bridge.api.ephemeral(channel, user, plain_text(text, 3000)["text"])
    except SlackError as e:
        log.warning("could not answer in Slack: %s", e)
