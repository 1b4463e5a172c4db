"""The operator's wiring: every handler of a request's life, built once, in dependency order.

Read top to bottom, this is the map of the controller: the status writer, Events and the timer
come first; publishing, reports and outcomes build on them; the request handler, which
dispatches to all of them, comes last. Nothing is patched in after construction.
"""

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from handoff.adapters.kube import KubeApi
from handoff.adapters.outbox import Outbox
from handoff.adapters.redis_acl import RedisAdmin
from handoff.adapters.sandbox import Sandbox
from handoff.adapters.webhooks import WebhookSender
from handoff.controller.budgets import Budgets
from handoff.controller.concurrency import KeyedLocks, Lull
from handoff.controller.credentials import PostgresCredentials
from handoff.controller.events import Events
from handoff.controller.execution import Execution
from handoff.controller.grants import Grants
from handoff.controller.kubernetes_executor import KubernetesExecutor
from handoff.controller.notifications import Notifier
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.provisioning import Provisioner
from handoff.controller.publishing import Publisher
from handoff.controller.recording import Outcomes
from handoff.controller.redis_credentials import RedisCredentials
from handoff.controller.reports import ReportWriter
from handoff.controller.requests import CONCURRENCY, Requests
from handoff.controller.retention import Retention
from handoff.controller.rollback import Rollbacks
from handoff.controller.scheduler import DeadlineScheduler
from handoff.controller.status import StatusWriter
from handoff.controller.waiting import Waiting


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Operator:
    """What the kopf handlers and the background tasks need of the controller."""

    requests: Requests
    outcomes: Outcomes
    publisher: Publisher
    reports: ReportWriter
    scheduler: DeadlineScheduler
    executor_sender: WebhookSender
    owns: Callable[[str], bool]  # this shard's namespaces


def build(
    api: KubeApi,
    policies: PolicyReconciler,
    clock: Callable[[], datetime] = utcnow,
    *,
    outbox: Outbox | None = None,
    notifier: Notifier | None = None,
    kubernetes: KubernetesExecutor | None = None,
    retention: timedelta | None = None,
    sandbox: Sandbox | None = None,
    owns: Callable[[str], bool] = lambda _namespace: True,
) -> Operator:
    async def fire(key: Hashable) -> None:  # the one cycle: timers fire into the dispatcher
        await requests.on_timer(key)

    scheduler = DeadlineScheduler(fire, clock)
    status = StatusWriter(api)
    locks = KeyedLocks()
    lull = Lull()
    events = Events(api, clock, at_once=CONCURRENCY // 2, lull=lull)
    reports = ReportWriter(api, clock)
    publisher = Publisher(status, clock, outbox, reports=reports, scheduler=scheduler, owns=owns)
    rollbacks = Rollbacks(
        status, events, publisher, scheduler=scheduler, clock=clock, kubernetes=kubernetes
    )
    index = policies.index
    outcomes = Outcomes(
        status, events, publisher, policies=index, clock=clock, locks=locks,
        rolled_back=rollbacks.rolled_back,
    )  # fmt: skip
    sender = WebhookSender(attempts=3)
    requests = Requests(
        status, policies, clock, scheduler=scheduler, locks=locks, sandbox=sandbox,
        events=events, publisher=publisher, reports=reports,
        budgets=Budgets(index, clock),
        waiting=Waiting(index, scheduler, notifier, clock),
        rollbacks=rollbacks,
        execution=Execution(
            status, index, clock, outcomes=outcomes, kubernetes=kubernetes, sender=sender
        ),
        retention=Retention(
            api, clock, retention, scheduler=scheduler, publisher=publisher, reports=reports
        ),
        grants=Grants(api, clock, sandbox, events),
        lull=lull,
    )  # fmt: skip
    return Operator(requests, outcomes, publisher, reports, scheduler, sender, owns)


def provisioners(
    api: KubeApi, policies: PolicyReconciler, redis_url: str | None
) -> list[Provisioner]:
    """What policies provision: PostgreSQL roles always, Redis users when Redis is configured."""

    def governs(namespace: str, agent: str, *, exclude: str) -> bool:
        return any(
            p.name != exclude and agent in p.service_accounts
            for p in policies.index.in_namespace(namespace)
        )

    found: list[Provisioner] = [PostgresCredentials(api)]
    if redis_url:
        found.append(RedisCredentials(api, RedisAdmin(redis_url), governs))
    return found
