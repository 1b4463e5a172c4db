"""What a tier 1 decision costs in Redis round trips: its records go out together, and the first
status a request ever gets does not ask Redis what of it is out (nothing can be); every other
pass still does, and publishing stays exactly once when something was out after all."""

import logging
from typing import Any

import pytest
from handoff.controller.kopf_memories import NoDiffBase, bound
from handoff.controller.publishing import LOGGED
from handoff.domain.records import Record
from handoff.testing import MemoryOutbox

from tests.unit.test_decided_memory import CountingOutbox
from tests.unit.test_orchestration import AGENT, NS, asynchronous, started


class RoundTrips(CountingOutbox):
    """Each call is one round trip to Redis (RedisOutbox: publish_all is one script call, mark
    one MULTI)."""

    async def publish_all(self, namespace: str, uid: str, records: list[Record]) -> list[bool]:
        self.calls.append("publish_all")
        return [await MemoryOutbox.publish(self, namespace, uid, r) for r in records]

    async def mark(self, namespace: str, uid: str, key: str) -> None:
        self.calls.append("mark")
        await super().mark(namespace, uid, key)


@asynchronous
async def test_a_new_tier1_request_is_published_in_one_round_trip_and_marked_in_one() -> None:
    outbox = RoundTrips()
    world = await started(decided="req-1", outbox=outbox)
    world.decided_once("req-1")
    assert outbox.calls == ["publish_all", "mark"]  # no "present": nothing of it was out
    assert len(outbox.streams[f"handoff:decisions:{NS}:{AGENT}"]) == 1


@asynchronous
async def test_a_pass_over_a_request_that_had_a_status_still_asks_redis_first() -> None:
    outbox = RoundTrips()
    world = await started(decided="req-1", outbox=outbox)
    again = await world.restarted()
    outbox.calls.clear()
    await again.changed("req-1")
    assert outbox.calls == ["present"]


@asynchronous
async def test_a_first_status_whose_records_were_out_after_all_is_published_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Say another replica published and logged this decision (a status someone wiped since):
    the publication's own dedup and the logged mark keep both to once."""
    caplog.set_level(logging.INFO, logger="handoff.audit")
    outbox = RoundTrips()
    world = await started(outbox=outbox)
    world.file("req-1")
    uid = world.uid("req-1")
    for dedup in ("decision", "phase:Approved", LOGGED + "phase:Approved"):
        outbox.seen.add((NS, uid, dedup))
    await world.changed("req-1")
    assert world.status("req-1")["phase"] == "Approved"
    assert outbox.streams == {}  # nothing appended twice
    assert [r for r in caplog.records if r.name == "handoff.audit"] == []


def test_kopf_builds_no_diff_base_for_the_operators_event_handlers() -> None:
    import kopf  # noqa: PLC0415
    from kopf._cogs.structs import diffs  # noqa: PLC0415

    settings = kopf.OperatorSettings()
    bound(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, NoDiffBase)
    body: Any = kopf.Body({"metadata": {"name": "r"}, "spec": {"a": 1}})
    assert storage.build(body=body) is None
    assert storage.fetch(body=body) is None
    assert diffs.diff(None, None) == diffs.EMPTY


def test_the_operator_registers_no_handler_that_reads_kopfs_diff_base() -> None:
    """A change handler or a daemon would read the diff base that NoDiffBase no longer builds:
    with one of them, kopf_memories.bound must go back to kopf's own storage."""
    from handoff.controller.handlers import build_registry  # noqa: PLC0415

    registry = build_registry()
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()
    assert registry._watching.get_all_handlers()


def test_kopf_does_not_watch_requests_the_operators_own_loop_does() -> None:
    """ActionRequests come through controller/requestwatch.py alone: a kopf handler for them
    too would hand every event twice."""
    from handoff.controller.handlers import build_registry  # noqa: PLC0415

    watched = {h.selector.any_name for h in build_registry()._watching.get_all_handlers()}
    assert "actionrequests" not in watched
    assert {"agentactionpolicies", "mcpservers", "actiongrants", "secrets"} <= watched


def test_a_request_waits_as_its_plain_json_less_its_managed_fields() -> None:
    from handoff.controller.requestwatch import slim  # noqa: PLC0415

    for raw in (
        {"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
         "metadata": {"name": "r", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                      "managedFields": [{"manager": "agent"}]},
         "spec": {"agent": "a", "action": "db.query", "parameters": {"limit": 10}},
         "status": {"phase": "Approved", "decision": {"outcome": "Approved"}}},
        {"metadata": {"name": "r", "namespace": "ns"}, "spec": {"agent": "a"}},  # no status yet
        {"metadata": {"name": "r"}},
    ):  # fmt: skip
        expected = {"apiVersion": raw.get("apiVersion"), "kind": raw.get("kind"),
                    "metadata": {k: v for k, v in raw["metadata"].items() if k != "managedFields"},
                    "spec": raw.get("spec") or {}, "status": raw.get("status") or {}}  # fmt: skip
        assert slim(raw) == expected
        assert "managedFields" in raw["metadata"] or len(raw["metadata"]) < 4  # not mutated
