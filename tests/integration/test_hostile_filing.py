"""A hostile agent files what only the operator may file (issue 14, items 2 and 3).

- A request that says it rolls back someone else's (`spec.rollbackOf`), reported Executed on the
  agent's own outcome stream, would mark the victim RolledBack.
- A request created first under the name the operator files a rollback (`<name>-rollback`) or a
  post-incident review (`<name>-pir`) under would hijack the one or suppress the other.

Admission refuses each of them, with a message saying who may set it. The operator does not rely
on that alone: on a cluster without the filing policy (installed with admission.install=false, or
squatted before the policy existed), it trusts only what it filed itself.
"""

import json
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, events, file, policy, request, review, wait_for
from .hostile import (
    OPERATOR_USER,
    OTHER,
    create,
    created_name,
    document,
    event,
    refused,
    report,
    two_agents,
    without_filing_policy,
)

pytestmark = pytest.mark.integration
PIR_ACK = ["why", "what", "follow-up"]


@pytest.fixture
def ns(cluster: Cluster, operator: OperatorProcess) -> str:
    return two_agents(cluster)


@pytest.fixture
def kubeconfig(cluster: Cluster, ns: str, tmp_path: Path) -> str:
    """The agents' own identities, for the SDK (which finds each one's Redis user from it)."""
    identities = {who: cluster.token(f"{ns}/{who}") for who in (AGENT, OTHER)}
    return str(
        cluster.control_plane.write_kubeconfig(tmp_path / "agents.kubeconfig", identities, ns)
    )


def victims(cluster: Cluster, ns: str, elsewhere: str) -> dict[str, str]:
    """Requests a hostile agent would like to see RolledBack: one still waiting for a person, an
    approved one of its own, another agent's, one a person filed, one in another namespace."""
    found = {
        "waiting": file(cluster, ns, "payments.charge"),
        "own": file(cluster, ns, "crm.update", rollback=True),
        "other agent's": file(cluster, ns, "crm.update", rollback=True, agent=OTHER),
        "a person's": file(cluster, ns, "crm.update", rollback=True, who="admin"),
        "other namespace's": file(cluster, elsewhere, "crm.update", rollback=True),
    }
    wait_for(cluster, ns, found["waiting"], "phase", "AwaitingApproval")
    for key in ("own", "other agent's", "a person's"):
        wait_for(cluster, ns, found[key], "decision.reason", "Logged")
    wait_for(cluster, elsewhere, found["other namespace's"], "decision.reason", "Logged")
    return found


def pointers(ns: str, elsewhere: str, found: dict[str, str]) -> dict[str, str]:
    """What spec.rollbackOf says for each victim: its name, or a path out of the namespace."""
    return {key: (f"../../{elsewhere}/actionrequests/{name}" if key == "other namespace's" else name)
            for key, name in found.items()}  # fmt: skip


def refused_or_marked(cluster: Cluster, ns: str, undo: str, home: str, victim: str) -> bool:
    """The operator refused the forged undo (a Warning on it), or marked the victim."""
    if any(e["reason"] == "UntrustedRollback" for e in events(cluster, ns, undo)):
        return True
    return "rollback" in request(cluster, home, victim)["status"]


def untouched(cluster: Cluster, ns: str, name: str, phase: str) -> None:
    status = request(cluster, ns, name)["status"]
    assert status["phase"] == phase, f"{name} is {status['phase']}"
    assert "rollback" not in status, status["rollback"]
    assert not [e for e in events(cluster, ns, name) if e["reason"] == "RolledBack"]


# -- item 2: spec.rollbackOf --------------------------------------------------------------------


def test_only_the_operator_may_say_a_request_rolls_back_another(cluster: Cluster, ns: str) -> None:
    elsewhere = cluster.new_namespace()
    apply_ready_policy(cluster, policy(elsewhere))
    found = victims(cluster, ns, elsewhere)
    for pointer in pointers(ns, elsewhere, found).values():
        for who in (f"{ns}/{AGENT}", f"{ns}/{OTHER}"):
            agent = who.split("/")[1]
            forged = create(cluster, document(ns, agent=agent, rollbackOf=pointer), who)
            refused(forged, "spec.rollbackOf is set only by the Handoff operator")
        # Not a person either: the name of what is undone is the operator's to write.
        by_hand = create(cluster, document(ns, rollbackOf=pointer), "admin")
        refused(by_hand, "spec.rollbackOf is set only by the Handoff operator")
    assert request(cluster, ns, found["waiting"])["status"]["phase"] == "AwaitingApproval"


