"""A hostile agent files what only the operator may file (issue 14, items 2, 3 and 8).

- A request that says it rolls back someone else's (`spec.rollbackOf`), reported Executed on the
  agent's own outcome stream, would mark the victim RolledBack.
- A request created first under the name the operator files a rollback (`<name>-rollback`) or a
  post-incident review (`<name>-pir`) under would hijack the one or suppress the other.
- Finalizers keep a request past its retention for ever; an owner lets a garbage collector delete
  it; Handoff's own labels and annotations would steer whoever reads them.

Admission refuses each of them, with a message saying who may set it. The operator does not rely
on that alone: on a cluster without the filing policy (installed with admission.install=false, or
squatted before the policy existed), it trusts only what it filed itself.
"""

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from handoff import paths
from handoff.sdk import Agent, Decision
from handoff.testing.cluster import Cluster, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, events, file, policy, request, review, wait_for

pytestmark = pytest.mark.integration
OTHER = "other-agent"
OPERATOR_USER = "system:serviceaccount:handoff-system:handoff-operator"
FILING = "handoff-filing"
PIR_ACK = ["why", "what", "follow-up"]


@pytest.fixture
def ns(cluster: Cluster, operator: OperatorProcess) -> str:
    """A namespace with two agents governed by the payments policy."""
    name = cluster.new_namespace(agents=(AGENT, OTHER))
    apply_ready_policy(cluster, policy(name, agents={"serviceAccounts": [AGENT, OTHER]}))
    return name


@pytest.fixture
def kubeconfig(cluster: Cluster, ns: str, tmp_path: Path) -> str:
    """The agents' own identities, for the SDK (which finds each one's Redis user from it)."""
    identities = {who: cluster.token(f"{ns}/{who}") for who in (AGENT, OTHER)}
    return str(
        cluster.control_plane.write_kubeconfig(tmp_path / "agents.kubeconfig", identities, ns)
    )


def document(ns: str, *, name: str = "", agent: str = AGENT, meta: dict[str, Any] | None = None,
             **spec: Any) -> dict[str, Any]:  # fmt: skip
    metadata: dict[str, Any] = {
        "namespace": ns,
        **({"name": name} if name else {"generateName": "req-"}),
    }
    return {
        "apiVersion": "handoff.dev/v1alpha1",
        "kind": "ActionRequest",
        "metadata": metadata | (meta or {}),
        "spec": {"agent": agent, "action": "db.query", "target": "test:1", "summary": "hostile"} | spec,
    }  # fmt: skip


def create(cluster: Cluster, body: dict[str, Any], who: str) -> subprocess.CompletedProcess[str]:
    return cluster.create(body, who=who, check=False)


def created_name(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["metadata"]["name"])


def refused(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    assert result.returncode != 0, result.stdout
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def report(kubeconfig: str, ns: str, body: dict[str, Any], outcome: str = "Executed") -> None:
    """What a hostile agent appends to its own outcome stream: 'I carried it out'."""
    meta, spec = body["metadata"], body["spec"]
    decision = Decision(
        namespace=ns, name=meta["name"], uid=meta["uid"], action=spec["action"],
        target=spec.get("target", ""), outcome="Approved", reason="AutoApproved", by=[],
        message="", state=None, spec_digest="", state_ref="",
    )  # fmt: skip

    async def send() -> None:
        async with Agent(ns, spec["agent"], kubeconfig=kubeconfig, context=spec["agent"]) as agent:
            await agent.report(decision, outcome, "done, trust me")

    asyncio.run(send())


def event(cluster: Cluster, ns: str, name: str, reason: str, timeout: float = 15) -> dict[str, Any]:
    return eventually(
        lambda: next((e for e in events(cluster, ns, name) if e["reason"] == reason), None),
        timeout, f"a {reason} Event on {name}",
    )  # fmt: skip


def dry_run_admitted(cluster: Cluster, ns: str) -> bool:
    """Would the cluster take a request filed as another agent? (A server-side dry run runs
    admission and stores nothing.)"""
    probe = document(ns, agent=OTHER)
    return (
        cluster.kubectl(
            "create", "--dry-run=server", "-f", "-", who=f"{ns}/{AGENT}",
            input=json.dumps(probe), check=False,
        ).returncode == 0
    )  # fmt: skip


@contextlib.contextmanager
def without_filing_policy(cluster: Cluster, ns: str) -> Iterator[None]:
    """As on a cluster installed without the filing policy (the chart's admission.install=false),
    or before it existed: its binding is removed, and applied again afterwards."""
    cluster.kubectl("delete", "validatingadmissionpolicybinding", FILING)
    try:
        eventually(lambda: dry_run_admitted(cluster, ns), 30, "the filing policy to be off")
        yield
    finally:
        cluster.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f",
            str(paths.admission_dir() / "actionrequests.yaml"),
        )  # fmt: skip
        eventually(lambda: not dry_run_admitted(cluster, ns), 30, "the filing policy back on")


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


