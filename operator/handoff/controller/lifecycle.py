"""The operator's start and stop, for kopf: its one identity (``credentials``, kopf's ``login``),
``startup`` (every room built once, the policies compiled, what waits re-armed before any
deadline fires), ``cleanup``, and a shard's namespaces joining and leaving. The watch events
themselves go through ``handlers.py``.
"""

import logging
import os
import socket
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
from handoff.controller import kopf_memories, memory, rearm
from handoff.controller.events import Events
from handoff.controller.gateway_access import DEFAULT_ACCOUNT, GatewayAccess, parse_account
from handoff.controller.grant_audit import GrantAuditor
from handoff.controller.kubernetes_executor import KubernetesExecutor
from handoff.controller.notifications import Notifier
from handoff.controller.operator import build, provisioners, utcnow
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.shards import NamespaceShard
from handoff.controller.slackapp import SlackApp
from handoff.controller.tasks import start

log = logging.getLogger("handoff.operator")


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
    memory.settle_start()
    # Every deadline armed before any fires: those that passed while the operator was down go
    # out earliest first, and their work does not slow the listing down.
    memo["tasks"].append(start("scheduler", operator.scheduler.run()))
    log.info("handoff operator started: %d policies compiled", len(policies.index.all()))


async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks") or ():
        task.cancel()
    for close in memo.get("closers") or ():
        await close()


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
