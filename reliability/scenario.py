"""What the load is made of: the policy, the plans each request is built to follow, the rate.

The checker reads this scenario back from ``scenario.json`` (never this module's logic), so the
expectations it derives come from what the harness meant to do, not from the operator's code.
"""

from dataclasses import dataclass
from typing import Any

from reliability.attacks import hostile_json

AGENTS = ("agent-a", "agent-b", "agent-c")
REVIEWERS = ("alice", "bob")  # of the group payments-approvers: the policy's reviewers
CHECKLIST = ("what", "impact", "rollback")
HOLD_S = 15  # tier 3 HOTL hold
WINDOW_S = 20  # tier 4 decision window
EXPIRY_BOUND_S = 5  # an expiry or hold decision at most this long after its deadline
# ... unless the deadline fell while the operator could not act (killed, no leader, API server
# away) or in the catch-up after it: then at most this long after the harness saw a replica lead
# again. A new leader first starts (about 2 s), then lists every request and re-checks what each
# has published before the expiries it finds overdue are done: 4 to 8 s more at this load on
# 2 cores (measured; see docs/reliability.md).
CATCH_UP_S = 15


@dataclass(frozen=True)
class Plan:
    """A kind of request: the action that makes it hit ``rule``, and what reviewers will do."""

    action: str
    tier: int
    rule: str
    oversight: str
    window_s: int
    weight: int
    intended: str  # the decision reason the plan aims at (faults may change it legitimately)
    rollback: bool = False
    parameters: dict[str, Any] | None = None
    then: str = ""  # the phase the request ends in after its decision, if a reviewer acts later


PLANS: dict[str, Plan] = {
    # tier 1 and 2: decided at once
    "auto": Plan("db.query", 1, "reads", "HOOTL", 0, 25, "AutoApproved"),
    "retry": Plan(
        "db.query", 1, "reads", "HOOTL", 0, 3, "AutoApproved"
    ),  # proposed twice, same key
    "logged": Plan("crm.update", 2, "edits", "HOTL", 0, 14, "Logged", rollback=True),
    # ... then alice rolls it back: the operator files <name>-rollback (which the hostile agent
    # tried to take first), the agent carries it out, and the original becomes RolledBack
    "rollback": Plan(
        "crm.update", 2, "edits", "HOTL", 0, 3, "Logged", rollback=True, then="RolledBack"
    ),
    # tier 3 HOTL: runs unless vetoed within the hold
    "hold": Plan(
        "payments.refund", 3, "refunds", "HOTL", HOLD_S, 10, "NotVetoed", parameters={"amount": 50}
    ),
    "veto": Plan(
        "payments.refund", 3, "refunds", "HOTL", HOLD_S, 6, "Vetoed", parameters={"amount": 80}
    ),
    # tier 4 HITL
    "approve": Plan("deploy.web", 4, "deploys", "HITL", WINDOW_S, 14, "HumanApproved"),
    "deny": Plan("deploy.db", 4, "deploys", "HITL", WINDOW_S, 8, "HumanDenied"),
    "expire": Plan("deploy.cache", 4, "deploys", "HITL", WINDOW_S, 8, "Expired"),
    "late-approve": Plan("deploy.api", 4, "deploys", "HITL", WINDOW_S, 4, "Expired"),
    "gauntlet": Plan("deploy.queue", 4, "deploys", "HITL", WINDOW_S, 5, "HumanApproved"),
}

#: The bad inputs the load tries; each must be refused (or, for the unacknowledged approval,
#: recorded but not counted).
BAD_INPUTS = (
    "review by a user with no rights (mallory)",
    "review by a user who is no reviewer of the policy (carol)",
    "the agent writing a review of its own request",
    "a Deny without a comment",
    "an Approve that skips the checklist",
    "a review after the decision",
    "an Approve after the deadline",
)


def policy(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "AgentActionPolicy",
        "metadata": {"name": "reliability", "namespace": namespace},
        "spec": {
            "agents": {"serviceAccounts": list(AGENTS)},
            "reviewers": {"groups": ["payments-approvers"]},
            "defaultTier": 4,
            "tiers": {
                "tier3": {"oversight": "HOTL", "holdFor": f"{HOLD_S}s", "decisionWindow": "60s"},
                "tier4": {
                    "decisionWindow": f"{WINDOW_S}s",
                    "approvals": 1,
                    "checklist": [{"id": c, "text": f"I checked {c}"} for c in CHECKLIST],
                },
            },
            "rules": [
                {"name": "reads", "actions": ["db.query"], "tier": 1},
                {"name": "edits", "actions": ["crm.update"], "tier": 2},
                {
                    "name": "refunds",
                    "actions": ["payments.refund"],
                    "when": "parameters.amount <= 100",
                    "tier": 3,
                },
                {"name": "deploys", "actions": ["deploy.*"], "tier": 4},
            ],
        },
    }


def scenario_json(namespace: str, rate: float, seconds: float, elsewhere: str) -> dict[str, Any]:
    """What the checker derives its expectations from; ``elsewhere``: the victims' namespace."""
    return {
        "namespace": namespace,
        "agents": list(AGENTS),
        "rate_per_s": rate,
        "load_seconds": seconds,
        "expiry_bound_s": EXPIRY_BOUND_S,
        "catch_up_s": CATCH_UP_S,
        "reviewers": list(REVIEWERS),
        "checklist": list(CHECKLIST),
        "bad_inputs": list(BAD_INPUTS),
        "hostile": hostile_json(namespace, elsewhere),
        "plans": {
            name: {
                "action": p.action,
                "tier": p.tier,
                "rule": p.rule,
                "oversight": p.oversight,
                "window_s": p.window_s,
                "weight": p.weight,
                "intended": p.intended,
                "then": p.then,
            }
            for name, p in PLANS.items()
        },
    }
