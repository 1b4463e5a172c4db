"""The standing grants in ``kubectl handoff log``: each grant as sentences beside the requests,
read with the reviewer's own rights (the grants of the namespace, and the Events the operator
posts on them). Granted, each use, UsedUp and Refused come from the grants themselves; Revoked
from the Event the operator posts when one is deleted (the grant is gone then), so a grant
revoked longer ago than the cluster keeps Events (an hour by default) is told only by the audit
stream and the JSON audit log."""

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from handoff.adapters.kube import KubeApi
from handoff.domain.grants import Grant, GrantError
from handoff.domain.reasons import GrantLine, Reason
from handoff.domain.timefmt import format_time, parse_time
from handoff.review.client import ReviewError
from handoff.review.grants import list_grants

Line = tuple[datetime, str]
REFUSALS = (str(Reason.GRANT_REFUSED), str(Reason.GRANT_AUTHOR_UNENTITLED))


async def grant_lines(
    api: KubeApi, namespace: str, events: Sequence[Mapping[str, Any]], since: datetime,
    agent: str | None,
) -> list[Line]:  # fmt: skip
    """The log's lines about grants made or revoked since ``since`` (of ``agent``'s requests
    only, when given). Without the right to list grants, only the revocations are told."""
    try:
        items = await list_grants(api, namespace)
    except ReviewError:
        items = []
    lines: list[Line] = []
    for item in items:
        try:
            grant = Grant.from_json(item)
        except GrantError:
            continue
        if agent and grant.agent != agent:
            continue
        refused_at = _event_time(events, grant.name, REFUSALS)
        lines += [line for line in told(grant, item, refused_at) if line[0] >= since]
    for event in events:
        if event.get("reason") != GrantLine.REVOKED:
            continue
        at = _time(event)
        name = str(event.get("involvedObject", {}).get("name", ""))
        if at is not None and at >= since and (not agent or _agent(event) == agent):
            lines.append((at, f"  actiongrant/{name}: {_message(event)}"))
    return lines


def told(grant: Grant, item: Mapping[str, Any], refused_at: datetime | None) -> list[Line]:
    """A grant's own lines: granted, each use, used up, refused."""
    ref = f"actiongrant/{grant.name}"
    condition = f" where {grant.condition}" if grant.condition else ""
    lines = [(
        grant.created,
        f"{grant.author} granted {grant.action} by {grant.agent} on {grant.target.pattern}"
        f"{condition} until {format_time(grant.expires)}, at most {grant.max_uses} uses"
        f" ({ref}, rule {grant.rule}, prompted by {grant.prompted_by})",
    )]  # fmt: skip
    uses = [u for u in (item.get("status") or {}).get("usedBy") or () if isinstance(u, Mapping)]
    for index, use in enumerate(uses, start=1):
        at = _parse(use.get("at")) or grant.created
        lines.append(
            (at, f"  {ref} approved {use.get('request')} (use {index} of {grant.max_uses})")
        )
        if index == grant.max_uses:
            text = f"  {ref}: used up: {index} of {grant.max_uses} uses taken"
            lines.append((at + timedelta(microseconds=1), text))
    if grant.refused is not None:
        at = refused_at or grant.created + timedelta(microseconds=1)
        lines.append((at, f"  {ref}: refused: {grant.refused}"))
    return lines


def _event_time(
    events: Sequence[Mapping[str, Any]], name: str, reasons: tuple[str, ...]
) -> datetime | None:
    times = [
        at
        for e in events
        if e.get("involvedObject", {}).get("name") == name and e.get("reason") in reasons
        if (at := _time(e)) is not None
    ]
    return min(times, default=None)


def _time(event: Mapping[str, Any]) -> datetime | None:
    return _parse(event.get("lastTimestamp") or event.get("eventTime"))


def _parse(value: Any) -> datetime | None:
    try:
        return parse_time(str(value)) if value else None
    except ValueError:
        return None


def _agent(event: Mapping[str, Any]) -> str | None:
    """The agent a grant's Event is about: its ``related`` ServiceAccount (the operator sets
    it). Never read from the message, whose action and target are the agent's own words."""
    related = event.get("related")
    if not isinstance(related, Mapping) or related.get("kind") != "ServiceAccount":
        return None
    return str(related.get("name", ""))


def _message(event: Mapping[str, Any]) -> str:
    return str(event.get("message", ""))
