"""An agent's decided requests as a wgpolicyk8s.io PolicyReport, for existing report tools. Pure."""

from collections.abc import Iterable, Mapping
from typing import Any

from handoff import API_VERSION
from handoff.domain.reasons import Outcome, Phase, Reason
from handoff.domain.timefmt import parse_time

MAX_RESULTS = 200
SEVERITY = {1: "info", 2: "low", 3: "medium", 4: "high"}


def result_of(body: Mapping[str, Any]) -> str | None:
    """pass: approved (and carried out); fail: denied by a person or a rule; warn: expired or
    rolled back; error: approved but it failed. None while undecided."""
    status = body.get("status") or {}
    decision = status.get("decision") or {}
    if not decision:
        return None
    if status.get("phase") == Phase.ROLLED_BACK or decision.get("reason") == Reason.EXPIRED:
        return "warn"
    if (status.get("execution") or {}).get("outcome") == Phase.FAILED:
        return "error"
    return "pass" if decision.get("outcome") == Outcome.APPROVED else "fail"


def policy_report(
    namespace: str, agent: str, requests: Iterable[Mapping[str, Any]]
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    for body in requests:
        outcome = result_of(body)
        if outcome is None:
            continue
        meta, spec, status = body["metadata"], body["spec"], body["status"]
        decision = status["decision"]
        at = parse_time(decision.get("at") or meta["creationTimestamp"])
        results.append({
            "policy": f"{namespace}/{status.get('policy') or '(none)'}",
            "rule": status.get("rule") or "default",
            "result": outcome,
            "message": _message(spec, decision),
            "source": "handoff",
            "category": f"tier {status.get('tier', '?')}",
            "severity": SEVERITY.get(int(status.get("tier") or 4), "high"),
            "scored": True,
            "timestamp": {"seconds": int(at.timestamp()), "nanos": 0},
            "resources": [{"apiVersion": API_VERSION, "kind": "ActionRequest", "name": meta["name"],
                           "namespace": namespace, "uid": meta.get("uid", "")}],
            "properties": {"action": str(spec.get("action", "")),
                           "reason": str(decision.get("reason", "")),
                           "by": ",".join(decision.get("by") or []),
                           "phase": str(status.get("phase", ""))},
        })  # fmt: skip
    results.sort(key=lambda r: r["timestamp"]["seconds"], reverse=True)
    results = results[:MAX_RESULTS]
    summary = {
        key: sum(1 for r in results if r["result"] == key)
        for key in ("pass", "fail", "warn", "error", "skip")
    }
    return {
        "apiVersion": "wgpolicyk8s.io/v1alpha2",
        "kind": "PolicyReport",
        "metadata": {
            "name": f"handoff-{agent}",
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "handoff", "handoff.dev/agent": agent},
        },
        "scope": {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "name": agent,
            "namespace": namespace,
        },
        "summary": summary,
        "results": results,
    }


def _message(spec: Mapping[str, Any], decision: Mapping[str, Any]) -> str:
    verdict = f"{decision.get('outcome')} ({decision.get('reason')})"
    return f"{spec.get('action')}: {verdict} {decision.get('message', '')}"[:4096]
