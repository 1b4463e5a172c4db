"""Where the time of a ``tools/call`` goes: one histogram per step of the gateway's own work
(``handoff_gateway_step_seconds{step}``), for operators and for the bench's per-step rows.

A span costs a clock read and a histogram observation (a few microseconds); the steps:

- ``auth``: the agent's token (a TokenReview, cached by a hash of the token);
- ``http``: a ``tools/call`` POST from its arrival to the end of its response (the MCP server
  layer is ``http`` less ``auth`` and ``handler``);
- ``handler``: ``Calls.call``, the gateway's handling of the call;
- ``validate``: the tool lookup, the input schema and the mappings;
- ``name``: the call key's generation in Redis, and the request's name;
- ``create``: filing the ActionRequest with the agent's token;
- ``classify``: the local tier-1 classification (the fast path);
- ``claim``: claiming the call in Redis (exactly once);
- ``upstream``: the upstream's ``tools/call`` through the held MCP session;
- ``save``: keeping the result and advancing the generation (one Redis round trip).
"""

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import Histogram

from handoff.gateway.metrics import REGISTRY

STEPS = ("auth", "http", "handler", "validate", "name", "create", "classify", "claim",
         "upstream", "save")  # fmt: skip
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.0125, 0.015, 0.02,
           0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)  # fmt: skip
STEP_SECONDS = Histogram(
    "handoff_gateway_step_seconds", "one step of a tools/call in the gateway (see steps.py)",
    ["step"], buckets=BUCKETS, registry=REGISTRY,
)  # fmt: skip
_OBSERVE = {step: STEP_SECONDS.labels(step=step).observe for step in STEPS}


@contextlib.contextmanager
def span(step: str) -> Iterator[None]:
    """Time the block as ``step`` (even when it raises)."""
    began = time.perf_counter()
    try:
        yield
    finally:
        _OBSERVE[step](time.perf_counter() - began)


def observe(step: str, seconds: float) -> None:
    _OBSERVE[step](seconds)
