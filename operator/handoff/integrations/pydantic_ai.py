"""Pydantic AI's deferred tools, decided in Handoff (``pip install kube-handoff[pydantic-ai]``).

Declare a tool the Pydantic AI way, ``requires_approval=True``, and give the agent the
:class:`HandoffApprovals` capability::

    approvals = HandoffApprovals(sdk_agent, actions={"refund": "payments.refund"})
    agent = Agent(model, output_type=[str, DeferredToolRequests], capabilities=[approvals])

    @agent.tool_plain(requires_approval=True)
    def refund(charge: str, amount: int) -> str: ...

    result = await agent.run("refund the duplicate charge")   # the process may exit now
    # later, in any replica:
    await approvals.resume(agent, on_result=print)

Each call of such a tool is filed as an ActionRequest (the tool's arguments, exactly, as its
parameters; the model's own text beside the call as its reasoning). Tier 1 and 2 run at once.
Tier 3 and 4 end the run with ``DeferredToolRequests``: the capability keeps the run's message
history in the agent's Redis keys, and :meth:`HandoffApprovals.resume` starts the run again with
``DeferredToolResults`` once every call it waits for is decided. An approved call runs with the
approved arguments only; a denied or expired one reaches the model as a ``ToolDenied`` message.
"""

from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from handoff.integrations.core import Describe, Oversight, Paused, missing, run_reported
from handoff.sdk import Agent

try:
    from pydantic_ai.capabilities import AbstractCapability
    from pydantic_ai.capabilities.abstract import WrapToolExecuteHandler
    from pydantic_ai.exceptions import ApprovalRequired
    from pydantic_ai.messages import (
        ModelMessage,
        ModelMessagesTypeAdapter,
        ModelResponse,
        TextPart,
        ThinkingPart,
        ToolCallPart,
    )
    from pydantic_ai.run import AgentRunResult
    from pydantic_ai.tools import (
        DeferredToolRequests,
        DeferredToolResults,
        RunContext,
        ToolDefinition,
        ToolDenied,
    )
except ImportError as e:  # the extra is not installed: say which one
    raise ImportError(missing("pydantic-ai", "Pydantic AI", e)) from e


FRAMEWORK = "pydantic-ai"


