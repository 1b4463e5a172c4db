"""A Pydantic AI agent with a scripted model (FunctionModel), run as its own process by the tests.

    python pydantic_ai_agent.py run PROMPT   # one run: prints {"output": ..., "requests": [...]}
    python pydantic_ai_agent.py resume       # the resume worker until the stream is quiet

Environment: NAMESPACE, AGENT_KUBECONFIG, TOOL_LOG (each tool call appends a JSON line there).
The prompt picks the calls: lookup (db.query, tier 1), charge (payments.charge, tier 4), deploy
(deploy.app, tier 4 with a 10 s window), two (two charges in one response).
"""

import asyncio
import json
import os
import sys
from typing import Any

from handoff.integrations.pydantic_ai import HandoffApprovals
from handoff.sdk import Agent as HandoffAgent
from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.tools import DeferredToolRequests

CALLS = {
    "lookup": [("lookup", {"query": "orders of ch_123"})],
    "charge": [("charge", {"amount": 5, "currency": "USD"})],
    "deploy": [("deploy", {"app": "web", "image": "web:2"})],
    "two": [
        ("charge", {"amount": 1, "currency": "USD"}),
        ("charge", {"amount": 2, "currency": "USD"}),
    ],
}


def script(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
    """First the calls the prompt asks for, then a final answer quoting what the tools said."""
    last = messages[-1]
    returns = (
        [p for p in last.parts if isinstance(p, ToolReturnPart)]
        if isinstance(last, ModelRequest)
        else []
    )
    if returns:
        said = {p.tool_call_id: str(p.content) for p in returns}
        return ModelResponse(parts=[TextPart("done: " + json.dumps(said, sort_keys=True))])
    prompt = next(p.content for m in messages if isinstance(m, ModelRequest)
                  for p in m.parts if isinstance(p, UserPromptPart))  # fmt: skip
    parts: list[Any] = [TextPart("The customer was charged twice for order 881")]
    for index, (tool, args) in enumerate(CALLS[str(prompt)]):
        parts.append(ToolCallPart(tool, dict(args), tool_call_id=f"call-{prompt}-{index}"))
    return ModelResponse(parts=parts)


def log(tool: str, **args: Any) -> str:
    with open(os.environ["TOOL_LOG"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"tool": tool, "args": args}, sort_keys=True) + "\n")
    return f"{tool} ran with {json.dumps(args, sort_keys=True)}"


def build(handoff: HandoffAgent) -> tuple[Agent[None, Any], HandoffApprovals]:
    # What a user writes to put tools under Handoff's oversight:
    approvals = HandoffApprovals(
        handoff, actions={"lookup": "db.query", "charge": "payments.charge", "deploy": "deploy.app"}
    )
    agent = Agent(
        FunctionModel(script), output_type=[str, DeferredToolRequests], capabilities=[approvals]
    )

    @agent.tool_plain(requires_approval=True)
    def lookup(query: str) -> str:
        return log("lookup", query=query)

    @agent.tool_plain(requires_approval=True)
    def charge(amount: int, currency: str) -> str:
        return log("charge", amount=amount, currency=currency)

    @agent.tool_plain(requires_approval=True)
    def deploy(app: str, image: str) -> str:
        return log("deploy", app=app, image=image)

    return agent, approvals


async def main() -> None:
    namespace, kubeconfig = os.environ["NAMESPACE"], os.environ["AGENT_KUBECONFIG"]
    async with HandoffAgent(
        namespace, "payments-agent", kubeconfig=kubeconfig, consumer="worker"
    ) as handoff:
        agent, approvals = build(handoff)
        if sys.argv[1] == "run":
            result = await agent.run(sys.argv[2])
            output = result.output
            if isinstance(output, DeferredToolRequests):
                requests = [
                    output.metadata[c.tool_call_id]["handoffRequest"] for c in output.approvals
                ]
                print(json.dumps({"output": None, "requests": requests}), flush=True)
            else:
                print(json.dumps({"output": output, "requests": []}), flush=True)
        else:
            outputs: list[Any] = []
            resumed = await approvals.resume(agent, on_result=lambda r: outputs.append(r.output),
                                             forever=False, block=2)  # fmt: skip
            print(
                json.dumps(
                    {
                        "resumed": resumed,
                        "outputs": [o if isinstance(o, str) else repr(o) for o in outputs],
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    asyncio.run(main())
