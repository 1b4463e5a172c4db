"""The operator's own list-then-watch of ActionRequests, in place of kopf's.

kopf handed every ActionRequest event through its per-object pipeline (a worker task, body
views, loggers, cause detection) before ``handlers.request_event`` left it in the mailbox: at a
start over a history that pipeline was most of the operator's CPU, and it read the watch as
fast as the API server sent it, so a start's listing or a flood of filings was held in memory
all at once (docs/performance.md and docs/design/2026-12-02-history-start.md, issue 21). kopf
still watches the other kinds.

This loop lists a page at a time and watches from the listing's resourceVersion, as client-go's
reflector does, and hands each object straight to ``deliver``. It reads no further while more
than ``backlog_limit`` events wait to be handled (``backlog``), so what waits is bounded: a
page of the listing waits for room, and a watch that is not read is held by the API server (or
closed by it, and resumed from the last version seen); a listing waits for room for at most
``LIST_PATIENCE`` in all, so that it ends before its continue token expires. A watch that ends
is resumed from the last version seen; the API server's 410 (the version is gone) lists again.
Like kopf's, a listing after a 410 delivers every request there is and no deletion for one that
went in the gap: a timer of such a request meets a 404 when it fires and forgets it then.
"""

import asyncio
import fnmatch
import logging
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any, cast

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeApi, KubeError, resource_path
from handoff.controller.rearm import plain
from handoff.domain.resources import RequestJSON

log = logging.getLogger("handoff.operator")
Deliver = Callable[[str, dict[str, Any]], None]
PAGE = 500  # requests per page of a listing
BACKLOG = 1000  # events waiting to be handled past which the loop reads no further
ROOM_POLL = 0.02  # seconds between looks at the backlog while it is full
# A listing waits for room no longer than this in all: its continue token must outlive it, and
# the API server lets it go when etcd compacts its version (every 5 minutes by default).
LIST_PATIENCE = 120.0


class Gone(KubeError):
    """A listing's continue token is too old: list again."""


