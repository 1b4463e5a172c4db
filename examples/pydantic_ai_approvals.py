"""A Pydantic AI agent whose refunds wait for a person in Handoff; no API key (a scripted model).

    make dev-up && kubectl --context admin apply -f policies/payments/policy.yaml
    python examples/pydantic_ai_approvals.py run      # looks up the order (tier 1, runs), asks
                                                      # for a $2,500 refund (tier 4), exits
    kubectl handoff approve <name>                    # or deny it, with a comment
    python examples/pydantic_ai_approvals.py resume   # the run goes on with the decision

Needs the extra: pip install 'kube-handoff[pydantic-ai]'.
"""

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from handoff.integrations.pydantic_ai import HandoffApprovals
from handoff.sdk import Agent as HandoffAgent
from handoff.sdk import HandoffError
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests

KUBECONFIG = os.environ.get(
    "KUBECONFIG", str(Path(__file__).resolve().parents[1] / ".handoff/dev/kubeconfig")
)


def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """What a real model would do: look the order up, then ask for the refund, then answer."""
    done = [
        p
        for m in messages
        if isinstance(m, ModelRequest)
        for p in m.parts
        if isinstance(p, ToolReturnPart)
    ]
    if not done:
        return ModelResponse(parts=[TextPart("First I check the orders."),
                                    ToolCallPart("find_charges", {"order": 881})])  # fmt: skip
    if len(done) == 1:
        return ModelResponse(parts=[
            TextPart("Order 881 was charged twice (ch_123 and ch_124): refund the duplicate."),
            ToolCallPart("refund", {"charge": "ch_124", "amount": 2500}),
        ])  # fmt: skip
    return ModelResponse(parts=[TextPart(f"Finished: {done[-1].content}")])


def build(handoff: HandoffAgent) -> tuple[Agent[None, Any], HandoffApprovals]:
    approvals = HandoffApprovals(
        handoff,
        actions={"find_charges": "db.query", "refund": "payments.refund"},
        describe={"refund": lambda a: {"target": f"stripe:charge/{a['charge']}",
                                       "blast_radius": f"${a['amount']:,} leaves the company account"}},
    )  # fmt: skip
    agent = Agent(
        FunctionModel(model), output_type=[str, DeferredToolRequests], capabilities=[approvals]
    )

    @agent.tool_plain(requires_approval=True)
    def find_charges(order: int) -> str:
        return f"order {order}: charges ch_123 and ch_124, $2,500 each"

    @agent.tool_plain(requires_approval=True)
    def refund(charge: str, amount: int) -> str:
        return f"refunded ${amount:,} of {charge}"

    return agent, approvals


async def main(mode: str) -> None:
    namespace = os.environ.get("HANDOFF_NAMESPACE", "agents")
    async with HandoffAgent(
        namespace, "payments-agent", kubeconfig=KUBECONFIG, context="payments-agent"
    ) as handoff:
        agent, approvals = build(handoff)
        if mode == "run":
            result = await agent.run("Customer 42 says order 881 was charged twice.")
            if isinstance(result.output, DeferredToolRequests):
                for call in result.output.approvals:
                    print(f"waiting for a person: {call.tool_name}({call.args_as_dict()}) is"
                          f" {result.output.metadata[call.tool_call_id]['handoffRequest']}")  # fmt: skip
                print("the process exits now; run 'resume' after a decision")
            else:
                print(result.output)
        else:
            resumed = await approvals.resume(
                agent, on_result=lambda r: print(r.output), forever=False, block=5
            )
            print(f"{resumed} paused run(s) resumed")


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "run"))
    except HandoffError as e:
        sys.exit(f"pydantic_ai_approvals: {e}")
