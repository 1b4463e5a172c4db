"""Approval stages (domain/stages.py): the walk over the reviews, the judgement, what the status
shows, and the glue in decide. Properties on random stages and reviews:

- a stage never opens before the one before it has its approvals;
- one person never counts in two stages, and never for their own request;
- a Deny at any stage that has opened decides HumanDenied and names the stage;
- nothing is approved past the deadline, nor before every stage has its approvals.
"""

from datetime import timedelta
from typing import Any

import pytest
from handoff.domain.decide import decide
from handoff.domain.model import Review
from handoff.domain.policy import Lane, compile_policy
from handoff.domain.policyparts import ChecklistItem, Reviewers
from handoff.domain.policystages import Stage
from handoff.domain.reasons import Outcome, Oversight, Reason, Transition
from handoff.domain.stages import (
    StageState,
    StageTally,
    approve_name,
    from_status,
    judge,
    progress,
    snapshot,
    status_json,
    walk,
)
from handoff.domain.timefmt import format_time
from hypothesis import given
from hypothesis import strategies as st

from .helpers import ACK_ALL, AGENT, CREATED, NS, applied, at, request, reviewed, transition_of
from .test_properties import FAST

REQUESTER = f"system:serviceaccount:{NS}:{AGENT}"
CHECK = (ChecklistItem("what", "I read it"),)
MANAGER = StageState("manager", 1, CHECK, frozenset({"alice", "bob"}), opened_at=CREATED)
FINANCE = StageState("finance", 2, CHECK, frozenset({"carol", "dave", "erin", "bob"}))
TWO = (MANAGER, FINANCE)
DEADLINE = at(minutes=15)


def review(who: str, decision: str = "Approve", stage: str = "manager", **extra: Any) -> Review:
    return Review(who, decision, frozenset(extra.pop("ack", ["what"])), stage=stage, **extra)


