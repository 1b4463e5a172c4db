"""The framework integrations' shared pieces that need no cluster: names, refusals, verdicts."""

import asyncio
import subprocess
import sys
from datetime import timedelta
from typing import Any

import pytest
from handoff.integrations.core import Oversight, Verdict, _same, refusal
from handoff.sdk import Agent, MemoryStateStore


@pytest.mark.parametrize(
    ("tool", "mapped", "action"),
    [
        ("refund", {"refund": "payments.refund"}, "payments.refund"),
        ("issue_refund", {}, "issue_refund"),
        ("db.query", {}, "db.query"),
        ("_private_", {}, "private"),
        ("__", {}, "tool"),
        ("wéird name", {}, "w-ird-name"),
    ],
)
def test_the_action_of_a_tool(tool: str, mapped: dict[str, str], action: str) -> None:
    oversight = Oversight(Agent("agents", "payments-agent"), "test", actions=mapped)
    assert oversight.action_for(tool) == action


@pytest.mark.parametrize(
    ("args", "approved", "same"),
    [
        ({"amount": 5, "currency": "USD"}, {"currency": "USD", "amount": 5}, True),
        ({"amount": 5000, "currency": "USD"}, {"currency": "USD", "amount": 5}, False),
        ({"amount": 5}, {"amount": 5, "extra": None}, False),
        ({"amount": "5"}, {"amount": 5}, False),
        ({"to": ["a", "b"]}, {"to": ["b", "a"]}, False),
        ({}, {}, True),
    ],
)
def test_only_the_approved_arguments_are_the_same(
    args: dict[str, Any], approved: dict[str, Any], same: bool
) -> None:
    assert _same(args, approved) is same


def test_a_refusal_carries_the_reason_and_the_reviewers_words() -> None:
    text = refusal("payments.refund", "HumanDenied", "bob denied it", "already refunded")
    assert text == (
        "Handoff did not approve payments.refund (HumanDenied): bob denied it. The reviewer said:"
        " already refunded. It was not run; do not call it again with the same arguments."
    )
    assert refusal("x", "", "", "").startswith("Handoff did not approve x (Denied). It was not")


def test_a_verdict_round_trips_and_ignores_unknown_fields() -> None:
    verdict = Verdict("call-1", "req", "uid", True, "payments.refund", {"amount": 5}, "")
    assert Verdict.loads(verdict.dumps()) == verdict
    assert Verdict.loads(
        b'{"call": "c", "request": "r", "uid": "u", "approved": false, "x": 1}'
    ) == (Verdict("c", "r", "u", False))


def test_take_gives_a_state_once() -> None:
    async def scenario() -> tuple[bytes | None, bytes | None]:
        store = MemoryStateStore()
        await store.put("k", b"v", timedelta(seconds=5))
        return await store.take("k"), await store.take("k")

    assert asyncio.run(scenario()) == (b"v", None)


@pytest.mark.parametrize(
    ("module", "framework", "extra"),
    [
        ("pydantic_ai", "pydantic_ai", "pydantic-ai"),
        ("langgraph", "langgraph", "langgraph"),
        ("openai_agents", "agents", "openai-agents"),
    ],
)
def test_an_integration_without_its_extra_says_what_to_install(
    module: str, framework: str, extra: str
) -> None:
    """The core install has no framework: importing an integration says which extra it needs."""
    code = (
        f"import sys; sys.modules[{framework!r}] = None\n"
        "try:\n"
        f"    import handoff.integrations.{module}\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"pip install 'kube-handoff[{extra}]'" in done.stdout
    assert "is not installed" in done.stdout
