"""Sharding by namespace labels: ``handoff operator --namespace-selector shard=a`` handles only the
namespaces whose labels match, so several operators can split one cluster between them.

The watches stay cluster-wide (kopf's namespace patterns are names, not labels); events from
other namespaces are dropped before any work. A namespace that starts matching later is caught
up by listing its policies and requests; one that stops matching is forgotten, without touching
what the policy provisioned (the shard that takes it over owns that now).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from handoff.adapters import metrics
from handoff.adapters.kube import KubeApi, KubeError

log = logging.getLogger("handoff.shards")
NAMESPACES = "/api/v1/namespaces"


class NamespaceShard:
    def __init__(
        self,
        api: KubeApi,
        selector: str,
        on_join: Callable[[str], Awaitable[None]],
        on_leave: Callable[[str], None],
    ) -> None:
        self.api = api
        self.selector = selector
        self.on_join = on_join
        self.on_leave = on_leave
        self.members: set[str] = set()
        self._version = ""

    def __contains__(self, namespace: object) -> bool:
        return namespace in self.members

    async def load(self) -> None:
        """List the matching namespaces (at startup, before any event is handled)."""
        listing = await self.api.get(f"{NAMESPACES}?labelSelector={quote(self.selector, safe='')}")
        self.members = {item["metadata"]["name"] for item in listing.get("items") or []}
        self._version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
        metrics.WATCHED_NAMESPACES.set(len(self.members))
        log.info("shard %r: %d namespaces", self.selector, len(self.members))

    async def run(self) -> None:
        """Follow namespaces coming into and out of the shard, for as long as the operator runs."""
        while True:
            try:
                await self._follow()
            except KubeError as e:
                log.warning("watching namespaces: %s; listing again", e)
                await asyncio.sleep(2)
                await self._relist()

    async def _follow(self) -> None:
        params = {"labelSelector": self.selector, "allowWatchBookmarks": "true"}
        if self._version:
            params["resourceVersion"] = self._version
        async for event in self.api.watch(NAMESPACES, params, seconds=300):
            kind, item = event.get("type"), event.get("object") or {}
            if kind == "ERROR":  # typically 410 Gone: the version is too old
                await self._relist()
                return
            self._version = str(item.get("metadata", {}).get("resourceVersion") or self._version)
            name = str(item.get("metadata", {}).get("name") or "")
            if kind == "ADDED" and name and name not in self.members:
                await self._join(name)
            elif kind == "DELETED" and name in self.members:
                self._leave(name)
            # A namespace whose labels stop matching arrives as DELETED in a label-selected watch.

    async def _relist(self) -> None:
        before = set(self.members)
        try:
            await self.load()  # replaces the members only when the listing succeeds
        except KubeError as e:
            log.warning("listing namespaces: %s", e)
            return
        for name in sorted(self.members - before):
            await self._join(name)
        for name in sorted(before - self.members):
            self._leave(name)

    async def _join(self, name: str) -> None:
        self.members.add(name)
        metrics.WATCHED_NAMESPACES.set(len(self.members))
        log.info("shard %r: namespace %s joins", self.selector, name)
        await self.on_join(name)

    def _leave(self, name: str) -> None:
        self.members.discard(name)
        metrics.WATCHED_NAMESPACES.set(len(self.members))
        log.info("shard %r: namespace %s leaves", self.selector, name)
        self.on_leave(name)
