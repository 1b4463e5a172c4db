"""What the PolicyReports are written from: each agent's latest decided requests, kept in memory.

The request handler sees every request (all of them in its first listing after a start, then
each change), so it notes what a report shows as it goes (``NoteForReports``); ``ReportWriter``
rewrites the report of each agent that had a transition every few seconds. Listing every
request of a namespace to rewrite one agent's report, every few seconds, does not scale: with
10,000 requests that is tens of megabytes parsed each time, and it starved the operator of CPU
and memory.
"""

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.adapters.kube import KubeApi, KubeError, NotFound
from handoff.domain.report import MAX_RESULTS, policy_report, result_of

log = logging.getLogger("handoff.operator")
REPORT_EVERY = timedelta(seconds=5)

_KEEP = 2 * MAX_RESULTS  # per agent: the report shows the newest MAX_RESULTS of these


class DecidedRequests:
    def __init__(self) -> None:
        self._by_agent: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._agent_of: dict[tuple[str, str], tuple[str, str]] = {}  # (namespace, name) -> agent

    def record(self, body: Mapping[str, Any]) -> None:
        """Note a request's latest state; only decided ones appear in reports."""
        if result_of(body) is None:
            return
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        agent = (meta["namespace"], str(spec.get("agent", "")))
        self._agent_of[(meta["namespace"], meta["name"])] = agent
        mine = self._by_agent.setdefault(agent, {})
        mine[meta["name"]] = {  # only what policy_report reads
            "metadata": {"name": meta["name"], "uid": meta.get("uid", ""),
                         "creationTimestamp": meta.get("creationTimestamp")},
            "spec": {"action": spec.get("action", "")},
            "status": {key: status[key] for key in
                       ("decision", "phase", "policy", "rule", "tier", "execution")
                       if key in status},
        }  # fmt: skip
        if len(mine) > 2 * _KEEP:
            newest = sorted(mine.items(), key=lambda item: _decided_at(item[1]), reverse=True)
            for name, _ in newest[_KEEP:]:
                del mine[name]
                self._agent_of.pop((meta["namespace"], name), None)

    def forget(self, namespace: str, name: str) -> None:
        agent = self._agent_of.pop((namespace, name), None)
        if agent is not None:
            self._by_agent.get(agent, {}).pop(name, None)

    def of(self, namespace: str, agent: str) -> list[dict[str, Any]]:
        return list(self._by_agent.get((namespace, agent), {}).values())


class ReportWriter:
    """Every few seconds, rewrite the PolicyReport of each agent that had a transition."""

    def __init__(self, api: KubeApi, clock: Callable[[], datetime]) -> None:
        self.api = api
        self.clock = clock
        self.enabled = True  # off when the cluster does not serve PolicyReports
        self.decided = DecidedRequests()  # what the reports show, noted as requests go by
        self._dirty: set[tuple[str, str]] = set()  # (namespace, agent) whose report is stale
        self._reported: dict[tuple[str, str], datetime] = {}

    def stale(self, namespace: str, agent: str) -> None:
        self._dirty.add((namespace, agent))

    def shows(self, namespace: str, agent: str, decided_at: datetime) -> bool:
        """Whether the agent's report was written after ``decided_at`` (or none is written)."""
        written = self._reported.get((namespace, agent), datetime.min.replace(tzinfo=UTC))
        return not self.enabled or written >= decided_at

    async def run(self) -> None:
        while True:
            await asyncio.sleep(REPORT_EVERY.total_seconds())
            for namespace, agent in sorted(self._dirty):
                try:
                    await self.write(namespace, agent)
                except NotFound:
                    log.warning(
                        "this cluster serves no wgpolicyk8s.io PolicyReports: not writing any"
                    )
                    self.enabled = False
                except KubeError as e:
                    log.warning("PolicyReport for %s/%s: %s; retrying", namespace, agent, e)
            if not self.enabled:
                return

    async def write(self, namespace: str, agent: str) -> None:
        started = self.clock()
        await self.api.apply(policy_report(namespace, agent, self.decided.of(namespace, agent)))
        self._dirty.discard((namespace, agent))
        self._reported[(namespace, agent)] = started


def _decided_at(body: Mapping[str, Any]) -> str:
    return str(body["status"]["decision"].get("at") or body["metadata"]["creationTimestamp"])
