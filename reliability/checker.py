"""The independent checker of a reliability run.

It compares every request the load generator filed with what the API server, the Redis streams,
the operators' JSON audit lines and the Events hold, and re-derives from the scenario (which rule
and window each request was built to hit) and the reviews the API server accepted what each
decision must be. It imports nothing of the operator (no classify, no decide): only the run
folder's raw data. Prints a table of counts; exits non-zero on any discrepancy.

    python -m reliability.checker RUN_DIR
    python -m reliability.checker --self-check     # doctored records: each must be reported
"""

import argparse
import copy
import json
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reliability import hostile_checks, hostile_selfcheck

DECISION_REASONS = {
    "AutoApproved", "Logged", "NotVetoed", "HumanApproved", "HumanDenied", "Vetoed", "Expired",
    "NoPolicy", "MissingRollbackPlan", "Invalid",
}  # fmt: skip
#: The faults the run must have injected (the HA one may be skipped, with its reason).
FAULTS = ("operator-kill", "redis-kill", "apiserver-restart", "postgres-rotation", "ha-leader-kill")
MAY_SKIP = {"ha-leader-kill"}

Json = dict[str, Any]


def ts(text: str) -> float:
    """An RFC 3339 time (``Z``, optional fraction) as epoch seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


@dataclass
class RunData:
    scenario: Json
    filed: list[Json]
    attempts: list[Json]
    deliveries: list[Json]
    transitions: list[Json]
    faults: list[Json]
    requests: list[Json]
    decision_entries: list[Json]
    audit_redis: list[Json]
    audit_log: list[Json]
    events: list[Json]
    restarts: list[Json] = field(default_factory=list)
    observed: dict[str, int] = field(default_factory=dict)  # counts shown as they are
    # The hostile agent: its journal, the victims as run.py saw them before and after the load,
    # the outcome entries the operators logged as dropped ("stream id"), those left unread.
    hostile: list[Json] = field(default_factory=list)
    victims_before: dict[str, Json] = field(default_factory=dict)
    victims_after: dict[str, Json] = field(default_factory=dict)
    dropped_outcomes: set[str] = field(default_factory=set)
    outcomes_left: list[str] = field(default_factory=list)


@dataclass
class Report:
    counts: dict[str, Any] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def bad(self, kind: str, detail: str) -> None:
        self.problems.append((kind, detail))

    def kinds(self) -> set[str]:
        return {k for k, _ in self.problems}


def _jsonl(path: Path) -> list[Json]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _audit_lines(folder: Path) -> list[Json]:
    """The operators' stdout audit lines: bare JSON objects with an ``event`` field."""
    found: list[Json] = []
    for log in sorted(folder.glob("operator-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "event" in record and "uid" in record:
                    found.append(record)
    return found


def load(run: Path) -> RunData:
    dump = json.loads((run / "dump.json").read_text())
    return RunData(
        scenario=json.loads((run / "scenario.json").read_text()),
        filed=_jsonl(run / "filed.jsonl"),
        attempts=_jsonl(run / "reviews.jsonl"),
        deliveries=_jsonl(run / "deliveries.jsonl"),
        transitions=_jsonl(run / "transitions.jsonl"),
        faults=_jsonl(run / "faults.jsonl"),
        requests=dump["requests"],
        decision_entries=dump["decision_entries"],
        audit_redis=dump["audit"],
        audit_log=_audit_lines(run / "operators"),
        events=dump["events"],
        restarts=_jsonl(run / "restarts.jsonl"),
        observed=_observed(run),
        hostile=_jsonl(run / "hostile.jsonl"),
        victims_before=dump.get("victims_before") or {},
        victims_after=dump.get("victims_after") or {},
        dropped_outcomes=hostile_checks.dropped_entries(run / "operators"),
        outcomes_left=dump.get("hostile_outcomes_left") or [],
    )


def _observed(run: Path) -> dict[str, int]:
    """How often the operators retried a publication (Redis away) and the agents reconnected."""
    retried = 0
    for log in sorted((run / "operators").glob("operator-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if " publishing " in line and "Redis" in line and "retrying" in line:
                retried += 1
    errors = _jsonl(run / "errors.jsonl")
    return {
        "operator publications retried (Redis away)": retried,
        "agent consumer reconnections": sum(e["where"].startswith("consume") for e in errors),
        "watch reconnections": sum(e["where"] == "watch" for e in errors),
    }


# -- the checks --------------------------------------------------------------------------------


def check(data: RunData) -> Report:
    report = Report()
    scenario = data.scenario
    bound = float(scenario["expiry_bound_s"])
    catch_up = float(scenario.get("catch_up_s", bound))
    plans: dict[str, Json] = scenario["plans"]
    outages = [
        (float(f["started"]), float(f["recovered"]))
        for f in data.faults
        if f.get("outage") and not f.get("skipped")
    ]
    _check_faults(data, report)

    filed = {f["uid"]: f for f in data.filed}
    report.counts["filed"] = len(data.filed)
    if not data.filed:
        report.bad("nothing filed", "the load generator filed no request: nothing was tested")
    if len(filed) != len(data.filed):
        report.bad("filed twice", f"{len(data.filed) - len(filed)} filings share a uid")
    missing_plans = sorted(set(plans) - {f["plan"] for f in data.filed})
    if data.filed and missing_plans:
        report.bad("plan not exercised", ", ".join(missing_plans))
    for f in data.filed:
        if f.get("retry_uid") is not None and f["retry_uid"] != f["uid"]:
            report.bad("idempotency", f"{f['name']}: a retry filed {f['retry_uid']}")

    cluster = {r["metadata"]["uid"]: r for r in data.requests}
    # Besides the load's: the rollbacks the operator filed for it, and the hostile agent's
    # requests (checked by hostile_checks).
    undos = hostile_checks.check_rollbacks(data, filed, cluster, report)
    hostile_agent = (scenario.get("hostile") or {}).get("agent")
    for uid in sorted(set(cluster) - set(filed) - undos):
        if hostile_agent and (cluster[uid].get("spec") or {}).get("agent") == hostile_agent:
            continue
        report.bad("unexpected request", f"{cluster[uid]['metadata']['name']} was never filed")
    attempts_by_id = {a["id"]: a for a in data.attempts}

    outcomes: Counter[str] = Counter()
    intended: dict[str, Counter[str]] = defaultdict(Counter)
    lateness: list[float] = []  # outside any outage
    after_outage: list[float] = []  # deadlines inside an outage: measured from its end
    late: list[str] = []
    lost = 0
    for uid, f in filed.items():
        body = cluster.get(uid)
        if body is None:
            lost += 1
            report.bad("lost", f"{f['name']} ({uid}) is not in the cluster")
            continue
        status = body.get("status") or {}
        decision = status.get("decision")
        if not decision:
            lost += 1
            report.bad("lost", f"{f['name']}: never decided (phase {status.get('phase')})")
            continue
        outcomes[f"{decision['outcome']}/{decision['reason']}"] += 1
        plan = plans[f["plan"]]
        intended[f["plan"]]["filed"] += 1
        intended[f["plan"]]["reached"] += decision["reason"] == plan.get("intended")
        for key, expected in (("tier", plan["tier"]), ("rule", plan["rule"]),
                              ("oversight", plan["oversight"])):  # fmt: skip
            if status.get(key) != expected:
                report.bad(
                    "contradicts policy",
                    f"{f['name']} ({f['plan']}): {key} {status.get(key)!r}, built for {expected!r}",
                )
        extra = _check_decision(body, plan, attempts_by_id, scenario, outages, report)
        if extra is not None:
            raw, adjusted, in_outage = extra
            (after_outage if in_outage else lateness).append(adjusted)
            if adjusted > (catch_up if in_outage else bound):
                late.append(
                    f"{f['name']}: {raw:.1f}s after its deadline"
                    + (f" ({adjusted:.1f}s after its outage ended)" if in_outage else "")
                )
    report.counts["lost"] = lost
    report.counts["decided"] = dict(sorted(outcomes.items()))
    report.counts["plans decided as intended (else: a fault, or review timing)"] = {
        f"{name} -> {plans[name].get('intended')}": f"{t['reached']} of {t['filed']}"
        for name, t in sorted(intended.items())
    }
    for key in (hostile_checks.ROLLBACKS, hostile_checks.SQUATTED):  # beside the plans
        report.counts[key] = report.counts.pop(key, "")
    for name, t in sorted(intended.items()):
        if plans[name].get("intended") and t["filed"] and not t["reached"]:
            report.bad(
                "plan never reached",
                f"{name}: none of {t['filed']} became {plans[name]['intended']}",
            )
    for line in late:
        report.bad("late expiry", line)
    lateness.sort()
    after_outage.sort()
    report.counts["expiries/holds timed"] = len(lateness) + len(after_outage)
    report.counts[f"late (over {bound:g}s, or {catch_up:g}s after an outage)"] = len(late)
    if lateness:
        report.counts["lateness outside outages p50/p99/max s"] = (
            f"{_pct(lateness, 50):.2f} / {_pct(lateness, 99):.2f} / {lateness[-1]:.2f}"
        )
    if after_outage:
        report.counts["deadlines inside an outage"] = len(after_outage)
        report.counts["  lateness after it ended p50/max s"] = (
            f"{_pct(after_outage, 50):.2f} / {after_outage[-1]:.2f}"
        )
    _check_bad_inputs(data, cluster, report)
    _check_streams(data, filed, cluster, report)
    _check_deliveries(data, filed, cluster, report)
    _check_audit(data, filed, cluster, report)
    _check_transitions(data, filed, report)
    _check_events(data, filed, report)
    if scenario.get("hostile"):
        hostile_checks.check_hostile(data, filed, cluster, report)
    report.counts.update(data.observed)
    report.counts["discrepancies"] = len(report.problems)
    return report


def _pct(values: list[float], p: int) -> float:
    return values[min(len(values) - 1, max(0, round(p / 100 * len(values) + 0.5) - 1))]


def _covered(instant: float, outages: list[tuple[float, float]], catch_up: float) -> float | None:
    """The end of the outage that ``instant`` falls in (or in the catch-up after it), if any."""
    ends = [end for start, end in outages if start <= instant <= end + catch_up]
    return max(ends) if ends else None


def _check_decision(  # noqa: PLR0911 - one return per kind of decision
    body: Json,
    plan: Json,
    attempts: dict[str, Json],
    scenario: Json,
    outages: list[tuple[float, float]],
    report: Report,
) -> tuple[float, float, bool] | None:
    """Check one decision against the reviews the API server accepted and the request's window.
    For expiries and holds, returns the lateness, the lateness counted from the end of the outage
    the deadline fell in (or its catch-up), and whether it fell in one."""
    name = body["metadata"]["name"]
    status = body["status"]
    decision = status["decision"]
    outcome, reason, at = decision["outcome"], decision["reason"], ts(decision["at"])
    reviewers = set(scenario["reviewers"])
    checklist = set(scenario["checklist"])
    requester = f"system:serviceaccount:{body['metadata']['namespace']}:{body['spec']['agent']}"
    if plan["tier"] in (1, 2):
        want = "AutoApproved" if plan["tier"] == 1 else "Logged"
        if (outcome, reason) != ("Approved", want):
            report.bad(
                "contradicts policy", f"{name}: {outcome}/{reason}, expected Approved/{want}"
            )
        return None
    created = ts(body["metadata"]["creationTimestamp"])
    deadline_text = status.get("deadline")
    if not deadline_text:
        report.bad("contradicts policy", f"{name}: tier {plan['tier']} decided without a deadline")
        return None
    deadline = ts(deadline_text)
    if abs(deadline - created - float(plan["window_s"])) > 0.001:
        report.bad(
            "contradicts policy",
            f"{name}: deadline {deadline - created:.0f}s after creation,"
            f" window is {plan['window_s']}s",
        )
    hotl = plan["oversight"] == "HOTL"
    reviews = status.get("reviews") or []
    denies = [r for r in reviews if r.get("decision") == "Deny" and r.get("reviewer") in reviewers]
    approvals = [
        r
        for r in reviews
        if r.get("decision") == "Approve"
        and r.get("reviewer") in reviewers
        and r.get("reviewer") != requester
        and checklist <= set(r.get("acknowledged") or [])
    ]
    if denies:
        want = "Vetoed" if hotl else "HumanDenied"
        if (outcome, reason) != ("Denied", want) or decision.get("by") != [denies[0]["reviewer"]]:
            report.bad(
                "contradicts reviews",
                f"{name}: {denies[0]['reviewer']} denied it,"
                f" yet {outcome}/{reason} by {decision.get('by')}",
            )
        return None
    if hotl:
        if (outcome, reason) != ("Approved", "NotVetoed"):
            report.bad("contradicts reviews", f"{name}: no veto, yet {outcome}/{reason}")
    elif reason == "HumanApproved":
        approvers = {r["reviewer"] for r in approvals}
        if outcome != "Approved" or not set(decision.get("by") or []) <= approvers or not approvers:
            report.bad(
                "contradicts reviews",
                f"{name}: HumanApproved by {decision.get('by')},"
                f" valid approvals from {sorted(approvers)}",
            )
        if at > deadline:
            report.bad(
                "approved past deadline",
                f"{name}: approved at {decision['at']}, deadline {deadline_text}",
            )
        return None
    elif (outcome, reason) != ("Denied", "Expired"):
        report.bad("contradicts reviews", f"{name}: no valid review, yet {outcome}/{reason}")
        return None
    else:
        for review in approvals:  # an approval in good time, ignored with the operator up?
            attempt = attempts.get(str(review.get("comment", "")).removeprefix("rel "))
            if attempt is None or attempt["after"] > deadline - 5:
                continue
            if not any(s <= deadline and e >= attempt["after"] for s, e in outages):
                report.bad(
                    "contradicts reviews",
                    f"{name}: approved by {review['reviewer']} {deadline - attempt['after']:.1f}s"
                    " before its deadline with the operator up, yet Expired",
                )
    if at < deadline:
        report.bad(
            "decided early",
            f"{name}: {reason} at {decision['at']}, before its deadline {deadline_text}",
        )
    raw = at - deadline
    recovered = _covered(deadline, outages, float(scenario.get("catch_up_s", 0)))
    if recovered is None:
        return raw, raw, False
    return raw, at - max(deadline, recovered), True


def _check_bad_inputs(data: RunData, cluster: dict[str, Json], report: Report) -> None:
    comments = {
        str(r.get("comment", "")).removeprefix("rel ")
        for body in cluster.values()
        for r in (body.get("status") or {}).get("reviews") or []
    }
    tried = [a for a in data.attempts if a.get("bad") and a.get("final", True)]
    per_kind: dict[str, Counter[str]] = defaultdict(Counter)
    for attempt in tried:
        tally = per_kind[attempt["bad"]]
        tally["tried"] += 1
        if attempt["id"] in comments:
            tally["recorded"] += 1
            if attempt["expect"] == "refused":
                report.bad(
                    "bad input accepted",
                    f"{attempt['name']}: {attempt['bad']} ({attempt['who']}) was recorded",
                )
        elif attempt["status"] >= 400:
            tally["refused"] += 1
    report.counts["bad inputs: tried / refused / recorded (not counted)"] = {
        kind: f"{t['tried']} / {t['refused']} / {t['recorded']}"
        for kind, t in sorted(per_kind.items())
    }
    kinds = Counter(a["bad"] for a in tried)
    expected = set(data.scenario.get("bad_inputs") or [])
    if expected - set(kinds):
        report.bad("bad input not tried", ", ".join(sorted(expected - set(kinds))))


def _check_streams(
    data: RunData, filed: dict[str, Json], cluster: dict[str, Json], report: Report
) -> None:
    per_uid: defaultdict[str, list[Json]] = defaultdict(list)
    for entry in data.decision_entries:
        per_uid[entry.get("uid", "")].append(entry)
    twice = missing = 0
    for uid, f in filed.items():
        decision = ((cluster.get(uid) or {}).get("status") or {}).get("decision")
        if not decision:
            continue
        entries = per_uid.get(uid, [])
        if not entries:
            missing += 1
            report.bad("not published", f"{f['name']}: no entry in its decision stream")
            continue
        if len(entries) > 1:
            twice += 1
            report.bad(
                "decided twice", f"{f['name']}: {len(entries)} entries in its decision stream"
            )
        for entry in entries:
            got = (entry.get("outcome"), entry.get("reason"), entry.get("at"))
            if got != (decision["outcome"], decision["reason"], decision["at"]):
                report.bad("stream contradicts status", f"{f['name']}: stream says {got}")
            if entry.get("stream") != f"handoff:decisions:{f['namespace']}:{f['agent']}":
                report.bad("wrong stream", f"{f['name']} went to {entry.get('stream')}")
    report.counts["decision stream entries"] = len(data.decision_entries)
    report.counts["decided twice (stream)"] = twice
    report.counts["decisions not published"] = missing


def _check_deliveries(
    data: RunData, filed: dict[str, Json], cluster: dict[str, Json], report: Report
) -> None:
    per_uid: defaultdict[str, list[Json]] = defaultdict(list)
    for delivery in data.deliveries:
        per_uid[delivery["uid"]].append(delivery)
    delivered = redelivered = 0
    for uid, f in filed.items():
        decision = ((cluster.get(uid) or {}).get("status") or {}).get("decision")
        if not decision:
            continue
        got = per_uid.get(uid, [])
        if not got:
            report.bad("not delivered", f"{f['name']}: its agent never received the decision")
            continue
        delivered += 1
        redelivered += len(got) > 1
        for d in got:
            if d["checksum"] != f["checksum"]:
                report.bad("state lost", f"{f['name']}: state arrived as {d['checksum'][:12]}")
            if (d["outcome"], d["reason"]) != (decision["outcome"], decision["reason"]):
                report.bad(
                    "delivery contradicts status", f"{f['name']}: {d['outcome']}/{d['reason']}"
                )
            if d["agent"] != f["agent"]:
                report.bad("delivered to another agent", f"{f['name']}: to {d['agent']}")
    report.counts["delivered with state"] = delivered
    report.counts["delivered more than once"] = redelivered


def _expected_audit(body: Json) -> Counter[str]:
    status = body.get("status") or {}
    want: Counter[str] = Counter()
    if status.get("deadline"):
        hotl3 = status.get("oversight") == "HOTL" and status.get("tier") == 3
        want["Queued" if hotl3 else "AwaitingApproval"] += 1
    want["Reviewed"] += len(status.get("reviews") or [])
    if status.get("decision"):
        want[status["decision"]["outcome"]] += 1
    if (status.get("rollback") or {}).get("request"):
        want["RollbackRequested"] += 1
    if (status.get("rollback") or {}).get("done"):
        want["RolledBack"] += 1
    if status.get("execution"):
        want[status["execution"]["outcome"]] += 1
    return +want


def _check_audit(
    data: RunData, filed: dict[str, Json], cluster: dict[str, Json], report: Report
) -> None:
    redis: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for line in data.audit_redis:
        redis[line.get("uid", "")][line.get("event", "")] += 1
    logged: defaultdict[str, Counter[str]] = defaultdict(Counter)
    decided_in_log: defaultdict[str, set[tuple[str, str, str]]] = defaultdict(set)
    for line in data.audit_log:
        logged[line["uid"]][line["event"]] += 1
        if line["event"] in ("Approved", "Denied"):
            decided_in_log[line["uid"]].add(
                (line["event"], line.get("reason", ""), line.get("at", ""))
            )
    expected = present_redis = present_log = 0
    duplicates = 0
    for uid, f in filed.items():
        body = cluster.get(uid)
        if body is None:
            continue
        want = _expected_audit(body)
        expected += sum(want.values())
        for event, n in want.items():
            have = redis[uid][event]
            present_redis += min(have, n)
            if have < n:
                report.bad(
                    "audit missing", f"{f['name']}: {event} x{n - have} not in handoff:audit"
                )
            elif have > n:
                duplicates += 1
                report.bad("audit duplicated", f"{f['name']}: {event} x{have} in handoff:audit")
            present_log += min(logged[uid][event], n)
            if logged[uid][event] < n:
                report.bad(
                    "audit missing",
                    f"{f['name']}: {event} x{n - logged[uid][event]} not in the JSON log",
                )
        if len(decided_in_log[uid]) > 1:
            report.bad(
                "decided twice", f"{f['name']}: the JSON log has {sorted(decided_in_log[uid])}"
            )
    report.counts["audit entries expected"] = expected
    report.counts["audit in Redis / in JSON log"] = f"{present_redis} / {present_log}"
    report.counts["audit duplicated (Redis)"] = duplicates
    repeated = sum(sum(c.values()) for c in logged.values()) - present_log
    report.counts["JSON log lines repeated (restarts)"] = max(repeated, 0)


def _check_transitions(data: RunData, filed: dict[str, Json], report: Report) -> None:
    seen: dict[str, tuple[Any, ...]] = {}
    changed = 0
    for t in data.transitions:
        decision = t.get("decision")
        if not decision:
            if t["uid"] in seen and t.get("phase") not in (None, ""):
                changed += 1
                report.bad(
                    "decision changed", f"{t['name']}: decided, then phase {t['phase']} without one"
                )
            continue
        key = (decision.get("outcome"), decision.get("reason"), decision.get("at"))
        if t["uid"] in seen and seen[t["uid"]] != key:
            changed += 1
            report.bad("decision changed", f"{t['name']}: {seen[t['uid']]} then {key}")
        seen.setdefault(t["uid"], key)
    report.counts["status transitions watched"] = len(data.transitions)
    report.counts["decisions changed after set"] = changed
    unseen = [f["name"] for uid, f in filed.items() if uid not in seen]
    report.counts["decisions not seen by the watch"] = len(unseen)


def _check_events(data: RunData, filed: dict[str, Json], report: Report) -> None:
    per_uid: Counter[str] = Counter()
    for event in data.events:
        if event.get("reason") in DECISION_REASONS:
            uid = (event.get("involvedObject") or {}).get("uid", "")
            series = (event.get("series") or {}).get("count")
            per_uid[uid] += int(series or event.get("count") or 1)
    twice = 0
    for uid, f in filed.items():
        if per_uid[uid] > 1:
            twice += 1
            report.bad("decided twice", f"{f['name']}: {per_uid[uid]} decision Events")
    report.counts["decision Events"] = sum(per_uid[u] for u in filed)
    report.counts["decided without an Event (best effort)"] = sum(not per_uid[u] for u in filed)
    report.counts["decided twice (Events)"] = twice


def _check_faults(data: RunData, report: Report) -> None:
    by_name = {f["fault"]: f for f in data.faults}
    done = []
    for name in FAULTS:
        fault = by_name.get(name)
        if fault is None:
            report.bad("fault not injected", name)
            continue
        if fault.get("skipped"):
            if name not in MAY_SKIP:
                report.bad("fault not injected", f"{name}: skipped ({fault['skipped']})")
            else:
                report.notes.append(f"SKIPPED {name}: {fault['skipped']}")
            continue
        failed = [k for k, ok in (fault.get("checks") or {}).items() if not ok]
        if not fault.get("checks") or failed:
            report.bad(
                "fault not confirmed", f"{name}: {', '.join(failed) or 'no checks recorded'}"
            )
        else:
            done.append(f"{name} ({float(fault['recovered']) - float(fault['started']):.1f}s)")
    report.counts["faults injected"] = len(done)
    report.counts["replicas restarted after exiting"] = len(data.restarts)
    report.notes.extend(f"fault {d}" for d in done)


# -- output ----------------------------------------------------------------------------------


def table(report: Report) -> str:
    rows: list[tuple[str, str]] = []
    for key, value in report.counts.items():
        if isinstance(value, dict):
            rows.append((key, ""))
            rows += [(f"  {sub}", str(n)) for sub, n in value.items()]
        else:
            rows.append((key, str(value)))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"- {n}" for n in report.notes]
    if report.problems:
        lines.append(f"DISCREPANCIES ({len(report.problems)}):")
        shown: Counter[str] = Counter()
        for kind, detail in report.problems:
            shown[kind] += 1
            if shown[kind] <= 10:
                lines.append(f"  {kind}: {detail}")
        lines += [f"  {kind}: {n - 10} more" for kind, n in shown.items() if n > 10]
    else:
        lines.append("no discrepancies")
    return "\n".join(lines)


# -- the self-check: doctored records must each be reported ------------------------------------


def sample() -> RunData:
    """A tiny consistent run: one tier-1 request, one tier-4 request approved in time, one
    tier-2 request a reviewer rolled back, and a hostile agent whose attempts all failed."""
    ns, agent = "rel", "agent-a"
    checklist = ["what", "impact", "rollback"]
    scenario = {
        "namespace": ns, "expiry_bound_s": 5, "catch_up_s": 10, "reviewers": ["alice", "bob"],
        "checklist": checklist, "bad_inputs": [],
        "plans": {
            "auto": {"tier": 1, "rule": "reads", "oversight": "HOOTL", "window_s": 0,
                     "intended": "AutoApproved"},
            "approve": {"tier": 4, "rule": "deploys", "oversight": "HITL", "window_s": 20,
                        "intended": "HumanApproved"},
        },
    }  # fmt: skip
    created = "2026-11-29T21:00:00Z"

    def request(uid: str, name: str, status: Json) -> Json:
        return {"metadata": {"uid": uid, "name": name, "namespace": ns,
                             "creationTimestamp": created},
                "spec": {"agent": agent}, "status": status}  # fmt: skip

    auto_decision = {"outcome": "Approved", "reason": "AutoApproved", "by": [],
                     "at": "2026-11-29T21:00:00.3Z"}  # fmt: skip
    review = {"reviewer": "alice", "decision": "Approve", "acknowledged": checklist,
              "comment": "rel r1"}  # fmt: skip
    human = {"outcome": "Approved", "reason": "HumanApproved", "by": ["alice"],
             "at": "2026-11-29T21:00:05Z"}  # fmt: skip
    requests = [
        request("u1", "auto-1", {"tier": 1, "rule": "reads", "oversight": "HOOTL",
                                 "phase": "Approved", "decision": auto_decision}),
        request("u2", "deploy-2", {"tier": 4, "rule": "deploys", "oversight": "HITL",
                                   "phase": "Approved", "deadline": "2026-11-29T21:00:20Z",
                                   "reviews": [review], "decision": human}),
    ]  # fmt: skip
    filed = [
        {"uid": "u1", "name": "auto-1", "plan": "auto", "agent": agent, "namespace": ns,
         "checksum": "c1"},
        {"uid": "u2", "name": "deploy-2", "plan": "approve", "agent": agent, "namespace": ns,
         "checksum": "c2"},
    ]  # fmt: skip
    stream = f"handoff:decisions:{ns}:{agent}"

    def entry(uid: str, d: Json) -> Json:
        return {"stream": stream, "uid": uid, "outcome": d["outcome"], "reason": d["reason"],
                "at": d["at"]}  # fmt: skip

    audit: list[Json] = [
        {"uid": "u1", "event": "Approved", "reason": "AutoApproved", "at": auto_decision["at"]},
        {"uid": "u2", "event": "AwaitingApproval"},
        {"uid": "u2", "event": "Reviewed"},
        {"uid": "u2", "event": "Approved", "reason": "HumanApproved", "at": human["at"]},
    ]
    faults = [
        {"fault": name, "started": 0.0, "recovered": 1.0, "checks": {"died": True}}
        for name in FAULTS
    ]
    data = RunData(
        scenario=scenario,
        filed=filed,
        attempts=[
            {
                "id": "r1",
                "name": "deploy-2",
                "who": "alice",
                "status": 200,
                "before": ts(created) + 4,
                "after": ts(created) + 4.1,
            }
        ],
        deliveries=[
            {
                "uid": "u1",
                "agent": agent,
                "checksum": "c1",
                "outcome": "Approved",
                "reason": "AutoApproved",
            },
            {
                "uid": "u2",
                "agent": agent,
                "checksum": "c2",
                "outcome": "Approved",
                "reason": "HumanApproved",
            },
        ],
        transitions=[
            {"uid": "u1", "name": "auto-1", "phase": "Approved", "decision": auto_decision},
            {"uid": "u2", "name": "deploy-2", "phase": "AwaitingApproval", "decision": None},
            {"uid": "u2", "name": "deploy-2", "phase": "Approved", "decision": human},
        ],
        faults=faults,
        requests=requests,
        decision_entries=[entry("u1", auto_decision), entry("u2", human)],
        audit_redis=copy.deepcopy(audit),
        audit_log=copy.deepcopy(audit),
        events=[{"reason": "HumanApproved", "involvedObject": {"uid": "u2"}, "count": 1}],
    )
    hostile_selfcheck.extend(data)
    return data


def doctored() -> dict[str, tuple[str, RunData]]:
    """Each doctored copy of ``sample()`` and the discrepancy it must produce."""
    cases: dict[str, tuple[str, RunData]] = {}

    lost = sample()
    lost.requests = lost.requests[:1]
    cases["a lost request"] = ("lost", lost)

    twice = sample()
    twice.decision_entries.append(dict(twice.decision_entries[1], at="2026-11-29T21:00:19Z"))
    cases["a double decision"] = ("decided twice", twice)

    late = sample()
    late_at = "2026-11-29T21:00:21Z"
    late.requests[1]["status"]["decision"]["at"] = late_at
    for item in (*late.decision_entries, *late.audit_redis, *late.audit_log):
        if item.get("uid") == "u2" and "at" in item:
            item["at"] = late_at
    cases["an approval past its deadline"] = ("approved past deadline", late)

    unaudited = sample()
    unaudited.audit_redis = [a for a in unaudited.audit_redis if a["event"] != "Reviewed"]
    cases["a missing audit entry"] = ("audit missing", unaudited)

    undelivered = sample()
    undelivered.deliveries = undelivered.deliveries[:1]
    cases["an undelivered decision"] = ("not delivered", undelivered)

    state = sample()
    state.deliveries[1]["checksum"] = "other"
    cases["a state that changed on the way"] = ("state lost", state)

    changed = sample()
    changed.transitions.append(
        {"uid": "u2", "name": "deploy-2", "phase": "Denied",
         "decision": {"outcome": "Denied", "reason": "Expired", "at": "2026-11-29T21:00:20Z"}}
    )  # fmt: skip
    cases["a decision that changed"] = ("decision changed", changed)

    ignored_deny = sample()
    ignored_deny.requests[1]["status"]["reviews"].append(
        {"reviewer": "bob", "decision": "Deny", "comment": "rel r2"}
    )
    cases["a Deny that was ignored"] = ("contradicts reviews", ignored_deny)

    expired_late = sample()
    body = expired_late.requests[1]
    body["status"]["reviews"] = []
    body["status"]["decision"] = {"outcome": "Denied", "reason": "Expired", "by": [],
                                  "at": "2026-11-29T21:00:40Z"}  # fmt: skip
    cases["an expiry later than the bound"] = ("late expiry", expired_late)

    no_fault = sample()
    no_fault.faults = no_fault.faults[1:]
    cases["a fault that was not injected"] = ("fault not injected", no_fault)

    empty = sample()
    empty.filed, empty.requests = [], []
    cases["an empty run"] = ("nothing filed", empty)
    cases.update(hostile_selfcheck.doctored(sample))
    return cases


def self_check() -> list[str]:
    """What went wrong: the clean sample reporting anything, or a doctored one going unnoticed."""
    failures = []
    clean = check(sample())
    if clean.problems:
        failures.append(f"the clean sample reported {clean.problems}")
    for what, (kind, data) in doctored().items():
        if kind not in check(data).kinds():
            failures.append(f"{what} was not reported as {kind!r}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reliability.checker", description=__doc__)
    parser.add_argument("run", nargs="?", type=Path, help="the run folder written by run.py")
    parser.add_argument("--self-check", action="store_true")
    args = parser.parse_args(argv)
    if args.self_check or args.run is None:
        failures = self_check()
        print("\n".join(failures) or f"self-check: {len(doctored())} doctored runs all reported")
        if args.run is None:
            return 1 if failures else 0
        if failures:
            return 1
    report = check(load(args.run))
    print(table(report))
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
