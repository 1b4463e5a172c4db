"""The ``when`` expressions of a request, evaluated in a child process with a CPU budget.

The ``cel`` library has no cost limit and holds the GIL while it evaluates, so an expression
that is cheap to read can cost the product of list sizes an agent chooses
(``parameters.a.map(x, parameters.b).exists(...)``: a 5 KB request stalled the operator for
seconds, 10 KB for most of a minute). No reading of the source bounds that soundly, so the
operator evaluates in a child process instead: the kernel stops the child with SIGPROF when one
request's expressions have used ``budget`` seconds of CPU, and its address space is capped. The
event loop only waits for an answer, and an expression that spent the budget fails closed.

One child serves the operator. Requests take turns per agent first (an agent's requests queue
behind each other, never ahead of another agent's), so a hostile agent holds the child for at
most one budget at a time. The protocol is one JSON line each way per request, then one line
per expression evaluated, so that when the child is stopped the expression it was on is known.
"""

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from handoff.adapters import metrics
from handoff.adapters.celchild import DONE, MEMORY, answers
from handoff.adapters.locks import KeyedLocks
from handoff.domain.expressions import check_depth

log = logging.getLogger("handoff.operator")

BUDGET = 0.1  # seconds of CPU for all the `when` expressions of one request
WALL = 10.0  # seconds to wait for an answer at most (a child that is not scheduled, or hangs)

__all__ = ["Sandbox", "answers", "by_source"]


class Sandbox:
    """Evaluate ``when`` expressions out of the event loop, within a budget."""

    def __init__(self, budget: float = BUDGET, wall: float = WALL, memory: int = MEMORY) -> None:
        self.budget, self.wall, self.memory = budget, wall, memory
        self._child: asyncio.subprocess.Process | None = None
        self._turn = asyncio.Lock()  # one request in the child at a time
        self._queues = KeyedLocks()  # one waiter per agent

    async def evaluate(
        self, key: Hashable, variables: Mapping[str, object], groups: Sequence[Sequence[str]],
        budget: float | None = None,
    ) -> dict[str, bool | str]:  # fmt: skip
        """Each expression's answer (True, False, or why it has none), by source, as
        ``classify.when_plan`` groups them: a group stops at its first True or failure. Within
        ``budget`` seconds of CPU when given (the gateway's fast path asks for less than the
        operator's), else the sandbox's."""
        spent = self.budget if budget is None else budget
        try:
            check_depth(variables)  # before encoding: json recurses as deep as the values nest
        except ValueError as e:
            return {s: f"{s!r} could not be evaluated: {e}" for group in groups for s in group}
        line = json.dumps({"variables": variables, "groups": groups, "budget": spent})
        async with self._queues.holding(key), self._turn:
            given, stopped = await self._ask(line.encode() + b"\n")
        return by_source(groups, given, stopped, spent)

    async def values(
        self, key: Hashable, variables: Mapping[str, object], sources: Sequence[str]
    ) -> dict[str, dict[str, object] | str]:
        """Each expression's value (``{"value": ...}``) or why it has none, by source: the MCP
        gateway's mappings over an agent's arguments, within the same budget."""
        try:
            check_depth(variables)
        except ValueError as e:
            return {s: f"{s!r} could not be evaluated: {e}" for s in sources}
        line = json.dumps({"variables": variables, "sources": list(sources), "budget": self.budget})
        async with self._queues.holding(key), self._turn:
            given, stopped = await self._ask(line.encode() + b"\n")
        found: dict[str, dict[str, object] | str] = {}
        for i, source in enumerate(sources):
            answer = given.get((0, i))
            if isinstance(answer, dict | str):
                found[source] = answer
            elif stopped == "budget":
                budget = f"{self.budget * 1000:.0f} ms of CPU"
                found[source] = (
                    f"{source!r} exceeded the evaluation budget ({budget}) over these arguments"
                    " and was stopped"
                )
            else:
                found[source] = f"{source!r} could not be evaluated: {stopped or 'no answer'}"
        return found

    async def _ask(self, line: bytes) -> tuple[dict[tuple[int, int], Any], str | None]:
        """The answers the child gave, and why it stopped before it was done (None: it was not)."""
        child = await self._start()
        assert child.stdin is not None
        assert child.stdout is not None
        got: dict[tuple[int, int], Any] = {}
        try:
            async with asyncio.timeout(self.wall):
                child.stdin.write(line)
                await child.stdin.drain()
                while True:
                    raw = await child.stdout.readline()
                    if not raw.endswith(b"\n"):
                        break  # the child is gone
                    answer = json.loads(raw)
                    if answer == DONE:
                        return got, None
                    got[(answer[0], answer[1])] = answer[2]
        except TimeoutError:
            await self._stop()
            await self._start()
            return got, f"the evaluator did not answer within {self.wall:.0f}s"
        except (OSError, ValueError, IndexError, TypeError) as e:  # a broken pipe, a torn line
            log.warning("the CEL evaluator failed: %s", e)
        code = await self._stop(grace=2.0)
        await self._start()  # the next one starts now: its imports overlap the queue's wait
        if code == -signal.SIGPROF:
            metrics.WHEN_BUDGET_EXCEEDED.inc()
            return got, "budget"
        return got, f"the evaluator stopped (exit status {code}): over its memory or a crash"

    async def _start(self) -> asyncio.subprocess.Process:
        if self._child is None or self._child.returncode is not None:
            self._child = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "handoff.adapters.celchild", str(self.memory),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                start_new_session=True,  # a terminal's Ctrl-C is for the operator, which stops it
                limit=1 << 20,
            )  # fmt: skip
        return self._child

    async def _stop(self, grace: float = 0.0) -> int | None:
        """Stop the child (after ``grace`` seconds to end by itself); its exit status."""
        child, self._child = self._child, None
        if child is None:
            return None
        with contextlib.suppress(TimeoutError):
            # A child that closed its output is ending: killing it now would race its own end
            # (kill() polls, reaping it before asyncio's watcher, which then reports 255).
            return await asyncio.wait_for(asyncio.shield(child.wait()), grace)
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        return await child.wait()

    async def start(self) -> None:
        """Start the child now, so that the first request does not wait for its imports."""
        await self._start()

    async def close(self) -> None:
        await self._stop()


def by_source(
    groups: Sequence[Sequence[str]],
    given: Mapping[tuple[int, int], bool | str],
    stopped: str | None,
    budget: float,
) -> dict[str, bool | str]:
    """Answers by source. When the child stopped early, the first expression without an answer is
    the one it was on, and the rest were never reached."""
    found: dict[str, bool | str] = {}
    guilty_found = False
    for g, group in enumerate(groups):
        for i, source in enumerate(group):
            answer = given.get((g, i))
            if answer is None:
                if stopped is None:
                    answer = f"{source!r} was not evaluated"  # the child skipped it: a bug
                elif guilty_found:
                    answer = f"{source!r} was not evaluated: an earlier `when` was stopped"
                elif stopped == "budget":
                    guilty_found = True
                    answer = (
                        f"{source!r} exceeded the evaluation budget ({budget * 1000:.0f} ms of CPU"
                        " for a request's `when` expressions) and was stopped"
                    )
                else:
                    guilty_found = True
                    answer = f"{source!r} could not be evaluated: {stopped}"
            found.setdefault(source, answer)
            if answer is not False:
                break
    return found
