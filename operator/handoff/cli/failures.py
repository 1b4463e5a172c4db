"""The command lines' expected failures, as one sentence each: what happened and what to do.

A traceback is for a bug; a cluster that is not running, a right someone lacks, a name that does
not exist, a server that did not answer or a port already taken are not bugs.
"""

import errno
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from handoff.adapters.kube import KubeError

# What names the failures (the Kubernetes and Redis clients, the agent SDK's errors) loads when a
# command fails, not with this module: ``handoff`` imports it for every command line, and the
# operator, for one, uses neither the SDK nor a client before it starts its own work.


def sentence(
    error: BaseException, kubeconfig: str | None = None, context: str | None = None
) -> str | None:
    """The sentence for an expected failure; None for anything else (a bug: let it show)."""
    from redis.exceptions import RedisError  # noqa: PLC0415 - see the imports

    from handoff.adapters.kube import KubeconfigError, KubeError  # noqa: PLC0415
    from handoff.sdk.errors import START_LOCAL, HandoffError, kubeconfig_failure  # noqa: PLC0415

    if isinstance(error, KubeError):
        return kube(error)
    if isinstance(error, KubeconfigError):
        return kubeconfig_failure(error, kubeconfig, context)
    if isinstance(error, RedisError):
        return f"Redis: {error}; is it running, and is its URL right? ({START_LOCAL})"
    if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
        return f"{error.strerror}: another program listens there; choose another port"
    if isinstance(error, HandoffError | OSError | TimeoutError):
        return str(error) or type(error).__name__
    return None


def kube(error: "KubeError") -> str:
    from handoff.review.client import plain  # noqa: PLC0415 - see the imports
    from handoff.sdk.errors import START_LOCAL  # noqa: PLC0415

    if error.status == 0:
        return f"{error.message}; is the cluster running? ({START_LOCAL})"
    if error.status == 401:
        return f"the API server does not accept your credentials (401): {error.message}"
    if error.status == 403:
        return (
            f"{plain(error)}. Use a context that has this right (kubectl config get-contexts)"
            " or ask a cluster admin for it"
        )
    if error.status == 404:
        return f"{error.message}: check the name and the namespace (-n)"
    return plain(error)


def reworded(error: Exception) -> str:
    """A reviewer's refusal as it is, but a cluster that did not answer (or refused the
    credentials) said as :func:`kube` says it, with what to do."""
    from handoff.adapters.kube import KubeError  # noqa: PLC0415 - see the imports

    cause = error.__cause__
    if isinstance(cause, KubeError) and cause.status in (0, 401):
        return kube(cause)
    return str(error)
