"""The OpenAI Agents SDK's tool approvals, decided in Handoff
(``pip install kube-handoff[openai-agents]``).

Put function tools under oversight with :meth:`HandoffApprovals.oversee` (it sets the tool's
``needs_approval`` to Handoff's approval callback) and run through :meth:`HandoffApprovals.run`::

    approvals = HandoffApprovals(sdk_agent, actions={"refund": "payments.refund"})

    @approvals.oversee
    @function_tool
    def refund(charge: str, amount: int) -> str: ...

    agent = Agent(name="support", model=model, tools=[lookup, refund])
    result = await approvals.run(agent, "refund the duplicate charge")   # may stop: interruptions
    # the process may exit; later, in any replica:
    await approvals.resume(agent, on_result=print)

Each call is filed as an ActionRequest (the tool's arguments, exactly, as parameters). Tier 1 and
2 need no approval: the call runs at once. Tier 3 and 4 interrupt the run; its ``RunState``
(``to_string()``) is kept in the agent's Redis keys under a pause id. The resume worker restores
it with ``RunState.from_string``, applies each decision with ``approve()`` or
``reject(rejection_message=...)`` once every call it waits for is decided, and runs it again. An
approved call runs only with the arguments of the approved request's spec.
"""

import contextvars
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from handoff.integrations.core import RESUMING, Describe, Oversight, Paused, missing, run_reported
from handoff.sdk import Agent as HandoffAgent
from handoff.sdk import Ticket

try:
    from agents import Agent, FunctionTool, RunContextWrapper, Runner, RunResult, RunState
    from agents.tool_context import ToolContext
except ImportError as e:  # the extra is not installed: say which one
    raise ImportError(missing("openai-agents", "the OpenAI Agents SDK", e)) from e


FRAMEWORK = "openai-agents"
#: The field the wrapper adds to an overseen tool's schema: the model says why it makes the call
#: (the SDK's approval callback does not see the model's message). It is the request's reasoning,
#: and never reaches the tool.
REASONING = "reasoning_for_reviewer"
REASONING_SCHEMA = {
    "type": "string",
    "description": "Why you make this call, in a sentence for the person who must approve it.",
}
_PAUSE: contextvars.ContextVar[str] = contextvars.ContextVar("handoff_pause", default="")


