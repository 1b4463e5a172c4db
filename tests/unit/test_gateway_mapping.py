"""The MCP gateway's pure parts: an MCPServer compiled, a call made into a request, and the
checks on hostile arguments, one case a line."""

from typing import Any

import pytest
from handoff.gateway.filing import (
    BadCall,
    Call,
    call_key,
    checked_arguments,
    foreign_labels,
    is_this_call,
    request_body,
    rollback_plan,
)
from handoff.gateway.servers import MappingError, compile_program, compile_server, split_tool_name
from handoff.gateway.store import name_for

SCHEMA = {"type": "object", "properties": {"amount": {"type": "integer"}, "to": {"type": "string"}},
          "required": ["amount", "to"], "additionalProperties": False}  # fmt: skip


def server(*tools: dict[str, Any], agents: tuple[str, ...] = ("agent",)) -> Any:
    return compile_server({
        "metadata": {"name": "bank", "namespace": "ns", "generation": 3},
        "spec": {"url": "http://u/mcp", "agents": {"serviceAccounts": list(agents)}, "tools": list(tools)},
    })  # fmt: skip


def test_defaults_for_a_tool_the_spec_does_not_name() -> None:
    mapping = server().mapping("transfer")
    assert mapping.action == "mcp.bank.transfer"
    assert mapping.target_of("bank", {"amount": 1}) == "mcp:bank/transfer"
    assert mapping.inverse_arguments({}) is None


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("args.", "does not parse"),
        ("parameters.amount", "unknown variables parameters"),
        ("confidence > 0.5", "unknown variables confidence"),
        ("evil(args)", "unknown functions evil"),
        ("args.a.all(x, args.b.exists(y, x == y))", "nests a comprehension"),
        # A parenthesis hid the nesting from the check: 256 items cubed stalled the gateway.
        ("string(args.a.map(x, (args.a.map(y, (args.a.map(z, 1))))))", "nests a comprehension"),
        ("args.a.all(x, (args.a.exists(y, y == x)))", "nests a comprehension"),
        ("args.a.map(x, args.a).exists(l, l.exists(y, y == 1))", "nests a comprehension"),
    ],
)
def test_a_mapping_that_does_not_compile_is_a_problem_and_its_tool_is_not_offered(
    source: str, problem: str
) -> None:
    with pytest.raises(MappingError, match=problem):
        compile_program(source)
    compiled = server({"name": "transfer", "target": source})
    assert problem in compiled.problems[0]
    assert compiled.mapping("transfer").hidden


@pytest.mark.parametrize(
    ("args", "target", "problem"),
    [
        ({"to": "acct-1"}, "account:acct-1", None),
        ({"to": 5}, None, "could not be evaluated"),
        ({}, None, "could not be evaluated"),
    ],
)
def test_the_target_comes_from_the_mapping(
    args: dict[str, Any], target: str | None, problem: str | None
) -> None:
    mapping = server({"name": "transfer", "target": "'account:' + args.to"}).mapping("transfer")
    if problem is None:
        assert mapping.target_of("bank", args) == target
    else:
        with pytest.raises(MappingError, match=problem):
            mapping.target_of("bank", args)


def test_a_target_that_is_not_a_string_is_refused() -> None:
    mapping = server({"name": "transfer", "target": "args.amount"}).mapping("transfer")
    with pytest.raises(MappingError, match="not a string"):
        mapping.target_of("bank", {"amount": 5})


def test_two_tools_with_one_action_are_a_problem_and_neither_is_found_by_it() -> None:
    compiled = server({"name": "a", "action": "pay"}, {"name": "b", "action": "pay"})
    assert compiled.problems == ("several tools become the action pay; give each its own",)
    assert compiled.tool_of_action("pay") is None


@pytest.mark.parametrize(
    ("action", "tool"),
    [("mcp.bank.transfer", "transfer"), ("payments.refund", "refund"), ("mcp.bank.refund", None),
     ("mcp.other.transfer", None)],
)  # fmt: skip
def test_the_tool_of_an_action(action: str, tool: str | None) -> None:
    compiled = server({"name": "refund", "action": "payments.refund"})
    assert compiled.tool_of_action(action) == tool


