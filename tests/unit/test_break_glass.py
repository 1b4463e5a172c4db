"""Break-glass: the annotation, how its reviews count, and the post-incident review it leaves."""

import json
from datetime import timedelta
from typing import Any

import pytest
from handoff.controller.access import break_glass_objects
from handoff.controller.policies import policy_status
from handoff.domain.breakglass import (
    ANNOTATION,
    POST_INCIDENT_ACTION,
    BreakGlassError,
    parse_break_glass,
    post_incident_request,
)
from handoff.domain.decide import decide
from handoff.domain.model import RequestState
from handoff.domain.reasons import Reason
from handoff.domain.records import records
from handoff.domain.timefmt import format_time

from .helpers import CREATED, applied, approve, at, policy, request, reviewed


def annotation(**fields: Any) -> dict[str, str]:
    body = {"groups": ["sre-oncall"], "until": format_time(at(hours=2)), "reason": "INC-1"}
    body.update(fields)
    return {ANNOTATION: json.dumps(body)}


def test_a_well_formed_annotation_grants_its_groups_until_its_time() -> None:
    grant = parse_break_glass(annotation(groups=["sre-oncall", "sre-oncall", "db-oncall"]), CREATED)
    assert grant is not None
    assert grant.groups == ("db-oncall", "sre-oncall")
    assert grant.active(at(hours=1))
    assert not grant.active(at(hours=2))
    assert "INC-1" in grant.describe()
    assert parse_break_glass({}, CREATED) is None
    assert parse_break_glass(None, CREATED) is None


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({ANNOTATION: "not json"}, "is not JSON"),
        ({ANNOTATION: "[1, 2]"}, "must be a JSON object"),
        (annotation(groups=[]), "groups must be a non-empty list"),
        (annotation(groups=["ok", 3]), "groups must be a non-empty list"),
        (annotation(reason="  "), "reason must say why"),
        (annotation(until="tomorrow"), "until must be an RFC 3339 time"),
        (annotation(until=format_time(at(hours=25))), "more than 24h away"),
    ],
)  # fmt: skip
def test_malformed_or_overlong_annotations_grant_nothing(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(BreakGlassError, match=message):
        parse_break_glass(annotations, CREATED)


def waiting() -> RequestState:
    step = decide([policy()], request("payments.refund"), CREATED)
    return applied(request("payments.refund"), step)


def glass(who: str) -> dict[str, Any]:
    return approve(who) | {"breakGlass": True}


def test_a_break_glass_approval_counts_from_outside_the_reviewers_and_says_so() -> None:
    state = reviewed(waiting(), glass("dave"))
    step = decide([policy()], state, at(minutes=1))
    assert step.decision is not None
    assert step.decision.reason == Reason.BREAK_GLASS_APPROVED
    assert step.decision.by == ("dave",)
    assert "under break-glass: dave" in step.decision.message


def test_without_the_mark_an_outsider_is_not_counted() -> None:
    step = decide([policy()], reviewed(waiting(), approve("dave")), at(minutes=1))
    assert step.decision is None
    assert "dave: not a reviewer of this policy" in str(step.patch)


def test_a_normal_approval_stays_human_approved_and_glass_still_needs_the_checklist() -> None:
    normal = decide([policy()], reviewed(waiting(), approve("alice")), at(minutes=1))
    assert normal.decision is not None
    assert normal.decision.reason == Reason.HUMAN_APPROVED
    unacked = reviewed(waiting(), approve("dave", ["what"]) | {"breakGlass": True})
    assert decide([policy()], unacked, at(minutes=1)).decision is None


def test_the_post_incident_review_waits_a_week_in_tier_4_for_the_normal_reviewers() -> None:
    original = reviewed(waiting(), glass("dave"))
    decided = applied(original, decide([policy()], original, at(minutes=1)))
    body = {
        "apiVersion": "handoff.dev/v1alpha1",
        "metadata": {"name": "req-1", "namespace": "agents"},
        "spec": decided.spec,
    }
    filed = post_incident_request(body, ("dave",), "INC-1")
    assert filed["metadata"]["name"] == "req-1-pir"
    assert filed["spec"]["action"] == POST_INCIDENT_ACTION
    assert filed["spec"]["parameters"]["approvedBy"] == ["dave"]
    state = RequestState.from_json(
        filed
        | {
            "metadata": filed["metadata"]
            | {"uid": "u-2", "creationTimestamp": format_time(at(minutes=2))}
        }
    )
    step = decide([policy()], state, at(minutes=2))
    assert step.patch is not None
    assert step.patch["tier"] == 4
    assert step.patch["phase"] == "AwaitingApproval"
    assert step.patch["deadline"] == format_time(at(minutes=2) + timedelta(hours=168))
    assert [c["id"] for c in step.patch["checklist"]] == ["why", "what", "follow-up"]
    classified = next(c for c in step.patch["conditions"] if c["type"] == "Classified")
    assert classified["reason"] == Reason.POST_INCIDENT_REVIEW
    # A break-glass approval of the review itself is not enough: only listed reviewers count.
    pending = applied(state, step)
    assert decide([policy()], reviewed(pending, approve("dave")), at(minutes=3)).decision is None
    outsider = reviewed(
        pending, approve("dave", ["why", "what", "follow-up"]) | {"breakGlass": True}
    )
    assert decide([policy()], outsider, at(minutes=3)).decision is None
    done = decide([policy()], reviewed(pending, approve("alice", ["why", "what", "follow-up"])),
                  at(minutes=3))  # fmt: skip
    assert done.decision is not None
    assert done.decision.reason == Reason.HUMAN_APPROVED
    # Nobody's agent waits for it: its decision goes to the audit trail only.
    final = applied(pending, done)
    body_json = {"metadata": {"namespace": "agents", "name": "req-1-pir", "uid": "u-2"},
                 "spec": final.spec, "status": final.status}  # fmt: skip
    streams = {r.stream for r in records(body_json, "handoff:audit")}
    assert streams == {"handoff:audit"}


def test_the_break_glass_role_grants_only_the_verb_and_reading_to_the_groups() -> None:
    grant = parse_break_glass(annotation(), CREATED)
    assert grant is not None
    role, binding = break_glass_objects(policy(), "uid-1", grant)
    verbs = {v for rule in role["rules"] for v in rule["verbs"]}
    assert "approve" not in verbs
    assert "break-glass" in verbs
    assert binding["subjects"] == [
        {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "sre-oncall"}
    ]
    assert role["metadata"]["ownerReferences"][0]["uid"] == "uid-1"


def test_the_policy_shows_its_break_glass_condition() -> None:
    status = policy_status(
        policy(), {}, "2026-11-29T18:00:00Z",
        break_glass=("True", Reason.BREAK_GLASS_ACTIVE, "break-glass for sre-oncall"),
    )  # fmt: skip
    kinds = {c["type"]: c for c in status["conditions"]}
    assert kinds["Ready"]["status"] == "True"
    assert kinds["BreakGlass"]["reason"] == "BreakGlassActive"
    assert "BreakGlass" not in {c["type"] for c in policy_status(policy(), {}, "t")["conditions"]}