class HandoffApprovals:
    """Handoff behind ``needs_approval``: ``actions`` maps a tool to its action (default: the
    tool's name); ``describe`` maps a tool to a function of its arguments giving ``target``,
    ``summary``, ``blast_radius`` or ``rollback`` for the request."""

    def __init__(
        self,
        agent: HandoffAgent,
        *,
        actions: Mapping[str, str] | None = None,
        describe: Mapping[str, Describe] | None = None,
    ) -> None:
        self._oversight = Oversight(agent, FRAMEWORK, actions=actions, describe=describe)
        self._overseen: set[str] = set()
        self._tickets: dict[tuple[str, str], Ticket] = {}  # (pause, call id) -> filed
        self._waiting: dict[str, str] = {}  # call id -> request, of the calls that wait

    def oversee(self, tool: FunctionTool) -> FunctionTool:
        """Put ``tool`` under Handoff's oversight (in place; usable as a decorator)."""
        original = tool.on_invoke_tool
        oversight, name = self._oversight, tool.name

        async def needs_approval(
            _: RunContextWrapper[Any], params: dict[str, Any], call: str
        ) -> bool:
            pause = _PAUSE.get()
            if not pause:
                raise RuntimeError(
                    f"{name} is under Handoff's oversight: run the agent with"
                    " HandoffApprovals.run(...) so its calls can pause and resume"
                )
            arguments, reasoning = _split(params)
            ticket = await oversight.file(pause, call, name, arguments, reasoning)
            self._tickets[(pause, call)] = ticket
            return not ticket.approved  # tier 1 and 2 run at once; the rest wait

        async def invoke(context: ToolContext[Any], raw: str) -> Any:
            call = context.tool_call_id
            parsed, _ = _split(_arguments(raw))
            arguments = json.dumps(parsed)  # what the tool gets: without the reasoning field
            paused = RESUMING.get()
            if paused is not None and call in paused.verdicts:
                verdict, refused = await oversight.admit(call, name, parsed)
                if verdict is None:
                    return refused
                return await run_reported(oversight, verdict, lambda: original(context, arguments))
            ticket = self._tickets.pop((_PAUSE.get(), call), None)
            if ticket is None or not ticket.approved:
                return f"Handoff refused {name}: this call was not approved through Handoff"
            try:
                result = await original(context, arguments)
            except Exception as e:
                await oversight.ran_at_once(ticket, name, "Failed", f"{e}")
                raise
            await oversight.ran_at_once(ticket, name, "Executed", str(result)[:500])
            return result

        schema = tool.params_json_schema
        if REASONING not in schema.get("properties", {}):
            schema.setdefault("properties", {})[REASONING] = dict(REASONING_SCHEMA)
            if tool.strict_json_schema:
                schema["required"] = [*schema.get("required", []), REASONING]
        tool.needs_approval = needs_approval
        tool.on_invoke_tool = invoke
        self._overseen.add(name)
        return tool

    async def run(self, agent: Agent[Any], run_input: Any, **run_kwargs: Any) -> RunResult:
        """``Runner.run``; when the run stops on Handoff's calls, its ``RunState`` is kept for
        the resume worker. Returns the run's result (``result.interruptions`` lists the calls
        that wait)."""
        pause = uuid.uuid4().hex
        token = _PAUSE.set(pause)
        try:
            result = await Runner.run(agent, run_input, **run_kwargs)
        finally:
            _PAUSE.reset(token)
        went_on: list[RunResult] = []
        await self._pause_if_waiting(
            pause, result, self._resumer(agent, went_on.append, run_kwargs)
        )
        return went_on[0] if went_on else result

    async def resume(
        self,
        agent: Agent[Any],
        *,
        on_result: Callable[[RunResult], Awaitable[None] | None] | None = None,
        forever: bool = True,
        block: float = 5.0,
        **run_kwargs: Any,
    ) -> int:
        """The resume worker: restore each paused run whose calls are all decided, apply the
        decisions, and run it again. ``on_result`` gets each result. Returns how many runs."""
        return await self._oversight.work(
            self._resumer(agent, on_result, run_kwargs), forever=forever, block=block
        )

    def requests(self, result: RunResult) -> dict[str, str]:
        """The ActionRequests a stopped run waits for, by tool call id."""
        calls = (_call_id(item) for item in result.interruptions)
        return {call: self._waiting[call] for call in calls if call in self._waiting}

    async def _decided(self, agent: Agent[Any], paused: Paused) -> RunState[Any]:
        """The paused run's state, restored, with each of Handoff's decisions applied."""
        state: RunState[Any] = await RunState.from_string(agent, paused.data["state"])
        for item in state.get_interruptions():
            verdict = paused.verdicts.get(_call_id(item))
            if verdict is None:
                continue
            if verdict.approved:
                state.approve(item)
            else:
                state.reject(item, rejection_message=verdict.refusal)
        return state

    async def _pause_if_waiting(
        self, pause: str, result: RunResult, resumer: Callable[[Paused], Awaitable[None]]
    ) -> None:
        calls: dict[str, str] = {}
        for item in result.interruptions:
            call = _call_id(item)
            if item.name not in self._overseen or not call:
                continue
            ticket = self._tickets.pop((pause, call), None)
            if ticket is None:  # the SDK asked for approval without asking Handoff: file it now
                arguments, reasoning = _split(_arguments(item.arguments or "{}"))
                ticket = await self._oversight.file(
                    pause, call, str(item.name), arguments, reasoning
                )
            calls[call] = ticket.name
        self._waiting.update(calls)
        if calls:
            state = result.to_state().to_string()
            await self._oversight.pause(pause, calls, {"state": state}, resumer)

    def _resumer(
        self,
        agent: Agent[Any],
        on_result: Callable[[RunResult], Awaitable[None] | None] | None,
        run_kwargs: dict[str, Any],
    ) -> Callable[[Paused], Awaitable[None]]:
        async def again(paused: Paused) -> None:
            try:
                state = await self._decided(agent, paused)
            except Exception as e:  # the SDK refused the stored state: nothing of it may run
                for verdict in paused.verdicts.values():
                    if verdict.approved:
                        message = f"the paused run could not be restored ({type(e).__name__}: {e})"
                        await self._oversight.report(verdict, "Failed", message[:1000])
                return
            pause = uuid.uuid4().hex
            token = _PAUSE.set(pause)
            try:
                result = await Runner.run(agent, state, **run_kwargs)
            finally:
                _PAUSE.reset(token)
            await self._pause_if_waiting(pause, result, self._resumer(agent, on_result, run_kwargs))
            if on_result is not None:
                answer = on_result(result)
                if answer is not None:
                    await answer

        return again


def _call_id(item: Any) -> str:
    return str(getattr(item, "call_id", None) or "")


def _split(params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(the tool's arguments, the model's reasoning) from a call's parameters."""
    arguments = {k: v for k, v in params.items() if k != REASONING}
    reasoning = params.get(REASONING)
    return arguments, reasoning if isinstance(reasoning, str) else ""


def _arguments(text: str) -> dict[str, Any]:
    """A call's JSON arguments as a dict (anything else, kept whole under ``arguments``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}