@pytest.mark.parametrize(
    ("name", "split"),
    [("bank__transfer", ("bank", "transfer")), ("bank__a__b", ("bank", "a__b")), ("bank", None),
     ("__transfer", None), ("bank__", None)],
)  # fmt: skip
def test_tool_names(name: str, split: tuple[str, str] | None) -> None:
    assert split_tool_name(name) == split


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ([1, 2], "must be an object"),
        ({"amount": "1", "to": "x"}, "invalid arguments at amount"),
        ({"amount": 1}, "'to' is a required property"),
        ({"amount": 1, "to": "x", "extra": 1}, "Additional properties"),
        ({"amount": 1, "to": "x", "handoff_reasoning": 5}, "handoff_reasoning is a string"),
        (
            {"amount": 1, "to": "x", "handoff_blast_radius": "x" * 1025},
            "handoff_blast_radius is a string",
        ),
        ({"amount": 1, "to": "x" * 70_000}, "too large"),
        ({"amount": 1, "to": "x", **{f"k{i}": 1 for i in range(64)}}, "too large"),
    ],
)
def test_hostile_arguments_are_refused(arguments: Any, problem: str) -> None:
    with pytest.raises(BadCall, match=problem):
        checked_arguments(arguments, SCHEMA, "transfer")


def test_context_fields_are_stripped_and_become_the_reviewers_context() -> None:
    own, context = checked_arguments(
        {"amount": 1, "to": "x", "handoff_reasoning": "why", "handoff_blast_radius": "what if"},
        SCHEMA, "transfer",
    )  # fmt: skip
    assert own == {"amount": 1, "to": "x"}
    assert context == {"reasoning": "why", "blastRadius": "what if"}


def test_the_request_and_its_rollback_plan_come_from_the_mapping() -> None:
    compiled = server({"name": "set_limit", "target": "'account:' + args.account", "inverse": {
        "tool": "set_limit", "arguments": "{'account': args.account, 'limit': args.previous}"}})  # fmt: skip
    call = Call(compiled, compiled.mapping("set_limit"), {"account": "a", "limit": 5, "previous": 1},
                {"reasoning": "asked"}, "Set a limit")  # fmt: skip
    name = name_for(b"salt", "ns", "agent", call.key, 0)
    body = request_body(call, "agent", name)
    assert body["metadata"]["name"] == name
    spec = body["spec"]
    assert (spec["agent"], spec["action"], spec["target"], spec["execution"]) == (
        "agent",
        "mcp.bank.set_limit",
        "account:a",
        "MCP",
    )
    assert spec["parameters"] == {"account": "a", "limit": 5, "previous": 1}
    assert spec["reasoning"] == "asked"
    assert spec["rollback"]["action"] == "mcp.bank.set_limit"
    assert spec["rollback"]["parameters"] == {"account": "a", "limit": 1}
    assert spec["summary"].startswith("Set a limit (bank/set_limit) with")
    found = {"metadata": {"namespace": "ns", "annotations": {
        "handoff.dev/requested-by": "system:serviceaccount:ns:agent"}}, "spec": spec}  # fmt: skip
    assert is_this_call(found, body)
    squatted = {**found, "metadata": {"namespace": "ns", "annotations": {
        "handoff.dev/requested-by": "system:serviceaccount:ns:other"}}}  # fmt: skip
    assert not is_this_call(squatted, body)
    assert not is_this_call({**found, "spec": {**spec, "target": "account:b"}}, body)
    forged = {**spec, "rollback": {**spec["rollback"], "action": "mcp.bank.transfer"}}
    assert not is_this_call({**found, "spec": forged}, body)
    assert spec["rollback"] == rollback_plan(
        compiled, compiled.mapping("set_limit"), call.arguments
    )
    assert rollback_plan(compiled, compiled.mapping("transfer"), {"amount": 1}) is None


def test_request_names_are_unguessable_without_the_salt_and_stable_with_it() -> None:
    """Another agent of the namespace could file first under a name computed from the call."""
    key = call_key("bank", "transfer", {"amount": 1, "to": "x"})
    name = name_for(b"salt", "ns", "agent", key, 0)
    assert name == name_for(b"salt", "ns", "agent", key, 0)
    assert key[:32] not in name
    others = {name_for(b"other", "ns", "agent", key, 0), name_for(b"salt", "ns", "mallory", key, 0),
              name_for(b"salt", "ns", "agent", key, 1), name_for(b"salt", "ns2", "agent", key, 0)}  # fmt: skip
    assert name not in others
    assert len(others) == 4
    assert len(name) <= 63


