"""Outcomes: the one path every execution outcome takes, whoever carried the action out (the
agent, on its outcome stream; Handoff's Kubernetes or webhook executor): the status records it
once, ``handoff_executions_total`` counts it, an Event says it, the original of a carried-out
rollback becomes RolledBack, and the transition is published.

The agents' streams are read by ``outcomes.OutcomeReader``; what it hands over is judged here
against the request it names (its agent, its uid, its executor) before anything is written.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from handoff.adapters import metrics
from handoff.adapters.kube import Conflict, NotFound
from handoff.adapters.outbox import RedisOutcomes
from handoff.controller.concurrency import KeyedLocks
from handoff.controller.events import Events
from handoff.controller.outcomes import Notices, OutcomeReader, Rejected, Reported
from handoff.controller.policies import PolicyIndex
from handoff.controller.publishing import Publisher
from handoff.controller.status import ATTEMPTS, StatusWriter
from handoff.domain.decide import Event
from handoff.domain.execution import execution_patch
from handoff.domain.executors import KUBERNETES, MCP, WEBHOOK
from handoff.domain.keys import outcomes_key
from handoff.domain.reasons import Phase
from handoff.domain.resources import RequestJSON


@dataclass
class Outcomes:
    status: StatusWriter
    events: Events
    publisher: Publisher
    policies: PolicyIndex
    clock: Callable[[], datetime]
    locks: KeyedLocks  # shared with the request handler: one writer per request at a time
    rolled_back: Callable[[RequestJSON], Awaitable[None]]  # rollback.Rollbacks.rolled_back

    async def consume(self, reader: RedisOutcomes) -> None:
        """Record what agents report after acting: phase Executed or Failed, once."""

        def streams() -> list[str]:
            governed = self.policies.all()
            return sorted(
                {outcomes_key(p.namespace, a) for p in governed for a in p.service_accounts}
            )

        notices = Notices(self.status.api, self.events.post)
        await OutcomeReader(reader, streams, self.record, notices).run()

    async def record(self, reported: Reported) -> None:
        """Record an agent's outcome; Rejected when it can never be, Conflict when not yet."""
        namespace, name, outcome = reported.namespace, reported.name, reported.outcome
        try:
            body = await self.status.read(namespace, name)
        except NotFound:
            raise Rejected(f"there is no request {name} in {namespace}") from None
        if body["spec"].get("agent") != reported.agent:
            raise Rejected(f"{reported.agent} did not file {name}", name)
        if body["metadata"]["uid"] != reported.uid:
            raise Rejected(f"it names uid {reported.uid}, not this request's", name)
        if (execution := body["spec"].get("execution")) in (KUBERNETES, WEBHOOK, MCP):
            raise Rejected(f"Handoff's {execution} executor carries it out, not the agent", name)
        async with self.locks.holding((namespace, name)):
            for _ in range(ATTEMPTS):
                status = body.get("status") or {}
                patch = execution_patch(status, outcome, reported.message, self.clock())
                if patch is None:
                    if not status.get("execution"):  # rejected: counted, its Events bounded
                        raise Rejected(f"it reports {outcome} for a request not approved", name)
                    # Recorded already: this entry is read again because what follows the record
                    # failed last time. Finish that (each step is idempotent); no second Event.
                    await self.after(body)
                    return
                try:
                    body = await self.status.write(body, patch)
                    break
                except Conflict:
                    body = await self.status.read(namespace, name)
            else:  # not recorded: the entry stays pending and is read again
                raise Conflict(
                    409, f"{namespace}/{name} kept changing while its outcome was recorded"
                )
        await self.recorded(body, outcome, reported.message or "reported by the agent")

    async def recorded(self, body: RequestJSON, outcome: str, message: str) -> None:
        """An outcome was just written to the status: count it, say it, and what follows."""
        namespace = body["metadata"]["namespace"]
        metrics.EXECUTIONS.labels(namespace=namespace, outcome=outcome).inc()
        kind = "Normal" if outcome == Phase.EXECUTED else "Warning"
        await self.events.post(body, Event(kind, outcome, message))
        await self.after(body)

    async def after(self, body: RequestJSON) -> None:
        """What a recorded outcome implies: the original of a carried-out rollback becomes
        RolledBack, and the transition is published. Both are idempotent, so an entry read again
        after a failure here finishes the work instead of skipping it."""
        execution = (body.get("status") or {}).get("execution") or {}
        if execution.get("outcome") == Phase.EXECUTED and body["spec"].get("rollbackOf"):
            await self.rolled_back(body)
        await self.publisher.publish(body)
