"""The kopf wiring: thin handlers that hand each watch event to the controller.

Only raw ``on.event`` handlers are used. They keep no progress annotations and add no
finalizers of kopf's, so the operator's only write per transition is the status patch it means
to make, and reviewers' status patches (which kopf's change handlers would ignore) arrive like
any other event.
"""

import asyncio
import functools
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import kopf

from handoff import GROUP, POLICIES, REQUESTS, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import Credentials, KubeApi, KubeError, resource_path
from handoff.adapters.kubeauth import CredentialError
from handoff.adapters.outbox import RedisOutbox, RedisOutcomes
from handoff.adapters.sandbox import Sandbox
from handoff.adapters.slack import API as SLACK_API
from handoff.adapters.slack import SlackApi
from handoff.adapters.webhooks import WebhookSender
from handoff.controller import kopf_memories, rearm
from handoff.controller.events import Events
from handoff.controller.gateway_access import DEFAULT_ACCOUNT, GatewayAccess, parse_account
from handoff.controller.grant_audit import GrantAuditor
from handoff.controller.grants import GRANTS
from handoff.controller.kubernetes_executor import KubernetesExecutor
from handoff.controller.notifications import Notifier
from handoff.controller.operator import Operator, build, provisioners, utcnow
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.shards import NamespaceShard
from handoff.controller.slackapp import SlackApp
from handoff.controller.tasks import describe, start

log = logging.getLogger("handoff.operator")
RETRY = timedelta(seconds=2)
GIVE_UP_AFTER = timedelta(minutes=5)  # the longest wait between retries of a failing handler


def credentials(memo: kopf.Memo) -> Credentials:
    """The process's one renewing identity: kopf's watches, the writes and the Lease share it."""
    if memo.get("credentials") is None:
        memo["credentials"] = Credentials.load(memo.get("kubeconfig"), memo.get("context"))
    found: Credentials = memo["credentials"]
    return found


async def login(memo: kopf.Memo, **_: Any) -> kopf.ConnectionInfo:
    """kopf logs in again at ``expiration`` and after a 401; see adapters/kubeauth.py."""
    auth = credentials(memo)
    try:
        held, until, why = await auth.login()
    except CredentialError as e:
        raise kopf.TemporaryError(str(e), delay=5) from e
    log.info("kopf's watches log in (%s); next at %s", why, until or "a refusal")
    return kopf.ConnectionInfo(
        server=auth.server, ca_path=auth.cluster.ca_file, ca_data=auth.cluster.ca_data,
        insecure=not auth.verify, token=held.token, certificate_data=held.cert_pem,
        private_key_data=held.key_pem, expiration=until,
    )  # fmt: skip


def _tune(settings: kopf.OperatorSettings) -> None:
    settings.posting.enabled = False  # our Events are our own, one per transition
    settings.batching.batch_window = 0.01
    kopf_memories.bound(settings)  # what kopf holds per object at once: see there
    # Each reconnection of a watch also checks kopf's credentials: HANDOFF_WATCH_SECONDS.
    settings.watching.server_timeout = int(os.environ.get("HANDOFF_WATCH_SECONDS") or 300)
    settings.watching.client_timeout = settings.watching.server_timeout + 30
    settings.networking.request_timeout = 60


