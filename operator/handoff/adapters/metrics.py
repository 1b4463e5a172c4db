"""Prometheus metrics on the operator's /metrics. Labels are bounded: no request names."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REGISTRY = CollectorRegistry()
HANDLERS = ("request", "policy", "timer", "outcome")  # where handler exceptions are counted
TASKS = ("scheduler", "policy-scheduler", "reports", "shard", "outcomes", "redis-epoch")

ACTION_REQUESTS = Counter(
    "handoff_action_requests_total",
    "Decided action requests.",
    ["namespace", "policy", "tier", "outcome", "reason"],
    registry=REGISTRY,
)
DECISION_SECONDS = Histogram(
    "handoff_decision_seconds",
    "Time from a request's creation to its decision.",
    ["tier", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400, 86400),
    registry=REGISTRY,
)
PENDING = Gauge(
    "handoff_pending_requests",
    "Requests waiting for people (or for their veto window).",
    ["namespace", "tier"],
    registry=REGISTRY,
)
FAST_APPROVALS = Counter(
    "handoff_fast_approvals_total",
    "Approvals given sooner than the lane's minimum review time: a rubber-stamp signal.",
    ["namespace"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "handoff_reconcile_errors_total",
    "Reconciliations that failed and will be retried.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "handoff_reconcile_seconds",
    "Time to gather, decide and apply one request event.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "handoff_notifications_total",
    "Announcements to notification targets, by result (delivered or failed after retries).",
    ["namespace", "policy", "target", "result"],
    registry=REGISTRY,
)
PUBLISH_ERRORS = Counter(
    "handoff_publish_errors_total",
    "Failed attempts to publish decisions and audit records to Redis (retried).",
    registry=REGISTRY,
)
EXECUTIONS = Counter(
    "handoff_executions_total",
    "Outcomes agents reported after acting on approvals.",
    ["namespace", "outcome"],
    registry=REGISTRY,
)
POLICIES_READY = Gauge(
    "handoff_policies",
    "Policies known to the operator, by readiness.",
    ["ready"],
    registry=REGISTRY,
)
SCHEDULED_DEADLINES = Gauge(
    "handoff_scheduled_deadlines",
    "Timers armed in the operator's scheduler "
    "(windows and their reads ahead, escalations, retries, retention).",
    registry=REGISTRY,
)
OUTBOX_LAG_SECONDS = Histogram(
    "handoff_outbox_lag_seconds",
    "Time from a decision to its message on the agent's Redis decision stream.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
LEADER = Gauge(
    "handoff_leader",
    "1 while this operator replica holds the leader Lease (or runs without leader election).",
    registry=REGISTRY,
)
WHEN_BUDGET_EXCEEDED = Counter(
    "handoff_when_budget_exceeded_total",
    "Requests whose `when` expressions used up their CPU budget and were stopped (tier 4).",
    registry=REGISTRY,
)
HANDLER_EXCEPTIONS = Counter(
    "handoff_handler_exceptions_total",
    "Unexpected exceptions in the operator's handlers (a bug, or input nothing foresaw); retried.",
    ["handler"],
    registry=REGISTRY,
)
TASK_FAILURES = Counter(
    "handoff_background_task_failures_total",
    "Background tasks that died with an exception; /healthz fails from then on.",
    ["task"],
    registry=REGISTRY,
)
REJECTED_OUTCOMES = Counter(
    "handoff_rejected_outcomes_total",
    "Entries of agents' outcome streams that can never be recorded (malformed, or naming a request"
    " the agent did not file): logged, posted as an Event when they name a request, acknowledged.",
    ["namespace"],
    registry=REGISTRY,
)
WATCHED_NAMESPACES = Gauge(
    "handoff_watched_namespaces",
    "Namespaces this operator shard handles (with --namespace-selector).",
    registry=REGISTRY,
)

# Known label values start at zero, so that rate() and alerts see the series before the first error.
for _kind in ("request", "policy"):
    RECONCILE_ERRORS.labels(kind=_kind)
for _handler in HANDLERS:
    HANDLER_EXCEPTIONS.labels(handler=_handler)
for _task in TASKS:
    TASK_FAILURES.labels(task=_task)


def serve(address: str) -> None:
    """Serve /metrics on ``host:port`` in a background thread."""
    host, _, port = address.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0", registry=REGISTRY)  # noqa: S104
