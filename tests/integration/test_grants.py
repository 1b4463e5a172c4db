"""Standing grants (ActionGrant) on the real control plane: granted while approving, covering
the next matching requests (GrantApproved, decision.by naming the grant and its author),
refused by admission when wider or longer than the rule allows or from someone who could not
approve, refused by the operator when wider than the request that prompted it, a race for the
last use won once, revocation by deletion, and expiry. The agent can neither create, extend nor
count a grant."""

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .grant_helpers import (
    GRANTED,
    WAITS,
    approved_prompt,
    grant_document,
    grants_policy,
    phase_of,
    refund_request,
)
from .helpers import AGENT, apply_ready_policy, policy, request, wait_for

pytestmark = pytest.mark.integration


def test_a_grant_made_while_approving_covers_the_next_matching_requests(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, grants_policy(ns))
    first = approved_prompt(cluster, ns)
    cluster.create(grant_document(ns, first, condition="parameters.amount <= 80"), who="alice")

    covered = refund_request(cluster, ns, 60)
    assert phase_of(cluster, ns, covered) == GRANTED
    decision = request(cluster, ns, covered)["status"]["decision"]
    assert decision["by"] == ["alice", "actiongrant/g"]
    assert "approved in advance by alice with actiongrant/g (use 1 of 2" in decision["message"]
    # Outside its bounds: the condition, the target pattern, another rule (over 100: money).
    assert phase_of(cluster, ns, refund_request(cluster, ns, 90)) == WAITS
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10, "stripe:payout/po_1")) == WAITS
    assert phase_of(cluster, ns, refund_request(cluster, ns, 500)) == WAITS
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == GRANTED
    # Used up: people decide again.
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    grant = cluster.get("actiongrant", "g", ns)
    assert grant["status"]["used"] == 2
    assert grant["status"]["checked"] is True
    assert grant["status"]["usedBy"][0]["request"] == covered
    listed = cluster.kubectl("get", "agr", "-n", ns).stdout
    assert "GRANTED-BY" in listed
    assert "alice" in listed


def test_admission_refuses_grants_beyond_the_rule_or_from_who_could_not_approve(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, grants_policy(ns))
    # carol reviews another policy of this namespace: she may create grants, not approve these.
    ops = policy(ns, "ops", agents={"serviceAccounts": ["ops-agent"]},
                 reviewers={"users": ["carol"]})  # fmt: skip
    apply_ready_policy(cluster, ops)
    first = approved_prompt(cluster, ns)

    def refused(document: dict[str, Any], who: str = "alice") -> str:
        attempt = cluster.create(document, who=who, check=False)
        assert attempt.returncode != 0, document
        return attempt.stderr

    assert "is not grantable" in refused(grant_document(ns, first, rule="money"))
    assert "at most 1h" in refused(grant_document(ns, first, minutes=61))
    assert "at most 3 uses" in refused(grant_document(ns, first, uses=4))
    assert "has no rule nothing" in refused(grant_document(ns, first, rule="nothing"))
    assert "must be in the future" in refused(grant_document(ns, first, minutes=-1))
    assert "signed with your own user name" in refused(grant_document(ns, first, who="bob"))
    assert "may not grant approval for policy payments" in refused(
        grant_document(ns, first, who="carol"), who="carol"
    )
    assert 'User "mallory" cannot create' in refused(
        grant_document(ns, first, who="mallory"), "mallory"
    )
    agent = f"system:serviceaccount:{ns}:{AGENT}"
    assert "cannot create" in refused(grant_document(ns, first, who=agent), f"{ns}/{AGENT}")

    cluster.create(grant_document(ns, first, uses=1), who="alice")
    # Nobody extends a grant: reviewers hold no update, and the spec is immutable for all.
    extend = json.dumps({"spec": {"maxUses": 3}})
    for who in ("alice", "admin"):
        attempt = cluster.kubectl("patch", "agr", "g", "-n", ns, "--type=merge", "-p", extend,
                                  who=who, check=False)  # fmt: skip
        assert attempt.returncode != 0
    # Nor counts its uses: the status is the operator's (RBAC, and admission for anyone else).
    reset = json.dumps({"status": {"used": 0, "usedBy": []}})
    for who in ("alice", f"{ns}/{AGENT}", "admin"):
        attempt = cluster.kubectl("patch", "agr", "g", "-n", ns, "--subresource=status",
                                  "--type=merge", "-p", reset, who=who, check=False)  # fmt: skip
        assert attempt.returncode != 0, who
    assert "written by the operator only" in attempt.stderr


