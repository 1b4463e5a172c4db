"""One list-then-watch loop for everything the gateway follows (MCPServers, policies, requests).

List, remember the list's resourceVersion, watch from it (with bookmarks), follow each event's
resourceVersion, and watch again from the last one when a watch ends; list again when the API
server says the version is gone (410, an ERROR event) or the watch breaks. ``live`` tells a
reader whether the view follows the API server right now: false before the first list, and from
a broken watch until the next list is in. A reader whose safety depends on the view being
current (the tier-1 fast path) must not trust it while ``live`` is false.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from handoff.adapters.kube import KubeApi, KubeError

log = logging.getLogger(__name__)
OnList = Callable[[Sequence[Mapping[str, Any]]], Awaitable[None] | None]
OnEvent = Callable[[str, Mapping[str, Any]], Awaitable[None] | None]
WATCH_SECONDS = 300.0  # each watch's length; a silently dead connection lasts at most this


class Gone(KubeError):
    """The watch's resourceVersion is too old (410): list again."""


class ListWatch:
    def __init__(
        self, api: KubeApi, path: str, what: str, *, on_list: OnList, on_event: OnEvent,
        seconds: float = WATCH_SECONDS, pause: float = 1.0,
    ) -> None:  # fmt: skip
        self.api = api
        self.path = path
        self.what = what  # for log lines: "MCPServers", "policies"
        self.on_list = on_list
        self.on_event = on_event
        self.seconds = seconds
        self.pause = pause
        self.version = ""
        self.synced = asyncio.Event()  # the first list is in (it never clears)
        self.live = False  # listed, and no watch broke since
        self.lists = 0  # how many times it listed (tests and metrics read it)
        self.heard = 0.0  # time.monotonic() the API server last answered this loop

    async def run(self) -> None:
        """List, then watch, for ever; a broken watch lists again."""
        while True:
            try:
                await self._list()
                while True:
                    await self._watch()
            except (KubeError, KeyError, TypeError, ValueError) as e:
                self.live = False
                log.warning("%s: %s; listing again", self.what, e)
                await asyncio.sleep(self.pause)

    async def _list(self) -> None:
        listing = await self.api.get(self.path)
        version = str(listing["metadata"]["resourceVersion"])
        await _maybe(self.on_list(listing.get("items") or []))
        self.version = version
        self.lists += 1
        self.heard = time.monotonic()
        self.live = True
        self.synced.set()

    async def _watch(self) -> None:
        params = {"resourceVersion": self.version, "allowWatchBookmarks": "true"}
        async for event in self.api.watch(self.path, params, self.seconds):
            self.heard = time.monotonic()
            kind, body = str(event.get("type")), event.get("object") or {}
            if kind == "ERROR":
                code = int(body.get("code") or 0)
                message = str(body.get("message") or "the watch ended with an error")
                raise (Gone if code == 410 else KubeError)(code, message)
            self.version = str(body["metadata"]["resourceVersion"])
            if kind != "BOOKMARK":
                await _maybe(self.on_event(kind, body))


async def _maybe(result: Awaitable[None] | None) -> None:
    if result is not None:
        await result
