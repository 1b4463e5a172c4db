"""Undoing an approved action: the request Handoff files to carry out its rollback plan. Pure."""

from collections.abc import Mapping
from typing import Any

from handoff import API_VERSION
from handoff.domain.decide import Review

ROLLBACK = "Rollback"
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
                "handoff.dev/rollback-of": meta["name"][:63],
            },
        },
        "spec": undo,
    }
