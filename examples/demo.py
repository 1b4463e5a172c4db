"""`make demo`: the example agent proposes one action per tier, pauses, and resumes when people
decide, told in plain sentences. It needs `handoff dev up` (make demo runs it), asks nothing, and
leaves the environment running so you can look around with kubectl and the console afterwards:
it ends with the way on (a one-time sign-in link for alice, the commands to try, how to stop).
"""

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from handoff import paths
from handoff.sdk.agent import request_name

ROOT = Path(__file__).resolve().parents[1]
ENV = paths.dev_dir() / "env"
KUBECTL = paths.bin_dir() / "kubectl"
BIN = Path(sys.executable).parent  # handoff and kubectl-handoff, installed beside this Python
START = "run 'make demo' (or '.venv/bin/handoff dev up') first"
NS = "agents"
PII_WINDOW = (
    "20s"  # the example policy gives PII reads 2m; the demo does not make you wait that long
)
ACK = ["what", "impact", "rollback"]

Status = dict[str, Any]


class Cluster:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig

    def kubectl(self, context: str, *args: str) -> str:
        argv = [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", f"--context={context}", "-n", NS]
        result = subprocess.run(  # noqa: S603 - our own kubectl, arguments built here
            [*argv, *args], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise SystemExit(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result.stdout

    def ready(self) -> bool:
        """Does the environment's API server answer?"""
        argv = [str(KUBECTL), f"--kubeconfig={self.kubeconfig}", "--context=admin",
                "--request-timeout=5s", "get", "--raw", "/readyz"]  # fmt: skip
        result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        return result.returncode == 0

    def status(self, name: str) -> Status:
        body = json.loads(self.kubectl("admin", "get", "ar", name, "-o", "json"))
        return dict(body.get("status", {}))

    def wait(
        self, name: str, done: Callable[[Status], bool], timeout: float = 60, every: float = 0
    ) -> Status:
        """Poll until ``done``; with ``every``, say every so many seconds that it still waits."""
        start = time.monotonic()
        told = start
        current: Status = {}
        while time.monotonic() < start + timeout:
            current = self.status(name)
            if done(current):
                return current
            if every and time.monotonic() - told >= every:
                told = time.monotonic()
                say(f"   ... still waiting ({told - start:.0f}s)")
            time.sleep(0.25)
        raise SystemExit(
            f"{name} did not get there in {timeout:.0f}s (its status: {current}); the operator's"
            f" log is {paths.dev_dir() / 'operator.log'}"
        )


def agent(mode: str, *args: str) -> None:
    """Run the example agent as its own process, as it would run in its own pod."""
    result = subprocess.run(  # noqa: S603 - our own example, arguments built here
        [sys.executable, str(ROOT / "examples" / "agent.py"), mode, *args], check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"The demo stops: the example agent ({mode}) failed; it said why above.")


def apply_policy(cluster: Cluster) -> None:
    say("1. A platform engineer applies the example policy policies/payments/policy.yaml.")
    cluster.kubectl("admin", "apply", "-f", str(ROOT / "policies" / "payments" / "policy.yaml"))
    spec = json.loads(cluster.kubectl("admin", "get", "aap", "payments", "-o", "json"))["spec"]
    pii = next(i for i, rule in enumerate(spec["rules"]) if rule["name"] == "pii")
    patch = [{"op": "replace", "path": f"/spec/rules/{pii}/decisionWindow", "value": PII_WINDOW}]
    cluster.kubectl("admin", "patch", "aap", "payments", "--type=json", "-p", json.dumps(patch))
    ready = "jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    for _ in range(120):
        if cluster.kubectl("admin", "get", "aap", "payments", "-o", ready) == "True":
            break
        time.sleep(0.25)
    say(f"   Ready: rules and CEL compiled. (For the demo, PII reads get {PII_WINDOW}, not 2m.)\n")


def approve_as_alice(cluster: Cluster, name: str) -> None:
    say("3. alice (group payments-approvers) reads the handoff package and approves the $2,500")
    say("   refund with the contract's status patch, acknowledging each checklist item:")
    review = {
        "reviewer": "alice",
        "decision": "Approve",
        "acknowledged": ACK,
        "comment": "ticket 881",
    }
    line = json.dumps([{"op": "add", "path": "/status/reviews/-", "value": review}])
    say(f"   kubectl --context alice -n agents patch actionrequest {name} \\")
    say(f"     --subresource=status --type=json -p '{line}'")
    cluster.kubectl("alice", "patch", "actionrequest", name, "--subresource=status",
                    "--type=json", "-p", line)  # fmt: skip
    s = cluster.wait(name, lambda s: "decision" in s)
    say(f"   -> {s['decision']['outcome']} ({s['decision']['reason']}).\n")


def let_expire(cluster: Cluster, name: str) -> None:
    deadline = cluster.status(name)["deadline"]
    say(f"4. Nobody answers the PII request. Its window closes at {deadline}; waiting...")
    s = cluster.wait(name, lambda s: "decision" in s, timeout=90, every=5)
    say(f"   -> {s['decision']['outcome']} ({s['decision']['reason']}): it failed safe.\n")


def main() -> int:
    try:
        return tour()
    except KeyboardInterrupt:
        say("\nThe demo stopped. The environment still runs: 'make dev-down' stops it.")
        return 130


def tour() -> int:
    lines = ENV.read_text().splitlines() if ENV.exists() else []
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    if "KUBECONFIG" not in env or not Cluster(env["KUBECONFIG"]).ready():
        say(f"The local environment in {ENV.parent} is not running: {START}.")
        return 1
    if "REDIS_URL" not in env:
        say(f"The local environment runs without Redis, which the example agent needs: {START}.")
        return 1
    cluster = Cluster(env["KUBECONFIG"])
    run = str(int(time.time()))
    apply_policy(cluster)
    say(
        "2. The example agent (ServiceAccount payments-agent) plans five actions and proposes them:"
    )
    agent("propose", "--run", run)
    names = {
        step: request_name(action, NS, "payments-agent", f"ticket-881-{run}-step-{step}")
        for step, action in ((4, "payments.refund"), (5, "customer.pii.read"))
    }
    say("")
    approve_as_alice(cluster, names[4])
    let_expire(cluster, names[5])
    say("5. The agent starts again. Each decision arrives with the state it saved; it carries on:")
    agent("resume", "--idle", "3")
    crm = request_name("crm.update", NS, "payments-agent", f"ticket-881-{run}-step-2")
    say("\n6. alice decides the CRM note was wrong and rolls it back from her terminal:")
    say(f"   kubectl handoff rollback {crm} --comment 'wrong contact'")
    rolled = subprocess.run(  # noqa: S603 - our own plugin, arguments built here
        [str(BIN / "kubectl-handoff"), f"--kubeconfig={env['KUBECONFIG']}", "--context=alice",
         "-n", NS, "rollback", crm, "--comment", "wrong contact"],
        check=False,
    )  # fmt: skip
    if rolled.returncode != 0:
        raise SystemExit("The demo stops: kubectl handoff rollback failed; it said why above.")
    cluster.wait(crm, lambda s: bool((s.get("rollback") or {}).get("request")))
    say("   Handoff files the rollback plan as a new request through the same policy; the agent")
    say("   carries it out like any other decision:")
    agent("resume", "--idle", "3")
    s = cluster.wait(crm, lambda s: s.get("phase") == "RolledBack")
    say(f"   -> {crm} is {s['phase']} ({s['rollback']['message']}).")
    say("\nWhat the cluster shows (kubectl get actionrequests):")
    say(cluster.kubectl("admin", "get", "actionrequests", "-l", "handoff.dev/agent=payments-agent",
                        "--sort-by=.metadata.creationTimestamp"))  # fmt: skip
    say("The $40 refund (tier 3) stays Queued until its 5-minute veto window passes.")
    way_on(env, names[4])
    return 0


def way_on(env: dict[str, str], refund: str) -> None:
    """Where to go from here: the console as alice, the terminal, and how to stop."""
    link = subprocess.run(  # noqa: S603 - our own command line
        [str(BIN / "handoff"), "dev", "login", "alice", "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    say("\nThe environment is still running. The way on:")
    say(f"  Console   {env.get('CONSOLE_URL', '(not running)')}")
    if link.returncode == 0:
        say(f"            sign in as alice (once, within 5 minutes): {link.stdout.strip()}")
    else:
        say(f"            (no sign-in link: {link.stderr.strip()})")
    say("            a new link any time: handoff dev login alice   (or bob, carol, mallory)")
    say(f"  Terminal  export KUBECONFIG={env['KUBECONFIG']}")
    say(f"            export PATH={paths.bin_dir()}:{BIN}:$PATH")
    say("            kubectl -n agents get ar,aap")
    say(f"            kubectl -n agents describe ar {refund}")
    say("            kubectl handoff pending                      # what waits for a reviewer")
    say("            kubectl handoff --context alice log          # the story, as sentences")
    say("  Docs      README.md (a five-minute tour), docs/reviewing.md, docs/async-handoff.md")
    say("  Stop      make dev-down   (or .venv/bin/handoff dev down)")


def say(text: str) -> None:
    print(text, flush=True)


if __name__ == "__main__":
    sys.exit(main())
