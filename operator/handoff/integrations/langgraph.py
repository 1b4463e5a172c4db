"""LangGraph's ``interrupt()``, decided in Handoff (``pip install kube-handoff[langgraph]``).

Wrap the tools that need oversight, compile the graph with a real checkpointer (LangGraph's
PostgreSQL or Redis one), and invoke it through :meth:`HandoffInterrupts.ainvoke`::

    approvals = HandoffInterrupts(sdk_agent, actions={"refund": "payments.refund"})
    tools = [lookup, approvals.tool(refund)]            # refund: a LangChain tool or a function
    graph = build_graph(model.bind_tools(tools), ToolNode(tools)).compile(checkpointer=saver)
    await approvals.ainvoke(graph, {"messages": [...]}, {"configurable": {"thread_id": "t-1"}})
    # the process may exit; later, in any replica, with the same graph and checkpointer:
    await approvals.resume(graph, on_result=print)

Each call of a wrapped tool is filed as an ActionRequest (the arguments the tool gets, exactly,
as parameters; the model's message beside the call as reasoning). Tier 1 and 2 run at once; tier
3 and 4 call ``interrupt()``, so the checkpointer keeps the thread. The resume worker answers each
thread's interrupts with ``Command(resume={interrupt_id: ...})`` once every Handoff call it waits
for is decided; only an approval whose spec matches the tool's arguments runs the tool. Dispatch
tool calls one task each (``Send``, as ``create_agent`` and ``create_react_agent`` v2 do) so that
several calls of one step can wait together.
"""

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from handoff.integrations.core import RESUMING, Describe, Oversight, Paused, missing, run_reported
from handoff.sdk import Agent

try:
    from langchain_core.messages import AIMessage
    from langchain_core.tools import BaseTool, StructuredTool
    from langchain_core.tools import tool as as_tool
    from langgraph.prebuilt import ToolRuntime
    from langgraph.types import Command, interrupt
except ImportError as e:  # the extra is not installed: say which one
    raise ImportError(missing("langgraph", "LangGraph", e)) from e


FRAMEWORK = "langgraph"
REQUEST = "handoffRequest"  # the key of Handoff's interrupt values


class HandoffInterrupts:
    """Handoff behind ``interrupt()``: ``actions`` maps a tool to its action (default: the tool's
    name); ``describe`` maps a tool to a function of its arguments giving ``target``, ``summary``,
    ``blast_radius`` or ``rollback`` for the request."""

    def __init__(
        self,
        agent: Agent,
        *,
        actions: Mapping[str, str] | None = None,
        describe: Mapping[str, Describe] | None = None,
    ) -> None:
        self._oversight = Oversight(agent, FRAMEWORK, actions=actions, describe=describe)

    def tool(self, tool: BaseTool | Callable[..., Any]) -> BaseTool:
        """The tool under Handoff's oversight, with the same name, description and arguments."""
        original = tool if isinstance(tool, BaseTool) else as_tool(tool)
        oversight, name = self._oversight, original.name

        async def overseen(runtime: ToolRuntime, **arguments: Any) -> Any:
            call = runtime.tool_call_id or ""
            thread = str((runtime.config.get("configurable") or {}).get("thread_id", ""))
            paused = RESUMING.get()
            if paused is None or call not in paused.verdicts:
                ticket = await oversight.file(
                    thread, call, name, arguments, _reasoning(runtime.state, call)
                )
                if ticket.approved:  # tier 1 or 2: at once
                    try:
                        result = await original.ainvoke(arguments)
                    except Exception as e:
                        await oversight.ran_at_once(ticket, name, "Failed", f"{e}")
                        raise
                    await oversight.ran_at_once(ticket, name, "Executed", str(result)[:500])
                    return result
                if ticket.decision is not None:  # denied at once: no policy, invalid
                    return oversight.refusal_of(name, ticket)
                interrupt({REQUEST: ticket.name, "call": call, "tool": name})
                # Resumed by something other than Handoff's worker: that is no approval.
                return f"Handoff refused {name}: it was resumed without Handoff's decision"
            interrupt({REQUEST: paused.verdicts[call].request, "call": call, "tool": name})
            verdict, refused = await oversight.admit(call, name, arguments)
            if verdict is None:
                return refused
            return await run_reported(oversight, verdict, lambda: original.ainvoke(arguments))

        return StructuredTool.from_function(
            coroutine=overseen,
            name=name,
            description=original.description,
            args_schema=original.args_schema,
        )

    async def ainvoke(self, graph: Any, graph_input: Any, config: dict[str, Any]) -> Any:
        """``graph.ainvoke``, and when the thread stopped on Handoff's interrupts, keep it so the
        resume worker finds it. Returns what ``graph.ainvoke`` returned."""
        went_on: list[Any] = []
        result = await graph.ainvoke(graph_input, config)
        await self._pause_if_waiting(graph, config, self._resumer(graph, went_on.append))
        return went_on[0] if went_on else result

    async def resume(
        self,
        graph: Any,
        *,
        on_result: Callable[[Any], Awaitable[None] | None] | None = None,
        forever: bool = True,
        block: float = 5.0,
    ) -> int:
        """The resume worker: for each thread whose Handoff calls are all decided, resume it with
        the decisions. ``on_result`` gets what each resumed ``ainvoke`` returned. Returns how many
        threads it resumed."""
        return await self._oversight.work(
            self._resumer(graph, on_result), forever=forever, block=block
        )

    async def _pause_if_waiting(
        self, graph: Any, config: dict[str, Any], resumer: Callable[[Paused], Awaitable[None]]
    ) -> None:
        thread = str((config.get("configurable") or {}).get("thread_id", ""))
        state = await graph.aget_state(config)
        calls = {
            str(i.value["call"]): str(i.value[REQUEST])
            for i in state.interrupts
            if isinstance(i.value, dict) and REQUEST in i.value
        }
        if calls:
            await self._oversight.pause(thread, calls, {"thread_id": thread}, resumer)

    def _resumer(
        self, graph: Any, on_result: Callable[[Any], Awaitable[None] | None] | None
    ) -> Callable[[Paused], Awaitable[None]]:
        async def again(paused: Paused) -> None:
            config = {"configurable": {"thread_id": str(paused.data["thread_id"])}}
            state = await graph.aget_state(config)
            answers: dict[str, dict[str, Any]] = {}
            for waiting in state.interrupts:
                value = waiting.value if isinstance(waiting.value, dict) else {}
                verdict = paused.verdicts.get(str(value.get("call", "")))
                if verdict is not None:
                    answers[waiting.id] = {"approved": verdict.approved, REQUEST: verdict.request}
            answered = {str(a[REQUEST]) for a in answers.values()}
            for gone in paused.verdicts.values():
                if gone.approved and gone.request not in answered:
                    message = "the thread no longer waits for this call (resumed without Handoff)"
                    await self._oversight.report(gone, "Failed", message)
            if not answers:
                return
            result = await graph.ainvoke(Command(resume=answers), config)
            await self._pause_if_waiting(graph, config, self._resumer(graph, on_result))
            if on_result is not None:
                answer = on_result(result)
                if answer is not None:
                    await answer

        return again


def _reasoning(state: Any, call: str) -> str:
    """The content of the model's message that made the call."""
    messages = state.get("messages", []) if isinstance(state, dict) else []
    for message in reversed(messages):
        if isinstance(message, AIMessage) and any(c.get("id") == call for c in message.tool_calls):
            content = message.content
            if isinstance(content, str):
                return content
            return "\n".join(
                str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content
            )
    return ""
