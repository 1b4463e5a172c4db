"""The kopf wiring: thin handlers that hand each watch event to the controller.

ActionRequests are watched by the operator's own loop (``requestwatch.py``), which hands each
event to ``request_event`` here; kopf watches the other kinds. Only raw ``on.event`` handlers
are used. They keep no progress annotations and add no
finalizers of kopf's, so the operator's only write per transition is the status patch it means
to make, and reviewers' status patches (which kopf's change handlers would ignore) arrive like
any other event. The start and stop (login, startup, cleanup, a shard's joins and leaves) are in
``lifecycle.py``.
"""

import asyncio
import functools
import json
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, NamedTuple

import kopf

from handoff import GROUP, POLICIES, VERSION
from handoff.adapters import metrics
from handoff.adapters.kube import KubeError
from handoff.controller.gateway_access import GatewayAccess
from handoff.controller.grant_audit import GrantAuditor
from handoff.controller.grants import GRANTS
from handoff.controller.lifecycle import cleanup, login, startup
from handoff.controller.mailbox import Mailbox
from handoff.controller.operator import Operator, utcnow
from handoff.controller.policy_reconciler import PolicyReconciler
from handoff.controller.requestwatch import RequestWatch, slim
from handoff.controller.tasks import describe, start
from handoff.domain.resources import RequestJSON

__all__ = ["build_registry", "policy_event", "request_event", "utcnow"]

log = logging.getLogger("handoff.operator")
RETRY = timedelta(seconds=2)
GIVE_UP_AFTER = timedelta(minutes=5)  # the longest wait between retries of a failing handler
PACK_OVER = 64  # events waiting in the mailbox past which a body waits as one JSON string


def _elsewhere(memo: kopf.Memo, namespace: str) -> bool:
    """Whether the namespace belongs to another shard (with --namespace-selector)."""
    operator: Operator = memo["operator"]
    return not operator.owns(namespace)


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


def request_event(memo: kopf.Memo, type: str, raw: RequestJSON) -> None:
    """Leave a request's watch event (``requestwatch.py``) in the mailbox, which hands it to
    ``_request`` (``mailbox.py``)."""
    meta = raw.get("metadata") or {}
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    if _elsewhere(memo, namespace):
        return
    mailbox = _mailbox(memo)
    item: RequestJSON | Packed | Deleted
    if type == "DELETED":
        item = Deleted(meta.get("uid"))
    elif len(mailbox) > PACK_OVER:
        item = Packed(json.dumps(slim(raw), separators=(",", ":")))
    else:
        item = slim(raw)
    mailbox.put((namespace, name), item)


async def startup_and_watch(
    settings: kopf.OperatorSettings, memo: kopf.Memo, **kwargs: Any
) -> None:
    """The operator's start (``lifecycle.startup``), then its own watch of ActionRequests,
    which kopf does not watch (``requestwatch.py``)."""
    await startup(settings=settings, memo=memo, **kwargs)
    watch = RequestWatch(
        memo["api"], memo.get("namespaces") or None, functools.partial(request_event, memo),
        backlog=lambda: len(_mailbox(memo)),
        seconds=int(os.environ.get("HANDOFF_WATCH_SECONDS") or 300),
    )  # fmt: skip
    memo["request_watch"] = watch
    memo["tasks"].append(start("request-watch", watch.run()))


class Deleted(NamedTuple):
    uid: str | None


class Packed(NamedTuple):
    """A body that waits behind a backlog, as one JSON string: a parsed body is a few hundred
    small objects, and Python keeps the arenas of a backlog's peak while any object in them
    lives (docs/performance.md, issue 21); one string per request is one block, given back
    whole. Parsed again when its turn comes (tens of microseconds)."""

    text: str


def _mailbox(memo: kopf.Memo) -> Mailbox:
    mailbox: Mailbox | None = memo.get("mailbox")
    if mailbox is None:
        mailbox = memo["mailbox"] = Mailbox(functools.partial(_request, memo))
    return mailbox


async def _request(
    memo: kopf.Memo, key: tuple[str, str], item: "RequestJSON | Packed | Deleted"
) -> None:
    """A request's newest event, from the mailbox."""
    operator: Operator = memo["operator"]
    requests = operator.requests
    namespace, name = key
    if isinstance(item, Deleted):
        memo["failures"].pop(("request", namespace, name), None)
        await requests.deleted(namespace, name, item.uid)
        return
    body: RequestJSON = json.loads(item.text) if isinstance(item, Packed) else item
    retry = functools.partial(requests.retry_soon, namespace, name)
    await _handled(memo, "request", namespace, name, work=lambda: requests.changed(body),
                   retry=retry)  # fmt: skip


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
    kopf.on.startup(registry=registry)(startup_and_watch)
    kopf.on.cleanup(registry=registry)(cleanup)
    kopf.on.event(GROUP, VERSION, POLICIES, registry=registry)(policy_event)
    kopf.on.event(GROUP, VERSION, "mcpservers", registry=registry)(mcpserver_event)
    kopf.on.event("", "v1", "secrets", registry=registry)(secret_event)
    kopf.on.event(GROUP, VERSION, GRANTS, registry=registry)(grant_event)
    return registry


def _plain(body: kopf.Body) -> Any:
    """kopf's Body is a read-only view; the domain wants plain JSON."""
    return {"apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
            "metadata": dict(body.get("metadata") or {}), "spec": dict(body.get("spec") or {}),
            "status": dict(body.get("status") or {})}  # fmt: skip
