"""Undoing an approved action: the request Handoff files to carry out its rollback plan. Pure."""

from collections.abc import Mapping
from typing import Any

from handoff import API_VERSION
from handoff.domain.filing import ROLLBACK_OF, filed_by_operator, is_name, label_value, requested_by
from handoff.domain.model import Review
from handoff.domain.reasons import ReviewDecision

ROLLBACK = ReviewDecision.ROLLBACK
MAX_NAME = 253


def requested_rollback(status: Mapping[str, Any]) -> Review | None:
    """The reviewer's Rollback entry, when one was appended and nothing was filed for it yet."""
    if (status.get("rollback") or {}).get("request"):
        return None
    for raw in status.get("reviews") or []:
        if raw.get("decision") == ROLLBACK:
            return Review.from_json(raw)
    return None


def rollback_name(name: str) -> str:
    return f"{name[: MAX_NAME - len('-rollback')]}-rollback"


def rollback_request(body: Mapping[str, Any], review: Review) -> dict[str, Any]:
    """The ActionRequest that undoes ``body``: its ``spec.rollback`` as the action, for the same
    agent and target, through the same policies. Its own way back is the original action."""
    meta = body["metadata"]
    spec = body["spec"]
    plan = spec["rollback"]
    why = f"{review.reviewer} asked to roll back {meta['name']}"
    if review.comment:
        why += f": {review.comment}"
    undo: dict[str, Any] = {
        "agent": spec["agent"],
        "action": plan.get("action") or spec["action"],
        "summary": f"Roll back: {plan.get('description', '')}"[:1024],
        "reasoning": why[:4096],
        "blastRadius": f"Undoes {meta['name']} ({spec.get('summary', '')})"[:1024],
        "rollbackOf": meta["name"],
        "rollback": {
            "description": f"Redo the original action: {spec.get('summary', '')}"[:1024],
            "action": spec["action"],
            "parameters": spec.get("parameters") or {},
        },
    }
    if spec.get("target"):
        undo["target"] = spec["target"]
    if spec.get("execution"):  # the same executor: a Webhook action is undone by the webhook,
        undo["execution"] = spec["execution"]  # not on the agent's word
    if plan.get("parameters"):
        undo["parameters"] = plan["parameters"]
    return {
        "apiVersion": API_VERSION,
        "kind": "ActionRequest",
        "metadata": {
            "name": rollback_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {
                "handoff.dev/agent": spec["agent"],
                ROLLBACK_OF: label_value(meta["name"]),
            },
        },
        "spec": undo,
    }


def untrusted_undo(
    undo: Mapping[str, Any], original: Mapping[str, Any] | None, operator: str
) -> str | None:
    """Why the carried-out ``undo`` may not mark the request it names RolledBack; None when it
    may. It may when the operator filed it (the cluster's requested-by stamp is the operator's
    user), it names a request of its own namespace, and that request's ``status.rollback.request``
    (which only the operator writes) names it back. ``original`` is that request, None when gone."""
    meta = undo["metadata"]
    name, target = meta["name"], undo["spec"].get("rollbackOf")
    if not is_name(target):
        return (
            f"{name} says it rolls back {str(target)[:300]!r}, which is not the name of a request"
            " in this namespace: nothing was marked RolledBack"
        )
    if not filed_by_operator(undo, operator):
        return (
            f"{name} says it rolls back {target}, but it was filed by"
            f" {requested_by(undo) or 'someone the cluster did not stamp'}, not by the Handoff"
            f" operator: only a rollback Handoff filed marks {target} RolledBack"
        )
    if original is None:
        return None  # gone (retention): nothing to mark
    if original["metadata"].get("namespace") != meta.get("namespace"):
        return f"{name} and {target} are in different namespaces: nothing was marked RolledBack"
    recorded = ((original.get("status") or {}).get("rollback") or {}).get("request")
    if recorded != name:
        return (
            f"{target} records {recorded or 'no rollback request'} as its rollback, not {name}:"
            " nothing was marked RolledBack"
        )
    return None
