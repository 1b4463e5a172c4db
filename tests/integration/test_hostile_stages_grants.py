"""Approval stages and standing grants attacked, on the real control plane and operator: a hostile
agent (its ServiceAccount: kubectl on requests and grants) and hostile or careless reviewers
(a grant that skips a stage or a second approver, a grant from an approval that never counted,
a grant covering its author's own request, a grant outliving its author's right, revoking
another policy's grants), and what reviewers read (``kubectl handoff log`` tells the grants,
``pending`` shows no more than ``kubectl get``). docs/threat-model.md, rows 50 to 59."""

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .grant_helpers import GRANTED, RULES, WAITS, grant_document, phase_of, refund_request
from .helpers import AGENT, apply_ready_policy, events, policy, request, review, wait_for

pytestmark = pytest.mark.integration
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")
ACK = ["what", "impact", "rollback"]


def _refused(cluster: Cluster, ns: str, name: str) -> str:
    return str(
        eventually(
            lambda: cluster.get("actiongrant", name, ns).get("status", {}).get("refused"),
            what=f"grant {name} refused",
        )
    )


def _plugin(kubeconfig: Path, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLUGIN, "--kubeconfig", str(kubeconfig), "--context", who, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def _waiting(cluster: Cluster, ns: str, amount: int = 50) -> str:
    name = refund_request(cluster, ns, amount)
    assert phase_of(cluster, ns, name) == WAITS
    return name


def test_the_agent_touches_no_grant_nor_its_own_request(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Held: RBAC and admission (rows 1, 8): an agent creates, lists, patches, deletes no grant
    and changes nothing of its request that a grant or a stage reads."""
    ns, agent = namespace, f"{namespace}/{AGENT}"
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    first = _waiting(cluster, ns)
    cluster.create(grant_document(ns, first, who="admin"), who="admin")  # a grant to aim at
    me = f"system:serviceaccount:{ns}:{AGENT}"
    forged = grant_document(ns, first, "mine", who=me)
    for args in (
        ("create", "-f", "-"),
        ("get", "actiongrants"),
        ("delete", "actiongrant", "g"),
        ("patch", "actiongrant", "g", "--type=merge", "-p", '{"metadata":{"labels":{"a":"b"}}}'),
        ("patch", "actiongrant", "g", "--subresource=status", "--type=merge",
         "-p", '{"status":{"used":0}}'),
        ("patch", "actionrequest", first, "--type=merge",
         "-p", '{"metadata":{"labels":{"handoff.dev/agent":"x"}}}'),
        ("patch", "actionrequest", first, "--type=merge",
         "-p", '{"metadata":{"annotations":{"handoff.dev/requested-by":"alice"}}}'),
        ("patch", "actionrequest", first, "--type=merge", "-p", '{"spec":{"target":"x"}}'),
        ("patch", "actionrequest", first, "--subresource=status", "--type=merge",
         "-p", '{"status":{"rule":"reads","stage":"finance"}}'),
        ("delete", "actionrequest", first),
    ):  # fmt: skip
        attempt = cluster.kubectl(*args, "-n", ns, who=agent, check=False,
                                  input=json.dumps(forged))  # fmt: skip
        assert attempt.returncode != 0, args
        assert "forbidden" in attempt.stderr.lower(), attempt.stderr
    # A review as itself (approving its own request, or forging decision.by) is refused too.
    for entry in ({"reviewer": me, "decision": "Approve", "acknowledged": ACK},
                  {"decision": {"outcome": "Approved", "by": ["alice", "actiongrant/g"]}}):  # fmt: skip
        patch = json.dumps([{"op": "add", "path": "/status/reviews/-", "value": entry}])
        attempt = cluster.kubectl("patch", "ar", first, "-n", ns, "--subresource=status",
                                  "--type=json", "-p", patch, who=agent, check=False)  # fmt: skip
        assert attempt.returncode != 0
    assert request(cluster, ns, first)["status"]["phase"] == "AwaitingApproval"


def test_a_grant_never_skips_an_approval_stage(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Got through: a grantable rule under a staged lane. alice approved stage manager of one
    request, granted, and the next requests were approved at once: neither manager nor finance
    (carol) saw them. A grant is one person's approval: it never covers a staged request."""
    ns = namespace
    stages = [
        {"name": "manager", "reviewers": {"users": ["alice", "bob"]}},
        {"name": "finance", "reviewers": {"users": ["carol"]}},
    ]
    tiers = {"tier4": {"decisionWindow": "5m", "stages": stages}}
    apply_ready_policy(cluster, policy(ns, tiers=tiers, rules=RULES))
    first = refund_request(cluster, ns, 50)
    wait_for(cluster, ns, first, "stage", "manager")
    assert review(cluster, ns, first, "alice", stage="manager").returncode == 0
    cluster.create(
        grant_document(ns, first, uses=3), who="alice"
    )  # alice holds approve on payments
    wait_for(cluster, ns, first, "stage", "finance")
    skipped = refund_request(cluster, ns, 10)
    assert phase_of(cluster, ns, skipped) == WAITS
    assert request(cluster, ns, skipped)["status"]["stage"] == "manager"
    # Even once carol approves finance (alice counted in a stage that was not the last).
    ack = ["what", "impact", "rollback"]
    assert review(cluster, ns, first, "carol", stage="finance", acknowledged=ack).returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanApproved")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    assert "is approved in stages (manager, finance)" in _refused(cluster, ns, "g")
    assert "used" not in cluster.get("actiongrant", "g", ns)["status"]


def test_one_approval_of_two_makes_no_grant(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """Got through: with a lane that needs two approvals, alice (one of them) granted, and the
    next requests were approved by her alone. A grant never covers what takes two people."""
    ns = namespace
    tiers = {"tier4": {"decisionWindow": "5m", "approvals": 2}}
    apply_ready_policy(cluster, policy(ns, tiers=tiers, rules=RULES))
    first = _waiting(cluster, ns)
    assert review(cluster, ns, first, "alice").returncode == 0
    cluster.create(grant_document(ns, first), who="alice")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    assert f"{first} needs 2 approvals: a grant is one person's approval" in _refused(
        cluster, ns, "g"
    )
    # bob's second approval decides the prompt; still no grant covers what takes two.
    assert review(cluster, ns, first, "bob").returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanApproved")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    # From the terminal, the grant is not even made, and the reviewer is told why.
    kubeconfig = cluster.control_plane.write_kubeconfig(
        tmp_path / "k", {"alice": cluster.token("alice")}, ns
    )
    third = _waiting(cluster, ns)
    done = _plugin(kubeconfig, "alice", "approve", third, "--ack", ",".join(ACK), "--grant", "10m")
    assert done.returncode == 1
    assert (
        f"The approval is recorded, but the grant was not made: {third} needs 2 approvals: a"
        " grant is one person's approval"
    ) in " ".join(done.stdout.split())


def test_an_approval_that_did_not_count_makes_no_grant(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Got through: alice appended an Approve without acknowledging the checklist (it does not
    count: the request still waited), granted, and the grant covered the next requests. The
    grant now covers nothing until its prompt is decided by an approval of its author that
    counted; if it is decided otherwise, the grant is refused for good."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    first = _waiting(cluster, ns)
    assert review(cluster, ns, first, "alice", acknowledged=[]).returncode == 0
    cluster.create(grant_document(ns, first, uses=3), who="alice")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    grant = cluster.get("actiongrant", "g", ns)
    assert "refused" not in grant.get("status", {})  # its prompt may still be approved
    assert request(cluster, ns, first)["status"]["phase"] == "AwaitingApproval"
    assert review(cluster, ns, first, "bob", "Deny", comment="not owed").returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanDenied")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    refusal = _refused(cluster, ns, "g")
    assert f"alice's approval did not decide {first} (it was decided Denied, HumanDenied" in refusal


def _filed_as_the_agent(cluster: Cluster, ns: str, who: str) -> str:
    """A small refund a person files naming the agent (admission lets a person do so)."""
    document = {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"generateName": "as-agent-", "namespace": ns},
        "spec": {"agent": AGENT, "action": "payments.refund", "target": "stripe:charge/ch_2",
                 "parameters": {"amount": 10}, "summary": "refund", "reasoning": f"{who}'s",
                 "blastRadius": "$10"},
    }  # fmt: skip
    return str(json.loads(cluster.create(document, who=who).stdout)["metadata"]["name"])


def test_a_grant_never_covers_its_author_s_own_request(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Got through: a person who may both file requests (as the agent, which admission allows a
    person) and approve (here admin) granted on the agent's request, then filed requests of
    their own that the grant approved. Nobody approves their own request, in advance either."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    first = _waiting(cluster, ns)
    assert review(cluster, ns, first, "admin").returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanApproved")
    cluster.create(grant_document(ns, first, uses=3, who="admin"), who="admin")
    own = _filed_as_the_agent(cluster, ns, "admin")
    assert phase_of(cluster, ns, own) == WAITS
    assert (
        phase_of(cluster, ns, refund_request(cluster, ns, 10)) == GRANTED
    )  # the agent's own: covered


def test_a_grant_never_covers_a_request_another_person_filed_as_the_agent(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Got through (the author check alone): alice granted on the agent's request; admin, who
    may file (admission lets a person name any agent of the namespace) but is not the grant's
    author, filed as the agent, and alice's grant approved it at once, unseen by anyone. A
    grant covers the agent's own requests only; a person's goes to people."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    first = _waiting(cluster, ns)
    assert review(cluster, ns, first, "alice").returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanApproved")
    cluster.create(grant_document(ns, first, uses=3), who="alice")
    theirs = _filed_as_the_agent(cluster, ns, "admin")
    assert phase_of(cluster, ns, theirs) == WAITS
    assert (
        phase_of(cluster, ns, refund_request(cluster, ns, 10)) == GRANTED
    )  # the agent's own: covered


def test_a_grant_whose_author_lost_the_right_covers_nothing(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Gap (a): the author's right was checked only when the grant was made. Now the operator
    asks at each use (a SubjectAccessReview with the user and the groups admission stamped on
    the grant): once alice is no longer a reviewer of the policy, her grant covers nothing,
    is refused for good, and says so (GrantAuthorUnentitled, a Warning Event on the grant)."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    first = _waiting(cluster, ns)
    assert review(cluster, ns, first, "alice").returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanApproved")
    # The groups are the cluster's to stamp: a forged list is replaced by the author's own.
    forged = grant_document(ns, first, uses=3)
    forged["spec"]["grantedGroups"] = ["system:masters"]
    cluster.create(forged, who="alice")
    stamped = cluster.get("actiongrant", "g", ns)["spec"]["grantedGroups"]
    assert stamped == ["payments-approvers", "system:authenticated"]
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == GRANTED

    apply_ready_policy(cluster, policy(ns, rules=RULES, reviewers={"users": ["bob"]}))
    eventually(
        lambda: cluster.kubectl("auth", "can-i", "approve", "agentactionpolicies/payments",
                                "-n", ns, who="alice", check=False).stdout.strip() == "no",
        what="alice no longer a reviewer",
    )  # fmt: skip
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    refusal = _refused(cluster, ns, "g")
    assert refusal.startswith("GrantAuthorUnentitled: alice no longer holds the verb approve")
    warning = eventually(
        lambda: [e for e in events(cluster, ns, "g") if e["reason"] == "GrantAuthorUnentitled"],
        what="the Warning Event on the grant",
    )
    assert warning[0]["type"] == "Warning"
    assert warning[0]["involvedObject"]["kind"] == "ActionGrant"
    assert cluster.get("actiongrant", "g", ns)["status"]["used"] == 1
    # Back as a reviewer: a refused grant stays refused.
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS


def test_only_the_author_or_the_policy_s_reviewers_revoke_a_grant(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """Gap (b): every reviewer of any policy of the namespace held delete on every grant there
    (the generated reviewer Role is namespace-wide). Now admission (handoff-grant-revoke)
    lets only the grant's author, or who holds approve on its policy, delete it."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    ops = policy(ns, "ops", agents={"serviceAccounts": ["ops-agent"]},
                 reviewers={"users": ["carol"]})  # fmt: skip
    apply_ready_policy(cluster, ops)
    first = _waiting(cluster, ns)
    assert review(cluster, ns, first, "alice").returncode == 0
    for name in ("g1", "g2", "g3"):
        cluster.create(grant_document(ns, first, name), who="alice")
    for args in (("delete", "actiongrant", "g1"), ("delete", "actiongrants", "--all")):
        attempt = cluster.kubectl(*args, "-n", ns, who="carol", check=False)
        assert attempt.returncode != 0
        assert "carol may not revoke g1, a grant by alice for policy payments" in attempt.stderr
    attempt = cluster.kubectl("delete", "actiongrant", "g1", "-n", ns, who="mallory", check=False)
    assert 'User "mallory" cannot delete' in attempt.stderr
    assert cluster.get("actiongrant", "g1", ns)["spec"]["grantedBy"] == "alice"
    # A kube-system ServiceAccount given delete on grants is judged unless it is one of the
    # two controllers that delete them for the cluster (namespace deletion, garbage collection).
    addon, collector = "kube-system/metrics-agent", "kube-system/generic-garbage-collector"
    for account in (addon, collector):
        cluster.kubectl("create", "serviceaccount", account.split("/")[1], "-n", "kube-system")
    cluster.kubectl("create", "role", "grant-deleter", "--verb=delete", "--resource=actiongrants",
                    "-n", ns)  # fmt: skip
    cluster.kubectl("create", "rolebinding", "grant-deleter", "--role=grant-deleter", "-n", ns,
                    "--serviceaccount=kube-system:metrics-agent",
                    "--serviceaccount=kube-system:generic-garbage-collector")  # fmt: skip
    attempt = cluster.kubectl("delete", "actiongrant", "g1", "-n", ns, who=addon, check=False)
    assert attempt.returncode != 0
    assert (
        "system:serviceaccount:kube-system:metrics-agent may not revoke g1, a grant by alice"
        in attempt.stderr
    ), attempt.stderr
    cluster.kubectl("delete", "actiongrant", "g1", "-n", ns, who="alice")  # its author
    cluster.kubectl("delete", "actiongrant", "g2", "-n", ns, who="bob")  # a reviewer of payments
    cluster.kubectl("delete", "actiongrant", "g3", "-n", ns, who=collector)  # the collector
    cluster.create(grant_document(ns, first, "g4"), who="alice")
    cluster.kubectl("delete", "actiongrant", "g4", "-n", ns, who="admin")  # a cluster admin
    assert "No resources found" in cluster.kubectl("get", "agr", "-n", ns).stderr


def test_kubectl_handoff_log_tells_the_grants(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """Gap (c): the audit trail in the terminal left grants out. It now tells each: granted (by
    whom, what, until when), its uses, used up, refused (why), revoked."""
    ns = namespace
    apply_ready_policy(cluster, policy(ns, rules=RULES))
    people = {who: cluster.token(who) for who in ("alice", "carol")}
    kubeconfig = cluster.control_plane.write_kubeconfig(tmp_path / "k", people, ns)
    first = _waiting(cluster, ns)
    assert review(cluster, ns, first, "alice").returncode == 0
    wait_for(cluster, ns, first, "decision.reason", "HumanApproved")
    cluster.create(grant_document(ns, first, "used", uses=1), who="alice")
    covered = refund_request(cluster, ns, 10)
    assert phase_of(cluster, ns, covered) == GRANTED
    cluster.create(grant_document(ns, first, "wide", target="paypal:*"), who="alice")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10, "paypal:tx_1")) == WAITS
    _refused(cluster, ns, "wide")
    shown: list[str] = []

    def told(*wanted: str, args: tuple[str, ...] = ()) -> str:
        def probe() -> str | None:
            out = _plugin(kubeconfig, "alice", "log", *args)
            assert out.returncode == 0, out.stderr
            shown[:] = [out.stdout]
            text = " ".join(word for word in out.stdout.split() if word != "|")  # unwrapped
            return text if all(w in text for w in wanted) else None

        try:
            return eventually(probe, what="the grant lines in kubectl handoff log")
        except AssertionError as e:
            raise AssertionError(f"{e}; the log said:\n{''.join(shown)}") from e

    text = told(
        "alice granted payments.refund by payments-agent on stripe:charge/* until",
        f"at most 1 uses (actiongrant/used, rule small-refunds, prompted by {first})",
        f"actiongrant/used approved {covered} (use 1 of 1)",
        "actiongrant/used: used up: 1 of 1 uses taken",
        f"actiongrant/wide: refused: GrantRefused: its target or condition does not hold for {first}",
    )
    # In time order; the use and the refusal may fall in the same second (Events and usedBy
    # keep seconds), so only what comes first for sure is asserted.
    assert text.index("alice granted") < text.index("used up")
    assert text.index("alice granted") < text.index("wide: refused")
    # Once deleted, the grant is gone: the operator's Event tells its revocation, in full.
    cluster.kubectl("delete", "actiongrant", "used", "-n", ns, who="alice")
    revoked = (
        "actiongrant/used: alice's grant of payments.refund by payments-agent on stripe:charge/*"
        f" (rule small-refunds of policy payments, prompted by {first}) was revoked (deleted)"
        " after 1 of 1 uses"
    )
    told(revoked)
    # --agent keeps it by the Event's related ServiceAccount (the API server takes the field).
    told(revoked, args=("--agent", "payments-agent"))
    out = _plugin(kubeconfig, "alice", "log", "--agent", "someone-else")
    assert out.returncode == 0, out.stderr
    assert "revoked" not in out.stdout


def test_pending_shows_each_stage_its_own_and_no_more_than_get(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    """Gap (d): ``pending`` reads with the caller's own token (a list they may make with
    kubectl get anyway) and shows a staged request only to the reviewers of its open stage
    (held), and to break-glass holders, whose reviews count in any stage (it hid them: got
    through, row 57)."""
    ns = namespace
    stages = [
        {"name": "manager", "reviewers": {"users": ["alice"]}},
        {"name": "finance", "reviewers": {"users": ["carol"]}},
    ]
    tiers = {"tier4": {"decisionWindow": "5m", "stages": stages}}
    apply_ready_policy(cluster, policy(ns, tiers=tiers, rules=RULES))
    people = {who: cluster.token(who) for who in ("alice", "bob", "carol", "mallory")}
    people["agent"] = cluster.token(f"{ns}/{AGENT}")
    kubeconfig = cluster.control_plane.write_kubeconfig(tmp_path / "k", people, ns)
    at_manager = refund_request(cluster, ns, 50)
    at_finance = refund_request(cluster, ns, 60)
    wait_for(cluster, ns, at_finance, "stage", "manager")
    assert review(cluster, ns, at_finance, "alice", stage="manager").returncode == 0
    wait_for(cluster, ns, at_finance, "stage", "finance")
    wait_for(cluster, ns, at_manager, "stage", "manager")

    def shown(who: str) -> set[str]:
        out = _plugin(kubeconfig, who, "pending")
        assert out.returncode == 0, out.stderr
        return {line.split()[0] for line in out.stdout.splitlines()[1:] if line.strip()}

    assert shown("alice") == {at_manager}
    assert shown("carol") == {at_finance}
    assert shown("bob") == set()  # a policy reviewer decides no stage
    # Break-glass holders may review any stage (in the stage their review names): they see both.
    until = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    glass = json.dumps({"groups": ["payments-approvers"], "until": until, "reason": "INC-1"})
    cluster.kubectl("annotate", "--overwrite", "agentactionpolicy", "payments", "-n", ns,
                    f"handoff.dev/break-glass={glass}")  # fmt: skip
    eventually(
        lambda: cluster.kubectl("auth", "can-i", "break-glass", "agentactionpolicies/payments",
                                "-n", ns, who="bob", check=False).stdout.strip() == "yes",
        what="bob holds break-glass",
    )  # fmt: skip
    assert shown("bob") == {at_manager, at_finance}
    denied = _plugin(kubeconfig, "mallory", "pending")
    assert denied.returncode != 0
    assert "mallory" in denied.stderr
    assert "Traceback" not in denied.stderr
    # The agent lists its requests anyway (kubectl get); pending tells it nothing more.
    listed = cluster.kubectl("get", "ar", "-n", ns, "-o", "name", who=f"{ns}/{AGENT}").stdout
    assert shown("agent") <= {line.split("/")[-1] for line in listed.split()}


def test_a_policy_name_too_long_for_its_roles_labels_is_refused(
    cluster: Cluster, namespace: str
) -> None:
    """Got through (found while naming stage Roles on ``handoff dev up``): a policy named with
    more than 63 characters never became Ready (its generated Roles carry the name as the
    handoff.dev/policy label value, which holds 63) and could not be deleted (the cleanup's label
    selector was refused, so the finalizer stayed): a warning every 2 s, for ever. The CRD now
    refuses such a name, in one sentence."""
    long = policy(namespace, "p" * 64)
    attempt = cluster.apply(long, check=False)
    assert attempt.returncode != 0
    assert "a policy's name is at most 63 characters: it labels the Roles" in attempt.stderr
    stages = [{"name": "s" * 63, "reviewers": {"users": ["alice"]}}]
    longest = policy(namespace, "p" * 63, tiers={"tier4": {"decisionWindow": "5m",
                                                           "stages": stages}})  # fmt: skip
    assert cluster.apply(longest, check=False).returncode == 0


def test_a_service_account_name_too_long_for_its_labels_is_refused(
    cluster: Cluster, namespace: str
) -> None:
    """Found in review, the same root as the policy's name: a policy governing a ServiceAccount
    named with more than 63 characters never had a status at all (its agent's Redis Secret and
    Role carry the name as the handoff.dev/agent label value, which holds 63: a 422 every 2 s,
    for ever), and the SDK and the gateway label the agent's requests with it too. The CRD now
    refuses such a name, in one sentence."""
    long = policy(namespace, "long-agent", agents={"serviceAccounts": ["a" * 64]})
    attempt = cluster.apply(long, check=False)
    assert attempt.returncode != 0
    assert "a governed ServiceAccount's name is at most 63 characters" in attempt.stderr
    longest = policy(namespace, "longest-agent", agents={"serviceAccounts": ["a" * 63]})
    assert cluster.apply(longest, check=False).returncode == 0
