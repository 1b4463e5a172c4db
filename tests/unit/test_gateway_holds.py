"""The bound on what one agent holds open on a gateway (gateway/holds.py)."""

import pytest
from handoff.domain.reasons import Gateway
from handoff.gateway.holds import TOO_MANY, Holds
from mcp.shared.exceptions import MCPError


def test_an_agent_holds_at_most_the_bound_and_gets_one_back_as_each_ends() -> None:
    holds = Holds(2)
    with holds.hold("ns", "a", "tools/call"), holds.hold("ns", "a", "tasks/result"):
        with pytest.raises(MCPError) as raised, holds.hold("ns", "a", "tasks/result"):
            pass
        assert raised.value.error.code == TOO_MANY
        assert "a already holds 2 requests open" in str(raised.value)
        assert "this tasks/result was refused and nothing was filed" in str(raised.value)
        assert raised.value.error.data == {"reason": Gateway.TOO_MANY_HELD, "limit": 2}
        assert holds.held("ns", "a") == 2
        with holds.hold("ns", "b", "tools/call"), holds.hold("other", "a", "tools/call"):
            assert holds.held("ns", "b") == holds.held("other", "a") == 1  # their own share
    assert holds.held("ns", "a") == 0
    with holds.hold("ns", "a", "tools/call"):
        assert holds.held("ns", "a") == 1


def test_a_hold_is_given_back_when_its_request_fails() -> None:
    holds = Holds(1)
    with pytest.raises(RuntimeError), holds.hold("ns", "a", "tools/call"):
        raise RuntimeError("the upstream went away")
    assert holds.held("ns", "a") == 0
    assert holds._held == {}  # no key left behind per agent ever seen


def test_the_bound_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Holds(0)
