"""What agents write on their outcome streams is hostile input: every entry is judged, and one
that can never be recorded is rejected (counted, logged, shown on the request it names) and
acknowledged; one that cannot be recorded yet stays pending and is read again. And an outcome
whose status write kept conflicting is not counted, announced or acknowledged as recorded."""

import asyncio
import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from handoff.adapters import metrics
from handoff.adapters.kube import Conflict, KubeError, NotFound
from handoff.adapters.outbox import OutboxError
from handoff.controller.operator import build
from handoff.controller.outcomes import OutcomeReader, Rejected, Reported, parse
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.recording import Outcomes
from hypothesis import given, settings
from hypothesis import strategies as st

STREAM = "handoff:outcomes:agents:payments-agent"
UID = "0b7a3f0e-9c1d-4d55-8a42-2f0cbd4a9e11"
GOOD = {b"name": b"req-1", b"uid": UID.encode(), b"outcome": b"Executed", b"message": b"ok"}
NOW = datetime(2026, 11, 29, 18, 0, tzinfo=UTC)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# -- parse: any bytes in, a Reported or a Rejected out ---------------------------------------------


def test_a_well_formed_entry_is_read() -> None:
    assert parse(STREAM, GOOD) == Reported(
        "agents", "payments-agent", "req-1", UID, "Executed", "ok"
    )


@pytest.mark.parametrize(
    ("fields", "problem", "name"),
    [
        ({}, "the entry has no fields", ""),
        ({b"uid": b"u", b"outcome": b"Executed"}, "names no request", ""),
        ({**GOOD, b"name": b"\xff"}, "field 'name' is not UTF-8 text", ""),
        ({**GOOD, b"\xc3(": b"x"}, "a field's name is not UTF-8 text", "req-1"),
        ({**GOOD, b"message": b"\xc0\x80"}, "field 'message' is not UTF-8 text", "req-1"),
        ({**GOOD, b"message": b"x" * 20_000}, "field 'message' is 20000 bytes, over 16384", "req-1"),
        ({**GOOD, b"k" * 65: b"v"}, "a field's name is 65 bytes, over 64", "req-1"),
        ({**GOOD, b"name": b"../../secrets/x"}, "'../../secrets/x' is not a request's name", ""),
        ({**GOOD, b"name": b"req-1?dryRun=All"}, "is not a request's name", ""),
        ({**GOOD, b"name": b"Req-1"}, "is not a request's name", ""),
        ({**GOOD, b"name": b"a" * 254}, "is not a request's name", ""),
        ({**GOOD, b"uid": b"a/b"}, "'a/b' is not a request's uid", "req-1"),
        ({**GOOD, b"outcome": b"Done"}, "outcome 'Done' is neither Executed nor Failed", "req-1"),
        ({**GOOD, b"outcome": b"executed\n"}, "outcome 'executed\\n' is neither", "req-1"),
    ],
)  # fmt: skip
def test_malformed_entries_are_rejected_saying_why(
    fields: dict[bytes, bytes], problem: str, name: str
) -> None:
    with pytest.raises(Rejected) as raised:
        parse(STREAM, fields)
    assert problem in raised.value.problem
    assert raised.value.name == name


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.binary(max_size=70), st.binary(max_size=70), max_size=6))
def test_any_bytes_give_an_outcome_or_a_rejection_never_anything_else(
    fields: dict[bytes, bytes],
) -> None:
    outcome: Reported | Rejected
    try:
        outcome = parse(STREAM, fields)
    except Rejected as e:
        outcome = e
    if isinstance(outcome, Rejected):
        assert outcome.problem
        assert "\n" not in outcome.problem  # agent text is quoted and escaped, never raw
    else:
        assert outcome.outcome in ("Executed", "Failed")


# -- the reader ------------------------------------------------------------------------------------


class FakeReader:
    def __init__(self, fail_ack: bool = False) -> None:
        self.acked: list[str] = []
        self.reread_streams: list[str] = []
        self.fail_ack = fail_ack

    async def ack(self, stream: str, entry_id: str) -> None:
        if self.fail_ack:
            raise OutboxError("Redis: ConnectionError")
        self.acked.append(entry_id)

    def reread(self, stream: str) -> None:
        self.reread_streams.append(stream)


class Recorder:
    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.recorded: list[Reported] = []
        self.noticed: list[tuple[str, str, str, str]] = []

    async def record(self, reported: Reported) -> None:
        if self.errors:
            raise self.errors.pop(0)
        self.recorded.append(reported)

    async def notice(self, namespace: str, agent: str, name: str, problem: str) -> None:
        self.noticed.append((namespace, agent, name, problem))


