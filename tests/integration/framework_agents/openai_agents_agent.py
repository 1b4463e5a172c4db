"""An OpenAI Agents SDK agent with the SDK's ScriptedModel, run as its own process by the tests.

    python openai_agents_agent.py run PROMPT THREAD   # prints {"output": ..., "requests": [...]}
    python openai_agents_agent.py resume              # the resume worker until the stream is quiet

Environment: NAMESPACE, AGENT_KUBECONFIG, TOOL_LOG. Prompts as in pydantic_ai_agent.py: lookup
(tier 1), charge (tier 4), deploy (tier 4, 10 s), two.
"""

import asyncio
import json
import os
import sys
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from handoff.integrations.openai_agents import HandoffApprovals
from handoff.sdk import Agent as HandoffAgent

CALLS = {
    "lookup": [("lookup", {"query": "orders of ch_123"})],
    "charge": [("charge", {"amount": 5, "currency": "USD"})],
    "deploy": [("deploy", {"app": "web", "image": "web:2"})],
    "two": [
        ("charge", {"amount": 1, "currency": "USD"}),
        ("charge", {"amount": 2, "currency": "USD"}),
    ],
}


def respond(call: ModelCall) -> Any:
    """First the calls the prompt asks for, then a final answer quoting what the tools said."""
    items = (
        call.input if isinstance(call.input, list) else [{"role": "user", "content": call.input}]
    )
    outputs = {
        i["call_id"]: str(i["output"])
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    }
    if outputs:
        return [assistant_message("done: " + json.dumps(outputs, sort_keys=True))]
    prompt = next(
        str(i["content"]) for i in items if isinstance(i, dict) and i.get("role") == "user"
    )
    why = {
        "reasoning_for_reviewer": "The customer was charged twice for order 881"
    }  # Handoff's field
    return [
        function_call(tool, args | why, call_id=f"call-{prompt}-{index}")
        for index, (tool, args) in enumerate(CALLS[prompt])
    ]


def log(name: str, **args: Any) -> str:
    with open(os.environ["TOOL_LOG"], "a", encoding="utf-8") as out:
        out.write(json.dumps({"tool": name, "args": args}, sort_keys=True) + "\n")
    return f"{name} ran with {json.dumps(args, sort_keys=True)}"


def build(handoff: HandoffAgent) -> tuple[Agent[Any], HandoffApprovals]:
    # What a user writes to put tools under Handoff's oversight:
    approvals = HandoffApprovals(
        handoff, actions={"lookup": "db.query", "charge": "payments.charge", "deploy": "deploy.app"}
    )

    @approvals.oversee
    @function_tool
    def lookup(query: str) -> str:
        """Look orders up."""
        return log("lookup", query=query)

    @approvals.oversee
    @function_tool
    def charge(amount: int, currency: str) -> str:
        """Charge the customer."""
        return log("charge", amount=amount, currency=currency)

    @approvals.oversee
    @function_tool
    def deploy(app: str, image: str) -> str:
        """Deploy an image."""
        return log("deploy", app=app, image=image)

    model = ScriptedModel([ModelStep.respond(respond) for _ in range(8)])
    return Agent(name="support", model=model, tools=[lookup, charge, deploy]), approvals


async def main() -> None:
    set_tracing_disabled(True)  # no network: traces would go to OpenAI
    namespace, kubeconfig = os.environ["NAMESPACE"], os.environ["AGENT_KUBECONFIG"]
    async with HandoffAgent(
        namespace, "payments-agent", kubeconfig=kubeconfig, consumer="worker"
    ) as handoff:
        agent, approvals = build(handoff)
        if sys.argv[1] == "run":
            result = await approvals.run(agent, sys.argv[2])
            if result.interruptions:
                waiting = approvals.requests(result)
                print(
                    json.dumps({"output": None, "requests": [waiting[c] for c in sorted(waiting)]}),
                    flush=True,
                )
            else:
                print(json.dumps({"output": str(result.final_output), "requests": []}), flush=True)
        else:
            outputs: list[str] = []
            resumed = await approvals.resume(agent, on_result=lambda r: outputs.append(str(r.final_output)),
                                             forever=False, block=2)  # fmt: skip
            print(json.dumps({"resumed": resumed, "outputs": outputs}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
