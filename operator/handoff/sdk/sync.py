"""A blocking wrapper around :class:`handoff.sdk.Agent`, for code without an event loop."""

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from handoff.sdk.agent import Agent
from handoff.sdk.values import Decision, Ticket

T = TypeVar("T")


class SyncAgent:
    """``SyncAgent(namespace, name, ...)`` takes Agent's arguments; its methods block."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name="handoff-sdk"
        )
        self._thread.start()
        self._agent = Agent(*args, **kwargs)
        try:
            self._run(self._agent.connect())
        except BaseException:  # a HandoffError says why; nothing of ours stays running
            self._stop()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def propose(self, action: str, **kwargs: Any) -> Ticket:
        return self._run(self._agent.propose(action, **kwargs))

    def decisions(self, *, block: float = 5.0, forever: bool = True) -> Iterator[Decision]:
        stream = self._agent.decisions(block=block, forever=forever)

        async def following() -> Decision | None:
            try:
                return await anext(stream)
            except StopAsyncIteration:
                return None

        try:
            while (decision := self._run(following())) is not None:
                yield decision
        finally:
            self._run(stream.aclose())

    def resume(self, handler: Callable[[Decision], str | None], **kwargs: Any) -> int:
        async def call(decision: Decision) -> str | None:
            return await asyncio.to_thread(handler, decision)

        return self._run(self._agent.resume(call, **kwargs))

    def report(self, decision: Decision, outcome: str, message: str = "") -> None:
        self._run(self._agent.report(decision, outcome, message))

    def close(self) -> None:
        try:
            self._run(self._agent.close())
        finally:
            self._stop()

    def _stop(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def __enter__(self) -> "SyncAgent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
