"""The live feed: the audit stream as server-sent events, limited to what the person may see."""

import asyncio
import json
import logging
from typing import Any

from aiohttp import web

from handoff.adapters.outbox import AuditFeed, OutboxError
from handoff.console.web import config_of, page, require_session, visible_namespaces
from handoff.review.untrusted import visible

log = logging.getLogger("handoff.console")


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
    audit = AuditFeed(config.redis_url)
    try:
        recent = await audit.recent(50)
        last: Any = recent[-1][0] if recent else "$"
        for entry_id, fields in recent:
            await _send(response, entry_id, fields, allowed)
        while True:
            entries = await audit.after(last, block_ms=15000, count=100)
            if not entries:
                await response.write(b": keep-alive\n\n")
                continue
            for entry_id, fields in entries:
                last = entry_id
                await _send(response, entry_id, fields, allowed)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    except OutboxError as e:
        log.warning("audit feed: %s", e)
    finally:
        await audit.close()
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
