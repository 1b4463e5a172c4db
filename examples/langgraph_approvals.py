"""A LangGraph agent whose refunds wait for a person in Handoff; no API key (a scripted chat model),
with LangGraph's PostgreSQL checkpointer.

    make dev-up && kubectl --context admin apply -f policies/payments/policy.yaml
    python examples/langgraph_approvals.py run      # looks up the order (tier 1, runs), asks
                                                    # for a $2,500 refund (tier 4), exits
    kubectl handoff approve <name>                  # or deny it, with a comment
    python examples/langgraph_approvals.py resume   # the thread goes on with the decision

Needs the extra: pip install 'kube-handoff[langgraph]'. The checkpoints go to DATABASE_URL
(the local environment's, from .handoff/dev/env, when it is not set).
"""

import asyncio
import os
import sys
import uuid
from pathlib import Path
from typing import Any

from handoff.integrations.langgraph import HandoffInterrupts
from handoff.sdk import Agent as HandoffAgent
from handoff.sdk import HandoffError
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode
from langgraph.prebuilt.tool_node import ToolCallWithContext
from langgraph.types import Send

ROOT = Path(__file__).resolve().parents[1]
KUBECONFIG = os.environ.get("KUBECONFIG", str(ROOT / ".handoff/dev/kubeconfig"))


class ScriptedModel(BaseChatModel):
    """What a real model would do: look the order up, then ask for the refund, then answer."""

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kwargs: Any
    ) -> ChatResult:
        done = [m for m in messages if isinstance(m, ToolMessage)]
        if not done:
            reply = AIMessage("First I check the orders.",
                              tool_calls=[{"name": "find_charges", "args": {"order": 881}, "id": "c1"}])  # fmt: skip
        elif len(done) == 1:
            reply = AIMessage("Order 881 was charged twice (ch_123 and ch_124): refund the duplicate.",
                              tool_calls=[{"name": "refund", "args": {"charge": "ch_124", "amount": 2500}, "id": "c2"}])  # fmt: skip
        else:
            reply = AIMessage(f"Finished: {done[-1].content}")
        return ChatResult(generations=[ChatGeneration(message=reply)])


@tool
def find_charges(order: int) -> str:
    """The charges of an order."""
    return f"order {order}: charges ch_123 and ch_124, $2,500 each"


@tool
def refund(charge: str, amount: int) -> str:
    """Refund a charge."""
    return f"refunded ${amount:,} of {charge}"


def build(handoff: HandoffAgent, checkpointer: AsyncPostgresSaver) -> tuple[Any, HandoffInterrupts]:
    approvals = HandoffInterrupts(
        handoff,
        actions={"find_charges": "db.query", "refund": "payments.refund"},
        describe={"refund": lambda a: {"target": f"stripe:charge/{a['charge']}",
                                       "blast_radius": f"${a['amount']:,} leaves the company account"}},
    )  # fmt: skip
    tools = [approvals.tool(find_charges), approvals.tool(refund)]
    model = ScriptedModel()

    def call_model(state: MessagesState) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"])]}

    def route(state: MessagesState) -> Any:
        last = state["messages"][-1]
        if (
            isinstance(last, AIMessage) and last.tool_calls
        ):  # one task per call, as create_agent does
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


def database_url() -> str:
    if os.environ.get("DATABASE_URL"):
        return os.environ["DATABASE_URL"]
    env = ROOT / ".handoff/dev/env"
    for line in env.read_text().splitlines() if env.exists() else []:
        if line.startswith("DATABASE_URL="):
            return line.split("=", 1)[1].strip().strip("'\"")
    raise HandoffError("no DATABASE_URL: start the local environment ('make dev-up') or set it")


async def main(mode: str) -> None:
    namespace = os.environ.get("HANDOFF_NAMESPACE", "agents")
    async with (
        AsyncPostgresSaver.from_conn_string(database_url()) as checkpointer,
        HandoffAgent(
            namespace, "payments-agent", kubeconfig=KUBECONFIG, context="payments-agent"
        ) as handoff,
    ):
        await checkpointer.setup()
        graph, approvals = build(handoff, checkpointer)
        if mode == "run":
            config = {"configurable": {"thread_id": f"ticket-881-{uuid.uuid4().hex[:8]}"}}
            await approvals.ainvoke(
                graph,
                {"messages": [HumanMessage("Customer 42 says order 881 was charged twice.")]},
                config,
            )
            state = await graph.aget_state(config)
            for waiting in state.interrupts:
                call = next(
                    c
                    for c in state.values["messages"][-1].tool_calls
                    if c["id"] == waiting.value["call"]
                )
                print(
                    f"waiting for a person: {call['name']}({call['args']}) is {waiting.value['handoffRequest']}"
                )
            if state.interrupts:
                print("the process exits now; run 'resume' after a decision")
            else:
                print(state.values["messages"][-1].content)
        else:
            resumed = await approvals.resume(
                graph, on_result=lambda r: print(r["messages"][-1].content), forever=False, block=5
            )
            print(f"{resumed} paused thread(s) resumed")


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "run"))
    except HandoffError as e:
        sys.exit(f"langgraph_approvals: {e}")
