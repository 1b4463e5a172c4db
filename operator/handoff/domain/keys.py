"""Redis key names, as the contract lays them out."""

AUDIT_STREAM = "handoff:audit"


def state_key(namespace: str, agent: str, uid: str) -> str:
    """The agent's serialized working state for one request."""
    return f"handoff:state:{namespace}:{agent}:{uid}"


def state_pattern(namespace: str, agent: str) -> str:
    return f"handoff:state:{namespace}:{agent}:*"


def decisions_key(namespace: str, agent: str) -> str:
    """The stream of decisions an agent reads with its consumer group."""
    return f"handoff:decisions:{namespace}:{agent}"


def outcomes_key(namespace: str, agent: str) -> str:
    """Where an agent reports what happened when it acted on an approval (the operator reads)."""
    return f"handoff:outcomes:{namespace}:{agent}"
