"""The operator's core loop against a real kube-apiserver, driven through kubectl."""

import json
from datetime import UTC, datetime

import pytest
from handoff.domain.timefmt import parse_time
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import (
    apply_ready_policy,
    condition,
    events,
    file,
    policy,
    ready,
    request,
    review,
    wait_for,
)

pytestmark = pytest.mark.integration


def test_each_tier_lane_end_to_end(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))

    read = wait_for(cluster, ns, file(cluster, ns, "db.query"), "decision.reason", "AutoApproved")
    assert (read["status"]["tier"], read["status"]["oversight"], read["status"]["phase"]) == (
        1,
        "HOOTL",
        "Approved",
    )

    logged = wait_for(
        cluster, ns, file(cluster, ns, "crm.update", rollback=True), "decision.reason", "Logged"
    )
    assert (logged["status"]["tier"], logged["status"]["oversight"]) == (2, "HOTL")

    escalated = wait_for(cluster, ns, file(cluster, ns, "crm.update"), "phase", "AwaitingApproval")
    assert condition(escalated, "Classified")["reason"] == "MissingRollbackPlan"
    assert escalated["status"]["reviews"] == []

    held = file(cluster, ns, "payments.refund", parameters={"amount": 20})
    vetoed = file(cluster, ns, "payments.refund", parameters={"amount": 30})
    queued = wait_for(cluster, ns, held, "phase", "Queued")
    assert (queued["status"]["tier"], queued["status"]["oversight"]) == (3, "HOTL")
    wait_for(cluster, ns, vetoed, "phase", "Queued")
    assert review(cluster, ns, vetoed, "bob", "Deny", comment="not this one").returncode == 0
    assert wait_for(cluster, ns, vetoed, "decision.reason", "Vetoed")["status"]["decision"][
        "by"
    ] == ["bob"]
    passed = wait_for(cluster, ns, held, "decision.reason", "NotVetoed", timeout=20)
    assert passed["status"]["phase"] == "Approved"

    waiting = wait_for(
        cluster, ns, file(cluster, ns, "payments.charge"), "phase", "AwaitingApproval"
    )
    status = waiting["status"]
    assert (status["tier"], status["oversight"], status["rule"], status["requiredApprovals"]) == (
        4,
        "HITL",
        "money",
        1,
    )
    assert [c["id"] for c in status["checklist"]] == ["what", "impact", "rollback"]
    assert status["specDigest"].startswith("sha256:")

    # What waits for people, selected by the API server (the CRD's selectableFields): what a
    # reviewer asks with kubectl, and how a start lists only what may still wait (rearm.py).
    def selected(selector: str) -> set[str]:
        out = cluster.kubectl("get", "ar", "-n", ns, "--field-selector", selector, "-o", "name")
        return {line.rpartition("/")[2] for line in out.stdout.split()}

    listed = json.loads(cluster.kubectl("get", "ar", "-n", ns, "-o", "json").stdout)["items"]
    phases = {item["metadata"]["name"]: item["status"]["phase"] for item in listed}
    assert waiting["metadata"]["name"] in selected("status.phase=AwaitingApproval")
    assert selected("status.phase=AwaitingApproval") == {
        name for name, phase in phases.items() if phase == "AwaitingApproval"
    }, phases
    from handoff.controller.rearm import UNDECIDED  # noqa: PLC0415

    assert selected(UNDECIDED) == {
        name for name, phase in phases.items() if phase in ("AwaitingApproval", "Queued")
    }, phases
    assert read["metadata"]["name"] in selected("spec.agent=" + read["spec"]["agent"])


