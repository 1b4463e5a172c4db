"""The SDK's pure parts: the state envelope, its limit, and stable request names."""

import asyncio
from datetime import timedelta

import pytest
from handoff.sdk import JsonSerializer, MemoryStateStore, StateTooLarge
from handoff.sdk.agent import Agent, request_name
from handoff.sdk.state import envelope, open_envelope


def test_envelope_round_trip_keeps_state_and_digest() -> None:
    state = {"memory": ["a", "b"], "plan": {"step": 2}, "unicode": "café ✓"}
    data = envelope(JsonSerializer(), state, "sha256:abc")
    assert open_envelope(JsonSerializer(), data) == (state, "sha256:abc")


def test_request_names_are_stable_per_proposal_and_valid() -> None:
    first = request_name("payments.refund", "agents", "payments-agent", "order-881")
    assert first == request_name("payments.refund", "agents", "payments-agent", "order-881")
    assert first != request_name("payments.refund", "agents", "payments-agent", "order-882")
    assert first.startswith("payments-refund-")
    long = request_name("A.very_LONG.action/" + "x" * 100, "agents", "a", "k")
    assert len(long) <= 63
    assert long.replace("-", "").isalnum()
    assert long == long.lower()


def test_state_over_the_limit_is_refused_before_anything_is_written() -> None:
    store = MemoryStateStore()
    agent = Agent("agents", "payments-agent", state_store=store, max_state_bytes=100)
    agent._api = object()  # type: ignore[assignment]  # never reached: the limit is checked first
    with pytest.raises(StateTooLarge, match="the limit is 100 bytes"):
        asyncio.run(agent.propose("db.query", summary="s", state={"blob": "x" * 200}))
    assert store.values == {}


def test_state_ttl_outlives_the_longest_window_plus_grace() -> None:
    agent = Agent("agents", "a", state_grace=timedelta(days=2))
    assert agent.state_ttl == timedelta(hours=168) + timedelta(days=2)