def test_a_grant_wider_than_the_request_that_prompted_it_covers_nothing(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, grants_policy(ns))
    first = approved_prompt(cluster, ns)  # a stripe charge
    cluster.create(grant_document(ns, first, "wide", target="paypal:*"), who="alice")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10, "paypal:tx_9")) == WAITS
    refusal = eventually(
        lambda: cluster.get("actiongrant", "wide", ns).get("status", {}).get("refused"),
        what="grant refused",
    )
    assert "target or condition does not hold for " + first in refusal
    # Granted on a request alice never approved: refused too.
    unapproved = refund_request(cluster, ns, 20)
    cluster.create(grant_document(ns, unapproved, "unearned"), who="alice")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    assert "alice did not approve" in eventually(
        lambda: cluster.get("actiongrant", "unearned", ns).get("status", {}).get("refused"),
        what="grant refused",
    )


def test_two_requests_racing_for_the_last_use_exactly_one_is_covered(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, grants_policy(ns))
    first = approved_prompt(cluster, ns)
    cluster.create(grant_document(ns, first, uses=1), who="alice")
    names: list[str] = []
    threads = [threading.Thread(target=lambda: names.append(refund_request(cluster, ns, 10)))
               for _ in range(3)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outcomes = sorted(phase_of(cluster, ns, name) for name in names)
    assert outcomes == [GRANTED, WAITS, WAITS]
    grant = cluster.get("actiongrant", "g", ns)
    assert grant["status"]["used"] == 1
    # The count is a guarded write: one made from a stale view (the loser's) is refused by the
    # API server, even from the operator's own identity.
    stale = json.dumps({"metadata": {"resourceVersion": str(int(grant["metadata"]["resourceVersion"]) - 1)},
                        "status": {"used": 0, "usedBy": []}})  # fmt: skip
    attempt = cluster.kubectl("patch", "agr", "g", "-n", ns, "--subresource=status",
                              "--type=merge", "-p", stale, who="handoff-system/handoff-operator",
                              check=False)  # fmt: skip
    assert attempt.returncode != 0
    assert "the object has been modified" in attempt.stderr


def test_deleting_a_grant_revokes_it_and_an_expired_one_covers_nothing(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    ns = namespace
    apply_ready_policy(cluster, grants_policy(ns))
    first = approved_prompt(cluster, ns)
    cluster.create(grant_document(ns, first, uses=3), who="alice")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == GRANTED
    cluster.kubectl("delete", "actiongrant", "g", "-n", ns, who="alice")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS

    short = grant_document(ns, first, "short", minutes=3 / 60, uses=3)
    cluster.create(short, who="alice")
    expires = datetime.fromisoformat(short["spec"]["expiresAt"].replace("Z", "+00:00"))
    eventually(lambda: datetime.now(UTC) > expires, 5, "the grant expired")
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == WAITS
    assert "used" not in cluster.get("actiongrant", "short", ns).get("status", {})


def test_a_grant_is_in_the_audit_stream_granted_used_up_and_revoked_once_each(
    cluster: Cluster, operator: OperatorProcess, namespace: str, redis_server: RedisServer
) -> None:
    ns = namespace
    apply_ready_policy(cluster, grants_policy(ns))
    first = approved_prompt(cluster, ns)
    document = grant_document(ns, first, uses=1)
    document["spec"]["comment"] = "<img src=x onerror=alert(1)>" + "c" * 500
    cluster.create(document, who="alice")
    uid = cluster.get("actiongrant", "g", ns)["metadata"]["uid"]
    admin = redis_client(redis_server.url)

    def lines() -> list[dict[str, str]]:
        found = [{k.decode(): v.decode() for k, v in fields.items()}
                 for _, fields in admin.xrange("handoff:audit")]  # fmt: skip
        return [f for f in found if f.get("uid") == uid]

    granted = eventually(lines, what="the Granted line")
    assert [g["event"] for g in granted] == ["Granted"]
    assert (granted[0]["by"], granted[0]["kind"], granted[0]["agent"]) == ("alice", "ActionGrant",
                                                                           AGENT)  # fmt: skip
    assert granted[0]["until"] == document["spec"]["expiresAt"]
    assert (granted[0]["maxUses"], granted[0]["request"]) == ("1", first)
    assert len(granted[0]["comment"]) == 256  # clipped: the console shows it as text
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10)) == GRANTED
    eventually(lambda: len(lines()) == 2, what="the UsedUp line")
    cluster.kubectl("delete", "actiongrant", "g", "-n", ns, who="alice")
    eventually(lambda: len(lines()) == 3, what="the Revoked line")
    assert [g["event"] for g in lines()] == ["Granted", "UsedUp", "Revoked"]
    assert lines()[2]["message"] == "revoked (deleted) after 1 of 1 uses"


PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")


def _plugin(kubeconfig: Path, who: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PLUGIN, "--kubeconfig", str(kubeconfig), "--context", who, *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_kubectl_handoff_approve_grant_and_grants(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    ns = namespace
    apply_ready_policy(cluster, grants_policy(ns))
    people = {who: cluster.token(who) for who in ("alice", "bob")}
    kubeconfig = cluster.control_plane.write_kubeconfig(tmp_path / "k", people, ns)
    first = refund_request(cluster, ns, 50)
    third = refund_request(cluster, ns, 30, "stripe:charge/ch_[1]")
    wait_for(cluster, ns, first, "phase", "AwaitingApproval")
    wait_for(cluster, ns, third, "phase", "AwaitingApproval")
    ack = "what,impact,rollback"
    # Longer than the rule allows: the approval is recorded, the grant refused, and it says why.
    second = refund_request(cluster, ns, 40)
    wait_for(cluster, ns, second, "phase", "AwaitingApproval")
    too_long = _plugin(kubeconfig, "bob", "approve", second, "--ack", ack, "--grant", "2h")
    assert too_long.returncode == 1
    assert "The approval is recorded, but the grant was refused" in too_long.stdout
    assert "at most 1h" in too_long.stdout

    done = _plugin(kubeconfig, "alice", "approve", first, "--ack", ack, "--grant", "30m",
                   "--count", "2", "--target", "stripe:charge/*")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"Granted {first}-" in done.stdout
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10, "stripe:charge/ch_7")) == GRANTED
    listed = _plugin(kubeconfig, "alice", "grants")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:4] == ["NAME", "STATE", "GRANTED-BY", "AGENT"]
    assert row.split()[1:7] == [
        "Active", "alice", AGENT, "payments.refund", "stripe:charge/*", "1/2",
    ]  # fmt: skip
    # The default target is the request's own, exactly (glob characters in it escaped).
    exact = _plugin(kubeconfig, "bob", "approve", third, "--ack", ack, "--grant", "10m")
    assert exact.returncode == 0, exact.stderr
    assert "on stripe:charge/ch_[[]1] until" in exact.stdout
    assert (
        phase_of(cluster, ns, refund_request(cluster, ns, 10, "stripe:charge/ch_1")) == GRANTED
    )  # alice's
    assert phase_of(cluster, ns, refund_request(cluster, ns, 10, "stripe:charge/ch_1")) == WAITS