def reader_with(recorder: Recorder, reader: FakeReader) -> OutcomeReader:
    return OutcomeReader(
        reader,  # type: ignore[arg-type]
        lambda: [STREAM],
        recorder.record,
        recorder.notice,
        monotonic=lambda: 100.0,
    )


def test_a_good_entry_is_recorded_then_acknowledged() -> None:
    recorder, fake = Recorder(), FakeReader()
    asyncio.run(reader_with(recorder, fake).handle(STREAM, "1-0", GOOD))
    assert [r.name for r in recorder.recorded] == ["req-1"]
    assert fake.acked == ["1-0"]


def test_a_malformed_entry_is_counted_noticed_and_acknowledged() -> None:
    recorder, fake = Recorder(), FakeReader()
    before = sample("handoff_rejected_outcomes_total", namespace="agents")
    asyncio.run(reader_with(recorder, fake).handle(STREAM, "1-0", {**GOOD, b"outcome": b"Done"}))
    assert sample("handoff_rejected_outcomes_total", namespace="agents") == before + 1
    assert recorder.noticed == [
        ("agents", "payments-agent", "req-1", "outcome 'Done' is neither Executed nor Failed")
    ]
    assert fake.acked == ["1-0"]
    assert not recorder.recorded


@pytest.mark.parametrize(
    "error",
    [
        OutboxError("Redis: ConnectionError"),
        KubeError(0, "connection refused"),
        KubeError(503, "unavailable"),
        KubeError(429, "too many requests"),
        Conflict(409, "agents/req-1 kept changing while its outcome was recorded"),
    ],
)
def test_a_passing_failure_leaves_the_entry_pending_to_be_read_again(error: Exception) -> None:
    recorder, fake = Recorder(error), FakeReader()
    outcomes = reader_with(recorder, fake)
    asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))
    assert fake.acked == []
    assert outcomes.due == {STREAM: 102.0}  # read again 2s later, then 4s, 8s... up to 60s
    asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))  # read again: recorded this time
    assert fake.acked == ["1-0"]
    assert outcomes.attempts == {}


def test_a_refusal_that_will_not_pass_rejects_the_entry() -> None:
    recorder, fake = Recorder(KubeError(403, "forbidden")), FakeReader()
    asyncio.run(reader_with(recorder, fake).handle(STREAM, "1-0", GOOD))
    assert fake.acked == ["1-0"]
    assert recorder.noticed[0][2:] == ("req-1", "it was refused: 403: forbidden")


def test_an_unexpected_exception_is_counted_retried_then_rejected() -> None:
    recorder = Recorder(*(RuntimeError("bug") for _ in range(3)))
    fake = FakeReader()
    outcomes = reader_with(recorder, fake)
    before = sample("handoff_handler_exceptions_total", handler="outcome")
    for _ in range(3):
        asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))
    assert sample("handoff_handler_exceptions_total", handler="outcome") == before + 3
    assert fake.acked == ["1-0"]  # after the third: rejected, shown on the request
    assert recorder.noticed[0][3] == "recording it failed 3 times (RuntimeError: bug)"


def test_an_acknowledgement_that_fails_is_tried_again_later() -> None:
    recorder, fake = Recorder(), FakeReader(fail_ack=True)
    outcomes = reader_with(recorder, fake)
    asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))
    assert STREAM in outcomes.due


# -- recording: a status write that keeps conflicting is not a recorded outcome ---------------


class ConflictingApi:
    """The request, whose status write answers 409 ``conflicts`` times."""

    def __init__(self, conflicts: int) -> None:
        self.conflicts = conflicts
        self.patches = 0
        self.created: list[dict[str, Any]] = []
        self.body: dict[str, Any] = {
            "apiVersion": "handoff.dev/v1alpha1",
            "kind": "ActionRequest",
            "metadata": {"name": "req-1", "namespace": "agents", "uid": UID,
                         "resourceVersion": "7", "creationTimestamp": "2026-11-29T17:59:00Z"},
            "spec": {"agent": "payments-agent", "action": "db.query", "summary": "s"},
            "status": {"phase": "Approved", "tier": 1, "policy": "payments",
                       "decision": {"outcome": "Approved", "reason": "AutoApproved",
                                    "at": "2026-11-29T17:59:01Z", "by": [], "message": "m"}},
        }  # fmt: skip

    async def get(self, path: str) -> Any:
        if not path.endswith("/req-1"):
            raise NotFound(404, "not found")
        return copy.deepcopy(self.body)

    async def merge_patch(self, path: str, body: Any, params: Any = None) -> Any:
        self.patches += 1
        if self.patches <= self.conflicts:
            raise Conflict(409, "the object has been modified")
        self.body["status"] |= body["status"]
        return copy.deepcopy(self.body)

    async def create(self, path: str, body: Any) -> Any:
        self.created.append(body)
        return body