class RequestWatch:
    def __init__(
        self, api: KubeApi, namespaces: list[str] | None, deliver: Deliver, *,
        backlog: Callable[[], int], backlog_limit: int = BACKLOG, seconds: float = 300.0,
        pause: float = 1.0, page: int = PAGE,
    ) -> None:  # fmt: skip
        """``namespaces``: the operator's ``--namespace`` values (every namespace when none).
        Plain names are listed and watched one by one (a namespaced Role suffices); kopf's
        globs (``*``, ``?``, ``[]``) and exclusions (``!name``) are matched against a watch of
        every namespace."""
        self.api = api
        self.deliver = deliver
        self.backlog = backlog
        self.backlog_limit = backlog_limit
        self.seconds = seconds
        self.pause = pause
        self.page = page
        self.paths, self.wanted = _scope(namespaces)
        self.listed = 0  # listings completed (tests read it)
        self.synced = asyncio.Event()  # every path listed once

    async def run(self) -> None:
        """Follow every path for as long as the operator runs."""
        first = [asyncio.Event() for _ in self.paths]
        followers = [
            asyncio.create_task(self._follow(path, done))
            for path, done in zip(self.paths, first, strict=True)
        ]
        try:
            await asyncio.gather(*(done.wait() for done in first))
            self.synced.set()
            await asyncio.gather(*followers)
        finally:
            for task in followers:
                task.cancel()

    async def _follow(self, path: str, listed: asyncio.Event) -> None:
        version = ""
        while True:
            try:
                if not version:
                    version = await self._list(path)
                    listed.set()
                version = await self._watch(path, version)
            except KubeError as e:
                if e.status != 410:
                    log.warning("watching requests: %s; resuming in %.0fs", e.message, self.pause)
                    await asyncio.sleep(self.pause)
                    continue
                log.info("watching requests: %s; listing again", e.message)
                version = ""
            except (KeyError, TypeError, ValueError) as e:
                log.warning("watching requests: %s: %s; listing again in %.0fs",
                            type(e).__name__, e, self.pause)  # fmt: skip
                version = ""
                await asyncio.sleep(self.pause)

    async def _list(self, path: str) -> str:
        """Deliver every request under ``path``, a page at a time; the listing's version."""
        started, count, token, version = time.monotonic(), 0, "", ""
        while True:
            await self._room(until=started + LIST_PATIENCE)
            query = f"?limit={self.page}"
            if token:
                query += f"&continue={urllib.parse.quote(token)}"
            try:
                page = await self.api.get(path + query)
            except KubeError as e:
                if e.status == 410:  # the continue token expired: start the listing again
                    raise Gone(410, f"a listing's continue token expired ({e.message})") from e
                raise
            meta = page.get("metadata") or {}
            version = version or str(meta.get("resourceVersion") or "")
            for item in page.get("items") or ():
                count += self._pass_on("ADDED", item)
            token = str(meta.get("continue") or "")
            if not token:
                break
        self.listed += 1
        log.info("listed %d requests in %.2fs", count, time.monotonic() - started)
        return version

    async def _watch(self, path: str, version: str) -> str:
        """Deliver the events after ``version`` until the watch ends; the last version seen."""
        params = {"resourceVersion": version, "allowWatchBookmarks": "true"}
        async for event in self.api.watch(path, params, self.seconds):
            kind, body = str(event.get("type")), event.get("object") or {}
            if kind == "ERROR":
                code = int(body.get("code") or 0)
                message = str(body.get("message") or "the watch ended with an error")
                raise (Gone if code == 410 else KubeError)(code, message)
            version = str(body["metadata"]["resourceVersion"])
            if kind != "BOOKMARK":
                self._pass_on(kind, body)
                await self._room()
        return version

    def _pass_on(self, kind: str, body: dict[str, Any]) -> int:
        namespace = str((body.get("metadata") or {}).get("namespace") or "")
        if self.wanted is not None and not self.wanted(namespace):
            return 0
        self.deliver(kind, body)
        return 1

    async def _room(self, until: float | None = None) -> None:
        """Until fewer than ``backlog_limit`` events wait to be handled (or ``until``, a
        ``time.monotonic()``, has come)."""
        # The backlog is the mailbox's length; a look every 20 ms costs nothing beside a page.
        while self.backlog() >= self.backlog_limit:
            if until is not None and time.monotonic() >= until:
                return
            await asyncio.sleep(ROOM_POLL)


def _scope(namespaces: list[str] | None) -> tuple[list[str], Callable[[str], bool] | None]:
    """The paths to follow, and the filter of namespaces for a watch of all of them."""
    every = resource_path(GROUP, VERSION, REQUESTS, None)
    if not namespaces:
        return [every], None
    if plain(namespaces):
        return [resource_path(GROUP, VERSION, REQUESTS, ns) for ns in namespaces], None
    patterns = [p.strip() for ns in namespaces for p in ns.split(",") if p.strip()]
    wanted = [p for p in patterns if not p.startswith("!")]
    unwanted = [p[1:] for p in patterns if p.startswith("!")]

    def matches(namespace: str) -> bool:
        if any(fnmatch.fnmatchcase(namespace, p) for p in unwanted):
            return False
        return not wanted or any(fnmatch.fnmatchcase(namespace, p) for p in wanted)

    return [every], matches


def slim(body: Mapping[str, Any]) -> RequestJSON:
    """The request as the reconciler reads it, without ``metadata.managedFields`` (a third of a
    request's JSON, read by nothing the operator decides)."""
    metadata = dict(body.get("metadata") or {})
    metadata.pop("managedFields", None)
    plain = {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
             "metadata": metadata, "spec": dict(body.get("spec") or {}),
             "status": dict(body.get("status") or {})}  # fmt: skip
    return cast(RequestJSON, plain)
