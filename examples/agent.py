"""A small agent that uses Handoff, with a scripted planner instead of an LLM.

    python examples/agent.py propose   # plan, propose one action per tier, save state, exit
    python examples/agent.py resume    # start again later: act on each decision as it lands

It runs as the ServiceAccount payments-agent (the `payments-agent` context of the local
environment's kubeconfig) and finds its own Redis credentials in the Secret the operator made.
"""

import argparse
import asyncio
import os
import sys
import time
from typing import Any

from handoff import paths
from handoff.sdk import Agent, Decision, HandoffError

NAMESPACE = "agents"
NAME = "payments-agent"


def plan() -> list[dict[str, Any]]:
    """What a real agent's model would produce for 'customer 42 was charged twice'."""
    return [
        {"action": "db.query", "target": "analytics:orders", "summary": "Find customer 42's charges",
         "parameters": {"customer": 42}, "reasoning": "To confirm the duplicate charge", "confidence": 0.98},
        {"action": "crm.update", "target": "crm:contact/42", "summary": "Note the duplicate charge on the contact",
         "parameters": {"note": "duplicate charge ch_123"}, "reasoning": "So support sees it",
         "rollback": {"description": "Remove the note", "action": "crm.update", "parameters": {"note": None}},
         "confidence": 0.95},
        {"action": "payments.refund", "target": "stripe:charge/ch_small", "summary": "Refund the $40 delivery fee",
         "parameters": {"amount": 40, "currency": "USD"}, "reasoning": "Delivery was three days late",
         "blast_radius": "$40 leaves the company account", "confidence": 0.9},
        {"action": "payments.refund", "target": "stripe:charge/ch_123",
         "summary": "Refund the duplicate charge ch_123 of $2,500",
         "parameters": {"amount": 2500, "currency": "USD"},
         "reasoning": "The customer was charged twice for order 881",
         "blast_radius": "$2,500 leaves the company account",
         "rollback": {"description": "Charge the customer again", "action": "payments.charge",
                      "parameters": {"amount": 2500}},
         "confidence": 0.92},
        {"action": "customer.pii.read", "target": "crm:contact/42", "summary": "Read customer 42's home address",
         "reasoning": "To mail a written apology", "blast_radius": "One customer's address is exposed",
         "confidence": 0.6},
    ]  # fmt: skip


def agent(kubeconfig: str) -> Agent:
    return Agent(NAMESPACE, NAME, kubeconfig=kubeconfig, context=NAME, consumer="example-agent")


async def propose(kubeconfig: str, run: str) -> None:
    memory = ["The customer wrote: 'I was charged twice for order 881'"]
    async with agent(kubeconfig) as me:
        for step, proposal in enumerate(plan(), start=1):
            memory.append(f"step {step}: proposing {proposal['action']}")
            state = {"task": "resolve ticket 881", "step": step, "memory": list(memory)}
            ticket = await me.propose(
                **proposal, state=state, idempotency_key=f"ticket-881-{run}-step-{step}"
            )
            if ticket.decision:
                verdict = f"{ticket.decision['outcome']} at once ({ticket.decision['reason']})"
            else:
                verdict = f"{ticket.phase} until {ticket.deadline}; my state is saved"
            print(
                f"  step {step}: {proposal['action']} -> tier {ticket.tier}, {verdict}", flush=True
            )
    print("  The agent process exits now. Its working state waits in Redis.", flush=True)


async def resume(kubeconfig: str, idle: float) -> None:
    async def act(decision: Decision) -> str | None:
        state = decision.state or {}
        where = (
            f"step {state.get('step')} of '{state.get('task')}'"
            if state
            else "a rollback Handoff filed"
        )
        if not decision.approved:
            print(
                f"  {decision.action}: {decision.outcome} ({decision.reason}) -> {where} ends here",
                flush=True,
            )
            return None
        who = f" by {', '.join(decision.by)}" if decision.by else ""
        print(f"  {decision.action}: {decision.reason}{who} -> resuming {where}, "
              f"remembering {len(state.get('memory', []))} notes; done", flush=True)  # fmt: skip
        return f"{decision.action} carried out by the example agent"

    async with agent(kubeconfig) as me:
        handled = await me.resume(act, forever=False, block=idle)
    print(f"  {handled} decisions handled; nothing more arrived for {idle:.0f}s.", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["propose", "resume"])
    parser.add_argument(
        "--kubeconfig", default=os.environ.get("KUBECONFIG", str(paths.dev_dir() / "kubeconfig"))
    )
    parser.add_argument(
        "--idle", type=float, default=5, help="resume: stop after this long with nothing new"
    )
    parser.add_argument(
        "--run", default=str(int(time.time())), help="propose: names this run's proposals"
    )
    args = parser.parse_args()
    try:
        if args.mode == "propose":
            asyncio.run(propose(args.kubeconfig, args.run))
        else:
            asyncio.run(resume(args.kubeconfig, args.idle))
    except HandoffError as e:  # the SDK's errors say what happened and what to do
        print(f"example agent ({args.mode}): {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"example agent ({args.mode}): interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
