"""What a policy's lanes, rules and approval stages share, compiled from its spec: checklist
items, reviewers, and durations within the bounds of a decision window.

Like ``compile_policy``, the compilers here never raise: each problem is appended to ``errors``
(the policy's Ready condition) and the caller gets a value it can keep going with.
"""

from dataclasses import dataclass
from datetime import timedelta

from handoff.domain.durations import MAX_WINDOW, MIN_WINDOW, parse_duration
from handoff.domain.resources import ChecklistItemJSON, ReviewersJSON


@dataclass(frozen=True)
class ChecklistItem:
    id: str
    text: str

    def to_json(self) -> ChecklistItemJSON:
        return {"id": self.id, "text": self.text}


#: What a reviewer acknowledges when a policy names no checklist: the article's three questions.
DEFAULT_CHECKLIST = (
    ChecklistItem("what", "I read what the action does and to which target"),
    ChecklistItem("impact", "I know what happens if it goes wrong"),
    ChecklistItem("rollback", "I know how it would be undone"),
)


@dataclass(frozen=True)
class Reviewers:
    users: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.users or self.groups)


def compile_reviewers(raw: ReviewersJSON | None) -> Reviewers:
    people = raw or {}
    return Reviewers(frozenset(people.get("users") or ()), frozenset(people.get("groups") or ()))


def compile_duration(
    text: str | None, default: timedelta | None, where: str, errors: list[str]
) -> timedelta | None:
    """``text`` as a duration of 10s to 168h; ``default`` when it is absent or wrong."""
    if text is None:
        return default
    try:
        value = parse_duration(text)
    except ValueError as e:
        errors.append(f"{where}: {e}")
        return default
    if not MIN_WINDOW <= value <= MAX_WINDOW:
        errors.append(f"{where}: {text} is outside 10s to 168h")
        return default
    return value


def compile_checklist(
    raw: list[ChecklistItemJSON] | None, where: str, errors: list[str]
) -> tuple[ChecklistItem, ...] | None:
    """The items of a checklist, or None when there is none (the lane's or the default then)."""
    if raw is None:
        return None
    items = tuple(ChecklistItem(item["id"], item["text"]) for item in raw)
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        errors.append(f"{where}: checklist ids must be unique")
    return items
