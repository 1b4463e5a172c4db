"""Standing grants as reviewers make and see them: the ActionGrant a reviewer creates while
approving a request (with their own identity: admission checks it), and the rows that
``kubectl handoff grants`` and the console show. Shared by cli/ and console/."""

import asyncio
import glob
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from handoff import API_VERSION, GROUP, VERSION
from handoff.adapters.kube import KubeApi, KubeError, resource_path
from handoff.domain.durations import format_duration, parse_duration
from handoff.domain.globs import Glob
from handoff.domain.grantable import MAX_GRANT_COUNT
from handoff.domain.grants import Grant, GrantError, prompt_problem, undecided, usable
from handoff.domain.timefmt import format_time
from handoff.review.client import ReviewError, plain

GRANTS = "actiongrants"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DECIDED_WITHIN = 10.0  # seconds to wait for the operator to decide the approved request


def grant_document(
    request: Mapping[str, Any], author: str, duration: str, count: int, now: datetime, *,
    target: str | None = None, condition: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The ActionGrant that approves in advance up to ``count`` requests exactly like
    ``request`` (its agent, action, policy and rule; its very target unless ``target`` names a
    pattern) for ``duration``. Raises ReviewError for a duration or count that cannot be."""
    try:
        length = parse_duration(duration)
    except ValueError as e:
        raise ReviewError(f"--grant {e}") from e
    if length.total_seconds() <= 0:
        raise ReviewError("--grant needs a duration longer than 0s, such as 1h")
    if not 1 <= count <= MAX_GRANT_COUNT:
        raise ReviewError(f"--count must be 1 to {MAX_GRANT_COUNT}, not {count}")
    meta, spec = request.get("metadata") or {}, request.get("spec") or {}
    status = request.get("status") or {}
    if not status.get("rule"):
        raise ReviewError(f"{meta.get('name')} matched no rule of its policy: nothing to grant")
    body: dict[str, Any] = {
        "grantedBy": author,
        "agent": spec.get("agent", ""),
        "action": spec.get("action", ""),
        "policy": status.get("policy", ""),
        "rule": status["rule"],
        "target": target or glob.escape(str(spec.get("target") or "")) or "*",
        "expiresAt": format_time((now + length).replace(microsecond=0)),
        "maxUses": count,
        "request": meta.get("name", ""),
    }
    if condition:
        body["condition"] = condition
    return {
        "apiVersion": API_VERSION,
        "kind": "ActionGrant",
        "metadata": {
            "generateName": f"{str(meta.get('name', 'grant'))[:200]}-",
            "namespace": meta.get("namespace", ""),
        },
        "spec": body,
    }


async def create_grant(
    api: KubeApi, document: Mapping[str, Any], wait: float = DECIDED_WITHIN
) -> str:
    """Create the grant with the caller's identity; its name. ReviewError says why not. Waits
    (at most ``wait`` seconds) for the operator to decide the request the approval was for:
    a grant comes only from an approval that decided it, and one made before that covers
    nothing until it is decided."""
    namespace = document["metadata"]["namespace"]
    await _decided_by_author(api, document, wait)
    try:
        created = await api.create(resource_path(GROUP, VERSION, GRANTS, namespace), document)
    except KubeError as e:
        raise ReviewError(f"the grant was refused: {plain(e)}") from e
    return str(created["metadata"]["name"])


async def _decided_by_author(api: KubeApi, document: Mapping[str, Any], wait: float) -> None:
    """Raise ReviewError when the prompting request takes more than one person, or was decided
    otherwise than by the author's approval; return once it is so decided (or after ``wait``)."""
    spec, namespace = document["spec"], document["metadata"]["namespace"]
    path = resource_path(GROUP, VERSION, "actionrequests", namespace, spec["request"])
    author = Grant(namespace, "new", spec["grantedBy"], spec["agent"], spec["action"],
                   spec["policy"], spec["rule"], Glob.compile("*"), None, _EPOCH, _EPOCH, 1,
                   spec["request"])  # fmt: skip
    deadline = asyncio.get_running_loop().time() + wait
    while True:
        try:
            prompt = await api.get(path)
        except KubeError as e:
            raise ReviewError(f"the grant was not made: {plain(e)}") from e
        problem = prompt_problem(author, prompt, None)
        if problem is not None:
            raise ReviewError(f"the grant was not made: {problem}")
        if not undecided(prompt) or asyncio.get_running_loop().time() >= deadline:
            return
        await asyncio.sleep(0.2)


async def list_grants(api: KubeApi, namespace: str | None) -> list[dict[str, Any]]:
    try:
        listing = await api.get(resource_path(GROUP, VERSION, GRANTS, namespace))
    except KubeError as e:
        raise ReviewError(plain(e)) from e
    return list(listing.get("items") or [])


def state(grant: Grant, now: datetime) -> str:
    """Active, Refused, Expired or UsedUp: what a reviewer needs to know at a glance."""
    if usable(grant, now):
        return "Active"
    if grant.refused is not None:
        return "Refused"
    return "UsedUp" if grant.used >= grant.max_uses else "Expired"


def grant_rows(items: list[dict[str, Any]], now: datetime) -> list[tuple[str, ...]]:
    """One row per grant, soonest to end first: who granted what, until when, how many used."""
    rows: list[tuple[str, ...]] = []
    grants = []
    for item in items:
        try:
            grants.append(Grant.from_json(item))
        except GrantError:
            continue
    for g in sorted(grants, key=lambda g: (g.expires, g.namespace, g.name)):
        left = format_duration(g.expires - now) if g.expires > now else "-"
        rows.append((
            g.namespace, g.name, state(g, now), g.author, g.agent, g.action, g.target.pattern,
            f"{g.used}/{g.max_uses}", format_time(g.expires), left, g.condition or "",
        ))  # fmt: skip
    return rows


HEADER = ("NAMESPACE", "NAME", "STATE", "GRANTED-BY", "AGENT", "ACTION", "TARGET", "USED",
          "UNTIL", "LEFT", "CONDITION")  # fmt: skip