def test_the_operator_marks_rolled_back_only_for_the_undo_it_filed(
    cluster: Cluster, ns: str, kubeconfig: str
) -> None:
    elsewhere = cluster.new_namespace()
    apply_ready_policy(cluster, policy(elsewhere))
    found = victims(cluster, ns, elsewhere)
    forged: dict[str, str] = {}
    with without_filing_policy(cluster, ns):
        for key, pointer in pointers(ns, elsewhere, found).items():
            forged[key] = created_name(
                create(cluster, document(ns, rollbackOf=pointer), f"{ns}/{AGENT}")
            )
    homes = {key: elsewhere if key == "other namespace's" else ns for key in found}
    for key, name in forged.items():
        undo = wait_for(cluster, ns, name, "decision.reason", "AutoApproved")
        report(kubeconfig, ns, undo)
        wait_for(cluster, ns, name, "phase", "Executed")
        handled = partial(refused_or_marked, cluster, ns, name, homes[key], found[key])
        eventually(handled, 15, f"the forged rollback of the {key} request to be handled")
        untouched(
            cluster, homes[key], found[key], "AwaitingApproval" if key == "waiting" else "Approved"
        )
        why = event(cluster, ns, name, "UntrustedRollback")
        assert why["type"] == "Warning"
        if key == "other namespace's":
            assert "is not the name of a request in this namespace" in why["message"]
        else:
            assert (
                f"was filed by system:serviceaccount:{ns}:{AGENT}, not by the Handoff operator"
                in (why["message"])
            )


# -- item 3: the names the operator files under -------------------------------------------------


def test_the_names_the_operator_files_under_are_reserved(cluster: Cluster, ns: str) -> None:
    victim = file(cluster, ns, "crm.update", rollback=True)
    for name in (f"{victim}-rollback", f"{victim}-pir", "anything-rollback"):
        for who in (f"{ns}/{AGENT}", "admin"):
            squat = create(cluster, document(ns, name=name), who)
            refused(squat, f"the name {name} is reserved", "where the Handoff operator files")
    # generateName stays free, and so do names that merely contain the words.
    created_name(
        create(cluster, document(ns, meta={"generateName": "db-rollback-"}), f"{ns}/{AGENT}")
    )
    created_name(create(cluster, document(ns, name=f"{victim}-pirate"), f"{ns}/{AGENT}"))


def test_a_squatted_rollback_name_is_not_taken_for_the_rollback(
    cluster: Cluster, ns: str, kubeconfig: str
) -> None:
    victim = file(cluster, ns, "crm.update", rollback=True)
    original = wait_for(cluster, ns, victim, "decision.reason", "Logged")
    squatted = f"{victim}-rollback"
    # The squat copies what the operator would file, all but who filed it.
    forgery = document(
        ns, name=squatted, action="crm.update", rollbackOf=victim,
        meta={"labels": {"handoff.dev/agent": AGENT, "handoff.dev/rollback-of": victim}},
        summary="Roll back: undo", rollback=original["spec"]["rollback"],
    )  # fmt: skip
    with without_filing_policy(cluster, ns):
        created_name(create(cluster, forgery, f"{ns}/{AGENT}"))
    wait_for(cluster, ns, squatted, "decision.reason", "Logged")

    rollback(cluster, ns, victim)
    filed = eventually(
        lambda: request(cluster, ns, victim)["status"].get("rollback", {}).get("request"),
        15, "the rollback filed",
    )  # fmt: skip
    assert filed != squatted
    taken = event(cluster, ns, victim, "NameTaken")
    assert taken["type"] == "Warning"
    assert squatted in taken["message"]
    assert f"system:serviceaccount:{ns}:{AGENT}" in taken["message"]
    assert filed in taken["message"]
    asked = event(cluster, ns, victim, "RollbackRequested")
    assert asked["message"].endswith(f"filed {filed}")
    undo = wait_for(cluster, ns, filed, "decision.reason", "Logged")
    assert undo["metadata"]["annotations"]["handoff.dev/requested-by"] == OPERATOR_USER
    assert undo["spec"]["rollbackOf"] == victim
    assert undo["metadata"]["labels"]["handoff.dev/rollback-of"] == victim

    # The squatter reports its copy carried out: nothing happens to the original.
    report(kubeconfig, ns, request(cluster, ns, squatted))
    event(cluster, ns, squatted, "UntrustedRollback")
    assert request(cluster, ns, victim)["status"]["phase"] == "Approved"
    # The real rollback, carried out, does mark it.
    report(kubeconfig, ns, undo)
    rolled = wait_for(cluster, ns, victim, "phase", "RolledBack")
    assert rolled["status"]["rollback"]["message"] == f"undone by {filed}"


