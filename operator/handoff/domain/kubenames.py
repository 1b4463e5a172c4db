"""Kubernetes names, as the API server accepts them, for values an agent writes.

Every function answers ``None`` when the value is a name of its sort, else a sentence saying
what is wrong, which goes into a decision message and an Event as it is: the value is quoted
with JSON escapes and cut short, so no agent-written text reaches them raw. Pure.
"""

import json
import re

# DNS-1123: a label is what a namespace is called; a subdomain what most objects are called.
_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
DNS_LABEL = re.compile(_LABEL)
DNS_SUBDOMAIN = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
KIND = re.compile(r"[A-Z][A-Za-z0-9]*")
LABEL_MAX = 63
SUBDOMAIN_MAX = 253

_NAME_RULE = (
    "at most 253 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
)
_NAMESPACE_RULE = (
    "at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
)
_KIND_RULE = "at most 63 letters and digits, starting with a capital letter (Deployment)"
_API_VERSION_RULE = "'v1' for the core group or 'group/version' (apps/v1)"


def quoted(value: object, limit: int = 80) -> str:
    """A value as a short JSON literal, safe to put in a sentence (an object or a list is
    only named: it may be nested deeper than anything should walk)."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    text = json.dumps(str(value)[: limit * 2], ensure_ascii=True)
    return text if len(text) <= limit else text[: limit - 4] + '..."'


_NAME = (DNS_SUBDOMAIN, SUBDOMAIN_MAX, "an object name", _NAME_RULE)
_NAMESPACE = (DNS_LABEL, LABEL_MAX, "a namespace", _NAMESPACE_RULE)
_KIND = (KIND, LABEL_MAX, "a kind", _KIND_RULE)


def name_problem(value: object, where: str) -> str | None:
    """An object's name: a DNS-1123 subdomain, and nothing else (no '/', '..', '%', '?')."""
    return _problem(value, where, _NAME)


def namespace_problem(value: object, where: str) -> str | None:
    """A namespace: a DNS-1123 label."""
    return _problem(value, where, _NAMESPACE)


def kind_problem(value: object, where: str) -> str | None:
    return _problem(value, where, _KIND)


def api_version_problem(value: object, where: str) -> str | None:
    """``v1`` or ``group/version``: a DNS-1123 subdomain, a slash, a DNS-1123 label."""
    if not isinstance(value, str):
        return f"{where} must be a string ({_API_VERSION_RULE}), not {quoted(value)}"
    group, slash, version = value.rpartition("/")
    valid = (
        _fits(version, DNS_LABEL, LABEL_MAX)
        and (not slash or _fits(group, DNS_SUBDOMAIN, SUBDOMAIN_MAX))
        and "/" not in group
    )
    return None if valid else f"{where} {quoted(value)} is not an apiVersion: {_API_VERSION_RULE}"


def split_kind_key(key: object, where: str) -> tuple[str, str] | str:
    """``apps/v1/Deployment`` (``v1/ConfigMap`` for the core group) as (apiVersion, kind), or
    why it is not one."""
    if not isinstance(key, str) or "/" not in key:
        return (
            f"{where} {quoted(key)} is not a kind: write group/version/Kind (apps/v1/Deployment)"
            " or v1/Kind for the core group"
        )
    api_version, _, kind = key.rpartition("/")
    problem = api_version_problem(api_version, where) or kind_problem(kind, where)
    return problem if problem is not None else (api_version, kind)


def _fits(value: str, pattern: re.Pattern[str], limit: int) -> bool:
    return len(value) <= limit and pattern.fullmatch(value) is not None


def _problem(value: object, where: str, sort: tuple[re.Pattern[str], int, str, str]) -> str | None:
    pattern, limit, what, rule = sort
    if not isinstance(value, str):
        return f"{where} must be a string, {what}: not {quoted(value)}"
    if not value:
        return f"{where} is empty: it must be {what}"
    if _fits(value, pattern, limit):
        return None
    return f"{where} {quoted(value)} is not {what}: {what} is {rule}"
