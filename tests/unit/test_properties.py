"""Properties of the pure core, tried on random policies, requests, reviews and times.

The policies are drawn the way the API server lets them through (the CRD's types), but with
every value the compiler must judge itself: broken CEL, bad durations, duplicate names, tiers
in any order. Whatever comes in, the core never raises and these hold:

- tier 4 is never approved without enough people (nor is anything approved by a reason its
  lane does not allow);
- more approvals never turn Approved into Denied: only a Deny (or the clock) does;
- a HITL request past its deadline is never approved, whatever reviews it carries;
- the highest tier across the governing policies wins, whatever order they come in;
- within one policy the first matching rule wins (checked against a plain reference).
"""

import json
import os
import random
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from handoff.domain.classify import RequestFacts, classify, evaluate
from handoff.domain.decide import decide
from handoff.domain.expressions import ExpressionError, compile_expression
from handoff.domain.globs import any_match
from handoff.domain.model import RequestState, Step, Waiting, service_account_user
from handoff.domain.policy import CompiledPolicy, compile_policy
from handoff.domain.reasons import Mode, Outcome, Oversight, Reason
from handoff.domain.timefmt import format_time
from handoff.review.package import parameters_text
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from .helpers import CREATED, NS, transition_of

AGENTS = ("agent-a", "agent-b")
PEOPLE = ("alice", "bob", "carol", "mallory")
CHECK_IDS = ("what", "impact", "rollback", "ticket")
ACTIONS = ("a.b", "a.c", "a.b.c", "b.x", "c", "payments.refund", "x:y/z")
GLOBS = ("*", "a.*", "a.b", "a.?", "a.[bc]", "b.*", "c", "payments.*", "x:*", "[!a]*")
WHENS = (
    "parameters.amount <= 100",
    "has(parameters.amount) && parameters.amount > 10",
    "target.startsWith('prod')",
    "labels.team == 'payments'",
    "agent == 'agent-a'",
    "parameters.items.exists(i, i > 2)",
    "size(parameters) > 1",
    "action.matches('^a\\\\.')",
    "parameters.amount",  # not a boolean: fails closed when evaluated
    "parameters.missing.deeper == 1",  # no such key on most requests: fails closed
    "1 / 0 == 1",  # a runtime error: fails closed
    "confidence > 0.5",  # refused when compiled
    "lookup(target)",  # unknown function: refused when compiled
    "parameters.amount <=",  # does not parse
)
DURATIONS = ("10s", "90s", "2m", "15m", "1h", "168h", "5s", "200h", "0s", "soon", "1h30m")

# `make mutation` runs these once per mutant of the functions they call, and asks for fewer
# examples (scripts/mutation.py sets HANDOFF_PROPERTY_EXAMPLES); everywhere else, 50.
EXAMPLES = int(os.environ.get("HANDOFF_PROPERTY_EXAMPLES", "50"))
FAST = settings(deadline=None, max_examples=EXAMPLES, suppress_health_check=[HealthCheck.too_slow])


def _maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


checklists = st.lists(
    st.sampled_from(CHECK_IDS).map(lambda i: {"id": i, "text": f"I checked {i}"}),
    min_size=0,
    max_size=3,
)  # duplicates allowed on purpose: the compiler must refuse them


