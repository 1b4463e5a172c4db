"""Break-glass, table by table: the annotation's exact problems, its window's bounds, and the
post-incident review request it leaves, whole."""

import json
from typing import Any

import pytest
from handoff.domain.breakglass import (
    ANNOTATION,
    BreakGlass,
    BreakGlassError,
    parse_break_glass,
    post_incident_request,
)
from handoff.domain.timefmt import format_time

from .helpers import CREATED, at


def annotation(**fields: Any) -> dict[str, str]:
    body = {"groups": ["sre-oncall"], "until": format_time(at(hours=2)), "reason": "INC-1"} | fields
    return {ANNOTATION: json.dumps(body)}


@pytest.mark.parametrize(
    ("annotations", "message"),
    [
        ({ANNOTATION: "{"}, "handoff.dev/break-glass is not JSON: "),
        ({ANNOTATION: '"text"'},
         "handoff.dev/break-glass must be a JSON object with groups, until, reason"),
        (annotation(groups="sre-oncall"),
         "handoff.dev/break-glass: groups must be a non-empty list of group names"),
        (annotation(groups=["sre", " "]),
         "handoff.dev/break-glass: groups must be a non-empty list of group names"),
        (annotation(reason=None),
         "handoff.dev/break-glass: reason must say why (an incident, a ticket)"),
        (annotation(reason=5),
         "handoff.dev/break-glass: reason must say why (an incident, a ticket)"),
        (annotation(until=None),
         "handoff.dev/break-glass: until must be an RFC 3339 time such as 2026-11-29T23:00:00Z"),
        (annotation(until=format_time(at(hours=24, seconds=1))),
         "handoff.dev/break-glass: until is more than 24h away; break-glass is time-boxed (file a"
         " policy change for a standing reviewer group)"),
    ],
)  # fmt: skip
def test_an_annotation_that_grants_nothing_says_exactly_why(
    annotations: dict[str, str], message: str
) -> None:
    with pytest.raises(BreakGlassError) as raised:
        parse_break_glass(annotations, CREATED)
    assert str(raised.value).startswith(message)
    if not message.endswith(": "):
        assert str(raised.value) == message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"until": format_time(at(hours=24))},
         BreakGlass(("sre-oncall",), at(hours=24), "INC-1")),
        ({"groups": ["b", "a", "b"], "reason": "  INC-2: stuck  "},
         BreakGlass(("a", "b"), at(hours=2), "INC-2: stuck")),
        ({"reason": "r" * 600}, BreakGlass(("sre-oncall",), at(hours=2), "r" * 512)),
        ({"until": format_time(at(hours=-1))}, BreakGlass(("sre-oncall",), at(hours=-1), "INC-1")),
    ],
)  # fmt: skip
def test_a_grant(fields: dict[str, Any], expected: BreakGlass) -> None:
    assert parse_break_glass(annotation(**fields), CREATED) == expected
    assert parse_break_glass({"other": "x"}, CREATED) is None


def test_a_grant_is_active_until_its_time_and_describes_itself() -> None:
    grant = BreakGlass(("db", "sre"), at(hours=2), "INC-1")
    assert [grant.active(at(hours=h)) for h in (0, 1.99, 2, 3)] == [True, True, False, False]
    assert grant.describe() == "break-glass for db, sre until 2026-11-29T20:00:00Z: INC-1"


def test_the_post_incident_review_request_whole() -> None:
    body = {
        "apiVersion": "handoff.dev/v1alpha1",
        "metadata": {"name": "refund-1", "namespace": "agents"},
        "spec": {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:ch_1"},
    }
    filed = post_incident_request(body, ("dave", "erin"), "INC-1: payments stuck")
    assert filed["apiVersion"] == "handoff.dev/v1alpha1"
    assert filed["kind"] == "ActionRequest"
    assert filed["metadata"]["namespace"] == "agents"
    assert filed["metadata"]["labels"] == {"handoff.dev/post-incident-of": "refund-1"}
    assert filed["spec"] == {
        "agent": "payments-agent",
        "action": "handoff.post-incident-review",
        "target": "actionrequest/refund-1",
        "summary": "Post-incident review: dave, erin approved payments.refund on stripe:ch_1"
        " under break-glass",
        "reasoning": "Break-glass reason: INC-1: payments stuck",
        "blastRadius": "none: a record to review; nothing runs when it is approved",
        "parameters": {
            "request": "refund-1",
            "action": "payments.refund",
            "approvedBy": ["dave", "erin"],
            "breakGlassReason": "INC-1: payments stuck",
        },
    }


def test_the_post_incident_review_of_long_names_and_texts() -> None:
    body = {
        "apiVersion": "handoff.dev/v1alpha1",
        "metadata": {"name": "a" * 61 + "-.b" + "c" * 200, "namespace": "agents"},
        "spec": {"agent": "a", "action": "x" * 600},
    }
    filed = post_incident_request(body, ("dave",), "r" * 5000)
    assert filed["metadata"]["labels"]["handoff.dev/post-incident-of"] == "a" * 61
    assert len(filed["spec"]["summary"]) == 512
    assert " on  under break-glass" not in filed["spec"]["summary"]  # cut before it
    assert len(filed["spec"]["reasoning"]) == 4096
    assert len(filed["spec"]["parameters"]["breakGlassReason"]) == 512
    short = post_incident_request(body | {"spec": {"agent": "a", "action": "x"}}, ("d",), "r")
    assert short["spec"]["summary"] == "Post-incident review: d approved x on  under break-glass"
    assert filed["metadata"]["name"] == "a" * 61 + "-.b" + "c" * 176 + "-pir"