# --- the walk, row by row -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reviews", "open_index", "approvers", "denied", "ignored"),
    [
        pytest.param([], 0, ((), ()), None, (), id="nothing yet"),
        pytest.param([review("alice")], 1, (("alice",), ()), None, (), id="stage 1 done"),
        pytest.param(
            [review("carol", stage="finance")], 0, ((), ()), None,
            ("carol: stage finance was not open yet",), id="stage 2 first",
        ),
        pytest.param(
            [review("alice"), review("carol", stage="finance"), review("dave", stage="finance")],
            2, (("alice",), ("carol", "dave")), None, (), id="both stages",
        ),
        pytest.param(
            [review("bob"), review("bob", stage="finance"), review("carol", stage="finance")],
            1, (("bob",), ("carol",)), None,
            ("bob: counts in stage manager already: one person counts in one stage only",),
            id="one person, two stages",
        ),
        pytest.param(
            [review("mallory")], 0, ((), ()), None,
            ("mallory: not a reviewer of stage manager",), id="not a reviewer",
        ),
        pytest.param(
            [review("mallory", break_glass=True)], 1, (("mallory",), ()), None, (),
            id="break-glass counts in the stage it names",
        ),
        pytest.param(
            [review(REQUESTER)], 0, ((), ()), None,
            (f"{REQUESTER}: the requester cannot review its own request",), id="requester",
        ),
        pytest.param(
            [review("alice", stage="")], 0, ((), ()), None,
            ("alice: names no stage of this request ('')",), id="no stage named",
        ),
        pytest.param(
            [review(REQUESTER), review("bob", stage="legal"), review("alice")], 1,
            (("alice",), ()), None,
            (f"{REQUESTER}: the requester cannot review its own request",
             "bob: names no stage of this request ('legal')"),
            id="what does not count does not stop the walk",
        ),
        pytest.param(
            [review("alice", ack=[])], 0, ((), ()), None,
            ("alice: did not acknowledge what (stage manager)",), id="checklist",
        ),
        pytest.param(
            [review("alice"), review("bob")], 1, (("alice",), ()), None,
            ("bob: stage manager already had its approvals",), id="a stage already done",
        ),
        pytest.param(
            [review("alice"), review("alice")], 1, (("alice",), ()), None,
            ("alice: stage manager already had its approvals",), id="twice",
        ),
        pytest.param(
            [review("alice"), review("carol", stage="finance"), review("carol", stage="finance")],
            1, (("alice",), ("carol",)), None, (), id="twice in one stage counts once",
        ),
        pytest.param(
            [review("alice", "Rollback")], 0, ((), ()), None,
            ("alice: decision 'Rollback' is neither Approve nor Deny",), id="rollback",
        ),
        pytest.param(
            [review("alice"), review("carol", "Deny", stage="finance")], 1,
            (("alice",), ()), ("carol", "finance"), (), id="deny at stage 2",
        ),
        pytest.param(
            [review("alice", "Deny"), review("bob", "Deny")], 0, ((), ()),
            ("alice", "manager"), (), id="the first deny names the stage",
        ),
        pytest.param(
            [review("carol", "Deny", stage="finance")], 0, ((), ()), None,
            ("carol: stage finance was not open yet",), id="deny at a stage not open",
        ),
        pytest.param(
            [review("alice"), review("alice", "Deny")], 1, (("alice",), ()),
            ("alice", "manager"), (), id="deny at a stage that passed still decides",
        ),
        pytest.param(
            [review("mallory", "Deny")], 0, ((), ()), None,
            ("mallory: not a reviewer of stage manager",), id="deny from a stranger",
        ),
    ],
)  # fmt: skip
def test_walk(
    reviews: list[Review],
    open_index: int,
    approvers: tuple[tuple[str, ...], ...],
    denied: tuple[str, str] | None,
    ignored: tuple[str, ...],
) -> None:
    walked = walk(TWO, reviews, REQUESTER)
    assert (walked.open, walked.approvers, walked.denied, walked.ignored) == (
        open_index, approvers, denied, ignored,
    )  # fmt: skip
    assert walked.complete is (open_index == 2)


def test_walk_names_break_glass_approvers_only() -> None:
    walked = walk(TWO, [review("alice"), review("mallory", break_glass=True, stage="finance"),
                        review("carol", stage="finance")], REQUESTER)  # fmt: skip
    assert walked.break_glass == ("mallory",)
    assert walked.complete


def test_walk_ignores_the_person_who_filed_as_the_agent() -> None:
    walked = walk(TWO, [review("alice"), review("bob")], frozenset({REQUESTER, "alice"}))
    assert walked.approvers == (("bob",), ())
    assert walked.ignored == ("alice: the requester cannot review its own request",)


def test_walk_names_every_checklist_item_not_acknowledged() -> None:
    items = (ChecklistItem("what", "I read it"), ChecklistItem("undo", "I know the undo"))
    stage = StageState("manager", 1, items, frozenset({"alice"}))
    walked = walk((stage,), [review("alice", ack=[])], REQUESTER)
    assert walked.ignored == ("alice: did not acknowledge undo, what (stage manager)",)


def test_a_stage_of_groups_admits_anyone_admission_let_through() -> None:
    groups = StageState("finance", 1, (), groups=frozenset({"finance"}))
    assert walk((groups,), [review("zed", stage="finance", ack=[])], REQUESTER).complete
    assert not StageState("x", 1, ()).admits(review("zed"))


# --- judge and progress ---------------------------------------------------------------------


def tally(open_index: int, *approvers: tuple[str, ...], **kw: Any) -> StageTally:
    return StageTally(open_index, approvers, **kw)


