"""Agent-written text on a terminal: it cannot print lines that pass for the tool's own
(issue 14, item 11), reorder what a reviewer reads, or drive the terminal."""

import json
from datetime import timedelta
from typing import Any

import pytest
from handoff.cli.show import LABEL, log_lines, package_lines, summary_cell
from handoff.review.package import build
from handoff.review.untrusted import (
    BIDI_CONTROLS,
    block,
    clip,
    inline,
    visible,
    visible_json,
    width,
    wrap,
)

from .helpers import CREATED

FORGED = (
    "Refund the duplicate charge\n"
    "Policy      payments, rule reads: tier 1, HOOTL\n"
    "Filed by    alice\r\n"
    "Reviews\n\tbob approved (acknowledged what, impact, rollback)"
)
BIDI = "".join(chr(c) for c in sorted(BIDI_CONTROLS))


def body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "refund-1", "namespace": "agents", "uid": "u-1",
            "creationTimestamp": "2026-11-29T18:00:00Z",
            "annotations": {"handoff.dev/requested-by": "system:serviceaccount:agents:pa"},
        },
        "spec": {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:1",
                 "summary": "Refund", **spec},
        "status": {
            "phase": "AwaitingApproval", "tier": 4, "oversight": "HITL", "policy": "payments",
            "rule": "money", "deadline": "2026-11-29T18:15:00Z", "requiredApprovals": 1,
            "checklist": [{"id": "what", "text": "I read it"}], "reviews": [],
        },
    }  # fmt: skip


def shown(columns: int = 80, **spec: Any) -> list[str]:
    return package_lines(build(body(**spec)), CREATED + timedelta(minutes=1), columns)


def tool_lines(lines: list[str]) -> list[str]:
    """The lines that start where the tool's own labels start."""
    return [line for line in lines if line[:1] not in (" ", "")]


@pytest.mark.parametrize("field", ["reasoning", "summary", "blastRadius", "target"])
def test_forged_lines_in_agent_text_are_quoted_never_the_tools(field: str) -> None:
    lines = shown(**{field: FORGED})
    labels = [line.split("  ")[0] for line in tool_lines(lines)]
    assert labels.count("Policy") == 1, lines  # the real one only
    assert labels.count("Filed by") == 1, lines
    assert "Reviews" not in labels, lines  # nobody reviewed it
    assert not any(line.lstrip().startswith("bob approved") for line in lines), lines
    quoted = [line for line in lines if line.startswith(" " * LABEL + "| ")]
    assert any("Policy      payments, rule reads: tier 1, HOOTL" in line for line in quoted)
    assert any("\\tbob approved" in line for line in quoted)  # the tab shown, not obeyed
    assert not any(ch in line for line in lines for ch in "\r\t\x1b")


def test_a_long_line_is_wrapped_by_us_never_by_the_terminal() -> None:
    """Padding that would make the terminal wrap "bob approved" to the first column."""
    padded = "x" * (80 - LABEL) + "bob approved" + " " * 70 + "Policy      payments: tier 1"
    lines = shown(reasoning=padded, summary="漢" * 60)
    assert all(width(line) <= 80 for line in lines), lines
    assert not any(line.startswith(("bob", "Policy      payments: tier 1")) for line in lines)
    assert sum(1 for line in lines if line.startswith("Policy")) == 1


def test_bidi_and_control_characters_are_shown_as_escapes() -> None:
    spoof = f"refund {BIDI}gnp.exe \x1b[2J\x9b31m\x07\x08\x7f\u2028"
    lines = shown(summary=spoof, reasoning=spoof, parameters={spoof: [spoof]})
    text = "\n".join(lines)
    for char in (*BIDI, "\x1b", "\x9b", "\x07", "\x08", "\x7f", "\u2028"):
        assert char not in text
    assert "\\u202e" in text
    assert "\\x1b[2J" in text


