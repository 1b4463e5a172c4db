"""The agent SDK: propose actions, pause, and resume when people decide.

    from handoff.sdk import Agent

    async with Agent(namespace="agents", name="payments-agent") as agent:
        ticket = await agent.propose(
            "payments.refund", target="stripe:charge/ch_123", parameters={"amount": 2500},
            summary="Refund the duplicate charge", reasoning="Charged twice for order 881",
            blast_radius="$2,500 leaves the company account",
            rollback={"description": "Charge again", "action": "payments.charge"},
            confidence=0.92, state={"memory": [...], "plan": [...]},
        )
        # ... the process may exit here; later, in any process of this agent:
        async for decision in agent.decisions():
            if decision.approved:
                ...  # act, with decision.state rehydrated

Async-first; :class:`SyncAgent` wraps it for code without an event loop.
"""

from handoff.sdk.agent import Agent
from handoff.sdk.errors import (
    Forbidden,
    HandoffError,
    IdempotencyConflict,
    SpecMismatch,
    StateTooLarge,
    Unavailable,
)
from handoff.sdk.state import (
    JsonSerializer,
    MemoryStateStore,
    RedisStateStore,
    Serializer,
    StateStore,
)
from handoff.sdk.sync import SyncAgent
from handoff.sdk.values import Decision, Ticket

__all__ = [
    "Agent",
    "Decision",
    "Forbidden",
    "HandoffError",
    "IdempotencyConflict",
    "JsonSerializer",
    "MemoryStateStore",
    "RedisStateStore",
    "Serializer",
    "SpecMismatch",
    "StateStore",
    "StateTooLarge",
    "SyncAgent",
    "Ticket",
    "Unavailable",
]