def test_approval_by_kubectl_status_patch(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    name = file(cluster, ns, "payments.charge")
    wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    # An approval without the full checklist does not count, and says why.
    assert review(cluster, ns, name, "bob", acknowledged=["what"]).returncode == 0
    body = eventually(
        lambda: (
            (b := request(cluster, ns, name))
            and "not counted" in condition(b, "Decided")["message"]
            and b
        ),
        what="the Decided condition to explain bob's review",
    )
    assert "bob: did not acknowledge impact, rollback" in condition(body, "Decided")["message"]
    assert body["status"]["phase"] == "AwaitingApproval"

    assert review(cluster, ns, name, "alice").returncode == 0
    approved = wait_for(cluster, ns, name, "decision.reason", "HumanApproved")
    assert approved["status"]["phase"] == "Approved"
    assert approved["status"]["decision"]["by"] == ["alice"]
    reasons = [e["reason"] for e in events(cluster, ns, name)]
    assert reasons.count("HumanApproved") == 1
    assert "AwaitingReview" in reasons


def test_expiry_fails_safe_to_denied(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    name = file(cluster, ns, "deploy.production")
    waiting = wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    deadline = waiting["status"]["deadline"]
    expired = wait_for(cluster, ns, name, "decision.reason", "Expired", timeout=25)
    assert expired["status"]["phase"] == "Denied"
    assert expired["status"]["decision"]["outcome"] == "Denied"
    assert parse_time(expired["status"]["decision"]["at"]) >= parse_time(deadline)
    # Nothing is appended once a decision is made... by the operator's own hand, at least:
    # The Event follows the status write (the agent's message goes out first): wait for it.
    eventually(
        lambda: "Expired" in [e["reason"] for e in events(cluster, ns, name)], 10, "Expired Event"
    )
    assert [e["reason"] for e in events(cluster, ns, name)].count("Expired") == 1


def test_operator_killed_and_restarted_while_a_request_waits(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    approved = file(cluster, ns, "payments.charge")
    wait_for(cluster, ns, approved, "phase", "AwaitingApproval")
    review(cluster, ns, approved, "alice")
    decided = wait_for(cluster, ns, approved, "decision.reason", "HumanApproved")
    waiting = file(cluster, ns, "deploy.production")
    deadline = wait_for(cluster, ns, waiting, "phase", "AwaitingApproval")["status"]["deadline"]

    operator.kill()
    filed_while_down = file(cluster, ns, "db.query")
    # Past the deadline with no operator running: nothing decides it yet.
    eventually(
        lambda: (
            cluster.kubectl("get", "--raw", "/version").returncode == 0
            and request(cluster, ns, waiting)["status"].get("decision") is None
            and _past(deadline)
        ),
        timeout=20,
        what="the deadline to pass while the operator is down",
    )
    operator.start()

    expired = wait_for(cluster, ns, waiting, "decision.reason", "Expired", timeout=15)
    assert parse_time(expired["status"]["decision"]["at"]) >= parse_time(deadline)
    wait_for(cluster, ns, filed_while_down, "decision.reason", "AutoApproved")
    again = request(cluster, ns, approved)
    assert again["status"]["decision"] == decided["status"]["decision"]
    assert [e["reason"] for e in events(cluster, ns, approved)].count("HumanApproved") == 1
    # The Event follows the status write (the agent's message goes out first): wait for it.
    eventually(
        lambda: "Expired" in [e["reason"] for e in events(cluster, ns, waiting)],
        10,
        "Expired Event",
    )
    assert [e["reason"] for e in events(cluster, ns, waiting)].count("Expired") == 1


def _past(deadline: str) -> bool:
    return datetime.now(UTC) > parse_time(deadline)


def test_bad_cel_makes_the_policy_not_ready_and_fails_closed(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    document = policy(ns, rules=[
        {"name": "reads", "actions": ["db.query"], "tier": 1},
        {"name": "trusting", "actions": ["payments.*"], "when": "confidence > 0.8", "tier": 1},
    ])  # fmt: skip
    cluster.apply(document)
    broken = eventually(
        lambda: (
            (p := cluster.get("agentactionpolicy", "payments", ns)) and ready(p) == "False" and p
        ),
        what="the policy to turn Ready=False",
    )
    message = condition(broken, "Ready")["message"]
    assert "confidence" in message
    assert condition(broken, "Ready")["reason"] == "CompileFailed"

    name = file(cluster, ns, "db.query")
    held = wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    assert held["status"]["tier"] == 4
    assert condition(held, "Classified")["reason"] == "FailClosed"

    document["spec"]["rules"][1]["when"] = "parameters.amount < 10"
    apply_ready_policy(cluster, document)
    assert wait_for(cluster, ns, file(cluster, ns, "db.query"), "decision.reason", "AutoApproved")


@pytest.mark.parametrize(
    ("kind", "why"),
    [
        ("example.com/v1/Widget", "which the API server does not serve"),
        # The dev operator (and the chart's default operator.executor.rules) holds get, create
        # and delete on ConfigMaps, for the state it keeps, but not update or patch: RBAC lets
        # it grant only what it holds, so the executor's Role for ConfigMaps is refused.
        ("v1/ConfigMap", "The operator can grant only what it holds"),
    ],
)
def test_a_policy_not_ready_for_its_executor_holds_its_requests_until_it_is(
    cluster: Cluster, operator: OperatorProcess, namespace: str, kind: str, why: str
) -> None:
    # It compiles, but the executor's Role cannot be made: Ready=False, CredentialsFailed. Its
    # tier-1 action must not be approved as if it were in force.
    ns = namespace
    document = policy(ns, executors={"kubernetes": {"kinds": [kind]}})
    # Held requests wait in the policy's tier-4 lane: long enough not to expire under load.
    document["spec"]["tiers"]["tier4"]["decisionWindow"] = "10m"
    cluster.apply(document)
    broken = eventually(
        lambda: (
            (p := cluster.get("agentactionpolicy", "payments", ns))
            and ready(p) == "False"
            and condition(p, "Ready")["reason"] == "CredentialsFailed"
            and p
        ),
        what="the policy to turn Ready=False for its executor",
    )
    assert why in condition(broken, "Ready")["message"]

    name = file(cluster, ns, "db.query")
    held = wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    assert held["status"]["tier"] == 4
    classified = condition(held, "Classified")
    assert classified["reason"] == "PolicyNotReady"
    assert "not Ready" in classified["message"]
    assert why in classified["message"]

    # Fixed: Ready, and what is filed now is tier 1 again; what was held stays for a person.
    document["spec"]["executors"]["kubernetes"]["kinds"] = ["apps/v1/Deployment"]
    apply_ready_policy(cluster, document)
    assert wait_for(cluster, ns, file(cluster, ns, "db.query"), "decision.reason", "AutoApproved")
    still = request(cluster, ns, name)["status"]
    assert (still["phase"], still["tier"], still.get("decision")) == ("AwaitingApproval", 4, None)
    assert review(cluster, ns, name, "alice").returncode == 0
    wait_for(cluster, ns, name, "decision.reason", "HumanApproved")


def test_an_agent_with_no_enforcing_policy_is_denied(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    # An Audit policy lets the agent file (that is how a rollout starts) but decides nothing.
    apply_ready_policy(cluster, policy(namespace, "rollout", mode="Audit"))
    name = file(cluster, namespace, "db.query")
    denied = wait_for(cluster, namespace, name, "decision.reason", "NoPolicy")
    assert denied["status"]["phase"] == "Denied"
    assert denied["status"]["shadow"][0]["tier"] == 1
    assert [e["type"] for e in events(cluster, namespace, name)] == ["Warning"]


def test_an_agent_no_policy_governs_cannot_even_file(
    cluster: Cluster, operator: OperatorProcess
) -> None:
    namespace = cluster.new_namespace(agents=("stray-agent",))
    document = {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": {"generateName": "req-", "namespace": namespace},
        "spec": {"agent": "stray-agent", "action": "db.query", "summary": "look around"},
    }
    refused = cluster.create(document, who=f"{namespace}/stray-agent", check=False)
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr


def test_audit_policy_records_shadow_only(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    apply_ready_policy(
        cluster,
        policy(ns, "stricter", mode="Audit", rules=[{"name": "all", "actions": ["*"], "tier": 4}]),
    )
    done = wait_for(cluster, ns, file(cluster, ns, "db.query"), "decision.reason", "AutoApproved")
    assert done["status"]["shadow"][0]["policy"] == "stricter"
    assert done["status"]["shadow"][0]["tier"] == 4


def test_the_api_server_refuses_what_the_schema_forbids(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, policy(ns))
    name = file(cluster, ns, "db.query")
    wait_for(cluster, ns, name, "decision.reason", "AutoApproved")
    edit = cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--type=merge", "-p",
        json.dumps({"spec": {"action": "payments.charge"}}), check=False,
    )  # fmt: skip
    assert edit.returncode != 0
    assert "spec is immutable" in edit.stderr

    lax = policy(ns, "lax", tiers={"tier4": {"holdFor": "1m"}})
    refused = cluster.apply(lax, check=False)
    assert refused.returncode != 0
    assert "tier 4 is always HITL" in refused.stderr

    short = policy(ns, "short", tiers={"tier4": {"decisionWindow": "5s"}})
    refused = cluster.apply(short, check=False)
    assert refused.returncode != 0
    assert "from 10s to 168h" in refused.stderr

    zero = policy(ns, "zero", tiers={"tier4": {"approvals": 0}})
    refused = cluster.apply(zero, check=False)
    assert refused.returncode != 0
    assert "approvals" in refused.stderr


def test_a_budget_trips_and_resets(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(
        cluster,
        policy(ns, budgets=[{"name": "reads", "actions": ["db.*"], "max": 2, "per": "10s"}]),
    )
    first, second = file(cluster, ns, "db.query"), file(cluster, ns, "db.query")
    for name in (first, second):
        wait_for(cluster, ns, name, "decision.reason", "AutoApproved")
    third = file(cluster, ns, "db.query")
    held = wait_for(cluster, ns, third, "phase", "AwaitingApproval")
    assert condition(held, "Decided")["reason"] == "BudgetExceeded"
    eventually(lambda: _past_seconds(request(cluster, ns, second)["status"]["decision"]["at"], 10.5),
               timeout=15, what="the budget window to pass")  # fmt: skip
    fourth = file(cluster, ns, "db.query")
    wait_for(cluster, ns, fourth, "decision.reason", "AutoApproved")


def _past_seconds(at: str, seconds: float) -> bool:
    return (datetime.now(UTC) - parse_time(at)).total_seconds() > seconds