@st.composite
def lanes(draw: st.DrawFn, tier: int) -> dict[str, Any]:
    lane: dict[str, Any] = {}
    if tier == 3 and draw(st.booleans()):
        lane["oversight"] = draw(st.sampled_from(["HOTL", "HITL"]))
    if tier == 3 and draw(st.booleans()):
        lane["holdFor"] = draw(st.sampled_from(DURATIONS))
    if draw(st.booleans()):
        lane["decisionWindow"] = draw(st.sampled_from(DURATIONS))
    if draw(st.booleans()):
        lane["approvals"] = draw(st.integers(1, 3))
    if draw(st.booleans()):
        lane["checklist"] = draw(checklists)
    if draw(st.booleans()):
        lane["minReviewSeconds"] = draw(st.integers(0, 120))
    return lane


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "name": draw(st.sampled_from([f"r{index}", "dup"])),
        "actions": draw(st.lists(st.sampled_from(GLOBS), min_size=1, max_size=3)),
        "tier": draw(st.integers(1, 4)),
    }
    if draw(st.booleans()):
        rule["targets"] = draw(
            st.lists(st.sampled_from(["prod*", "test:*", "*"]), min_size=1, max_size=2)
        )
    if draw(st.booleans()):
        rule["when"] = draw(st.sampled_from(WHENS))
    if draw(st.integers(0, 3)) == 0:
        rule["decisionWindow"] = draw(st.sampled_from(DURATIONS))
    if draw(st.integers(0, 3)) == 0:
        rule["approvals"] = draw(st.integers(1, 3))
    if draw(st.integers(0, 3)) == 0:
        rule["checklist"] = draw(checklists)
    return rule


@st.composite
def policy_specs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "agents": {
            "serviceAccounts": draw(st.lists(st.sampled_from(AGENTS), min_size=1, unique=True))
        },
        "rules": [draw(rules(i)) for i in range(draw(st.integers(0, 6)))],
    }
    if draw(st.booleans()):
        spec["defaultTier"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        spec["mode"] = draw(st.sampled_from(["Enforce", "Audit"]))
    if draw(st.integers(0, 4)):
        spec["reviewers"] = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {"users": st.lists(st.sampled_from(PEOPLE), min_size=1, unique=True)}
                ),
                st.just({"groups": ["payments-approvers"]}),
            )
        )
    tiers: dict[str, Any] = {}
    if draw(st.booleans()):
        tiers["tier3"] = draw(lanes(3))
    if draw(st.booleans()):
        tiers["tier4"] = draw(lanes(4))
    if tiers:
        spec["tiers"] = tiers
    if draw(st.integers(0, 4)) == 0:
        spec["budgets"] = [
            {"name": "calls", "actions": [draw(st.sampled_from(GLOBS))], "max": 2, "per": "1h"}
        ]
    return spec


@st.composite
def compiled_policies(draw: st.DrawFn) -> list[CompiledPolicy]:
    count = draw(st.integers(0, 3))
    names = draw(st.lists(st.sampled_from(["p1", "p2", "p3", "p4"]), min_size=count,
                          max_size=count, unique=True))  # fmt: skip
    return [compile_policy(NS, name, draw(policy_specs()), generation=1) for name in names]  # type: ignore[arg-type]


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),  # beyond int64 too: CEL must not take the operator down
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
parameters = st.one_of(
    st.dictionaries(
        st.sampled_from(["amount", "items", "currency", "nested", "x"]), json_values, max_size=4
    ),
    st.fixed_dictionaries({"amount": st.integers(-5, 500), "items": st.lists(st.integers(0, 5))}),
)


@st.composite
def requests(draw: st.DrawFn) -> RequestState:
    agent = draw(st.sampled_from(AGENTS))
    spec: dict[str, Any] = {
        "agent": agent,
        "action": draw(st.one_of(st.sampled_from(ACTIONS), st.text(min_size=1, max_size=12))),
        "target": draw(st.one_of(st.sampled_from(["prod:db", "test:1", ""]), st.text(max_size=12))),
        "parameters": draw(parameters),
        "summary": draw(st.text(min_size=1, max_size=30)),
    }
    if draw(st.booleans()):
        spec["rollback"] = {"description": "undo it"}
    body = {
        "metadata": {
            "name": "req-1",
            "namespace": NS,
            "uid": "u-1",
            "generation": 1,
            "creationTimestamp": format_time(CREATED),
            "labels": draw(st.dictionaries(st.sampled_from(["team", "env"]), st.text(max_size=8),
                                           max_size=2)),
        },
        "spec": spec,
    }  # fmt: skip
    state = RequestState.from_json(body)  # type: ignore[arg-type]
    usage = draw(st.integers(0, 3))
    return replace(state, budget_usage={(p, "calls"): usage for p in ("p1", "p2", "p3", "p4")})