# -- item 8 and what else an agent might set -----------------------------------------------------


def test_finalizers_and_owners_are_the_operators(cluster: Cluster, ns: str) -> None:
    payments = cluster.get("agentactionpolicy", "payments", ns)
    owner = {"apiVersion": "handoff.dev/v1alpha1", "kind": "AgentActionPolicy", "name": "payments",
             "uid": payments["metadata"]["uid"], "blockOwnerDeletion": True}  # fmt: skip
    dangling = owner | {"name": "gone", "uid": "00000000-0000-0000-0000-000000000000",
                        "blockOwnerDeletion": False}  # fmt: skip
    for who in (f"{ns}/{AGENT}", "admin"):
        kept = create(cluster, document(ns, meta={"finalizers": ["example.com/keep"]}), who)
        refused(kept, "finalizers on an ActionRequest are reserved for the Handoff operator")
        for reference in (owner, dangling):
            owned = create(cluster, document(ns, meta={"ownerReferences": [reference]}), who)
            refused(
                owned, "ownerReferences on an ActionRequest are reserved for the Handoff operator"
            )

    # Later: an agent may not update a request at all, and nobody else may add either.
    name = file(cluster, ns, "db.query")
    add = json.dumps({"metadata": {"finalizers": ["example.com/keep"]}})
    refused(
        cluster.kubectl("patch", "actionrequest", name, "-n", ns, "--type=merge", "-p", add,
                        who=f"{ns}/{AGENT}", check=False),
        'cannot patch resource "actionrequests"',
    )  # fmt: skip
    refused(
        cluster.kubectl("patch", "actionrequest", name, "-n", ns, "--type=merge", "-p", add, check=False),
        "you may remove one, not add one (example.com/keep)",
    )  # fmt: skip
    own = json.dumps({"metadata": {"ownerReferences": [dangling]}})
    refused(
        cluster.kubectl("patch", "actionrequest", name, "-n", ns, "--type=merge", "-p", own, check=False),
        "ownerReferences on an ActionRequest are reserved for the Handoff operator",
    )  # fmt: skip
    assert "finalizers" not in request(cluster, ns, name)["metadata"]

    # One set before the policy existed can still be removed, and the request deleted.
    with without_filing_policy(cluster, ns):
        old = created_name(
            create(cluster, document(ns, meta={"finalizers": ["example.com/keep"]}), "admin")
        )
    drop = json.dumps({"metadata": {"finalizers": None}})
    cluster.kubectl("patch", "actionrequest", old, "-n", ns, "--type=merge", "-p", drop)
    cluster.kubectl("delete", "actionrequest", old, "-n", ns, "--wait=true", "--timeout=15s")