def test_the_call_key_is_canonical_and_ignores_nothing_but_order() -> None:
    assert call_key("bank", "t", {"a": 1, "b": 2}) == call_key("bank", "t", {"b": 2, "a": 1})
    assert call_key("bank", "t", {"a": 1}) != call_key("bank", "t", {"a": 2})
    assert call_key("bank", "t", {"a": 1}) != call_key("bank", "u", {"a": 1})


def test_the_summary_is_one_line_whatever_the_arguments_and_title_hold() -> None:
    """The CRD refuses controls in spec.summary: the gateway escapes them, never files a 422."""
    compiled = server({"name": "transfer"})
    hostile = {"to": "a\x7fb\x9b31mc\u202ed", "memo": "x\ny\x1b[2J"}
    call = Call(compiled, compiled.mapping("transfer"), hostile, {}, "Move\x1b]0;money\x07")
    summary = request_body(call, "agent", "r")["spec"]["summary"]
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c == "\u202e" for c in summary)
    assert "\\x7f" in summary
    assert "\\x9b" in summary
    assert "\\u202e" in summary
    assert summary.startswith("Move\\x1b]0;money\\x07 (bank/transfer) with {")


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        (1.0, 1), (-0.0, 0), (2.5, 2.5), (1e-7, 1e-7), (1e20, 10**20), (1e21, 1e21),
        (True, True), (2**63 - 1, 2**63 - 1), (-(2**63), -(2**63)), ("1.0", "1.0"),
        # as dev up's API server wrote them back: a double's shortest digits, then zeros
        (1.8446744073709552e19, 18446744073709552000), (18446744073709552000, 18446744073709552000),
        ([1.0, {"x": 3.0}], [1, {"x": 3}]),
    ],
)  # fmt: skip
def test_arguments_are_checked_mapped_and_keyed_as_the_api_server_keeps_them(
    sent: Any, stored: Any
) -> None:
    """The API server keeps 1.0 as 1 and 18446744073709551617 as 18446744073709551616: a target
    mapped from the number as sent named another value than the upstream then got."""
    own, _ = checked_arguments({"v": sent}, {"type": "object"}, "t")
    assert own == {"v": stored}
    assert type(own["v"]) is type(stored)
    assert call_key("bank", "t", own) == call_key("bank", "t", {"v": stored})


@pytest.mark.parametrize(
    "sent",
    [
        2**64 + 1,
        2**64,
        -(2**63) - 1,
        10**30 + 1,
        float("nan"),
        float("inf"),
        {"a": [float("-inf")]},
    ],
)
def test_numbers_the_api_server_cannot_keep_exactly_are_refused(sent: Any) -> None:
    with pytest.raises(BadCall, match=r"past 64 bits|not a finite number"):
        checked_arguments({"v": sent}, {"type": "object"}, "t")


def test_a_request_found_under_the_name_with_labels_of_its_filers_choice_is_not_this_call() -> None:
    """A policy's `when` may read labels: the gateway files none but its own, and attaches only
    to a request that carries none other."""
    compiled = server({"name": "transfer"})
    call = Call(compiled, compiled.mapping("transfer"), {"amount": 1, "to": "x"}, {}, "Pay")
    body = request_body(call, "agent", "r")
    meta = {"namespace": "ns", "labels": dict(body["metadata"]["labels"]),
            "annotations": {"handoff.dev/requested-by": "system:serviceaccount:ns:agent"}}  # fmt: skip
    assert is_this_call({"metadata": meta, "spec": body["spec"]}, body)
    for labels in ({"lane": "sandbox"}, {"example.com/tier": "1"}):
        found = {"metadata": {**meta, "labels": {**meta["labels"], **labels}}, "spec": body["spec"]}
        assert not is_this_call(found, body)
        assert foreign_labels(found) == sorted(labels)
    assert foreign_labels({"metadata": {"labels": {"handoff.dev/rollback-of": "x"}}}) == []


def test_a_tool_whose_action_is_another_tools_is_not_the_tool_of_that_action() -> None:
    """An unlisted upstream tool gets mcp.<server>.<tool>; a listed tool may take that action
    too. The executor runs the action's listed tool, so a call of the other must be refused."""
    compiled = server({"name": "payout_v2", "action": "mcp.bank.payout"})
    assert compiled.mapping("payout").action == "mcp.bank.payout"
    assert compiled.tool_of_action("mcp.bank.payout") == "payout_v2"  # the gateway refuses payout