@pytest.mark.parametrize(
    ("counted", "now", "expected"),
    [
        pytest.param(tally(0, (), ()), at(minutes=1), None, id="waiting"),
        pytest.param(tally(1, ("alice",), ("carol",)), at(minutes=1), None, id="stage 2 waits"),
        pytest.param(
            tally(1, ("alice",), (), denied=("carol", "finance")), at(minutes=20),
            (Outcome.DENIED, Reason.HUMAN_DENIED, ("carol",), "carol denied it at stage finance"),
            id="deny beats the deadline",
        ),
        pytest.param(
            tally(1, ("alice",), ("carol",)), DEADLINE,
            (Outcome.DENIED, Reason.EXPIRED, (),
             f"the decision window closed at {format_time(DEADLINE)} in stage finance (2 of 2)"
             " with 1 of 2 approval(s): denied, fail safe"),
            id="expired in stage 2",
        ),
        pytest.param(
            tally(0, (), ()), at(minutes=16),
            (Outcome.DENIED, Reason.EXPIRED, (),
             f"the decision window closed at {format_time(DEADLINE)} in stage manager (1 of 2)"
             " with 0 of 1 approval(s): denied, fail safe"),
            id="expired in stage 1",
        ),
        pytest.param(
            tally(2, ("alice",), ("carol", "dave")), DEADLINE,
            (Outcome.DENIED, Reason.EXPIRED, (),
             f"the decision window closed at {format_time(DEADLINE)} in stage finance (2 of 2)"
             " with every stage approved, too late: denied, fail safe"),
            id="approvals in hand, too late",
        ),
        pytest.param(
            tally(2, ("alice",), ("carol", "dave")), at(minutes=14),
            (Outcome.APPROVED, Reason.HUMAN_APPROVED, ("alice", "carol", "dave"),
             "approved by alice (stage manager); carol, dave (stage finance)"),
            id="approved",
        ),
        pytest.param(
            tally(2, ("alice",), ("carol", "zed"), break_glass=("zed",)), at(minutes=14),
            (Outcome.APPROVED, Reason.BREAK_GLASS_APPROVED, ("alice", "carol", "zed"),
             "approved by alice (stage manager); carol, zed (stage finance);"
             " under break-glass: zed"),
            id="break-glass",
        ),
        pytest.param(
            tally(2, ("yan",), ("carol", "zed"), break_glass=("yan", "zed")), at(minutes=14),
            (Outcome.APPROVED, Reason.BREAK_GLASS_APPROVED, ("yan", "carol", "zed"),
             "approved by yan (stage manager); carol, zed (stage finance);"
             " under break-glass: yan, zed"),
            id="break-glass, two of them",
        ),
    ],
)  # fmt: skip
def test_judge(
    counted: StageTally, now: Any, expected: tuple[Outcome, Reason, tuple[str, ...], str] | None
) -> None:
    decision = judge(TWO, counted, DEADLINE, now)
    if expected is None:
        assert decision is None
    else:
        assert decision is not None
        assert (decision.outcome, decision.reason, decision.by, decision.message) == expected
        assert decision.at == now


def test_progress_says_the_stage_what_is_needed_and_who_approved() -> None:
    deadline = format_time(DEADLINE)
    assert progress(TWO, tally(0, (), ()), DEADLINE) == (
        f"stage manager (1 of 2): 0 of 1 approval(s) by {deadline}, else Denied (Expired)"
    )
    counted = tally(1, ("alice",), ("carol",), ignored=("bob: x", "zed: y"))
    assert progress(TWO, counted, DEADLINE) == (
        f"stage finance (2 of 2): 1 of 2 approval(s) by {deadline}, else Denied (Expired);"
        " approved so far: manager by alice; finance by carol; not counted: bob: x; zed: y"
    )
    assert "approved so far: manager by alice; finance by carol, dave" in progress(
        TWO, tally(2, ("alice",), ("carol", "dave")), DEADLINE
    )


# --- the status ---------------------------------------------------------------------------


