"""Where the time of a tier-1 call through the gateway goes: the gateway's step histograms
(``handoff_gateway_step_seconds``, operator/handoff/gateway/steps.py) read from its /metrics
before and after the paced calls, so only those calls count. Per step: the calls it saw, its
mean and its median (interpolated within the histogram's buckets, so to about a bucket's width).
The MCP server layer is derived: a ``tools/call`` POST's whole time less the token check and the
gateway's handler."""

import urllib.request
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

NAME = "handoff_gateway_step_seconds"
SHOWN = ("auth", "validate", "name", "create", "classify", "claim", "upstream", "save",
         "handler", "http")  # fmt: skip
LABELS = {
    "auth": "agent's token (TokenReview, cached)",
    "validate": "tool lookup, input schema, mappings",
    "name": "Redis: generation, request name",
    "create": "create the ActionRequest (agent's token)",
    "classify": "local tier-1 classification",
    "claim": "Redis: claim the call",
    "upstream": "upstream tools/call (held session)",
    "save": "Redis: keep result, advance generation",
    "handler": "the gateway's handler (Calls.call)",
    "http": "the whole tools/call POST in the gateway",
    "mcp": "MCP server layer (http - auth - handler)",
}
Histograms = dict[str, dict[str, float]]  # step -> {"count", "sum", "le:<bound>" ...}


def scrape(port: int) -> Histograms:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out: Histograms = {}
    for family in text_string_to_metric_families(text):
        if family.name != NAME:
            continue
        for sample in family.samples:
            step = sample.labels.get("step", "")
            into = out.setdefault(step, {})
            if sample.name.endswith("_bucket"):
                into[f"le:{sample.labels['le']}"] = sample.value
            elif sample.name.endswith("_count"):
                into["count"] = sample.value
            elif sample.name.endswith("_sum"):
                into["sum"] = sample.value
    return out


def _median(buckets: dict[str, float], count: float) -> float | None:
    if count <= 0:
        return None
    bounds = sorted((float(k[3:]), v) for k, v in buckets.items() if k.startswith("le:"))
    half, low, below = count / 2, 0.0, 0.0
    for bound, cumulative in bounds:
        if cumulative >= half:
            if bound == float("inf"):
                return low
            inside = cumulative - below
            return low + (bound - low) * ((half - below) / inside if inside else 0.0)
        low, below = bound, cumulative
    return low


def breakdown(before: Histograms, after: Histograms) -> dict[str, dict[str, Any]]:
    """Per step: calls, mean and median (ms) of what happened between the two scrapes."""
    steps: dict[str, dict[str, Any]] = {}
    for step, values in after.items():
        old = before.get(step, {})
        delta = {k: v - old.get(k, 0.0) for k, v in values.items()}
        count = delta.get("count", 0.0)
        if count <= 0:
            continue
        median = _median(delta, count)
        steps[step] = {
            "calls": int(count),
            "mean_ms": round(delta.get("sum", 0.0) / count * 1000, 2),
            "median_ms": None if median is None else round(median * 1000, 2),
        }
    if all(s in steps for s in ("http", "auth", "handler")):
        steps["mcp"] = {
            "calls": steps["http"]["calls"],
            "mean_ms": round(
                steps["http"]["mean_ms"] - steps["auth"]["mean_ms"] - steps["handler"]["mean_ms"], 2
            ),
            "median_ms": None,
        }
    return steps


def rows(steps: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for the bench's table: the step's median as Handoff, its mean as baseline."""
    out = []
    for step in (*SHOWN, "mcp"):
        if step in steps:
            s = steps[step]
            out.append({"figure": f"  gateway step: {LABELS[step]} (ms)", "handoff": s["median_ms"],
                        "baseline": s["mean_ms"], "vs": "median / mean"})  # fmt: skip
    return out