async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    _tune(settings)
    api = KubeApi(credentials(memo))
    policies = PolicyReconciler(api, utcnow)
    policies.provisioners = provisioners(api, policies, memo.get("redis_url"))
    shard = None
    if memo.get("namespace_selector"):
        shard = NamespaceShard(
            api, memo["namespace_selector"], on_join=lambda ns: _join(memo, ns),
            on_leave=lambda ns: _leave(memo, ns),
        )  # fmt: skip
    try:
        if shard is not None:
            await shard.load()
        await policies.load_all()
    except KubeError as e:
        await api.close()
        raise kopf.TemporaryError(f"cannot list policies: {e}", delay=2) from e
    if shard is not None:
        for policy in policies.index.all():
            if policy.namespace not in shard:
                policies.index.remove(policy.namespace, policy.name)
    redis_url = memo.get("redis_url")
    outbox = RedisOutbox(redis_url) if redis_url else None
    sender = WebhookSender(attempts=memo.get("notify_attempts") or 6)
    notifier = Notifier(api, outbox, utcnow, console_url=memo.get("console_url"), sender=sender)
    if token := os.environ.get("HANDOFF_SLACK_BOT_TOKEN"):  # from a Secret; never in memo or logs
        slack_api = SlackApi(token, os.environ.get("HANDOFF_SLACK_API_URL") or SLACK_API)
        notifier.slack_app = SlackApp(slack_api, outbox, memo.get("console_url"))
    notifier.on_health = lambda namespace, name: policies.health_changed(
        namespace, name, notifier.policy_health(namespace, name)
    )
    sandbox = Sandbox()  # where `when` expressions run, with a CPU budget
    await sandbox.start()
    operator = build(
        api, policies, utcnow, outbox=outbox, notifier=notifier,
        kubernetes=KubernetesExecutor(api), retention=memo.get("retention"), sandbox=sandbox,
        owns=shard.__contains__ if shard is not None else lambda _namespace: True,
    )  # fmt: skip
    memo["api"] = api
    memo["policies"] = policies
    account = os.environ.get("HANDOFF_GATEWAY_ACCOUNT", DEFAULT_ACCOUNT)  # "" without a gateway
    memo["gateway_access"] = GatewayAccess(api, parse_account(account))
    memo["operator"] = operator
    memo["grant_audit"] = GrantAuditor(outbox, utcnow, Events(api, utcnow, at_once=4))
    memo["failures"] = {}  # (kind, namespace, name) -> unexpected exceptions in a row
    memo["closers"] = [api.close, notifier.close, operator.executor_sender.close, sandbox.close]
    memo["tasks"] = [
        start("policy-scheduler", policies.scheduler.run()),
        start("reports", operator.reports.run()),
    ]
    if shard is not None:
        memo["tasks"].append(start("shard", shard.run()))
    if redis_url and outbox is not None:
        outcomes = RedisOutcomes(redis_url, socket.gethostname())
        memo["closers"] += [outbox.close, outcomes.close]
        memo["tasks"].append(start("outcomes", operator.outcomes.consume(outcomes)))
        memo["tasks"].append(start("redis-epoch", operator.publisher.follow_redis()))
    metrics.SCHEDULED_DEADLINES.set_function(lambda: len(operator.scheduler))
    memo["started"] = True  # live: the listing below may take a while (a probe must not kill it)
    await rearm.before_kopf(api, operator.requests.waiting, memo.get("namespaces"), operator.owns)
    # Every deadline armed before any fires: those that passed while the operator was down go
    # out earliest first, and their work does not slow the listing down.
    memo["tasks"].append(start("scheduler", operator.scheduler.run()))
    log.info("handoff operator started: %d policies compiled", len(policies.index.all()))


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks") or ():
        task.cancel()
    for close in memo.get("closers") or ():
        await close()


def _elsewhere(memo: kopf.Memo, namespace: str) -> bool:
    """Whether the namespace belongs to another shard (with --namespace-selector)."""
    operator: Operator = memo["operator"]
    return not operator.owns(namespace)


async def _join(memo: kopf.Memo, namespace: str) -> None:
    """A namespace came into this shard: catch up on its policies, then its requests."""
    api: KubeApi = memo["api"]
    for plural, handle in ((POLICIES, memo["policies"].changed),
                           (REQUESTS, memo["operator"].requests.changed)):  # fmt: skip
        try:
            listing = await api.get(resource_path(GROUP, VERSION, plural, namespace))
        except KubeError as e:
            log.warning("catching up on namespace %s: %s", namespace, e)
            return
        for item in listing.get("items") or []:
            try:
                await handle(item)
            except KubeError as e:
                log.warning("catching up on %s/%s: %s", namespace, item["metadata"]["name"], e)


def _leave(memo: kopf.Memo, namespace: str) -> None:
    """A namespace left this shard: forget its policies (their provisioning stays in place for
    the shard that takes the namespace over)."""
    policies: PolicyReconciler = memo["policies"]
    for policy in policies.index.in_namespace(namespace):
        policies.deleted(namespace, policy.name)


async def policy_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    policies: PolicyReconciler = memo["policies"]
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    if _elsewhere(memo, namespace):
        return
    if type == "DELETED":
        policies.deleted(namespace, name)
        return

    def retry(delay: timedelta) -> None:
        policies.scheduler.arm((namespace, name), utcnow() + delay)

    work = lambda: policies.changed(_plain(body))  # noqa: E731
    await _handled(memo, "policy", namespace, name, work=work, retry=retry)


async def request_event(
    type: str | None, body: kopf.Body, memo: kopf.Memo, event: Any = None, **_: Any
) -> None:
    operator: Operator = memo["operator"]
    requests = operator.requests
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    if _elsewhere(memo, namespace):
        return
    if type == "DELETED":
        memo["failures"].pop(("request", namespace, name), None)
        await requests.deleted(namespace, name, body.metadata.uid)
        return
    retry = functools.partial(requests.retry_soon, namespace, name)
    work = lambda: requests.changed(_plain(body, event))  # noqa: E731
    await _handled(memo, "request", namespace, name, work=work, retry=retry)


