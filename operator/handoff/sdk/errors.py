class HandoffError(Exception):
    """Something the agent should know about: the message says what and what to do."""


class StateTooLarge(HandoffError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the agent's state is {size} bytes serialized; the limit is {limit} bytes."
            " Keep large artifacts elsewhere (object storage) and put their references in the state"
        )
        self.size = size
        self.limit = limit


class IdempotencyConflict(HandoffError):
    """The idempotency key was used before for a different proposal."""


class SpecMismatch(HandoffError):
    """What was approved is not byte for byte what this agent proposed: it must not run."""
