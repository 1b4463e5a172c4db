"""The SDK's errors: each message says what happened and what to do, in one sentence.

The agent's failures that people meet first (the cluster is not running, the agent has no
policy yet, Redis is down) arrive as :class:`Unavailable` or :class:`Forbidden`, so an agent may
wait and retry the first and stop on the second.
"""

from redis.exceptions import AuthenticationError, NoPermissionError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from handoff.adapters.kube import KubeconfigError, KubeError

START_LOCAL = "the local environment starts with 'handoff dev up' or 'make demo'"


class HandoffError(Exception):
    """Something the agent should know about: the message says what and what to do."""


class Unavailable(HandoffError):
    """The API server or Redis did not answer (down, refused, timed out): retry later."""


class Forbidden(HandoffError):
    """The cluster or Redis refused this agent's identity: retrying does not help."""


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


def kube_failure(error: KubeError, doing: str, agent: str, namespace: str) -> HandoffError:
    """An API server failure while ``doing`` (a verb phrase), as the agent should read it."""
    if error.status == 0:
        return Unavailable(
            f"could not {doing}: {error.message}; is the cluster running? Retry when it is"
            f" ({START_LOCAL})"
        )
    if error.status == 401:
        return Forbidden(
            f"could not {doing}: the API server does not accept {agent}'s token ({error.message});"
            " give the agent a fresh one (kubeconfig or projected token)"
        )
    if error.status == 403:
        return Forbidden(
            f"could not {doing}: the cluster refused it ({error.message.split(': ', 1)[-1]})."
            f" An agent gets its rights from a Ready policy that governs it: is {agent} named in a"
            f" policy's agents in {namespace}, and does 'kubectl -n {namespace} get aap' say Ready?"
        )
    return HandoffError(f"could not {doing}: the API server said {error.message}")


def redis_failure(error: RedisError, doing: str) -> HandoffError:
    """A Redis failure while ``doing``, as the agent should read it."""
    said = str(error).rstrip(".") or type(error).__name__
    # First: redis-py's AuthenticationError is a kind of ConnectionError.
    if isinstance(error, AuthenticationError | NoPermissionError) or (
        isinstance(error, ResponseError) and str(error).startswith(("NOPERM", "WRONGPASS"))
    ):
        return Forbidden(
            f"could not {doing}: Redis refused this agent's user ({said}); the operator keeps"
            " that user and its URL in the agent's Secret: read the URL again from there"
        )
    if isinstance(error, RedisConnectionError | RedisTimeoutError):
        return Unavailable(
            f"could not {doing}: Redis does not answer ({said}); is it running? Retry when it is"
            f" ({START_LOCAL})"
        )
    return HandoffError(f"could not {doing}: Redis said {said}")


def kubeconfig_failure(error: Exception, kubeconfig: str | None, context: str | None) -> str:
    """Why no credentials could be loaded, without the in-cluster fallback hiding the reason."""
    first = error.__context__ if isinstance(error.__context__, KubeconfigError) else error
    reason = str(first).rstrip(".") or type(first).__name__
    where = kubeconfig or "$KUBECONFIG or ~/.kube/config"
    in_context = f", context {context}" if context else ""
    return (
        f"no usable kubeconfig in {where}{in_context} ({reason}), and this is not a pod with a"
        " ServiceAccount. Point to one with --kubeconfig (kubeconfig= in the SDK) or KUBECONFIG;"
        " the local environment's is .handoff/dev/kubeconfig"
    )
