"""Process limits the command lines set before they read anything from the cluster."""

import sys

#: The API server accepts JSON nested up to 10,000 levels (an ActionRequest's free-form
#: parameters, say). Python's parser gives up at its recursion limit (1,000 by default): kopf's
#: watch would stop on the RecursionError, and every listing in the console or kubectl handoff
#: would fail, so one hostile request would halt the operator and hide the queue.
JSON_DEPTH_LIMIT = 30_000


def allow_deep_json() -> None:
    """Let the JSON parser read whatever the API server accepts."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), JSON_DEPTH_LIMIT))
