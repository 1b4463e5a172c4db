"""A LangGraph agent with a scripted chat model and PostgreSQL's checkpointer, run as its own
process by the tests.

    python langgraph_agent.py run PROMPT THREAD   # prints {"output": ..., "requests": [...]}
    python langgraph_agent.py resume              # the resume worker until the stream is quiet
    python langgraph_agent.py forge THREAD        # Command(resume=approved) without Handoff

Environment: NAMESPACE, AGENT_KUBECONFIG, TOOL_LOG, DATABASE_URL. Prompts as in
pydantic_ai_agent.py: lookup (tier 1), charge (tier 4), deploy (tier 4, 10 s), two.
"""

import asyncio
import json
import os
import sys
from typing import Any

from handoff.integrations.langgraph import HandoffInterrupts
from handoff.sdk import Agent as HandoffAgent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallWithContext
from langgraph.types import Command, Send

CALLS = {
    "lookup": [("lookup", {"query": "orders of ch_123"})],
    "charge": [("charge", {"amount": 5, "currency": "USD"})],
    "deploy": [("deploy", {"app": "web", "image": "web:2"})],
    "two": [
        ("charge", {"amount": 1, "currency": "USD"}),
        ("charge", {"amount": 2, "currency": "USD"}),
    ],
}


class ScriptedChatModel(BaseChatModel):
    """LangChain's chat model interface, answering from a script: the calls the prompt asks for,
    then a final answer quoting what the tools said."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        returns = []
        for message in reversed(messages):
            if not isinstance(message, ToolMessage):
                break
            returns.append(message)
        if returns:
            said = {m.tool_call_id: str(m.content) for m in returns}
            reply = AIMessage(content="done: " + json.dumps(said, sort_keys=True))
        else:
            prompt = str(messages[0].content)
            calls = [{"name": t, "args": dict(a), "id": f"call-{prompt}-{i}", "type": "tool_call"}
                     for i, (t, a) in enumerate(CALLS[prompt])]  # fmt: skip
            reply = AIMessage(
                content="The customer was charged twice for order 881", tool_calls=calls
            )
        return ChatResult(generations=[ChatGeneration(message=reply)])


def log(name: str, **args: Any) -> str:
    with open(os.environ["TOOL_LOG"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"tool": name, "args": args}, sort_keys=True) + "\n")
    return f"{name} ran with {json.dumps(args, sort_keys=True)}"


@tool
def lookup(query: str) -> str:
    """Look orders up."""
    return log("lookup", query=query)


@tool
def charge(amount: int, currency: str) -> str:
    """Charge the customer."""
    return log("charge", amount=amount, currency=currency)


@tool
def deploy(app: str, image: str) -> str:
    """Deploy an image."""
    return log("deploy", app=app, image=image)


def build(handoff: HandoffAgent, checkpointer: AsyncPostgresSaver) -> tuple[Any, HandoffInterrupts]:
    # What a user writes to put tools under Handoff's oversight:
    approvals = HandoffInterrupts(
        handoff, actions={"lookup": "db.query", "charge": "payments.charge", "deploy": "deploy.app"}
    )
    tools = [approvals.tool(lookup), approvals.tool(charge), approvals.tool(deploy)]

    model = ScriptedChatModel()

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: MessagesState) -> Any:
        last = state["messages"][-1]
        if (
            isinstance(last, AIMessage) and last.tool_calls
        ):  # one task per call: they may wait together
            return [Send("tools", ToolCallWithContext(__type="tool_call_with_context", tool_call=c, state=state))
                    for c in last.tool_calls]  # fmt: skip
        return END

    graph = StateGraph(MessagesState)
    graph.add_node("model", call_model)
    graph.add_node("tools", ToolNode(tools))
    graph.add_edge(START, "model")
    graph.add_conditional_edges("model", route, ["tools", END])
    graph.add_edge("tools", "model")
    return graph.compile(checkpointer=checkpointer), approvals


async def main() -> None:
    namespace, kubeconfig = os.environ["NAMESPACE"], os.environ["AGENT_KUBECONFIG"]
    async with (
        AsyncPostgresSaver.from_conn_string(os.environ["DATABASE_URL"]) as checkpointer,
        HandoffAgent(
            namespace, "payments-agent", kubeconfig=kubeconfig, consumer="worker"
        ) as handoff,
    ):
        await checkpointer.setup()
        graph, approvals = build(handoff, checkpointer)
        if sys.argv[1] == "run":
            config = {"configurable": {"thread_id": sys.argv[3]}}
            await approvals.ainvoke(graph, {"messages": [HumanMessage(sys.argv[2])]}, config)
            state = await graph.aget_state(config)
            waiting = sorted((i.value["call"], i.value["handoffRequest"]) for i in state.interrupts)
            requests = [name for _, name in waiting]
            output = None if requests else str(state.values["messages"][-1].content)
            print(json.dumps({"output": output, "requests": requests}), flush=True)
        elif sys.argv[1] == "forge":  # resume the thread the LangGraph way, without Handoff
            config = {"configurable": {"thread_id": sys.argv[2]}}
            state = await graph.aget_state(config)
            forged = {
                i.id: {"approved": True, "handoffRequest": i.value["handoffRequest"]}
                for i in state.interrupts
            }
            result = await graph.ainvoke(Command(resume=forged), config)
            print(json.dumps({"outputs": [str(result["messages"][-1].content)]}), flush=True)
        else:
            outputs: list[str] = []
            resumed = await approvals.resume(graph, on_result=lambda r: outputs.append(str(r["messages"][-1].content)),
                                             forever=False, block=2)  # fmt: skip
            print(json.dumps({"resumed": resumed, "outputs": outputs}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