def rollback(cluster: Cluster, ns: str, name: str) -> None:
    """alice asks for a rollback, as `kubectl handoff rollback` does (the request was decided
    without people, so status.reviews does not exist yet)."""
    entry = {"reviewer": "alice", "decision": "Rollback", "comment": "wrong contact"}
    patch = json.dumps([{"op": "add", "path": "/status/reviews", "value": [entry]}])
    cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=json", "-p", patch,
        who="alice",
    )  # fmt: skip


def _annotate(cluster: Cluster, ns: str, until: datetime) -> None:
    value = json.dumps({"groups": ["sre-approvers"], "until": until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "reason": "INC-77: the payments reviewers are unreachable"})  # fmt: skip
    cluster.kubectl("annotate", "--overwrite", "agentactionpolicy", "payments", "-n", ns,
                    f"handoff.dev/break-glass={value}")  # fmt: skip


def _glass_approve(cluster: Cluster, ns: str, name: str) -> bool:
    entry = {"reviewer": "carol", "decision": "Approve", "breakGlass": True,
             "acknowledged": ["what", "impact", "rollback"]}  # fmt: skip
    patch = json.dumps([{"op": "add", "path": "/status/reviews/-", "value": entry}])
    return (
        cluster.kubectl(
            "patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=json",
            "-p", patch, who="carol", check=False,
        ).returncode == 0
    )  # fmt: skip


def _reviews_of(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    listing = cluster.kubectl(
        "get",
        "actionrequests",
        "-n",
        ns,
        "-l",
        f"handoff.dev/post-incident-of={name}",
        "-o",
        "json",
    )
    return [item for item in json.loads(listing.stdout)["items"]
            if item["metadata"]["annotations"]["handoff.dev/requested-by"] == OPERATOR_USER]  # fmt: skip


def test_a_squatted_review_name_does_not_suppress_the_post_incident_review(
    cluster: Cluster, ns: str, operator: OperatorProcess
) -> None:
    stuck = file(cluster, ns, "payments.charge")
    wait_for(cluster, ns, stuck, "phase", "AwaitingApproval")
    squatted = f"{stuck}-pir"
    forgery = document(
        ns, name=squatted, action="handoff.post-incident-review", target=f"actionrequest/{stuck}",
        meta={"labels": {"handoff.dev/post-incident-of": stuck}}, summary="Post-incident review",
    )  # fmt: skip
    with without_filing_policy(cluster, ns):
        created_name(create(cluster, forgery, f"{ns}/{AGENT}"))

    _annotate(cluster, ns, datetime.now(UTC) + timedelta(minutes=10))
    eventually(lambda: _glass_approve(cluster, ns, stuck), 30, "carol's break-glass approval")
    wait_for(cluster, ns, stuck, "decision.reason", "BreakGlassApproved")
    taken = event(cluster, ns, stuck, "NameTaken")
    assert squatted in taken["message"]
    assert f"system:serviceaccount:{ns}:{AGENT}" in taken["message"]
    reviews = eventually(lambda: _reviews_of(cluster, ns, stuck), 15, "the post-incident review")
    assert len(reviews) == 1
    pir = reviews[0]
    real = pir["metadata"]["name"]
    assert real != squatted
    assert real in taken["message"]
    assert pir["spec"]["action"] == "handoff.post-incident-review"
    assert pir["spec"]["target"] == f"actionrequest/{stuck}"
    filed = event(cluster, ns, stuck, "PostIncidentReviewFiled")
    assert real in filed["message"]
    wait_for(cluster, ns, real, "phase", "AwaitingApproval")
    assert review(cluster, ns, real, "alice", acknowledged=PIR_ACK).returncode == 0
    wait_for(cluster, ns, real, "phase", "Approved")

    # A restart files nothing twice: the review filed under a generated name is found again.
    operator.stop()
    before = operator.log.stat().st_size
    operator.start()
    line = f"{ns}/{stuck}: its post-incident review is {real}"
    eventually(
        lambda: line in operator.log.read_text(errors="replace")[before:], 30,
        "the restarted operator to find the review",
    )  # fmt: skip
    assert [p["metadata"]["name"] for p in _reviews_of(cluster, ns, stuck)] == [real]
    assert len([e for e in events(cluster, ns, stuck) if e["reason"] == "NameTaken"]) == 1
