"""A start's first duty: every waiting request's deadline armed, before kopf's pass.

After a restart kopf lists every ActionRequest and hands each one to the reconciler, which arms
a waiting request's deadline from ``status.deadline``. That pass costs kopf's per-event work
(body views, loggers, cause detection, a worker per object) for every request, decided or not:
with 10,000 pending it took 6 to 20 times as long as a client needs to list them
(docs/performance.md), and deadlines that fell while the operator was down waited for it.

Before kopf's watches start, the operator lists the requests itself, a page at a time, and arms
the deadline of each waiting one straight from its status: the same time the reconciler would
arm (``Waiting.from_status``), the same key, the same pending gauge. Nothing else is done here:
kopf's pass follows as before and reconciles every request (reviews that came while the operator
was down, publication, escalations), and a deadline that fires re-reads its request and decides
it anew, so arming early changes when a deadline can fire, never what it decides. The design
note is docs/design/2026-12-01-rearm-before-kopf.md.
"""

import logging
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from handoff import GROUP, REQUESTS, VERSION
from handoff.adapters.kube import KubeApi, KubeError, resource_path
from handoff.controller.waiting import Waiting
from handoff.domain.reasons import Phase
from handoff.domain.timefmt import parse_time

log = logging.getLogger("handoff.operator")
PAGE = 500
# Phases only a decision gives (Phase in domain/reasons.py): such a request has no deadline to arm.
DECIDED = (Phase.APPROVED, Phase.DENIED, Phase.EXECUTED, Phase.FAILED, Phase.ROLLED_BACK)
UNDECIDED = ",".join(f"status.phase!={phase}" for phase in DECIDED)


def plain(namespaces: Iterable[str]) -> bool:
    """Whether kopf's namespaces are plain names (not its globs or negations), so that listing
    them one by one lists what kopf will watch."""
    return all(ns and not any(c in ns for c in "*?[]!,") for ns in namespaces)


async def before_kopf(
    api: KubeApi, waiting: Waiting, namespaces: list[str] | None, owns: Callable[[str], bool]
) -> None:
    """The start's re-arm, over kopf's namespaces (all of them when none are named)."""
    if namespaces and not plain(namespaces):
        return  # kopf's globs: its pass arms every deadline, as before
    await rearm(api, waiting, namespaces or None, owns)


async def rearm(
    api: KubeApi, waiting: Waiting, namespaces: list[str] | None, owns: Callable[[str], bool]
) -> int:
    """Arm the deadline of every waiting request in ``namespaces`` (every namespace when None)
    that this shard owns; how many were armed. A listing that fails is logged and left to kopf's
    pass, which arms the same deadlines as before."""
    started = time.monotonic()
    armed = seen = 0
    waiting.begin_rearm()
    try:
        for namespace in namespaces if namespaces else [None]:
            async for item in _pages(api, namespace):
                seen += 1
                armed += _arm(waiting, item, owns)
    except KubeError as e:
        log.warning("re-arming deadlines from a listing stopped (%s): kopf's pass arms the rest", e)
    finally:
        waiting.end_rearm()
    log.info("re-armed %d deadlines from a listing of %d requests in %.2fs",
             armed, seen, time.monotonic() - started)  # fmt: skip
    return armed


def _arm(waiting: Waiting, item: dict[str, Any], owns: Callable[[str], bool]) -> int:
    meta, status = item.get("metadata") or {}, item.get("status") or {}
    if status.get("decision") or not status.get("deadline") or not status.get("policy"):
        return 0  # decided, or not waiting for people (Waiting.from_status says the same)
    namespace, name = meta.get("namespace") or "", meta.get("name") or ""
    if not owns(namespace):
        return 0
    try:
        until = parse_time(str(status["deadline"]))
    except ValueError:
        return 0  # the reconciler's pass says what is wrong with it
    return int(waiting.rearm((namespace, name), until, str(status.get("tier", ""))))


async def _pages(api: KubeApi, namespace: str | None) -> Any:
    """The requests not decided yet (their phase is none of ``DECIDED``), a page at a time: a
    start over a long history of decided ones lists only what may wait. An API server that
    cannot select on the phase (a CRD without ``selectableFields``) lists every request."""
    path = resource_path(GROUP, VERSION, REQUESTS, namespace)
    selector = f"&fieldSelector={urllib.parse.quote(UNDECIDED)}"
    token = ""
    while True:
        query = f"?limit={PAGE}" + (f"&continue={urllib.parse.quote(token)}" if token else "")
        try:
            page = await api.get(path + query + selector)
        except KubeError as e:
            if e.status != 400 or not selector or token:
                raise
            log.info("the API server cannot select requests by phase (%s): listing all", e)
            selector = ""
            continue
        for item in page.get("items") or ():
            yield item
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return
