"""An OpenAI Agents SDK agent whose refunds wait for a person in Handoff; no API key (the SDK's
ScriptedModel), no tracing.

    make dev-up && kubectl --context admin apply -f policies/payments/policy.yaml
    python examples/openai_agents_approvals.py run      # looks up the order (tier 1, runs), asks
                                                        # for a $2,500 refund (tier 4), exits
    kubectl handoff approve <name>                      # or deny it, with a comment
    python examples/openai_agents_approvals.py resume   # the run goes on with the decision

Needs the extra: pip install 'kube-handoff[openai-agents]'.
"""

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from agents import Agent, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from handoff.integrations.openai_agents import HandoffApprovals
from handoff.sdk import Agent as HandoffAgent
from handoff.sdk import HandoffError

KUBECONFIG = os.environ.get(
    "KUBECONFIG", str(Path(__file__).resolve().parents[1] / ".handoff/dev/kubeconfig")
)


def model(call: ModelCall) -> Any:
    """What a real model would do: look the order up, then ask for the refund, then answer."""
    items = call.input if isinstance(call.input, list) else []
    done = [
        str(i["output"])
        for i in items
        if isinstance(i, dict) and i.get("type") == "function_call_output"
    ]
    if not done:
        return [
            function_call(
                "find_charges",
                {"order": 881, "reasoning_for_reviewer": "First I check the orders."},
                call_id="c1",
            )
        ]
    if len(done) == 1:
        why = "Order 881 was charged twice (ch_123 and ch_124): refund the duplicate."
        return [
            function_call(
                "refund",
                {"charge": "ch_124", "amount": 2500, "reasoning_for_reviewer": why},
                call_id="c2",
            )
        ]
    return [assistant_message(f"Finished: {done[-1]}")]


def build(handoff: HandoffAgent) -> tuple[Agent[Any], HandoffApprovals]:
    approvals = HandoffApprovals(
        handoff,
        actions={"find_charges": "db.query", "refund": "payments.refund"},
        describe={"refund": lambda a: {"target": f"stripe:charge/{a['charge']}",
                                       "blast_radius": f"${a['amount']:,} leaves the company account"}},
    )  # fmt: skip

    @approvals.oversee
    @function_tool
    def find_charges(order: int) -> str:
        """The charges of an order."""
        return f"order {order}: charges ch_123 and ch_124, $2,500 each"

    @approvals.oversee
    @function_tool
    def refund(charge: str, amount: int) -> str:
        """Refund a charge."""
        return f"refunded ${amount:,} of {charge}"

    scripted = ScriptedModel([ModelStep.respond(model) for _ in range(6)])
    return Agent(name="support", model=scripted, tools=[find_charges, refund]), approvals


async def main(mode: str) -> None:
    set_tracing_disabled(True)  # no network: traces would go to OpenAI
    namespace = os.environ.get("HANDOFF_NAMESPACE", "agents")
    async with HandoffAgent(
        namespace, "payments-agent", kubeconfig=KUBECONFIG, context="payments-agent"
    ) as handoff:
        agent, approvals = build(handoff)
        if mode == "run":
            result = await approvals.run(agent, "Customer 42 says order 881 was charged twice.")
            waiting = approvals.requests(result)
            for item in result.interruptions:
                arguments = {
                    k: v
                    for k, v in json.loads(item.arguments or "{}").items()
                    if k != "reasoning_for_reviewer"
                }
                print(
                    f"waiting for a person: {item.name}({arguments}) is {waiting.get(str(item.call_id))}"
                )
            if result.interruptions:
                print("the process exits now; run 'resume' after a decision")
            else:
                print(result.final_output)
        else:
            resumed = await approvals.resume(
                agent, on_result=lambda r: print(r.final_output), forever=False, block=5
            )
            print(f"{resumed} paused run(s) resumed")


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "run"))
    except HandoffError as e:
        sys.exit(f"openai_agents_approvals: {e}")