acknowledgements = st.one_of(
    st.just(list(CHECK_IDS)), st.lists(st.sampled_from(CHECK_IDS), unique=True)
)


@st.composite
def review_lists(draw: st.DrawFn, requester: str) -> list[dict[str, Any]]:
    entries = []
    for _ in range(draw(st.integers(0, 5))):
        entry: dict[str, Any] = {
            "reviewer": draw(st.sampled_from([*PEOPLE, requester])),
            "decision": draw(st.sampled_from(["Approve", "Approve", "Deny", "Rollback", "Maybe"])),
        }
        if draw(st.booleans()):
            entry["acknowledged"] = draw(acknowledgements)
        if entry["decision"] == "Deny":
            entry["comment"] = "no"
        entries.append(entry)
    return entries


def approvals_only(requester: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    entry = st.fixed_dictionaries(
        {
            "reviewer": st.sampled_from([*PEOPLE, requester]),
            "decision": st.just("Approve"),
            "acknowledged": acknowledgements,
        }
    )
    return st.lists(entry, min_size=1, max_size=4)


offsets = st.one_of(
    st.integers(-5, 120),
    st.integers(0, 8 * 24 * 3600),
    st.sampled_from([9, 10, 119, 120, 299, 300, 899, 900, 3599, 3600]),
)


def applied(state: RequestState, step: Step) -> RequestState:
    status = dict(state.status)
    status.update(step.patch or {})
    return replace(state, status=status)


def with_reviews(state: RequestState, reviews: list[dict[str, Any]]) -> RequestState:
    return replace(state, status={**state.status, "reviews": list(reviews)})


def outcome(step: Step) -> Outcome | None:
    return step.decision.outcome if step.decision else None


def waiting_state(policies: list[CompiledPolicy], state: RequestState) -> RequestState | None:
    """The request as the operator leaves it when it has to wait for people, else None."""
    step = decide(policies, state, CREATED)
    if step.decision is not None:
        return None
    return applied(state, step)


# -- the core never raises, and decides once -----------------------------------------------------


@FAST
@given(compiled_policies(), requests(), st.data())
def test_random_input_never_crashes_and_a_decision_is_final(
    policies: list[CompiledPolicy], state: RequestState, data: st.DataObject
) -> None:
    now = CREATED + timedelta(seconds=data.draw(offsets))
    reviewed = with_reviews(state, data.draw(review_lists(state.requester)))
    step = decide(policies, reviewed, now)
    assert step == decide(policies, reviewed, now)  # deterministic: no hidden clock or state
    assert step.transition is transition_of(reviewed, step)
    after = applied(reviewed, step)
    if step.decision is not None:
        assert after.decided
        assert decide(policies, after, now + timedelta(days=30)) == Step()
    else:
        assert step.patch is None or "decision" not in step.patch
        later = decide(policies, after, now + timedelta(seconds=data.draw(offsets)))
        assert later.decision is None or later.decision.reason in set(Reason)
        assert later.transition is transition_of(after, later)


# -- nothing is approved by a reason its lane does not allow ------------------------------------


@FAST
@given(compiled_policies(), requests(), st.data())
def test_tier4_is_never_approved_without_enough_people(
    policies: list[CompiledPolicy], state: RequestState, data: st.DataObject
) -> None:
    verdict = classify(policies, state.facts).verdict
    assume(verdict is not None)
    assert verdict is not None
    reviews = data.draw(review_lists(state.requester))
    now = CREATED + timedelta(seconds=data.draw(offsets))
    # Reviews may be there before the first look (the operator was down), or come later.
    first = decide(policies, with_reviews(state, reviews), now)
    waiting = waiting_state(policies, state)
    later = decide(policies, with_reviews(waiting, reviews), now) if waiting else None
    for step in (first, later):
        if step is None or outcome(step) is not Outcome.APPROVED:
            continue
        assert step.decision is not None
        reason = step.decision.reason
        if verdict.tier == 4:
            assert reason == Reason.HUMAN_APPROVED, step.decision
        if reason == Reason.HUMAN_APPROVED:
            assert state.requester not in step.decision.by
            assert len(set(step.decision.by)) == len(step.decision.by)
            lane = verdict.policy_lane4 if verdict.tier == 1 else verdict.lane
            assert len(step.decision.by) >= lane.approvals
            assert now < state.created + lane.decision_window
        elif reason == Reason.AUTO_APPROVED:
            assert verdict.tier == 1
        elif reason == Reason.LOGGED:
            assert verdict.tier == 2
            assert state.facts.has_rollback
        else:
            assert reason == Reason.NOT_VETOED
            assert verdict.tier == 3
            assert verdict.lane.oversight is Oversight.HOTL


# -- more approvals never turn Approved into Denied -----------------------------------------------


@FAST
@given(compiled_policies(), requests(), st.data())
def test_more_approvals_never_turn_approved_into_denied(
    policies: list[CompiledPolicy], state: RequestState, data: st.DataObject
) -> None:
    waiting = waiting_state(policies, state)
    assume(waiting is not None)
    assert waiting is not None
    reviews = data.draw(review_lists(state.requester))
    extra = data.draw(approvals_only(state.requester))
    now = CREATED + timedelta(seconds=data.draw(offsets))
    before = decide(policies, with_reviews(waiting, reviews), now)
    after = decide(policies, with_reviews(waiting, reviews + extra), now)
    if outcome(before) is Outcome.APPROVED:
        assert outcome(after) is Outcome.APPROVED, (before.decision, after.decision)
    if outcome(after) is Outcome.DENIED:
        assert outcome(before) is Outcome.DENIED, (before.decision, after.decision)
        assert after.decision is not None
        assert after.decision.reason in (Reason.HUMAN_DENIED, Reason.VETOED, Reason.EXPIRED)
    # Interleaving does not matter either: approvals first, then the same reviews.
    assert outcome(decide(policies, with_reviews(waiting, extra + reviews), now)) is outcome(after)


# -- an expired request is never approved --------------------------------------------------------


@FAST
@given(compiled_policies(), requests(), st.data())
def test_a_hitl_request_past_its_deadline_is_never_approved(
    policies: list[CompiledPolicy], state: RequestState, data: st.DataObject
) -> None:
    waiting = waiting_state(policies, state)
    assume(waiting is not None)
    assert waiting is not None
    lane = Waiting.from_status(waiting.status)
    assert lane is not None
    assume(lane.oversight is Oversight.HITL)
    late = lane.deadline + timedelta(seconds=data.draw(st.integers(0, 10**6)))
    reviews = data.draw(review_lists(state.requester)) + data.draw(approvals_only(state.requester))
    step = decide(policies, with_reviews(waiting, reviews), late)
    assert step.decision is not None
    assert step.decision.outcome is Outcome.DENIED
    assert step.decision.reason in (Reason.EXPIRED, Reason.HUMAN_DENIED)
    # ...and a request first seen after its window (the operator was down) is not approved either.
    first = decide(policies, with_reviews(state, reviews), late)
    assert outcome(first) is not Outcome.APPROVED or first.decision.reason in (  # type: ignore[union-attr]
        Reason.AUTO_APPROVED, Reason.LOGGED, Reason.NOT_VETOED,
    )  # fmt: skip


# -- the highest tier wins; the first matching rule wins -------------------------------------------


@FAST
@given(compiled_policies(), requests(), st.randoms(use_true_random=False))
def test_the_highest_tier_across_policies_wins_in_any_order(
    policies: list[CompiledPolicy], state: RequestState, shuffler: random.Random
) -> None:
    facts = state.facts
    governing = [
        p for p in policies if p.governs(facts.namespace, facts.agent) and p.mode is Mode.ENFORCE
    ]
    verdict = classify(policies, facts).verdict
    if not governing:
        assert verdict is None
        return
    assert verdict is not None
    assert verdict.tier == max(evaluate(p, facts).tier for p in governing)
    shuffled = list(policies)
    shuffler.shuffle(shuffled)
    assert classify(shuffled, facts).verdict == verdict
    # A permissive policy added beside them never lowers the tier.
    lax = compile_policy(
        NS, "p0-lax",
        {"agents": {"serviceAccounts": list(AGENTS)}, "defaultTier": 1,
         "rules": [{"name": "all", "actions": ["*"], "tier": 1}]},  # type: ignore[typeddict-item]
    )  # fmt: skip
    widened = classify([*shuffled, lax], facts).verdict
    assert widened is not None
    assert widened.tier == verdict.tier


def _reference_tier(policy: CompiledPolicy, facts: RequestFacts) -> tuple[int, str | None]:
    """A plain reading of the contract: the first rule whose globs and when match, else the
    defaultTier; a broken policy or a when that cannot be evaluated is tier 4."""
    if not policy.ready:
        return 4, None
    for rule in policy.rules:
        if not any_match(rule.actions, facts.action):
            continue
        if rule.targets and not any_match(rule.targets, facts.target):
            continue
        if rule.when is not None:
            try:
                if not rule.when.matches(facts.variables()):
                    continue
            except ExpressionError:
                return 4, rule.name
        return rule.tier, rule.name
    return policy.default_tier, None


@FAST
@given(compiled_policies(), requests())
def test_within_a_policy_the_first_matching_rule_wins(
    policies: list[CompiledPolicy], state: RequestState
) -> None:
    for policy in policies:
        verdict = evaluate(policy, state.facts)
        assert (verdict.tier, verdict.rule) == _reference_tier(policy, state.facts)
        if not policy.ready:
            assert verdict.fail_closed


@FAST
@given(policy_specs())
def test_a_policy_with_errors_governs_as_tier4(spec: dict[str, Any]) -> None:
    policy = compile_policy(NS, "p1", spec)  # type: ignore[arg-type]
    assert all(isinstance(e, str) and e for e in policy.errors)
    if policy.errors:
        for agent in AGENTS:
            for action in ACTIONS:
                verdict = evaluate(policy, RequestFacts(NS, agent, action))
                assert verdict.tier == 4
                assert verdict.fail_closed
    if [rule["name"] for rule in spec["rules"]].count("dup") > 1:
        assert policy.errors  # the name twice, or a rule that did not compile at all
    # Tier 4 is HITL whatever the spec says: no hold can ever approve it.
    assert policy.tier4.oversight is Oversight.HITL
    assert policy.tier4.hold_for is None


# -- CEL: any text in, a clear ExpressionError or a working expression out -------------------------

cel_atoms = st.sampled_from(
    ["parameters.amount", "parameters.items", "target", "action", "agent", "labels.team", "1",
     "2.5", "'x'", "true", "null", "[1, 2]", "{'a': 1}", "b'\\xff'", "9223372036854775807",
     "-9223372036854775808", "parameters", "confidence", "request", "size(target)"]
)  # fmt: skip
cel_expressions = st.recursive(
    cel_atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%", "<", "<=", "==", "!=", "&&",
                                          "||", " in "]), inner).map("".join),
        inner.map(lambda e: f"!({e})"),
        inner.map(lambda e: f"size({e})"),
        st.tuples(inner, inner).map(lambda t: f"({t[0]}) ? {t[1]} : {t[1]}"),
        inner.map(lambda e: f"parameters.items.exists(i, {e})"),
        inner.map(lambda e: f"string({e}).matches('a+')"),
    ),
    max_leaves=8,
)  # fmt: skip