def test_handoff_labels_and_annotations_are_set_by_handoff(cluster: Cluster, ns: str) -> None:
    agent = f"{ns}/{AGENT}"
    # What the SDK sets is taken: its own name as handoff.dev/agent, and its proposal id.
    sdk = {
        "labels": {"handoff.dev/agent": AGENT},
        "annotations": {"handoff.dev/proposal-id": "p-1"},
    }
    name = created_name(create(cluster, document(ns, meta=sdk), agent))
    assert request(cluster, ns, name)["metadata"]["labels"] == {"handoff.dev/agent": AGENT}

    labels = {
        "handoff.dev/agent": OTHER,  # another agent's name
        "handoff.dev/rollback-of": name,
        "handoff.dev/post-incident-of": name,
        "handoff.dev/policy": "payments",
        "sub.handoff.dev/anything": "x",
    }
    for key, value in labels.items():
        forged = create(cluster, document(ns, meta={"labels": {key: value}}), agent)
        refused(forged, "labels under handoff.dev/ are set by Handoff",
                f"equal to spec.agent ({AGENT})", f"remove {key}={value}")  # fmt: skip
    annotations = ["handoff.dev/break-glass", "handoff.dev/anything", "Handoff.Dev/requested-by",
                   "sub.handoff.dev/requested-by"]  # fmt: skip
    for key in annotations:
        forged = create(cluster, document(ns, meta={"annotations": {key: "alice"}}), agent)
        refused(forged, "annotations under handoff.dev/ are set by Handoff", f"remove {key}")
    for bad in ("x" * 254, "line\nFiled by alice", "abc\u202edcba"):
        odd = {"annotations": {"handoff.dev/proposal-id": bad}}
        refused(create(cluster, document(ns, meta=odd), agent), "at most 253 characters")
    # A person may set labels of their own on a request, not Handoff's.
    cluster.kubectl("label", "actionrequest", name, "-n", ns, "team=payments")
    for change in (
        "handoff.dev/agent=other-agent",
        "handoff.dev/agent-",
        "handoff.dev/rollback-of=x",
    ):
        refused(
            cluster.kubectl("label", "--overwrite", "actionrequest", name, "-n", ns, change, check=False),
            "labels under handoff.dev/ are set by Handoff when a request is filed and cannot change",
        )  # fmt: skip
    refused(
        cluster.kubectl("annotate", "actionrequest", name, "-n", ns, "handoff.dev/break-glass=x",
                        check=False),
        "annotations under handoff.dev/ are set by Handoff when a request is filed",
    )  # fmt: skip


def test_an_agent_cannot_create_what_the_operator_names_predictably(
    cluster: Cluster, ns: str
) -> None:
    """Beside requests, the operator creates under predictable names: ConfigMaps
    handoff-previous-<uid> (the Kubernetes executor), Roles and RoleBindings handoff-agent-<policy>,
    handoff-reviewer-<policy>, handoff-break-glass-<policy> and handoff-redis-<agent>, credential
    Secrets, PolicyReports, Events. An agent may create none of them, nor change a request."""
    refusals = [
        ("create", "configmaps"), ("create", "secrets"), ("create", "roles.rbac.authorization.k8s.io"),
        ("create", "rolebindings.rbac.authorization.k8s.io"), ("create", "serviceaccounts"),
        ("create", "policyreports.wgpolicyk8s.io"), ("create", "events"),
        ("create", "leases.coordination.k8s.io"), ("update", "actionrequests.handoff.dev"),
        ("patch", "actionrequests.handoff.dev"), ("delete", "actionrequests.handoff.dev"),
        ("patch", "actionrequests.handoff.dev", "--subresource=status"),
    ]  # fmt: skip
    for who in (f"{ns}/{AGENT}", f"{ns}/{OTHER}"):
        for question in refusals:
            answer = cluster.kubectl("auth", "can-i", *question, "-n", ns, who=who, check=False)
            assert answer.stdout.strip() == "no", f"{who} may {' '.join(question)}"
        answer = cluster.kubectl(
            "auth", "can-i", "create", "actionrequests.handoff.dev", "-n", ns, who=who
        )
        assert answer.stdout.strip() == "yes"
