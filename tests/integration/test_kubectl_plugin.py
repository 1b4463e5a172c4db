"""kubectl handoff through a pseudo-terminal, as a reviewer types it."""

import sys
from pathlib import Path

import pexpect
import pytest
from handoff.testing.cluster import Cluster, OperatorProcess

from .helpers import apply_ready_policy, file, policy, request, wait_for

pytestmark = pytest.mark.integration
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")


@pytest.fixture
def kubeconfig(cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path) -> str:
    apply_ready_policy(cluster, policy(namespace))
    people = {who: cluster.token(who) for who in ("alice", "bob", "mallory")}
    return str(
        cluster.control_plane.write_kubeconfig(tmp_path / "people.kubeconfig", people, namespace)
    )


def plugin(kubeconfig: str, who: str, *args: str) -> pexpect.spawn:
    return pexpect.spawn(
        PLUGIN, ["--kubeconfig", kubeconfig, "--context", who, *args], encoding="utf-8", timeout=20
    )


def test_interactive_approve_asks_for_each_checklist_item(
    cluster: Cluster, namespace: str, kubeconfig: str
) -> None:
    name = file(cluster, namespace, "payments.charge")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    session = plugin(kubeconfig, "alice", "approve", name)
    session.expect("What        payments-agent proposes payments.charge on test:1")
    session.expect("Why         integration test")
    for item in ("what", "impact", "rollback"):
        session.expect(rf"\[{item}\] .*\? \(yes/no\) ")
        session.sendline("yes")
    session.expect("Comment \\(optional\\): ")
    session.sendline("matches ticket 881")
    session.expect(f"Recorded alice's approval of {name}.")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0
    decided = wait_for(cluster, namespace, name, "decision.reason", "HumanApproved")
    assert decided["status"]["reviews"][0] == {
        "reviewer": "alice", "decision": "Approve",
        "acknowledged": ["what", "impact", "rollback"], "comment": "matches ticket 881",
    }  # fmt: skip


def test_answering_no_approves_nothing(cluster: Cluster, namespace: str, kubeconfig: str) -> None:
    name = file(cluster, namespace, "payments.charge")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    session = plugin(kubeconfig, "bob", "approve", name)
    session.expect(r"\[what\] .*\? \(yes/no\) ")
    session.sendline("yes")
    session.expect(r"\[impact\] .*\? \(yes/no\) ")
    session.sendline("no")
    session.expect("Not approved: every item must be acknowledged.")
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 1
    assert request(cluster, namespace, name)["status"]["reviews"] == []


def test_deny_asks_why_and_refusals_read_as_one_sentence(
    cluster: Cluster, namespace: str, kubeconfig: str
) -> None:
    name = file(cluster, namespace, "payments.charge")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    pending = plugin(kubeconfig, "alice", "pending")
    pending.expect(name)
    pending.expect("4 HITL")
    pending.expect(pexpect.EOF)
    session = plugin(kubeconfig, "bob", "deny", name)
    session.expect("Why deny it\\? ")
    session.sendline("wrong customer")
    session.expect(f"Recorded bob's denial of {name}.")
    session.expect(pexpect.EOF)
    wait_for(cluster, namespace, name, "decision.reason", "HumanDenied")
    late = plugin(kubeconfig, "alice", "approve", name, "--ack", "what,impact,rollback")
    late.expect(f"error: {name} was already decided: Denied \\(HumanDenied\\)")
    late.expect(pexpect.EOF)
    mallory = plugin(kubeconfig, "mallory", "pending")
    mallory.expect(
        'error: mallory may not do this: User "mallory" cannot list resource "actionrequests"'
    )
    mallory.expect(pexpect.EOF)
    log = plugin(kubeconfig, "alice", "log", "--since", "10m")
    log.expect("payments-agent proposes payments.charge on test:1: test payments.charge")
    log.expect("bob denied")
    log.expect(pexpect.EOF)


def test_explain_against_the_cluster(
    cluster: Cluster, namespace: str, kubeconfig: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "request.yaml"
    manifest.write_text(
        "apiVersion: handoff.dev/v1alpha1\nkind: ActionRequest\n"
        f"metadata: {{namespace: {namespace}}}\n"
        "spec: {agent: payments-agent, action: payments.refund, parameters: {amount: 20}, summary: x}\n"
    )
    session = plugin(kubeconfig, "alice", "explain", "-f", str(manifest))
    session.expect(f"policies from the cluster, namespace {namespace}:")
    session.expect("payments: tier 3, HOTL: rule refunds matched payments.refund")
    session.expect("Result: tier 3, HOTL, from payments/refunds")
    session.expect(pexpect.EOF)