@FAST
@given(st.one_of(cel_expressions, st.text(max_size=60)), parameters)
def test_any_when_compiles_or_says_why_and_evaluates_or_says_why(
    source: str, params: dict[str, Any]
) -> None:
    problem = ""
    try:
        expression = compile_expression(source)
    except ExpressionError as e:
        problem = str(e)
    if problem:
        assert repr(source) in problem  # the author sees which expression, and why
        return
    variables = {"action": "a.b", "target": "prod:1", "parameters": params, "agent": "agent-a",
                 "labels": {"team": "payments"}}  # fmt: skip
    result: bool | str
    try:
        result = expression.matches(variables)
    except ExpressionError as e:
        result = str(e)
    assert isinstance(result, bool) or repr(source) in result


def test_the_requester_is_the_agents_service_account() -> None:
    # The properties above rely on it: reviews by the requester never count.
    assert service_account_user(NS, "agent-a") == f"system:serviceaccount:{NS}:agent-a"


def test_parameters_nested_too_deep_for_cel_fail_closed_instead_of_crashing() -> None:
    # The API server accepts JSON nested almost 10,000 deep; the CEL library's converter
    # overflows the process's stack some thousands down (a segfault, not an exception).
    deep: dict[str, object] = {"amount": 1}
    inner = deep
    for _ in range(20_000):
        inner["x"] = {}
        inner = inner["x"]  # type: ignore[assignment]
    refunds = compile_policy(
        NS, "p1",
        {"agents": {"serviceAccounts": ["agent-a"]},
         "rules": [{"name": "refunds", "actions": ["*"], "when": "parameters.amount < 10", "tier": 1}]},  # type: ignore[typeddict-item]
    )  # fmt: skip
    verdict = evaluate(refunds, RequestFacts(NS, "agent-a", "a.b", parameters=deep))
    assert (verdict.tier, verdict.fail_closed) == (4, True)
    assert "nest deeper than 100 levels" in verdict.message
    shallow = RequestFacts(NS, "agent-a", "a.b", parameters={"amount": 1, "n": [[[{"x": 1}]]]})
    assert evaluate(refunds, shallow).tier == 1


