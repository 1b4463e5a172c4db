"""The goals of issues #9 and #21, each with what was measured and, when missed, the figures that
say why (the run's load, the baseline, the part of the path that took the time, the bytes that
are not the operator's to cut)."""

from typing import Any

from common import ratio

HISTORY_GOAL = 100_000  # decided requests in issue #21's history goal
PENDING_GOAL = 10_000


def _load(results: dict[str, Any]) -> str:
    machine = results["machine"]
    start, end = machine["load_average_at_start"], machine.get("load_average_at_end", ["?"])
    return f"load average {start[0]} at the start, {end[0]} at the end, on {machine['cpus']} CPUs"


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of issue, goal, measured, met ("met"/"MISSED") and why (when missed)."""
    out: list[dict[str, Any]] = []
    load = _load(results)

    def add(issue: int, goal: str, measured: str, met: bool, why: str = "") -> None:
        out.append({"issue": f"#{issue}", "goal": goal, "measured": measured,
                    "met": "met" if met else "MISSED", "why": "" if met else why})  # fmt: skip

    if "classification" in results:
        c = results["classification"]
        add(9, "classify p99 no slower than cedarpy's", f"ratio {c['p99_ratio_vs_cedar']}",
            c["p99_ratio_vs_cedar"] <= 1.0, load)  # fmt: skip
    if "latency" in results and "50" in results["latency"]:
        _latency(results, add, load)
    if "scale" in results:
        _scale(results["scale"], add, load)
    if "history" in results:
        _history(results["history"], add, load)
    return out


def _latency(results: dict[str, Any], add: Any, load: str) -> None:
    row = results["latency"]["50"]
    hand, floor = row["handoff"], row["floor"]
    median = row["median_ratio"]
    why = f"floor median {floor['median_ms']} ms, p99 {floor['p99_ms']} ms; {load}"
    if row.get("floor_event"):  # the floor with the third write Handoff makes (its Event)
        with_event = row["floor_event"]
        why += (f"; the floor posting an Event per request too: p99 {with_event['p99_ms']} ms "
                f"(Handoff {row['p99_ratio_event']}x that)")  # fmt: skip
    if row.get("breakdown"):
        why += f"; breakdown {row['breakdown']}"
    if "cpu" in results:  # what each request takes from the two cores the API server shares
        cpu = results["cpu"]
        why += (f"; CPU per request at {cpu['rate']:g}/s: operator {cpu['handoff']['operator_ms']} ms, "
                f"kube-apiserver {cpu['handoff']['apiserver_ms']} ms (floor {cpu['floor']['apiserver_ms']} ms)")  # fmt: skip
    add(9, "tier 1 median within 3x the floor at 50/s", f"ratio {median}",
        median is not None and median <= 3, why)  # fmt: skip
    add(9, "tier 1 p99 under 100 ms at 50/s", f"{hand['p99_ms']} ms",
        hand["p99_ms"] is not None and hand["p99_ms"] < 100, why)  # fmt: skip
    p99 = row["p99_ratio"]
    add(21, "tier 1 p99 at 50/s within 1.5x the floor's p99",
        f"{hand['p99_ms']} ms vs {floor['p99_ms']} ms: ratio {p99}",
        p99 is not None and p99 <= 1.5, why)  # fmt: skip
    t = results["throughput"]
    share = t["share_of_floor"] or 0
    rate = f"{t['handoff_rate']}/s vs {t['floor_rate']}/s"
    steps = ("; the ladder's steps are 40% apart, with a step between (18%) at each path's edge:"
             " a share is within about 18% of the truth")  # fmt: skip
    add(9, "sustained rate at least half the floor's", rate, share >= 0.5, load)
    add(21, "sustained tier 1 rate at least 0.8x the floor's", f"{rate}: {share}", share >= 0.8,
        load + steps)  # fmt: skip


def _scale(s: dict[str, Any], add: Any, load: str) -> None:
    per = s["bytes_per_pending"]
    count = s["pending"]
    small = "" if count >= PENDING_GOAL else f"; measured with {count:,}, not {PENDING_GOAL:,}"
    add(21, f"{count:,} pending within 150 MB resident", f"{s['rss_mb']} MB ({per} B each)",
        s["rss_mb"] <= 150 and count >= PENDING_GOAL,
        f"idle {s['idle_rss_mb']} MB; {per} bytes per pending request; after the restart "
        f"{s['rss_mb_after_restart']} MB, {s.get('rss_mb_settled', '-')} MB once the short ones "
        f"expired{small}")  # fmt: skip
    rearm = ratio(s["rearm_seconds"], s["list_seconds"])
    start = s["operator_healthy_seconds"]
    add(21, "re-armed within 2x a client's listing", f"{s['rearm_seconds']} s vs {s['list_seconds']} s",
        rearm is not None and rearm <= 2,
        f"ratio {rearm}; {start} s of it the process starting (healthy); {load}")  # fmt: skip
    late = s["lateness_ms"]
    add(21, f"{s['expiries_expected']:,} expiries late by under 250 ms at p99",
        f"p99 {late['p99']} ms ({s['expired']} expired)",
        s["expired"] == s["expiries_expected"] and (late["p99"] or 1e9) < 250,
        f"median {late['median']} ms; the floor (the same waves written by a client holding each "
        f"object, no operator): p99 {(s.get('floor_lateness_ms') or {}).get('p99')} ms; "
        f"waves of up to {(s.get('waves') or {}).get('largest')} at once; {load}")  # fmt: skip


def _history(h: dict[str, Any], add: Any, load: str) -> None:
    ready = ratio(h["ready_seconds"], h["list_seconds"])
    count = h["decided"]
    small = "" if count >= HISTORY_GOAL else (
        f"; measured with {count:,}, not {HISTORY_GOAL:,} (run.py --only history --history {HISTORY_GOAL})"
    )  # fmt: skip
    add(21, f"ready within 3x a client's listing, {count:,} decided",
        f"{h['ready_seconds']} s vs {h['list_seconds']} s",
        ready is not None and ready <= 3 and count >= HISTORY_GOAL,
        f"ratio {ready}; healthy after {h['healthy_seconds']} s; the operator's pass "
        f"over every decided request comes before the probe; {load}{small}")  # fmt: skip
    add(21, f"{count:,} decided within 250 MB resident",
        f"{h['rss_mb']} MB ({h['bytes_per_decided_request']} B each)",
        h["rss_mb"] <= 250 and count >= HISTORY_GOAL,
        f"idle {h['idle_rss_mb']} MB, {h['rss_mb_ready']} MB when ready: "
        f"{h['rss_mb'] - h['idle_rss_mb']:.1f} MB over idle with {count:,}{small}")  # fmt: skip
    b = h["stored_bytes"]
    least = b.get("least")
    why = f"status {b['status']} B, managedFields {b['managed_fields']} B"
    if least is not None:
        why = (
            f"an object with this spec and no status nor managedFields is already {least} B "
            f"({ratio(least, b['spec'])}x: metadata {b['metadata']} B); {why} (the agent's create "
            f"{b['managed_by_create']} B, the operator's status writes {b['managed_by_status']} B: "
            "the status subresource keeps them whatever a patch says, and resetting them on the "
            "object is a second write per decision and a right the operator does not have)"
        )
    add(21, "etcd bytes per decided tier 1 request within 2x its spec's",
        f"{b['object']} B vs {b['spec']} B: ratio {ratio(b['object'], b['spec'])}",
        b["object"] <= 2 * b["spec"], why)  # fmt: skip


GOAL_COLUMNS = [("issue", "issue"), ("goal", "goal"), ("measured", "measured"), ("met", ""),
                ("why", "why, if missed")]  # fmt: skip
