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
