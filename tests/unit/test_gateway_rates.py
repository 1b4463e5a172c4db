"""The bound on how fast one agent reads its tasks on a gateway (gateway/rates.py)."""

import pytest
from handoff.domain.reasons import Gateway
from handoff.gateway.rates import TOO_MANY, Rates
from mcp.shared.exceptions import MCPError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_agent_reads_a_burst_then_at_its_rate_and_others_keep_theirs() -> None:
    clock = Clock()
    rates = Rates(5, clock)
    for _ in range(10):  # a burst of twice the rate
        rates.take("ns", "a", "tasks/get")
    with pytest.raises(MCPError) as raised:
        rates.take("ns", "a", "tasks/list")
    assert raised.value.error.code == TOO_MANY
    assert "a reads its tasks faster than this gateway allows one agent (5 tasks/get" in str(
        raised.value
    )
    assert "this tasks/list was refused. Wait 0.2 s" in str(raised.value)
    data = raised.value.error.data
    assert data["reason"] == Gateway.TOO_MANY_READS
    assert data["limit"] == 5
    rates.take("ns", "b", "tasks/get")  # another agent has its own bucket
    rates.take("other", "a", "tasks/get")  # and the same name in another namespace
    clock.now += 0.2  # one read's worth
    rates.take("ns", "a", "tasks/get")
    with pytest.raises(MCPError):
        rates.take("ns", "a", "tasks/get")
    clock.now += 60  # refilled, but never past the burst
    for _ in range(10):
        rates.take("ns", "a", "tasks/get")
    with pytest.raises(MCPError):
        rates.take("ns", "a", "tasks/get")


def test_refused_reads_cost_nothing_and_buy_nothing() -> None:
    """A client hammering past its bound is refused until its bucket refills, at the rate."""
    clock = Clock()
    rates = Rates(1, clock)
    rates.take("ns", "a", "tasks/get")
    rates.take("ns", "a", "tasks/get")
    for _ in range(99):
        clock.now += 0.01
        with pytest.raises(MCPError):
            rates.take("ns", "a", "tasks/get")
    clock.now += 0.02  # 1.01 s after the last read that was let through
    rates.take("ns", "a", "tasks/get")


def test_the_bound_is_at_least_one_read_a_second() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Rates(0)
