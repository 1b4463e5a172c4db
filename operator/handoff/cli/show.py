"""How ``kubectl handoff`` lays a request out on a terminal: the package, the queue's rows, the
log's lines.

Agent-written text (and reviewers' comments) never reaches the terminal raw: it goes through
``handoff.review.untrusted``, which escapes control and bidi characters and newlines, and wraps
long text itself with every continuation line quoted (``| ``), so no agent text can start a line
where the tool's own lines start. Pure but for reading the terminal's width.
"""

import shutil
from collections.abc import Sequence
from datetime import datetime

from handoff.review.package import Package, sentence, time_left
from handoff.review.untrusted import block, clip, inline, line

LABEL = 12  # "Parameters  ": where every field's value starts
TIME = 9  # "12:34:56 ": where every log line's text starts


def terminal_columns() -> int:
    """The terminal's width ($COLUMNS, else the terminal's, else 100), at least 40."""
    return max(shutil.get_terminal_size((100, 24)).columns, 40)


def _field(label: str, parts: list[str]) -> list[str]:
    return [f"{label:<{LABEL}}{parts[0]}".rstrip()] + [" " * LABEL + part for part in parts[1:]]


def package_lines(p: Package, now: datetime, columns: int, change: Sequence[str] = ()) -> list[str]:
    """The handoff package of ``kubectl handoff show`` (and of approve, before it asks);
    ``change``: what a Kubernetes action would change, as the reviewer reads the object
    (``review/livediff.py``)."""
    width = columns - LABEL
    if p.decided:
        d = p.decision or {}
        by = f" by {', '.join(d.get('by') or [])}" if d.get("by") else ""
        state = f"decided: {d.get('outcome')} ({d.get('reason')}){by}"
    elif p.waiting:
        deadline = p.deadline.strftime("%Y-%m-%d %H:%M:%SZ") if p.deadline else ""
        left = time_left(p.seconds_left(now))
        if p.oversight == "HOTL":
            state = f"runs when its hold ends unless a reviewer denies it: {left} (at {deadline})"
        else:
            needs = _stage_words(p) + f"waits for {p.required_approvals} approval(s)"
            state = f"{needs}: {left} (until {deadline}), then Denied"
    else:
        state = f"phase {p.phase}"
    parameters: list[str] = []
    for json_line in p.parameters.split("\n"):
        parameters += line(json_line, width)
    changes = [part for text in change for part in line(text, width)]
    rule = inline(p.rule or "(none: default tier)")
    policy = f"{p.policy or '-'}, rule {rule}: tier {p.tier}, {p.oversight}"
    lines = [
        *line(f"{p.name} in {p.namespace}: {state}", columns),
        "",
        *_field("What", block(sentence(p), width)),
        *_field("Why", block(p.reasoning or "(the agent gave no reason)", width)),
        *_field("If wrong", block(p.blast_radius or "(the agent did not say)", width)),
        *_field("Undo", block(p.rollback or "no rollback plan: treat it as irreversible", width)),
        *_field("Parameters", parameters),
        *(_field("Change", changes) if changes else []),
        *_field("Policy", line(policy, width)),
        *_field("", block(p.why_matched, width)),
        *_field("Filed by", line(p.requested_by or p.agent, width)),
    ]
    if p.confidence is not None:
        lines.append(
            f"Confidence  {inline(p.confidence)} (the agent's own claim; Handoff never uses it"
            " to decide)"
        )
    for index, review in enumerate(p.reviews):
        acked = f" (acknowledged {', '.join(review.acknowledged)})" if review.acknowledged else ""
        said = f': "{review.comment}"' if review.comment else ""
        label = "Reviews" if index == 0 else ""
        lines += _field(label, block(f"{review.reviewer} {review.verb}{acked}{said}", width))
    for index, stage in enumerate(p.stages):
        lines += _field("Stages" if index == 0 else "", block(f"{index + 1}. {stage.line}", width))
    if p.progress and not p.decided:
        lines += _field("Progress", block(p.progress, width))
    if p.checklist and not p.decided:
        lines.append("Checklist (each must be acknowledged to approve)")
        lines += [f"  [{inline(item_id)}] {inline(text)}" for item_id, text in p.checklist]
    if p.execution:
        said = f"{p.execution.get('outcome')}: {p.execution.get('message', '')}"
        lines += _field("Outcome", block(said, width))
    return lines


def _stage_words(p: Package) -> str:
    """``in stage finance (2 of 2), `` for a staged request; else nothing."""
    index = next((i for i, s in enumerate(p.stages) if s.open), None)
    return "" if index is None else f"in stage {p.stage} ({index + 1} of {len(p.stages)}), "


def log_lines(at: datetime, text: str, columns: int) -> list[str]:
    """One entry of ``kubectl handoff log``: its time, then its text, wrapped and quoted."""
    parts = line(text, columns - TIME)
    return [f"{at.strftime('%H:%M:%S')} {parts[0]}"] + [" " * TIME + part for part in parts[1:]]


def summary_cell(text: str, used: int, columns: int) -> str:
    """The queue's last column, cut to what the terminal has left (at most 60 columns), so
    that a long summary is never wrapped by the terminal into a line of its own."""
    return clip(text, max(min(60, columns - used), 10))
