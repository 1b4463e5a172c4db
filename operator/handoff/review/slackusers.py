"""Who is clicking in Slack: an explicit map from Slack user IDs to Kubernetes identities.

It lives in a ConfigMap (``handoff-slack-users`` in the console's namespace) that only
administrators may edit; a Slack display name or e-mail is never used. Each key is a Slack user
ID, each value ``{"user": NAME, "groups": [...]}`` (YAML or JSON). Identities the cluster
reserves (``system:`` users and groups, ServiceAccounts) are never mapped: the bridge impersonates
people, not components. Pure: the console reads the ConfigMap and passes its data here.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

CONFIGMAP = "handoff-slack-users"
_SLACK_ID = re.compile(r"^[UW][A-Z0-9]{2,20}$")
_NAME = re.compile(r"^[^\s\x00-\x1f\x7f]{1,253}$")


@dataclass(frozen=True)
class Identity:
    user: str
    groups: tuple[str, ...]


def _allowed(name: object) -> bool:
    return isinstance(name, str) and bool(_NAME.match(name)) and not name.startswith("system:")


def parse(data: Mapping[str, str] | None) -> tuple[dict[str, Identity], list[str]]:
    """The usable entries, and a sentence for each one skipped (for the console's log)."""
    found: dict[str, Identity] = {}
    skipped: list[str] = []
    for key, text in sorted((data or {}).items()):
        if not _SLACK_ID.match(key):
            skipped.append(f"{key[:40]!r} is not a Slack user ID (U... or W...)")
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            value = None
        if not isinstance(value, dict):
            skipped.append(f"{key}: the value is not a mapping with user and groups")
            continue
        user, groups = value.get("user"), value.get("groups") or []
        if not _allowed(user):
            skipped.append(f"{key}: user must be a person's name, not empty or system:")
            continue
        if not isinstance(groups, list) or not all(_allowed(g) for g in groups):
            skipped.append(f"{key}: groups must be a list of names, none of them system:")
            continue
        found[key] = Identity(str(user), tuple(str(g) for g in groups))
    return found, skipped