def test_status_shows_the_open_stage_and_who_approved_each() -> None:
    escalating = StageState(
        "finance", 2, CHECK, groups=frozenset({"fin"}), escalate_after=timedelta(minutes=5),
        escalate_to=("cfo",),
    )  # fmt: skip
    shown = status_json((MANAGER, escalating), tally(1, ("alice",), ()), at(minutes=2), DEADLINE)
    assert shown == {
        "stage": "finance",
        "stages": [
            {"name": "manager", "approvals": 1,
             "reviewers": {"users": ["alice", "bob"], "groups": []},
             "checklist": [{"id": "what", "text": "I read it"}], "approvedBy": ["alice"],
             "openedAt": format_time(CREATED)},
            {"name": "finance", "approvals": 2, "reviewers": {"users": [], "groups": ["fin"]},
             "checklist": [{"id": "what", "text": "I read it"}], "approvedBy": [],
             "escalateAfter": "5m", "escalateTo": ["cfo"], "openedAt": format_time(at(minutes=2))},
        ],
        "requiredApprovals": 2,
        "checklist": [{"id": "what", "text": "I read it"}],
        "escalation": {"at": format_time(at(minutes=7)), "to": ["cfo"]},
    }  # fmt: skip
    assert from_status(shown) == (
        MANAGER, StageState(**{**escalating.__dict__, "opened_at": at(minutes=2)})
    )  # fmt: skip
    # An escalation at or after the deadline is none; a stage not open yet has no openedAt.
    late = StageState("finance", 1, (), escalate_after=timedelta(minutes=13))
    assert (
        status_json((MANAGER, late), tally(1, ("a",), ()), at(minutes=2), DEADLINE)["escalation"]
        is None
    )
    first = status_json(TWO, tally(0, (), ()), at(minutes=2), DEADLINE)
    assert "openedAt" not in first["stages"][1]
    assert (first["stage"], first["requiredApprovals"], first["escalation"]) == ("manager", 1, None)
    done = status_json(TWO, tally(2, ("a",), ("b", "c")), at(minutes=2), DEADLINE)
    assert done["stage"] == "finance"


def test_a_stage_not_yet_opened_escalates_from_when_it_opens() -> None:
    unopened = StageState("finance", 1, (), escalate_after=timedelta(minutes=1))
    assert status_json((unopened,), tally(0, ()), at(minutes=3), DEADLINE)["escalation"] == {
        "at": format_time(at(minutes=4)), "to": []
    }  # fmt: skip


def test_from_status_reads_the_defaults() -> None:
    assert from_status({}) == ()
    assert from_status({"stages": [{"name": "x"}]}) == (StageState("x", 1, ()),)
    assert from_status({"stages": [{}]}) == (StageState("", 1, ()),)


def test_snapshot_takes_the_lanes_checklist_and_escalation_unless_the_stage_has_its_own() -> None:
    lane = Lane(
        Oversight.HITL, timedelta(minutes=15), 1, CHECK,
        escalate_after=timedelta(minutes=3), escalate_to=("lead",),
        stages=(
            Stage("manager", Reviewers(frozenset({"alice"}))),
            Stage("finance", Reviewers(groups=frozenset({"fin"})), 2, (),
                  timedelta(minutes=1), ("cfo",)),
        ),
    )  # fmt: skip
    assert snapshot(lane, CREATED) == (
        StageState("manager", 1, CHECK, frozenset({"alice"}), frozenset(),
                   timedelta(minutes=3), ("lead",), CREATED),
        StageState("finance", 2, (), frozenset(), frozenset({"fin"}),
                   timedelta(minutes=1), ("cfo",), None),
    )  # fmt: skip


def test_the_right_to_approve_a_stage_names_no_real_policy() -> None:
    assert approve_name("payments", "finance") == "payments:finance"


# --- properties ---------------------------------------------------------------------------

PEOPLE = ("alice", "bob", "carol", "dave", REQUESTER)
NAMES = ("one", "two", "three")


