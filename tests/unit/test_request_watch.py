"""The operator's own list-then-watch of ActionRequests (controller/requestwatch.py), over a
scripted API: pages, resumed watches, 410s, the backlog's bound and kopf's namespace patterns.
The same loop runs every integration test's operator against the real API server."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from handoff.adapters.kube import KubeApi, KubeError
from handoff.controller import requestwatch
from handoff.controller.requestwatch import RequestWatch

from tests.unit.test_orchestration import asynchronous

ALL = "/apis/handoff.dev/v1alpha1/actionrequests"


def request(name: str, version: str, namespace: str = "agents") -> dict[str, Any]:
    return {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
            "metadata": {"name": name, "namespace": namespace, "resourceVersion": version,
                         "managedFields": [{"manager": "agent"}]},
            "spec": {"agent": "a"}, "status": {}}  # fmt: skip


class ScriptedApi:
    """Listings served from ``pages`` (by continue token), watches from ``watches`` in turn;
    what each call asked is kept."""

    def __init__(self, pages: dict[str, Any], watches: list[Any]) -> None:
        self.pages = pages
        self.watches = watches
        self.gets: list[str] = []
        self.watched: list[tuple[str, dict[str, str]]] = []
        self.done = asyncio.Event()  # every scripted watch was used

    async def get(self, path: str) -> dict[str, Any]:
        self.gets.append(path)
        await asyncio.sleep(0)  # a real call lets others run
        token = path.partition("continue=")[2]
        page = self.pages[token]
        if isinstance(page, Exception):
            raise page
        return cast(dict[str, Any], page)

    async def watch(
        self, path: str, params: dict[str, str], seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        self.watched.append((path, dict(params)))
        await asyncio.sleep(0)
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()  # a watch with nothing more to say, until cancelled
        script = self.watches.pop(0)
        if isinstance(script, Exception):
            raise script
        for event in script:
            yield event


async def run_until_done(watch: RequestWatch, api: ScriptedApi) -> None:
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(api.done.wait(), 5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def watching(
    api: ScriptedApi, namespaces: list[str] | None, deliver: Any, **options: Any
) -> RequestWatch:
    return RequestWatch(cast(KubeApi, api), namespaces, deliver, **options)


def page(items: list[dict[str, Any]], version: str, more: str = "") -> dict[str, Any]:
    return {"metadata": {"resourceVersion": version, "continue": more}, "items": items}


@asynchronous
async def test_it_lists_page_by_page_then_watches_from_the_listings_version() -> None:
    api = ScriptedApi(
        {"": page([request("a", "5")], "10", more="t1"),
         "t1": page([request("b", "6")], "10")},
        [[{"type": "MODIFIED", "object": request("a", "11")},
          {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "12"}}}],
         [{"type": "DELETED", "object": request("b", "13")}]],
    )  # fmt: skip
    seen: list[tuple[str, str, str]] = []
    watch = watching(
        api, None, lambda kind, body: seen.append((kind, *_name_version(body))), backlog=lambda: 0
    )
    await run_until_done(watch, api)

    assert seen == [("ADDED", "a", "5"), ("ADDED", "b", "6"), ("MODIFIED", "a", "11"),
                    ("DELETED", "b", "13")]  # fmt: skip
    assert api.gets == [f"{ALL}?limit=500", f"{ALL}?limit=500&continue=t1"]
    # each watch resumes from the last version seen, a bookmark's included; never lists again
    assert [params["resourceVersion"] for _, params in api.watched] == ["10", "12", "13"]
    assert all(params["allowWatchBookmarks"] == "true" for _, params in api.watched)
    assert watch.synced.is_set()
    assert watch.listed == 1


@asynchronous
async def test_a_gone_version_lists_again_and_a_broken_watch_resumes() -> None:
    api = ScriptedApi(
        {"": page([request("a", "5")], "10")},
        [KubeError(0, "cannot reach the API server"),
         [{"type": "ERROR", "object": {"code": 410, "message": "too old resource version"}}],
         KubeError(410, "Expired")],
    )  # fmt: skip
    seen: list[str] = []
    watch = watching(api, None, lambda kind, body: seen.append(kind), backlog=lambda: 0, pause=0.01)
    await run_until_done(watch, api)

    # broken: resumed from 10; 410 as an event: listed again; 410 as a status: listed again
    assert [params["resourceVersion"] for _, params in api.watched] == ["10", "10", "10", "10"]
    assert watch.listed == 3
    assert seen == ["ADDED", "ADDED", "ADDED"]


@asynchronous
async def test_an_expired_continue_token_starts_the_listing_again() -> None:
    api = ScriptedApi(
        {"": page([request("a", "5")], "10", more="t1"), "t1": KubeError(410, "expired")},
        [],
    )
    watch = watching(api, None, lambda kind, body: None, backlog=lambda: 0, pause=0.01)
    task = asyncio.create_task(watch.run())
    try:
        while len(api.gets) < 4:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert api.gets[:4] == [f"{ALL}?limit=500", f"{ALL}?limit=500&continue=t1"] * 2


@asynchronous
async def test_it_reads_no_further_while_the_backlog_is_full() -> None:
    api = ScriptedApi(
        {"": page([request("a", "5")], "10", more="t1"), "t1": page([request("b", "6")], "10")},
        [[{"type": "MODIFIED", "object": request("a", "11")},
          {"type": "MODIFIED", "object": request("b", "12")}]],
    )  # fmt: skip
    backlog = [0]
    seen: list[str] = []

    def deliver(kind: str, body: dict[str, Any]) -> None:
        seen.append(body["metadata"]["name"])
        backlog[0] += 1

    watch = watching(api, None, deliver, backlog=lambda: backlog[0], backlog_limit=1)
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.sleep(0.2)
        assert seen == ["a"]  # the second page waits for room
        backlog[0] = 0
        await asyncio.sleep(0.2)
        assert seen == ["a", "b", "a"]  # one event of the watch, then it waits again
        backlog[0] = -10  # room for all the rest
        await asyncio.wait_for(api.done.wait(), 5)
        assert seen == ["a", "b", "a", "b"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynchronous
async def test_a_listing_waits_for_room_no_longer_than_its_patience(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(requestwatch, "LIST_PATIENCE", 0.1)
    api = ScriptedApi(
        {"": page([request("a", "5")], "10", more="t1"), "t1": page([request("b", "6")], "10")},
        [],
    )  # fmt: skip
    seen: list[str] = []
    watch = watching(
        api, None, lambda kind, body: seen.append(kind), backlog=lambda: 99, backlog_limit=1
    )
    task = asyncio.create_task(watch.run())
    try:
        await asyncio.wait_for(watch.synced.wait(), 5)  # its token must not expire meanwhile
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert seen == ["ADDED", "ADDED"]


@asynchronous
async def test_plain_namespaces_are_followed_one_by_one_and_patterns_are_matched() -> None:
    api = ScriptedApi({"": page([], "10")}, [])
    watch = watching(api, ["a", "b"], lambda kind, body: None, backlog=lambda: 0)
    assert watch.paths == [
        "/apis/handoff.dev/v1alpha1/namespaces/a/actionrequests",
        "/apis/handoff.dev/v1alpha1/namespaces/b/actionrequests",
    ]
    seen: list[str] = []
    api = ScriptedApi(
        {"": page([request("x", "1", "team-a"), request("y", "2", "team-b"),
                   request("z", "3", "other"), request("w", "4", "team-secret")], "10")},
        [],
    )  # fmt: skip
    watch = watching(
        api,
        ["team-*,!team-secret"],
        lambda kind, body: seen.append(body["metadata"]["name"]),
        backlog=lambda: 0,
    )
    assert watch.paths == [ALL]
    await run_until_done(watch, api)
    assert seen == ["x", "y"]


def _name_version(body: dict[str, Any]) -> tuple[str, str]:
    return body["metadata"]["name"], body["metadata"]["resourceVersion"]
