"""The console's sign-in limits, with a fixed clock (issue 14, item 10): sessions per person,
attempts per address, and ServiceAccounts kept out unless allowed."""

import asyncio
from datetime import timedelta

from handoff.adapters.kube import Credentials, KubeApi
from handoff.console.sessions import Sessions
from handoff.console.signin import SignInGate
from handoff.testing import FixedClock

from .helpers import CREATED

SA = "system:serviceaccount:agents:payments-agent"


def api() -> KubeApi:
    return KubeApi(Credentials(server="https://127.0.0.1:1"))


def test_a_person_holds_at_most_five_sessions_the_oldest_ends() -> None:
    async def scenario() -> None:
        clock = FixedClock(CREATED)
        sessions = Sessions(per_user=5)
        made = []
        for _ in range(200):
            made.append(sessions.create("alice", [], api(), clock()))
            clock.advance(timedelta(seconds=1))
        bob = sessions.create("bob", [], api(), clock())
        assert len(sessions) == 6
        assert [s.id for s in sessions.of("alice")] == [s.id for s in made[-5:]]
        assert await sessions.get(made[0].id, clock()) is None  # ended: its cookie is no good
        assert await sessions.get(made[-1].id, clock()) is made[-1]
        assert await sessions.get(bob.id, clock()) is bob
        assert sessions._retired == []  # the ended sessions' connections are closed
        await sessions.close()

    asyncio.run(scenario())


def test_expired_sessions_are_dropped_at_the_next_sign_in() -> None:
    async def scenario() -> None:
        clock = FixedClock(CREATED)
        sessions = Sessions(idle=timedelta(minutes=30))
        for who in ("alice", "bob", "carol"):
            sessions.create(who, [], api(), clock())
        clock.advance(timedelta(minutes=31))
        sessions.create("dave", [], api(), clock())
        assert len(sessions) == 1
        await sessions.close()

    asyncio.run(scenario())


def test_attempts_are_limited_per_address_over_a_sliding_minute() -> None:
    clock = FixedClock(CREATED)
    gate = SignInGate(attempts=3)
    assert [gate.wait("10.0.0.1", clock()) for _ in range(3)] == [0, 0, 0]
    clock.advance(timedelta(seconds=20))
    assert gate.wait("10.0.0.1", clock()) == 40  # the first attempt leaves the window in 40s
    assert gate.wait("10.0.0.2", clock()) == 0  # another address is not held up
    clock.advance(timedelta(seconds=40))
    assert gate.wait("10.0.0.1", clock()) == 0
    # Refused attempts are not counted, so waiting the time said is enough.
    assert gate.wait("10.0.0.1", clock()) == 0
    assert gate.wait("10.0.0.1", clock()) == 0
    assert gate.wait("10.0.0.1", clock()) > 0


def test_the_addresses_remembered_are_capped() -> None:
    clock = FixedClock(CREATED)
    gate = SignInGate(attempts=1, addresses=100)
    for i in range(10_000):
        gate.wait(f"10.0.{i // 256}.{i % 256}", clock())
    assert len(gate._seen) == 100
    assert gate.wait("10.0.39.15", clock()) > 0  # the most recent are remembered


def test_service_accounts_are_refused_unless_allowed() -> None:
    gate = SignInGate()
    refused = gate.refusal(SA, ["system:serviceaccounts", "system:authenticated"])
    assert refused is not None
    assert refused.startswith(f"{SA} is a ServiceAccount, and this console is for people")
    assert "--allow-service-accounts" in refused
    # By group too: a token whose user name hides it is still a ServiceAccount's.
    assert gate.refusal("x", ["system:serviceaccounts:agents"]) is None
    assert gate.refusal("x", ["system:serviceaccounts"]) is not None
    assert gate.refusal("alice", ["payments-approvers", "system:authenticated"]) is None
    assert SignInGate(allow_service_accounts=True).refusal(SA, ["system:serviceaccounts"]) is None