@st.composite
def stage_lists(draw: st.DrawFn) -> tuple[StageState, ...]:
    count = draw(st.integers(1, 3))
    return tuple(
        StageState(
            NAMES[i], draw(st.integers(1, 2)), draw(st.sampled_from([(), CHECK])),
            frozenset(draw(st.lists(st.sampled_from(PEOPLE), max_size=3))),
            frozenset(draw(st.sampled_from([(), ("g",)]))),
        )
        for i in range(count)
    )  # fmt: skip


reviews_strategy = st.lists(
    st.builds(
        lambda who, decision, stage, ack, glass: Review(
            who, decision, frozenset(ack), stage=stage, break_glass=glass
        ),
        st.sampled_from(PEOPLE),
        st.sampled_from(["Approve", "Approve", "Approve", "Deny", "Rollback"]),
        st.sampled_from([*NAMES, ""]),
        st.sampled_from([[], ["what"]]),
        st.booleans(),
    ),
    max_size=12,
)


@FAST
@given(stage_lists(), reviews_strategy)
def test_a_stage_never_opens_before_the_one_before_it_is_complete(
    stages: tuple[StageState, ...], reviews: list[Review]
) -> None:
    for length in range(len(reviews) + 1):  # and at every point on the way
        walked = walk(stages, reviews[:length], REQUESTER)
        for index, stage in enumerate(stages):
            if index < walked.open:
                assert len(walked.approvers[index]) >= stage.approvals
            else:
                assert len(walked.approvers[index]) < stage.approvals or index == walked.open - 1
            if index > walked.open:
                assert walked.approvers[index] == ()
        if length:
            assert walked.open >= walk(stages, reviews[: length - 1], REQUESTER).open


@FAST
@given(stage_lists(), reviews_strategy)
def test_one_person_counts_in_one_stage_only_and_never_for_their_own_request(
    stages: tuple[StageState, ...], reviews: list[Review]
) -> None:
    walked = walk(stages, reviews, REQUESTER)
    everyone = [who for approvers in walked.approvers for who in approvers]
    assert len(everyone) == len(set(everyone))
    assert REQUESTER not in everyone
    decision = judge(stages, walked, DEADLINE, at(minutes=1))
    if decision is not None and decision.outcome is Outcome.APPROVED:
        assert len(set(decision.by)) == sum(stage.approvals for stage in stages) <= len(decision.by)


@FAST
@given(stage_lists(), reviews_strategy, st.sampled_from(["alice", "bob", "carol"]), st.booleans())
def test_a_deny_at_the_open_stage_decides_and_names_it(
    stages: tuple[StageState, ...], reviews: list[Review], who: str, late: bool
) -> None:
    before = walk(stages, reviews, REQUESTER)
    index = min(before.open, len(stages) - 1)
    deny = Review(who, "Deny", stage=stages[index].name, break_glass=True)
    walked = walk(stages, [*reviews, deny], REQUESTER)
    decision = judge(stages, walked, DEADLINE, at(minutes=20 if late else 1))
    assert decision is not None
    assert (decision.outcome, decision.reason) == (Outcome.DENIED, Reason.HUMAN_DENIED)
    assert walked.denied is not None
    assert decision.message == f"{walked.denied[0]} denied it at stage {walked.denied[1]}"


@FAST
@given(stage_lists(), reviews_strategy, st.integers(-5, 5))
def test_never_approved_past_the_deadline_nor_before_every_stage_is_approved(
    stages: tuple[StageState, ...], reviews: list[Review], minutes: int
) -> None:
    walked = walk(stages, reviews, REQUESTER)
    now = DEADLINE + timedelta(minutes=minutes)
    decision = judge(stages, walked, DEADLINE, now)
    if decision is not None and decision.outcome is Outcome.APPROVED:
        assert now < DEADLINE
        assert walked.complete
        assert walked.denied is None
    if walked.denied is None and now < DEADLINE and not walked.complete:
        assert decision is None