def reconciler(api: ConflictingApi) -> Outcomes:
    """The operator's own outcome path, wired as the operator wires it."""
    policies = PolicyReconciler(api, lambda: NOW)  # type: ignore[arg-type]
    return build(api, policies, lambda: NOW).outcomes  # type: ignore[arg-type]


def recording_reader(recorder: Outcomes, reader: FakeReader) -> OutcomeReader:
    """A reader that records through the operator's own outcome path."""
    return OutcomeReader(
        reader,  # type: ignore[arg-type]
        lambda: [STREAM],
        recorder.record,
        Recorder().notice,
        monotonic=lambda: 0.0,
    )


def test_an_outcome_whose_status_write_kept_conflicting_is_not_recorded_nor_acknowledged() -> None:
    api = ConflictingApi(conflicts=8)
    recorder = reconciler(api)
    fake = FakeReader()
    outcomes = recording_reader(recorder, fake)
    before = sample("handoff_executions_total", namespace="agents", outcome="Executed")
    asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))
    assert api.patches == 8
    assert sample("handoff_executions_total", namespace="agents", outcome="Executed") == before
    assert not [e for e in api.created if e.get("kind") == "Event"]  # no "Executed" Event
    assert fake.acked == []  # pending: read again, not lost
    assert STREAM in outcomes.due
    assert api.body["status"]["phase"] == "Approved"

    asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))  # the next read: recorded once
    assert api.body["status"]["phase"] == "Executed"
    assert fake.acked == ["1-0"]
    assert sample("handoff_executions_total", namespace="agents", outcome="Executed") == before + 1
    assert [e["reason"] for e in api.created if e.get("kind") == "Event"] == ["Executed"]


def test_an_outcome_recorded_after_a_few_conflicts_is_recorded_once() -> None:
    api = ConflictingApi(conflicts=3)
    asyncio.run(reconciler(api).record(parse(STREAM, GOOD)))
    assert api.body["status"]["execution"]["outcome"] == "Executed"
    assert api.patches == 4


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({**GOOD, b"name": b"req-2"}, "there is no request req-2 in agents"),
        ({**GOOD, b"uid": b"0000"}, "it names uid 0000, not this request's"),
    ],
)
def test_an_outcome_for_no_such_request_is_rejected(
    fields: dict[bytes, bytes], problem: str
) -> None:
    api = ConflictingApi(conflicts=0)
    with pytest.raises(Rejected, match=problem):
        asyncio.run(reconciler(api).record(parse(STREAM, fields)))
    assert api.patches == 0


def test_an_outcome_for_another_agents_request_is_rejected() -> None:
    api = ConflictingApi(conflicts=0)
    other = parse("handoff:outcomes:agents:other-agent", GOOD)
    with pytest.raises(Rejected, match="other-agent did not file req-1"):
        asyncio.run(reconciler(api).record(other))
    assert api.patches == 0


def test_a_rollback_whose_original_could_not_be_marked_is_finished_when_read_again() -> None:
    """The undo's Executed is recorded, then marking its original RolledBack fails (the API
    server is away): the entry stays pending, and reading it again marks the original instead of
    stopping at "already recorded". The Executed Event is posted once."""
    api = ConflictingApi(conflicts=0)
    api.body["spec"]["rollbackOf"] = "original"
    recorder = reconciler(api)
    marked: list[str] = []
    failures = [KubeError(503, "the API server is unavailable")]

    async def rolled_back(undo: Any) -> None:
        if failures:
            raise failures.pop()
        marked.append(undo["metadata"]["name"])

    recorder.rolled_back = rolled_back
    fake = FakeReader()
    outcomes = recording_reader(recorder, fake)
    asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))
    assert api.body["status"]["execution"]["outcome"] == "Executed"
    assert marked == []
    assert fake.acked == []  # pending: read again

    asyncio.run(outcomes.handle(STREAM, "1-0", GOOD))
    assert marked == ["req-1"]
    assert fake.acked == ["1-0"]
    assert [e["reason"] for e in api.created if e.get("kind") == "Event"] == ["Executed"]