@pytest.mark.parametrize(
    ("source", "too_costly"),
    [
        ("parameters.items.all(i, i > 2)", False),
        ("parameters.items.all(i, i.tags.exists(t, t == 'x'))", False),  # each item's own list
        ("parameters.items.all(i, i['tags'].exists(t, t.subs.all(u, u > 1)))", False),
        ("parameters.a.exists(x, x > 1) && parameters.b.all(y, y < 3)", False),
        ("parameters.items.map(i, i * 2).exists(j, j > 3)", False),
        ("target.matches('.all(x, y.exists(z, 1))')", False),  # in a string: not a call
        ("parameters.items.all(a, parameters.items.exists(b, a == b))", True),
        ("[1, 2, 3].all(a, [1, 2, 3].all(b, [1, 2, 3].all(c, a + b + c > 0)))", True),
        ("parameters.items.all(i, i.tags.exists(t, i.tags.all(u, u != t)))", True),
        ("parameters.xs.exists ( i , parameters.ys . all ( j , true ) )", True),
    ],
)
def test_nested_comprehensions_over_independent_lists_are_refused_as_too_costly(
    source: str, too_costly: bool
) -> None:
    problem = ""
    try:
        compile_expression(source)
    except ExpressionError as e:
        problem = str(e)
    assert ("is too costly" in problem) is too_costly, problem
    if too_costly:
        assert "product of list sizes an agent chooses" in problem
    else:
        assert problem == ""


@FAST
@given(json_values)
def test_parameters_are_shown_as_json_whatever_their_shape(value: Any) -> None:
    text = parameters_text({"p": value})
    assert json.loads(text) == json.loads(json.dumps({"p": value}))  # NaN compares by text
    assert text == json.dumps({"p": value}, indent=2, sort_keys=True, ensure_ascii=False)


def test_deep_parameters_are_shown_compact_not_quadratically_indented() -> None:
    deep: dict[str, Any] = {"amount": 1}
    inner = deep
    for _ in range(500):  # (10,000 in the cluster: see tests/integration/test_hostile_input.py)
        inner["x"] = {}
        inner = inner["x"]
    text = parameters_text(deep)
    assert len(text) < 10_000  # indented, it would be some 250,000 characters
    assert text.startswith('{"amount": 1, "x": {"x": ')