# --- decide, with a policy that declares stages --------------------------------------------


def staged_policy(**lane: Any) -> Any:
    tier4 = {
        "stages": [
            {"name": "manager", "reviewers": {"users": ["alice", "bob"]}},
            {"name": "finance", "reviewers": {"users": ["carol", "dave", "bob"]},
             "approvals": 2, "checklist": [{"id": "ledger", "text": "The ledger agrees"}],
             "escalateAfter": "5m", "escalateTo": ["cfo"]},
        ],
        **lane,
    }  # fmt: skip
    spec = {
        "agents": {"serviceAccounts": [AGENT]},
        "reviewers": {"users": ["alice", "bob", "carol"]},
        "tiers": {"tier4": tier4},
        "rules": [{"name": "money", "actions": ["payments.*"], "tier": 4}],
    }
    return compile_policy(NS, "payments", spec, generation=1)  # type: ignore[arg-type]


def ack(who: str, stage: str, *items: str) -> dict[str, Any]:
    return {"reviewer": who, "decision": "Approve", "acknowledged": list(items or ACK_ALL),
            "stage": stage}  # fmt: skip


def test_a_two_stage_request_goes_stage_by_stage() -> None:
    policy = staged_policy()
    assert policy.ready, policy.errors
    state = request()
    first = decide([policy], state, at(seconds=1))
    assert first.transition is Transition.STARTED_WAITING
    assert first.patch is not None
    assert first.patch["stage"] == "manager"
    assert first.patch["requiredApprovals"] == 1
    assert first.patch["escalation"] is None
    assert [s["name"] for s in first.patch["stages"]] == ["manager", "finance"]
    assert "stage manager (1 of 2): 0 of 1 approval(s)" in first.patch["conditions"][-1]["message"]
    state = applied(state, first)
    assert decide([policy], state, at(seconds=2)).patch is None  # no reviews: nothing to write

    # carol tries finance first: not counted, and stage 1 stays open
    early = reviewed(state, ack("carol", "finance", "ledger"))
    step = decide([policy], early, at(minutes=1))
    assert step.transition is Transition.PROGRESSED
    assert "carol: stage finance was not open yet" in step.patch["conditions"][-1]["message"]  # type: ignore[index]

    state = reviewed(state, ack("alice", "manager"))
    step = decide([policy], state, at(minutes=1))
    assert step.transition is Transition.STAGE_OPENED is transition_of(state, step)
    assert step.event is not None
    assert step.event.reason == Reason.STAGE_OPENED
    assert step.patch is not None
    assert step.patch["stage"] == "finance"
    assert step.patch["requiredApprovals"] == 2
    assert step.patch["checklist"] == [{"id": "ledger", "text": "The ledger agrees"}]
    assert step.patch["escalation"] == {"at": format_time(at(minutes=6)), "to": ["cfo"]}
    assert step.patch["stages"][0]["approvedBy"] == ["alice"]
    state = applied(state, step)
    assert decide([policy], state, at(minutes=2)).patch is None  # written: nothing new

    state = reviewed(state, ack("carol", "finance", "ledger"))
    step = decide([policy], state, at(minutes=2))
    assert step.transition is Transition.PROGRESSED
    state = reviewed(applied(state, step), ack("dave", "finance", "ledger"))
    step = decide([policy], state, at(minutes=3))
    assert step.decision is not None
    assert (step.decision.reason, step.decision.by) == (
        Reason.HUMAN_APPROVED, ("alice", "carol", "dave")
    )  # fmt: skip
    assert step.patch is not None
    assert step.patch["stages"][1]["approvedBy"] == ["carol", "dave"]


