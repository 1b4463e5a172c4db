"""The requests the operator files itself (a rollback, a post-incident review), and whether one
found where it meant to file is really its own. Pure.

Anyone with ``create`` on requests could file first under the name the operator files under,
or write the fields that say what a request is for. The cluster stamps who filed every request
(``handoff.dev/requested-by``, set by the mutating admission policy, immutable after), so a
request is the operator's only when that stamp is the operator's own user name and it says what
the operator would have said.
"""

import re
from collections.abc import Mapping
from typing import Any

REQUESTED_BY = "handoff.dev/requested-by"
ROLLBACK_OF = "handoff.dev/rollback-of"  # label on the rollback request the operator files
POST_INCIDENT_OF = "handoff.dev/post-incident-of"  # label on a post-incident review
MAX_NAME = 253
# What says what a filed request is for: the operator's copy must agree on each.
IDENTITY = ("agent", "action", "target", "rollbackOf")
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_GENERATED_BASE = 58  # the API server keeps this much of a generateName, then adds 5 characters


def is_name(text: object) -> bool:
    """A DNS-1123 subdomain: an object's name and nothing else (no '/', '..', '?', '%')."""
    return isinstance(text, str) and len(text) <= MAX_NAME and bool(_SUBDOMAIN.fullmatch(text))


def label_value(name: str) -> str:
    """A request's name as a label value (at most 63 characters, alphanumeric at both ends)."""
    return name[:63].rstrip("-.")


def requested_by(body: Mapping[str, Any]) -> str:
    return str(((body.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_BY, ""))


def filed_by_operator(body: Mapping[str, Any], operator: str) -> bool:
    return bool(operator) and requested_by(body) == operator


def same_filing(found: Mapping[str, Any], meant: Mapping[str, Any], operator: str) -> bool:
    """``found`` is the request ``meant`` describes, filed by the operator (before a restart, or
    by another replica): stamped with the operator's user, and saying the same agent, action,
    target and rollbackOf."""
    if not filed_by_operator(found, operator):
        return False
    spec, expected = found.get("spec") or {}, meant["spec"]
    return all(spec.get(field) == expected.get(field) for field in IDENTITY)


def under_generated_name(document: Mapping[str, Any]) -> dict[str, Any]:
    """``document`` to be filed under a name the API server generates from its own name."""
    meta = dict(document["metadata"])
    name = str(meta.pop("name"))
    meta["generateName"] = f"{name[: _GENERATED_BASE - 1]}-"
    return {**document, "metadata": meta}


def squatter(found: Mapping[str, Any]) -> str:
    """Who filed ``found``, for a message: the cluster's stamp, or a note that it has none."""
    return requested_by(found) or "someone the cluster did not stamp (no handoff.dev/requested-by)"


def name_taken(taken: str, by: str, what: str, filed: str) -> str:
    """The Warning a reviewer sees when the operator's name for ``what`` was taken first."""
    return (
        f"{taken} is not the {what} Handoff files: it was filed by {by}. Filed the {what} as"
        f" {filed} instead; {taken} is left alone (a request filed under another's name can be"
        " deleted by an administrator)"
    )
