"""`make demo`: one request per tier on the local environment, told in plain sentences.

It needs `handoff dev up` to have run (make demo does that), asks nothing, and leaves the
environment running so you can look around with kubectl afterwards.
"""

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / ".handoff" / "dev" / "env"
KUBECTL = ROOT / ".handoff" / "bin" / "kubectl"
NS = "agents"
PII_WINDOW = (
    "20s"  # the example policy gives PII reads 2m; the demo does not make you wait that long
)
ACK = ["what", "impact", "rollback"]

Status = dict[str, Any]


class Cluster:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, context: str, *args: str, stdin: str | None = None) -> str:
        argv = [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", f"--context={context}", "-n", NS]
        result = subprocess.run(  # noqa: S603 - our own kubectl, arguments built here
            [*argv, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def status(self, name: str) -> Status:
        body = json.loads(self.kubectl("admin", "get", "ar", name, "-o", "json"))
        return dict(body.get("status", {}))

    def wait(self, name: str, done: Callable[[Status], bool], timeout: float = 60) -> Status:
        deadline = time.monotonic() + timeout
        current: Status = {}
        while time.monotonic() < deadline:
            current = self.status(name)
            if done(current):
                return current
            time.sleep(0.25)
        raise SystemExit(f"{name} did not get there in {timeout:.0f}s: {current}")

    def propose(self, action: str, target: str, summary: str, **extra: Any) -> str:
        """File an ActionRequest as the agent's ServiceAccount."""
        spec = {"agent": "payments-agent", "action": action, "target": target, "summary": summary}
        body = {
            "apiVersion": "handoff.dev/v1alpha1",
            "kind": "ActionRequest",
            "metadata": {"generateName": action.replace(".", "-") + "-", "namespace": NS},
            "spec": spec | extra,
        }
        return self.kubectl(
            "payments-agent", "create", "-o", "jsonpath={.metadata.name}", "-f", "-",
            stdin=json.dumps(body),
        )  # fmt: skip


def decided(status: Status) -> bool:
    return "decision" in status


def phase(name: str) -> Callable[[Status], bool]:
    return lambda status: status.get("phase") == name


def apply_policy(cluster: Cluster) -> None:
    say("Applying the example policy policies/payments/policy.yaml, as a platform engineer would.")
    cluster.kubectl("admin", "apply", "-f", str(ROOT / "policies" / "payments" / "policy.yaml"))
    spec = json.loads(cluster.kubectl("admin", "get", "aap", "payments", "-o", "json"))["spec"]
    pii = next(i for i, rule in enumerate(spec["rules"]) if rule["name"] == "pii")
    patch = [{"op": "replace", "path": f"/spec/rules/{pii}/decisionWindow", "value": PII_WINDOW}]
    cluster.kubectl("admin", "patch", "aap", "payments", "--type=json", "-p", json.dumps(patch))
    say(f"  (For the demo, the PII rule's decision window is cut from 2m to {PII_WINDOW}.)")
    ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    for _ in range(120):
        if cluster.kubectl("admin", "get", "aap", "payments", "-o", ready) == "True":
            break
        time.sleep(0.25)
    say("The policy is Ready: the operator compiled its rules and CEL conditions.\n")


def propose_one_per_tier(cluster: Cluster) -> dict[str, str]:
    say("The agent (ServiceAccount payments-agent) proposes five actions.")
    return {
        "read": cluster.propose("db.query", "analytics:orders", "Count yesterday's orders"),
        "edit": cluster.propose(
            "crm.update", "crm:contact/42", "Set contact 42's phone to the one in ticket 77",
            rollback={"description": "Restore the old phone number", "action": "crm.update",
                      "parameters": {"phone": "+1 555 0100"}},
        ),
        "refund": cluster.propose(
            "payments.refund", "stripe:charge/ch_small", "Refund $40 for a late delivery",
            parameters={"amount": 40, "currency": "USD"},
            reasoning="Delivery was 3 days late", blastRadius="$40 leaves the company account",
        ),
        "money": cluster.propose(
            "payments.refund", "stripe:charge/ch_123", "Refund duplicate charge ch_123 of $2,500",
            parameters={"amount": 2500, "currency": "USD"},
            reasoning="The customer was charged twice for order 881",
            blastRadius="$2,500 leaves the company account", confidence=0.92,
            rollback={"description": "Charge the customer again", "action": "payments.charge",
                      "parameters": {"amount": 2500}},
        ),
        "pii": cluster.propose(
            "customer.pii.read", "crm:contact/42", "Read contact 42's home address",
            reasoning="To print a return label",
            blastRadius="One customer's address is exposed to the agent",
        ),
    }  # fmt: skip


def tell_classification(cluster: Cluster, names: dict[str, str]) -> None:
    s = cluster.wait(names["read"], decided)
    say(f"1. Count yesterday's orders (db.query): tier {s['tier']}, {s['oversight']}.")
    say(f"   {s['decision']['outcome']} at once ({s['decision']['reason']}): reads need nobody.")
    s = cluster.wait(names["edit"], decided)
    say(f"2. Update a CRM contact (crm.update): tier {s['tier']}, {s['oversight']}.")
    say(f"   {s['decision']['outcome']}, logged with its rollback ({s['decision']['reason']}).")
    s = cluster.wait(names["refund"], phase("Queued"))
    say(f"3. Refund $40 (payments.refund, amount <= 100): tier {s['tier']}, {s['oversight']}.")
    say(f"   Queued: approved at {s['deadline']} unless a reviewer vetoes it.")
    s = cluster.wait(names["money"], phase("AwaitingApproval"))
    say(f"4. Refund $2,500 through Stripe: tier {s['tier']}, {s['oversight']}.")
    say(f"   Waits for {s['requiredApprovals']} approval by {s['deadline']}, else Denied.")
    s = cluster.wait(names["pii"], phase("AwaitingApproval"))
    say(f"5. Read a customer's address (customer.pii.read): tier {s['tier']}, {s['oversight']}.")
    say(f"   Waits until {s['deadline']}.\n")


def approve_as_alice(cluster: Cluster, name: str) -> None:
    say("alice (group payments-approvers) approves the $2,500 refund with a status patch:")
    review = {
        "reviewer": "alice",
        "decision": "Approve",
        "acknowledged": ACK,
        "comment": "ticket 881",
    }
    line = json.dumps([{"op": "add", "path": "/status/reviews/-", "value": review}])
    say(f"  kubectl --context alice -n agents patch actionrequest {name} \\")
    say(f"    --subresource=status --type=json -p '{line}'")
    cluster.kubectl("alice", "patch", "actionrequest", name, "--subresource=status",
                    "--type=json", "-p", line)  # fmt: skip
    s = cluster.wait(name, decided)
    by = ", ".join(s["decision"]["by"])
    say(f"  -> {s['decision']['outcome']} ({s['decision']['reason']}), by {by}.\n")


def let_expire(cluster: Cluster, name: str) -> None:
    say(f"Nobody answers the PII request. Its window closes at {cluster.status(name)['deadline']}.")
    s = cluster.wait(name, decided, timeout=90)
    decision = s["decision"]
    say(f"  -> {decision['outcome']} ({decision['reason']}): {decision['message']}.\n")


def main() -> int:
    if not ENV.exists():
        say("The local environment is not running: run 'make demo' (or 'handoff dev up') first.")
        return 1
    env = dict(line.split("=", 1) for line in ENV.read_text().splitlines() if "=" in line)
    cluster = Cluster(env["KUBECONFIG"])
    apply_policy(cluster)
    names = propose_one_per_tier(cluster)
    tell_classification(cluster, names)
    approve_as_alice(cluster, names["money"])
    let_expire(cluster, names["pii"])
    say("What the cluster shows (kubectl get actionrequests):")
    say(cluster.kubectl("admin", "get", "actionrequests"))
    say("The environment is still running. Look around with:")
    say(f"  export KUBECONFIG={env['KUBECONFIG']}")
    say(f"  kubectl -n agents get ar,aap; kubectl -n agents describe ar {names['money']}")
    say("Stop it with: make dev-down   (or .venv/bin/handoff dev down)")
    return 0


def say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