@dataclass
class HandoffApprovals(AbstractCapability[Any]):
    """The capability: tools marked ``requires_approval=True`` (or named in ``tools``) are
    decided by Handoff. ``actions`` maps a tool to its action (default: the tool's name);
    ``describe`` maps a tool to a function of its arguments giving ``target``, ``summary``,
    ``blast_radius`` or ``rollback`` for the request."""

    agent: Agent
    actions: Mapping[str, str] = field(default_factory=dict)
    describe: Mapping[str, Describe] = field(default_factory=dict)
    tools: Collection[str] = ()
    _oversight: Oversight = field(init=False, repr=False)
    _overseen: set[str] = field(init=False, repr=False, default_factory=set)
    _filed: dict[str, dict[str, str]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._oversight = Oversight(
            self.agent, FRAMEWORK, actions=self.actions, describe=self.describe
        )
        self._overseen.update(self.tools)

    @classmethod
    def get_serialization_name(cls) -> str | None:
        return None  # holds a connected SDK agent: not a spec

    async def prepare_tools(
        self, ctx: RunContext[Any], tool_defs: list[ToolDefinition]
    ) -> list[ToolDefinition]:
        """Tools that need approval become Handoff's to decide: Pydantic AI would defer every
        call at once, before tier 1 and 2 could run."""
        prepared = []
        for tool_def in tool_defs:
            if tool_def.kind == "unapproved" or tool_def.name in self._overseen:
                self._overseen.add(tool_def.name)
                prepared.append(replace(tool_def, kind="function"))
            else:
                prepared.append(tool_def)
        return prepared

    async def wrap_tool_execute(
        self,
        ctx: RunContext[Any],
        *,
        call: ToolCallPart,
        tool_def: ToolDefinition,
        args: dict[str, Any],
        handler: WrapToolExecuteHandler,
    ) -> Any:
        if call.tool_name not in self._overseen:
            return await handler(args)
        raw = call.args_as_dict()
        oversight = self._oversight
        if ctx.tool_call_approved:
            verdict, refused = await oversight.admit(call.tool_call_id, call.tool_name, raw)
            if verdict is None:
                return refused
            # The validated arguments come from the approved ones: nothing else reaches the tool.
            return await run_reported(oversight, verdict, lambda: handler(args))
        pause = ctx.run_id or ""
        ticket = await oversight.file(
            pause, call.tool_call_id, call.tool_name, raw, _reasoning(ctx.messages, call)
        )
        if ticket.approved:  # tier 1 or 2: at once, in this run
            try:
                result = await handler(args)
            except Exception as e:
                await oversight.ran_at_once(ticket, call.tool_name, "Failed", f"{e}")
                raise
            await oversight.ran_at_once(ticket, call.tool_name, "Executed", str(result)[:500])
            return result
        if ticket.decision is not None:  # denied at once: no policy, invalid
            return oversight.refusal_of(call.tool_name, ticket)
        self._filed.setdefault(pause, {})[call.tool_call_id] = ticket.name
        raise ApprovalRequired(metadata={"handoffRequest": ticket.name})

    async def after_run(
        self, ctx: RunContext[Any], *, result: AgentRunResult[Any]
    ) -> AgentRunResult[Any]:
        """A run that stopped on Handoff's calls is kept, with its message history. When every
        decision came before it was kept (a quick tier 1), it goes on at once, here."""
        pause = ctx.run_id or ""
        filed = self._filed.pop(pause, {})
        if not (isinstance(result.output, DeferredToolRequests) and filed):
            return result
        waiting = {c.tool_call_id: filed[c.tool_call_id]
                   for c in result.output.approvals if c.tool_call_id in filed}  # fmt: skip
        history = result.all_messages_json().decode()
        went_on: list[AgentRunResult[Any]] = []
        if ctx.agent is not None:
            resumer = self._resumer(ctx.agent, ctx.deps, went_on.append)
            await self._oversight.pause(pause, waiting, {"messages": history}, resumer)
        else:
            await self._oversight.pause(pause, waiting, {"messages": history})
        return went_on[0] if went_on else result

    async def resume(
        self,
        agent: Any,
        *,
        on_result: Callable[[AgentRunResult[Any]], Awaitable[None] | None] | None = None,
        deps: Any = None,
        forever: bool = True,
        block: float = 5.0,
    ) -> int:
        """The resume worker: run ``agent`` again for each paused run whose calls are all
        decided, with their decisions. ``on_result`` gets each resumed run's result (which may
        stop on Handoff again). Returns how many runs it resumed."""
        return await self._oversight.work(
            self._resumer(agent, deps, on_result), forever=forever, block=block
        )

    def _resumer(
        self,
        agent: Any,
        deps: Any,
        on_result: Callable[[AgentRunResult[Any]], Awaitable[None] | None] | None,
    ) -> Callable[[Paused], Awaitable[None]]:
        async def again(paused: Paused) -> None:
            try:
                messages: list[ModelMessage] = ModelMessagesTypeAdapter.validate_json(
                    paused.data["messages"]
                )
            except (ValueError, KeyError, TypeError) as e:  # not a history: nothing of it runs
                for verdict in paused.verdicts.values():
                    if verdict.approved:
                        message = f"the paused run could not be restored ({type(e).__name__})"
                        await self._oversight.report(verdict, "Failed", message)
                return
            approvals: dict[str, bool | ToolDenied] = {
                call: True if verdict.approved else ToolDenied(verdict.refusal)
                for call, verdict in paused.verdicts.items()
            }
            results = DeferredToolResults(approvals=approvals)  # type: ignore[arg-type]
            result = await agent.run(
                message_history=messages, deferred_tool_results=results, deps=deps
            )
            if on_result is not None:
                answer = on_result(result)
                if answer is not None:
                    await answer

        return again


def _reasoning(messages: list[ModelMessage], call: ToolCallPart) -> str:
    """The model's own words in the response that made the call."""
    for message in reversed(messages):
        if isinstance(message, ModelResponse) and any(
            isinstance(p, ToolCallPart) and p.tool_call_id == call.tool_call_id
            for p in message.parts
        ):
            return "\n".join(
                p.content for p in message.parts if isinstance(p, TextPart | ThinkingPart)
            )
    return ""