async def grant_event(type: str | None, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Any change to an ActionGrant, and its deletion: its audit lines (controller/grant_audit)."""
    if _elsewhere(memo, body.metadata.namespace or ""):
        return
    auditor: GrantAuditor = memo["grant_audit"]
    await auditor.seen(_plain(body), deleted=type == "DELETED")


async def secret_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A Secret an MCPServer names changed (marked for it, or no longer): sync as for the
    MCPServers. Every other Secret is ignored here."""
    access: GatewayAccess = memo["gateway_access"]
    if access.names(body.metadata.namespace or "", body.metadata.name or ""):
        await mcpserver_event(body, memo)


async def mcpserver_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Any change to a namespace's MCPServers, or to a Secret annotated for one: the gateway's
    read of their Secrets follows."""
    namespace, name = body.metadata.namespace or "", body.metadata.name or ""
    if _elsewhere(memo, namespace):
        return
    access: GatewayAccess = memo["gateway_access"]
    pending: set[asyncio.Task[None]] = memo.setdefault("gateway_retries", set())

    async def work() -> None:
        await _handled(memo, "mcpserver", namespace, name, work=lambda: access.sync(namespace),
                       retry=retry)  # fmt: skip

    def retry(delay: timedelta) -> None:
        def again() -> None:
            task = asyncio.create_task(work())
            pending.add(task)
            task.add_done_callback(pending.discard)

        asyncio.get_running_loop().call_later(delay.total_seconds(), again)

    await work()


async def _handled(
    memo: kopf.Memo, kind: str, namespace: str, name: str, *,
    work: Callable[[], Awaitable[None]], retry: Callable[[timedelta], None],
) -> None:  # fmt: skip
    """Run a handler's work. Event handlers are not retried by kopf: a failure comes back
    through the scheduler, 2s later after an API error, later and later after a bug."""
    try:
        await work()
    except KubeError as e:
        metrics.RECONCILE_ERRORS.labels(kind=kind).inc()
        log.warning("%s %s/%s: %s; retrying in 2s", kind, namespace, name, e)
        retry(RETRY)
    except Exception as e:  # a bug, or input nothing foresaw: counted, logged, retried
        retry(_unexpected(memo, kind, namespace, name, e))
    else:
        memo["failures"].pop((kind, namespace, name), None)


def _unexpected(
    memo: kopf.Memo, handler: str, namespace: str, name: str, error: Exception
) -> timedelta:
    """Count and log an exception nothing expected; how long to wait before trying again
    (doubling from 2s to 5 minutes, so that a request that always fails does not spin)."""
    metrics.HANDLER_EXCEPTIONS.labels(handler=handler).inc()
    failures: dict[tuple[str, str, str], int] = memo["failures"]
    count = failures[(handler, namespace, name)] = failures.get((handler, namespace, name), 0) + 1
    delay = min(RETRY * (1 << min(count - 1, 16)), GIVE_UP_AFTER)
    if count == 1:  # the traceback once; then a line per retry
        log.exception("%s %s/%s: unexpected %s; retrying in %s", handler, namespace, name,
                      describe(error), delay)  # fmt: skip
    else:
        log.error("%s %s/%s: unexpected %s again (%d times); retrying in %s", handler, namespace,
                  name, describe(error), count, delay)  # fmt: skip
    return delay


def build_registry() -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry)(login)
    kopf.on.startup(registry=registry)(startup)
    kopf.on.cleanup(registry=registry)(cleanup)
    kopf.on.event(GROUP, VERSION, POLICIES, registry=registry)(policy_event)
    kopf.on.event(GROUP, VERSION, REQUESTS, registry=registry)(request_event)
    kopf.on.event(GROUP, VERSION, "mcpservers", registry=registry)(mcpserver_event)
    kopf.on.event("", "v1", "secrets", registry=registry)(secret_event)
    kopf.on.event(GROUP, VERSION, GRANTS, registry=registry)(grant_event)
    return registry


def _plain(body: kopf.Body, event: Any = None) -> Any:
    """kopf's Body is a read-only view; the domain wants plain JSON. Read from the raw event's
    object when kopf hands it (``event``: the same parsed JSON the view wraps), since the view
    resolves its path from the root for every key read: 4% of the operator's CPU per tier 1
    request (docs/performance.md)."""
    raw = event.get("object") if isinstance(event, Mapping) else None
    if isinstance(raw, Mapping):
        return {"apiVersion": raw.get("apiVersion"), "kind": raw.get("kind"),
                "metadata": dict(raw.get("metadata") or {}), "spec": dict(raw.get("spec") or {}),
                "status": dict(raw.get("status") or {})}  # fmt: skip
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": dict(body.metadata),
        "spec": dict(body.spec),
        "status": dict(body.status),
    }