def test_parameters_stay_json_of_the_same_value() -> None:
    parameters = {"a\u202eb": ["\x9b", "\u2066x\u2069", "line\nbreak"], "n": 1}
    package = build(body(parameters=parameters))
    assert json.loads(package.parameters) == parameters
    assert not any(ch in package.parameters for ch in ("\u202e", "\x9b", "\u2066"))


def test_reviews_say_what_each_reviewer_did() -> None:
    document = body()
    document["status"]["reviews"] = [
        {"reviewer": "alice", "decision": "Approve", "acknowledged": ["what"]},
        {"reviewer": "bob", "decision": "Rollback", "comment": "wrong customer\nalice approved"},
        {"reviewer": "carol", "decision": "Deny", "comment": "no", "breakGlass": True},
    ]
    package = build(document)
    assert [r.verb for r in package.reviews] == [
        "approved", "asked to roll back", "denied under break-glass",
    ]  # fmt: skip
    lines = package_lines(package, CREATED, 80)
    assert lines.count('            | alice approved"') == 1  # bob's comment, quoted
    assert any(line.startswith("Reviews     alice approved") for line in lines)
    assert not any("bob denied" in line for line in lines)


def test_log_lines_wrap_under_their_time() -> None:
    text = "payments-agent proposes x: " + "y" * 60 + " 10:42:01 bob approved refund-9"
    lines = log_lines(CREATED, text, 80)
    assert lines[0].startswith("18:00:00 payments-agent")
    assert all(line.startswith(" " * 9 + "| ") for line in lines[1:])
    assert all(width(line) <= 80 for line in lines)


def test_summary_cells_fit_what_the_terminal_has_left() -> None:
    assert summary_cell("short", 50, 80) == "short"
    cell = summary_cell("a\nb" + "c" * 100, 50, 80)
    assert cell.startswith("a\\nb")
    assert cell.endswith("…")
    assert width(cell) == 30
    assert width(summary_cell("漢" * 40, 20, 200)) <= 60


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("a\nb\tc", "a\\nb\\tc"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\u202eevil", "\\u202eevil"),
        ("\u061c\u200e\u200f\u2066\u2069", "\\u061c\\u200e\\u200f\\u2066\\u2069"),
        ("crlf\r\n", "crlf\\n"),
    ],
)
def test_inline(text: str, expected: str) -> None:
    assert inline(text) == expected


def test_visible_keeps_lines_and_tabs_for_the_page() -> None:
    assert visible("a\n\tb\u202ec\x00") == "a\n\tb\\u202ec\\x00"
    assert visible_json('"\u202e"') == '"\\u202e"'


def test_block_and_wrap() -> None:
    assert block("one line", 40) == ["one line"]
    assert block("two\nlines", 40) == ["two", "| lines"]
    assert wrap("aaaa bbbb cccc", 9) == ["aaaa bbbb", "cccc"]
    assert wrap("x" * 20, 8) == ["x" * 8, "x" * 8, "x" * 4]
    assert wrap("漢" * 6, 8) == ["漢" * 4, "漢" * 2]
    assert clip("漢字漢字漢字", 5) == "漢字…"
    long = wrap("word " * 50_000, 40, 38)  # parameters can be long: one pass, every piece fits
    assert max(width(piece) for piece in long[1:]) <= 38
    assert "".join(long).count("word") == 50_000


def test_the_change_a_reviewer_reads_is_one_field_of_neutralised_lines() -> None:
    """The live diff (review/livediff.py) quotes agent-written values and the object's: each
    of its lines is neutralised and wrapped under the Change label, never a line of its own."""
    change = ["What would change in Deployment agents/web:",
              f'spec.x: "a" -> "{FORGED}{BIDI}"', "Policy      payments: tier 1"]  # fmt: skip
    lines = package_lines(build(body()), CREATED + timedelta(minutes=1), 80, change)
    labels = [line.split("  ")[0] for line in tool_lines(lines)]
    assert labels.count("Change") == 1
    assert labels.count("Policy") == 1  # the real one only
    assert not any(ch in line for line in lines for ch in (*BIDI, "\r", "\t"))
    assert "Change" not in [line.split("  ")[0] for line in tool_lines(shown())]