def test_deny_at_stage_2_and_expiry_in_stage_2() -> None:
    policy = staged_policy()
    state = applied(request(), decide([policy], request(), at(seconds=1)))
    state = reviewed(state, ack("alice", "manager"))
    state = applied(state, decide([policy], state, at(minutes=1)))
    denied = reviewed(state, {"reviewer": "carol", "decision": "Deny", "comment": "no",
                              "stage": "finance"})  # fmt: skip
    step = decide([policy], denied, at(minutes=2))
    assert step.decision is not None
    assert step.decision.message == "carol denied it at stage finance"
    expired = decide([policy], state, at(minutes=15))
    assert expired.decision is not None
    assert expired.decision.reason == Reason.EXPIRED
    assert "in stage finance (2 of 2) with 0 of 2" in expired.decision.message


def test_reviews_there_before_classification_are_walked_in_the_same_write() -> None:
    policy = staged_policy()
    early = reviewed(request(), ack("alice", "manager"), ack("carol", "finance", "ledger"),
                     ack("dave", "finance", "ledger"))  # fmt: skip
    step = decide([policy], early, at(seconds=1))
    assert step.decision is not None
    assert step.decision.reason == Reason.HUMAN_APPROVED
    assert step.patch is not None
    assert step.patch["stage"] == "finance"


def test_a_lane_without_stages_behaves_as_before() -> None:
    spec = {"agents": {"serviceAccounts": [AGENT]}, "reviewers": {"users": ["alice"]}}
    step = decide([compile_policy(NS, "p", spec)], request(), at(seconds=1))  # type: ignore[arg-type]
    assert step.patch is not None
    assert "stage" not in step.patch
    assert "stages" not in step.patch


@pytest.mark.parametrize(
    ("tiers", "error"),
    [
        pytest.param({"tier4": {"stages": [{"name": "a"}]}},
                     "tiers.tier4.stages[a] names no reviewers: nobody could approve it", id="empty"),
        pytest.param({"tier4": {"stages": [{"name": "a", "reviewers": {"users": ["x"]}},
                                           {"name": "a", "reviewers": {"users": ["y"]}}]}},
                     "tiers.tier4: stage name 'a' is used more than once", id="duplicate"),
        pytest.param({"tier3": {"stages": [{"name": "a", "reviewers": {"users": ["x"]}}]}},
                     "tiers.tier3.stages need a HITL lane: a HOTL hold has nobody to approve in turn",
                     id="hotl"),
        pytest.param({"tier4": {"stages": [{"name": "a", "approvals": 0,
                                            "reviewers": {"users": ["x"]}}]}},
                     "tiers.tier4.stages[a].approvals must be at least 1, not 0", id="approvals"),
        pytest.param({"tier4": {"stages": [{"name": f"s{i}", "reviewers": {"users": ["x"]}}
                                           for i in range(6)]}},
                     "tiers.tier4: at most 5 stages, not 6", id="too many"),
        pytest.param({"tier4": {"stages": [{"name": "a", "reviewers": {"users": ["x"]}}]},
                      "tier3": {"oversight": "HITL",
                                "stages": [{"name": "a", "reviewers": {"users": ["y"]}}]}},
                     "stage 'a' is in tier3 and tier4 with different reviewers: give it the same"
                     " reviewers in both, or another name", id="same name, other people"),
        pytest.param({"tier4": {"stages": [{"name": "a", "escalateAfter": "soon",
                                            "reviewers": {"users": ["x"]}}]}},
                     "tiers.tier4.stages[a]: 'soon' is not a duration like 30s, 15m, 2h or 1h30m",
                     id="duration"),
    ],
)  # fmt: skip
def test_policies_with_broken_stages_are_not_ready(tiers: dict[str, Any], error: str) -> None:
    spec = {"agents": {"serviceAccounts": [AGENT]}, "tiers": tiers}
    policy = compile_policy(NS, "p", spec)  # type: ignore[arg-type]
    assert error in policy.errors


