"""The goals of issues #9 and #21, each with what was measured and, when missed, the figures that
say why (the run's load, the baseline, the part of the path that took the time)."""

from typing import Any

from common import ratio


def _load(results: dict[str, Any]) -> str:
    machine = results["machine"]
    start, end = machine["load_average_at_start"], machine.get("load_average_at_end", ["?"])
    return f"load average {start[0]} at the start, {end[0]} at the end, on {machine['cpus']} CPUs"


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of goal, measured, met ("met"/"MISSED") and why (when missed)."""
    out: list[dict[str, Any]] = []
    load = _load(results)

    def add(goal: str, measured: str, met: bool, why: str = "") -> None:
        out.append({"goal": goal, "measured": measured, "met": "met" if met else "MISSED",
                    "why": "" if met else why})  # fmt: skip

    if "classification" in results:
        c = results["classification"]
        add("classify p99 no slower than cedarpy's", f"ratio {c['p99_ratio_vs_cedar']}",
            c["p99_ratio_vs_cedar"] <= 1.0, load)  # fmt: skip
    if "latency" in results and "50" in results["latency"]:
        row = results["latency"]["50"]
        hand, floor = row["handoff"], row["floor"]
        median = row["median_ratio"]
        breakdown = row.get("breakdown") or {}
        why = f"floor median {floor['median_ms']} ms, p99 {floor['p99_ms']} ms; {load}"
        if breakdown:
            why += f"; breakdown {breakdown}"
        add("tier 1 median within 3x the floor at 50/s", f"ratio {median}",
            median is not None and median <= 3, why)  # fmt: skip
        add("tier 1 p99 under 100 ms at 50/s", f"{hand['p99_ms']} ms",
            hand["p99_ms"] is not None and hand["p99_ms"] < 100, why)  # fmt: skip
        t = results["throughput"]
        add("sustained rate at least half the floor's", f"{t['handoff_rate']}/s vs {t['floor_rate']}/s",
            (t["share_of_floor"] or 0) >= 0.5, load)  # fmt: skip
    if "scale" in results:
        s = results["scale"]
        per = s["bytes_per_pending"]
        add(f"{s['pending']:,} pending within 150 MB resident", f"{s['rss_mb']} MB ({per} B each)",
            s["rss_mb"] <= 150, f"idle {s['idle_rss_mb']} MB; {per} bytes per pending request; "
            f"after the restart {s['rss_mb_after_restart']} MB")  # fmt: skip
        rearm = ratio(s["rearm_seconds"], s["list_seconds"])
        add("re-armed within 2x a client's listing", f"{s['rearm_seconds']} s vs {s['list_seconds']} s",
            rearm is not None and rearm <= 2,
            f"ratio {rearm}; healthy after {s['operator_healthy_seconds']} s; {load}")  # fmt: skip
        late = s["lateness_ms"]
        add(f"{s['expiries_expected']:,} expiries late by under 250 ms at p99",
            f"p99 {late['p99']} ms ({s['expired']} expired)",
            s["expired"] == s["expiries_expected"] and (late["p99"] or 1e9) < 250,
            f"median {late['median']} ms; {load}")  # fmt: skip
    if "history" in results:
        h = results["history"]
        ready = ratio(h["ready_seconds"], h["list_seconds"])
        add(f"ready within 3x a client's listing, {h['decided']:,} decided",
            f"{h['ready_seconds']} s vs {h['list_seconds']} s", ready is not None and ready <= 3,
            f"ratio {ready}; healthy after {h['healthy_seconds']} s; {load}")  # fmt: skip
        add(f"{h['decided']:,} decided within 250 MB resident",
            f"{h['rss_mb']} MB ({h['bytes_per_decided_request']} B each)", h["rss_mb"] <= 250,
            f"idle {h['idle_rss_mb']} MB, {h['rss_mb_ready']} MB when ready")  # fmt: skip
        if h["decided"] < 100_000:
            add(
                "measured with 100,000 decided",
                f"{h['decided']:,}",
                False,
                "a smaller history (run.py --history 100000 for the issue's count)",
            )
    return out


GOAL_COLUMNS = [("goal", "goal"), ("measured", "measured"), ("met", ""), ("why", "why, if missed")]
