"""The gateway's Prometheus metrics, served on its /metrics."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry()
CALLS = Counter(
    "handoff_gateway_calls_total", "tools/call answered, by how they ended",
    ["outcome"], registry=REGISTRY,
)  # fmt: skip
CALL_SECONDS = Histogram(
    "handoff_gateway_call_seconds", "tools/call from arrival to answer",
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)  # fmt: skip
EXECUTIONS = Counter(
    "handoff_gateway_executions_total", "approved requests the gateway carried out",
    ["outcome"], registry=REGISTRY,
)  # fmt: skip
REFUSED = Counter(
    "handoff_gateway_refused_total", "calls refused before anything was filed, by reason",
    ["reason"], registry=REGISTRY,
)  # fmt: skip
FAST_PATH = Counter(
    "handoff_gateway_fast_path_total",
    "tier-1 fast paths: Declined (waited for the operator), Taken (forwarded at once), then"
    " Agreed or Disagreed (the operator's decision)",
    ["outcome"], registry=REGISTRY,
)  # fmt: skip
TASK_LOOKUPS = Counter(
    "handoff_gateway_task_lookups_total",
    "tasks/get, tasks/result and tasks/cancel by whether the caller's task was found (many"
    " misses: someone guesses task ids)",
    ["method", "found"], registry=REGISTRY,
)  # fmt: skip
HELD = Gauge(
    "handoff_gateway_held_requests",
    "tools/call and tasks/result requests held open now, waiting for a decision or an outcome"
    " (each agent holds at most --max-held-per-agent)",
    registry=REGISTRY,
)