def test_stages_compile_with_their_own_settings() -> None:
    policy = staged_policy()
    finance = policy.tier4.stages[1]
    assert finance == Stage(
        "finance", Reviewers(frozenset({"carol", "dave", "bob"})), 2,
        (ChecklistItem("ledger", "The ledger agrees"),), timedelta(minutes=5), ("cfo",),
    )  # fmt: skip
    same = {"stages": [{"name": "a", "reviewers": {"users": ["x"]}}]}
    both = compile_policy(
        NS,
        "p",
        {
            "agents": {"serviceAccounts": [AGENT]},  # type: ignore[typeddict-item]
            "tiers": {"tier4": same, "tier3": {"oversight": "HITL", **same}},
        },
    )
    assert both.ready, both.errors
    unnamed = compile_policy(
        NS,
        "p",
        {
            "agents": {"serviceAccounts": [AGENT]},  # type: ignore[typeddict-item]
            "tiers": {"tier4": {"stages": [{"reviewers": {"users": ["x"]}}]}},
        },
    )
    assert unnamed.tier4.stages[0].name == "stages[0]"


def test_a_rule_may_declare_stages_of_its_own() -> None:
    stages = [{"name": "manager", "reviewers": {"users": ["alice"]}},
              {"name": "finance", "reviewers": {"groups": ["finance"]}}]  # fmt: skip
    spec = {
        "agents": {"serviceAccounts": [AGENT]},
        "reviewers": {"users": ["alice"]},
        "rules": [
            {"name": "large", "actions": ["payments.refund"], "tier": 4,
             "when": "parameters.amount >= 10000", "stages": stages},
            {"name": "money", "actions": ["payments.*"], "tier": 4},
        ],
    }  # fmt: skip
    policy = compile_policy(NS, "p", spec)  # type: ignore[arg-type]
    assert policy.ready, policy.errors
    large = decide([policy], request(parameters={"amount": 10000}), at(seconds=1))
    assert large.patch is not None
    assert large.patch["stage"] == "manager"
    small = decide([policy], request(parameters={"amount": 9999}), at(seconds=1))
    assert small.patch is not None
    assert "stages" not in small.patch


@pytest.mark.parametrize(
    ("rule", "tier3", "error"),
    [
        pytest.param({"tier": 2}, {}, "rule 'r': stages are for tier 3 (HITL) and tier 4 rules",
                     id="tier 2"),
        pytest.param({"tier": 3}, {}, "rules with stages at tier 3 need a HITL tier 3 lane"
                     " (tiers.tier3.oversight)", id="tier 3 HOTL"),
        pytest.param({"tier": 4, "stages": [{"name": "a", "reviewers": {"users": ["y"]}}]}, {},
                     "stage 'a' is in rule 'q' and rule 'r' with different reviewers",
                     id="one name, other people"),
    ],
)  # fmt: skip
def test_rules_with_broken_stages(rule: dict[str, Any], tier3: dict[str, Any], error: str) -> None:
    stages = [{"name": "a", "reviewers": {"users": ["x"]}}]
    spec = {
        "agents": {"serviceAccounts": [AGENT]},
        "tiers": {"tier3": tier3},
        "rules": [
            {"name": "q", "actions": ["x"], "tier": 4, "stages": stages},
            {"name": "r", "actions": ["y"], "stages": stages, **rule},
        ],
    }
    policy = compile_policy(NS, "p", spec)  # type: ignore[arg-type]
    assert error in "; ".join(policy.errors)
    ok = {**spec, "tiers": {"tier3": {"oversight": "HITL"}}}
    ok["rules"] = [{"name": "r", "actions": ["y"], "tier": 3, "stages": stages}]
    assert compile_policy(NS, "p", ok).ready  # type: ignore[arg-type]


def test_walk_takes_a_requester_as_one_name_not_a_string_to_search_in() -> None:
    walked = walk(TWO, [review("bob")], "bobby")  # bob of the manager stage, not bobby
    assert walked.approvers == (("bob",), ())
