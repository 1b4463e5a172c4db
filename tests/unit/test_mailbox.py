"""The mailbox between kopf's watch and the reconciler (controller/mailbox.py): kopf's worker
returns at once, each request's newest event is the one handled, a request is never handled
twice at once, and an event that comes while its request is handled is handled after it."""

import asyncio
from typing import Any

from handoff.controller.mailbox import Mailbox

from tests.unit.test_orchestration import asynchronous


class Handler:
    def __init__(self) -> None:
        self.seen: list[tuple[Any, Any]] = []
        self.running: set[Any] = set()
        self.overlaps = 0
        self.gates: dict[Any, asyncio.Event] = {}

    async def __call__(self, key: Any, item: Any) -> None:
        if key in self.running:
            self.overlaps += 1
        self.running.add(key)
        try:
            self.seen.append((key, item))
            gate = self.gates.get(key)
            if gate is not None:
                await gate.wait()
            await asyncio.sleep(0)
        finally:
            self.running.discard(key)


@asynchronous
async def test_each_key_is_handled_once_with_its_newest_event_in_arrival_order() -> None:
    handler = Handler()
    box = Mailbox(handler, drains=2)
    for version in range(3):
        for key in ("a", "b", "c"):
            box.put(key, f"{key}{version}")
    assert len(box) == 3  # the older events were replaced, not queued
    await box.idle()
    assert handler.seen == [("a", "a2"), ("b", "b2"), ("c", "c2")]
    assert len(box) == 0


@asynchronous
async def test_an_event_that_comes_while_its_request_is_handled_waits_for_that_pass() -> None:
    handler = Handler()
    handler.gates["a"] = asyncio.Event()
    box = Mailbox(handler, drains=4)
    box.put("a", "a1")
    await asyncio.sleep(0)  # a drain took a1 and waits at the gate
    box.put("a", "a2")
    box.put("a", "a3")
    box.put("b", "b1")
    for _ in range(5):
        await asyncio.sleep(0)
    assert handler.seen == [("a", "a1"), ("b", "b1")]  # b is not held up behind a
    handler.gates["a"].set()
    await box.idle()
    assert handler.seen == [("a", "a1"), ("b", "b1"), ("a", "a3")]
    assert handler.overlaps == 0


@asynchronous
async def test_no_more_drains_than_asked_and_none_left_once_empty() -> None:
    handler = Handler()
    gate = asyncio.Event()
    for key in range(10):
        handler.gates[key] = gate
    box = Mailbox(handler, drains=3)
    for key in range(10):
        box.put(key, key)
    for _ in range(3):
        await asyncio.sleep(0)
    assert len(handler.running) == 3
    gate.set()
    await box.idle()
    assert [key for key, _ in handler.seen] == list(range(10))
    box.put("late", 1)  # a drain starts again for what comes after
    await box.idle()
    assert handler.seen[-1] == ("late", 1)


@asynchronous
async def test_a_failing_handler_does_not_stop_the_rest() -> None:
    seen: list[Any] = []

    async def handle(key: Any, item: Any) -> None:
        seen.append(key)
        if key == "bad":
            raise RuntimeError("a bug")

    box = Mailbox(handle, drains=1)
    for key in ("bad", "good"):
        box.put(key, key)
    await box.idle()
    assert seen == ["bad", "good"]


class Recorder:
    """The request handler behind kopf's handler: what each pass was handed."""

    def __init__(self) -> None:
        self.owns = lambda _namespace: True
        self.requests = self
        self.bodies: list[Any] = []
        self.deletions: list[tuple[str, str, str | None]] = []

    async def changed(self, body: Any) -> None:
        self.bodies.append(body)

    async def deleted(self, namespace: str, name: str, uid: str | None = None) -> None:
        self.deletions.append((namespace, name, uid))

    def retry_soon(self, namespace: str, name: str, delay: Any = None) -> None:
        raise AssertionError("nothing failed")


def raw_request(name: str) -> dict[str, Any]:
    return {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
            "metadata": {"name": name, "namespace": "agents", "uid": f"uid-{name}",
                         "resourceVersion": "7", "labels": {"team": "pay"},
                         "managedFields": [{"manager": "agent", "fieldsV1": {"f:spec": {}}}]},
            "spec": {"agent": "a", "action": "db.query", "parameters": {"amount": 2.5, "n": [1]}},
            "status": {"phase": "Pending", "tier": 4, "deadline": "2026-12-02T03:00:00Z"}}  # fmt: skip


@asynchronous
async def test_a_backlog_waits_packed_and_each_pass_gets_the_body_less_its_managed_fields() -> None:
    import kopf  # noqa: PLC0415
    from handoff.controller import handlers  # noqa: PLC0415

    recorder = Recorder()
    memo = kopf.Memo(operator=recorder, failures={})
    names = [f"r{i}" for i in range(handlers.PACK_OVER + 20)]
    for name in names:  # faster than any drain: the mailbox fills up
        handlers.request_event(memo, "ADDED", raw_request(name))
    mailbox = memo["mailbox"]
    assert len(mailbox) == len(names)
    assert isinstance(mailbox._newest[("agents", names[-1])], handlers.Packed)
    assert isinstance(mailbox._newest[("agents", names[0])], dict)
    handlers.request_event(memo, "DELETED", raw_request(names[0]))
    await mailbox.idle()

    expected = [raw_request(name) for name in names[1:]]
    for body in expected:
        del body["metadata"]["managedFields"]
    assert recorder.bodies == expected  # packed or not, the same JSON, in the order filed
    assert recorder.deletions == [("agents", names[0], f"uid-{names[0]}")]
