"""The gateway's one list-watch loop and the policy view on it: the view is trusted only while its
watch follows the API server; a 410 lists again; a broken watch is never read as "no policies"."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from handoff.adapters.kube import KubeError
from handoff.gateway.policyview import PolicyView


def policy(name: str, version: str, tier: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}", "generation": 1,
                     "resourceVersion": version},
        "spec": {"agents": {"serviceAccounts": ["a"]},
                 "rules": [{"name": "r", "actions": ["x"], "tier": tier}]},
        "status": {"observedGeneration": 1},
    }  # fmt: skip


class FakeApi:
    """Lists what ``items`` holds; each watch plays the next script (a list of events, or an
    exception to raise), then blocks until the test releases it."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.version = "10"
        self.scripts: list[list[dict[str, Any]] | Exception] = []
        self.watched: list[str] = []
        self.release = asyncio.Event()
        self.lists = 0

    async def get(self, path: str) -> dict[str, Any]:
        self.lists += 1
        return {"metadata": {"resourceVersion": self.version}, "items": list(self.items)}

    async def watch(
        self, path: str, params: dict[str, str], seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        self.watched.append(params["resourceVersion"])
        assert params["allowWatchBookmarks"] == "true"
        script = self.scripts.pop(0) if self.scripts else []
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event
        await self.release.wait()
        self.release.clear()


async def until(check: Any, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


def test_the_view_follows_events_and_lists_again_after_410() -> None:
    asyncio.run(_follows_and_lists_again())


async def _follows_and_lists_again() -> None:
    api = FakeApi()
    api.items = [policy("p", "9")]
    api.scripts = [
        [{"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "11"}}},
         {"type": "ADDED", "object": policy("q", "12", tier=4)},
         {"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}],
    ]  # fmt: skip
    view = PolicyView(api)  # type: ignore[arg-type]
    view.loop.pause = 0
    assert view.in_namespace("ns") is None  # not listed yet: never an empty answer
    task = asyncio.create_task(view.run())
    try:
        await until(lambda: api.lists == 2, "a second list after the 410")
        assert api.watched[:1] == ["10"]  # from the list's version
        await until(lambda: view.live, "live again after the list")
        assert [b["metadata"]["name"] for b in view.in_namespace("ns") or []] == ["p"]
        assert view.in_namespace("other") == []
    finally:
        task.cancel()


def test_a_broken_watch_makes_the_view_untrusted_until_it_lists_again() -> None:
    asyncio.run(_broken_watch())


async def _broken_watch() -> None:
    api = FakeApi()
    api.items = [policy("p", "9")]
    gate = asyncio.Event()

    async def slow_get(path: str) -> dict[str, Any]:
        if api.lists >= 1:
            await gate.wait()  # the second list hangs: the view must stay untrusted meanwhile
        api.lists += 1
        return {"metadata": {"resourceVersion": api.version}, "items": list(api.items)}

    api.get = slow_get  # type: ignore[method-assign]
    api.scripts = [[{"type": "MODIFIED", "object": policy("p", "13", tier=4)}],
                   KubeError(0, "cannot reach the API server")]  # fmt: skip
    view = PolicyView(api)  # type: ignore[arg-type]
    view.loop.pause = 0
    task = asyncio.create_task(view.run())
    try:
        await until(lambda: view.live and view.loop.version == "13", "the event seen")
        (seen,) = view.in_namespace("ns") or []
        assert view.compiled(seen).rules[0].tier == 4
        api.release.set()  # the watch ends; the next one breaks
        await until(lambda: not view.live, "untrusted after the broken watch")
        assert view.in_namespace("ns") is None
        gate.set()
        await until(lambda: view.live, "trusted once listed again")
        assert api.watched == ["10", "13", "10"]  # resumed from the last event's version
    finally:
        task.cancel()
