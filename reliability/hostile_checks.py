"""The checker's part for the hostile agent: nothing it attacked changed.

Like the rest of the checker it imports nothing of the operator: it reads the hostile agent's
journal (``hostile.jsonl``: each attempt, when, the answer), the expectations in
``scenario.json`` (which message each refusal must carry, which decision each path trick must
get), the final requests and Events, the victims as run.py saw them before and after, and the
operators' log lines that say an outcome entry was dropped.
"""

import base64
import json
import re
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reliability.checker import Report, RunData

Json = dict[str, Any]
DROPPED = re.compile(r"dropped outcome (\S+) in (\S+):")
REQUESTED_BY = "handoff.dev/requested-by"
ROLLBACKS = "rollbacks: a reviewer asked / RolledBack by the operator's undo"
SQUATTED = "  ... filed under their own name, which the hostile agent had tried to take"


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def dropped_entries(operators: Path) -> set[str]:
    """``stream id`` of every outcome entry an operator replica logged as dropped."""
    found: set[str] = set()
    for log in sorted(operators.glob("operator-*.log")):
        for line in log.read_text(errors="replace").splitlines():
            match = DROPPED.search(line)
            if match:
                found.add(f"{match.group(2)} {match.group(1)}")
    return found


def _requested_by(body: Json) -> str:
    return str(((body.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_BY, ""))


# -- rollbacks: only a reviewer's, filed by the operator, carried out ------------------------------


def check_rollbacks(
    data: "RunData", filed: dict[str, Json], cluster: dict[str, Json], report: "Report"
) -> set[str]:
    """Every honest request that says it was rolled back (its phase, ``status.rollback``, an
    Event, an audit line) got there through a Rollback review the harness's reviewer made and
    the API server accepted, and a rollback request the operator filed for it, which its agent
    then carried out. Returns the uids of those rollback requests (they are not the load's)."""
    scenario = data.scenario
    operator = (scenario.get("hostile") or {}).get("operator_user", "")
    reviewers = set(scenario["reviewers"])
    attempts = {a["id"]: a for a in data.attempts}
    by_name = {b["metadata"]["name"]: b for b in cluster.values()}
    undos: set[str] = set()
    legit: set[str] = set()
    squats: dict[str, float] = {}  # name -> when the hostile agent first tried to take it
    for r in data.hostile:
        if r.get("kind", "").startswith("squat") and r.get("final", True):
            squats[r["name"]] = min(squats.get(r["name"], r["at"]), r["at"])
    squatted_first = 0
    asked = rolled = 0
    for uid, f in filed.items():
        body = cluster.get(uid) or {}
        status = body.get("status") or {}
        rollback = status.get("rollback") or {}
        marked = status.get("phase") == "RolledBack" or bool(rollback.get("done"))
        if not (marked or rollback):
            continue
        asked += 1
        name = f["name"]
        review = next(
            (r for r in status.get("reviews") or [] if r.get("decision") == "Rollback"), None
        )
        if review is None or review.get("reviewer") not in reviewers:
            report.bad(
                "forged rollback",
                f"{name}: {status.get('phase')} with a rollback"
                " (status.rollback) but no reviewer's Rollback among its reviews",
            )
            continue
        attempt = attempts.get(str(review.get("comment", "")).removeprefix("rel "))
        # (any try of it: one whose answer was lost may have been the one that went through)
        if attempt is None or attempt["who"] != review["reviewer"]:
            report.bad(
                "forged rollback",
                f"{name}: the Rollback by {review['reviewer']} is not"
                " one the harness's reviewer made",
            )
            continue
        undo = by_name.get(str(rollback.get("request", "")))
        if undo is None:
            report.bad(
                "forged rollback",
                f"{name}: its rollback {rollback.get('request')!r} is not in the namespace",
            )
            continue
        spec = undo.get("spec") or {}
        if (_requested_by(undo), spec.get("rollbackOf"), spec.get("agent")) != (
            operator,
            name,
            f["agent"],
        ):
            report.bad(
                "forged rollback",
                f"{name}: its rollback {undo['metadata']['name']} was"
                f" filed by {_requested_by(undo) or 'nobody stamped'} for"
                f" {spec.get('rollbackOf')!r}, not by the operator for it",
            )
            continue
        undos.add(undo["metadata"]["uid"])
        own_name = f"{name}-rollback"
        if own_name in squats and undo["metadata"]["name"] != own_name:
            report.bad(
                "hostile filing accepted",
                f"{name}: its rollback was filed as {undo['metadata']['name']}, not {own_name},"
                " which the hostile agent had tried to take",
            )
        squatted = squats.get(undo["metadata"]["name"])
        squatted_first += squatted is not None and squatted < ts(
            undo["metadata"]["creationTimestamp"]
        )
        if not marked:
            continue
        execution = (undo.get("status") or {}).get("execution") or {}
        message = str(rollback.get("message", ""))
        if execution.get("outcome") != "Executed":
            report.bad(
                "forged rollback",
                f"{name}: RolledBack, yet its rollback"
                f" {undo['metadata']['name']} was never carried out",
            )
        elif (
            message.startswith("undone by ") and message != f"undone by {undo['metadata']['name']}"
        ):
            report.bad("forged rollback", f"{name}: credited to another request ({message})")
        else:
            rolled += 1
            legit.add(uid)
    for event in data.events:
        uid = (event.get("involvedObject") or {}).get("uid", "")
        if event.get("reason") == "RolledBack" and uid in filed and uid not in legit:
            report.bad("forged rollback", f"{filed[uid]['name']}: a RolledBack Event")
    for line in data.audit_redis:
        if (
            line.get("event") == "RolledBack"
            and line.get("uid") in filed
            and line["uid"] not in legit
        ):
            report.bad("forged rollback", f"{filed[line['uid']]['name']}: a RolledBack audit line")
    plans = scenario["plans"]
    then: Counter[str] = Counter()
    for uid, f in filed.items():
        if plans[f["plan"]].get("then") == "RolledBack":
            then["filed"] += 1
            then["reached"] += uid in legit
    if then["filed"] and not then["reached"]:
        report.bad("plan never reached", f"none of {then['filed']} rollbacks became RolledBack")
    report.counts[ROLLBACKS] = f"{asked} / {rolled}"
    report.counts[SQUATTED] = squatted_first
    if scenario.get("hostile") and rolled and not squatted_first:
        report.bad(
            "hostile attempts missing", "no rollback's name was squatted before it was filed"
        )
    return undos


# -- the hostile agent ---------------------------------------------------------------------------


def _transient(status: int, message: str) -> bool:
    """No answer from admission: the API server away, or warming up after its restart (its
    RBAC cache not filled, or not ready at all): a fault outlasted the agent's retries."""
    warming = ("cannot create resource", "not yet ready to handle request")
    return status in (0, 429) or status >= 500 or any(p in message for p in warming)


def check_hostile(
    data: "RunData", filed: dict[str, Json], cluster: dict[str, Json], report: "Report"
) -> None:
    h: Json = data.scenario["hostile"]
    agent, label = h["agent"], h["attempt_label"]
    final = [r for r in data.hostile if r.get("final", True)]
    mine = {
        b["metadata"]["uid"]: b
        for b in cluster.values()
        if (b.get("spec") or {}).get("agent") == agent
    }
    by_attempt = {((b["metadata"].get("labels") or {}).get(label, "")): b for b in mine.values()}
    classes = Counter(r["class"] for r in final)
    for klass in ("admission", "path", "poison", "control"):
        if not classes[klass]:
            report.bad("hostile attempts missing", f"no {klass} attempt was made")
    tried = {r["kind"] for r in final}
    expected = set(h["admission"]) | set(h["path_tricks"]) | set(h["poison"])
    if final and expected - tried:
        report.bad("hostile attempt not tried", ", ".join(sorted(expected - tried)))
    _check_filings(h, final, by_attempt, report)
    _check_path_tricks(h, final, by_attempt, report)
    _check_controls(h, final, by_attempt, report)
    _check_hostile_requests(h, mine, final, report)
    _check_poison(data, h, filed, cluster, report)
    _check_victims(data, h, report)
    _check_bait(data, h, report)


def _check_filings(
    h: Json, final: list[Json], by_attempt: dict[str, Json], report: "Report"
) -> None:
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    policy = f"ValidatingAdmissionPolicy '{h.get('admission_policy', 'handoff-filing')}'"
    for r in (r for r in final if r["class"] == "admission"):
        phrase = h["admission"].get(r["kind"])
        count = tally[r["kind"]]
        count["tried"] += 1
        what = f"{r['id']} {r['kind']} ({r.get('name')})"
        if phrase is None:
            report.bad("hostile attempt unknown", what)
        elif 200 <= r["status"] < 300 or r["id"] in by_attempt:
            report.bad("hostile filing accepted", f"{what}: the API server took it")
        elif r["status"] in (403, 422) and phrase in r["message"] and policy in r["message"]:
            count["refused"] += 1
        elif _transient(r["status"], r["message"]):
            count["unanswered"] += 1  # a fault outlasted its retries; the cluster has none
        else:
            report.bad(
                "unexpected refusal",
                f"{what}: {r['status']} {r['message'][:200]!r}, expected {policy} to refuse it"
                f" with a message with {phrase!r}",
            )
    report.counts["hostile filings: tried / refused as expected / unanswered (a fault)"] = {
        kind: f"{t['tried']} / {t['refused']} / {t['unanswered']}"
        for kind, t in sorted(tally.items())
    }


def _check_path_tricks(
    h: Json, final: list[Json], by_attempt: dict[str, Json], report: "Report"
) -> None:
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    for r in (r for r in final if r["class"] == "path"):
        phrase = h["path_tricks"].get(r["kind"], "")
        count = tally[r["kind"]]
        count["tried"] += 1
        what = f"{r['id']} {r['kind']}"
        body = by_attempt.get(r["id"])
        if body is None:
            if _transient(r["status"], r["message"]):
                count["unanswered"] += 1
            else:
                report.bad(
                    "path trick: unexpected answer",
                    f"{what}: not filed, {r['status']} {r['message'][:200]!r}",
                )
            continue
        status = body.get("status") or {}
        decision = status.get("decision") or {}
        if decision.get("outcome") == "Approved":
            report.bad("path trick approved", f"{what}: {decision.get('reason')}")
        elif (decision.get("reason"), phrase in str(decision.get("message", ""))) != (
            "Invalid",
            True,
        ):
            report.bad(
                "path trick: unexpected decision",
                f"{what}: {decision.get('outcome')}/"
                f"{decision.get('reason')} {str(decision.get('message'))[:200]!r},"
                f" expected Denied/Invalid with {phrase!r}",
            )
        else:
            count["invalid"] += 1
        if status.get("execution") or status.get("preview"):
            report.bad("path trick approved", f"{what}: it has an execution or a preview")
    report.counts["path tricks: tried / decided Denied, Invalid / unanswered (a fault)"] = {
        kind: f"{t['tried']} / {t['invalid']} / {t['unanswered']}"
        for kind, t in sorted(tally.items())
    }


def _check_controls(
    h: Json, final: list[Json], by_attempt: dict[str, Json], report: "Report"
) -> None:
    tally: dict[str, Counter[str]] = defaultdict(Counter)
    for r in (r for r in final if r["class"] == "control"):
        want = h["controls"].get(r["kind"]) or {}
        count = tally[r["kind"]]
        count["tried"] += 1
        status = (by_attempt.get(r["id"]) or {}).get("status") or {}
        decision = status.get("decision") or {}
        execution = (status.get("execution") or {}).get("outcome")
        got = (decision.get("outcome"), decision.get("reason"), execution)
        count["as expected"] += got == (
            want.get("outcome"),
            want.get("reason"),
            want.get("execution"),
        )
    for kind, t in tally.items():
        if not t["as expected"]:
            report.bad(
                "hostile controls failed",
                f"{kind}: none of {t['tried']} did what the"
                " policy allows, so the attacks beside them were not tried on a live"
                " policy and executor",
            )
    report.counts["hostile controls: tried / as its policy allows"] = {
        kind: f"{t['tried']} / {t['as expected']}" for kind, t in sorted(tally.items())
    }


def _check_hostile_requests(
    h: Json, mine: dict[str, Json], final: list[Json], report: "Report"
) -> None:
    """Every request of the hostile agent's is an attempt meant to be filed, carries nothing
    only the operator may set, and has an outcome only if its executor carried it out."""
    meant = {r["id"] for r in final if r["class"] in ("path", "control")}
    label = h["attempt_label"]
    for body in mine.values():
        meta = body["metadata"]
        attempt = (meta.get("labels") or {}).get(label, "")
        if attempt not in meant:
            report.bad(
                "hostile filing accepted",
                f"{meta['name']} ({attempt or 'no attempt'}) is in the namespace",
            )
        reserved = [
            k
            for k in meta.get("labels") or {}
            if "handoff.dev/" in k.lower() and k != "handoff.dev/agent"
        ]
        if meta.get("finalizers") or meta.get("ownerReferences") or reserved:
            report.bad(
                "hostile filing accepted",
                f"{meta['name']}: finalizers, owners or Handoff's labels ({reserved})",
            )
        execution = (body.get("status") or {}).get("execution") or {}
        kubernetes = (body.get("spec") or {}).get("execution") == "Kubernetes"
        if execution and not (kubernetes and "poison" not in str(execution.get("message"))):
            report.bad(
                "poison recorded",
                f"{meta['name']}: {execution.get('outcome')}"
                f" {str(execution.get('message'))[:100]!r} on a hostile request",
            )


def _check_poison(
    data: "RunData", h: Json, filed: dict[str, Json], cluster: dict[str, Json], report: "Report"
) -> None:
    poison = [r for r in data.hostile if r["class"] == "poison"]
    by_name = {b["metadata"]["name"]: b for b in cluster.values()}
    honest = h["honest_outcome_message"]
    left = set(data.outcomes_left)
    rejected = unread = 0
    for r in poison:
        what = f"{r['id']} {r['kind']}"
        if f"{r['stream']} {r['entry']}" in data.dropped_outcomes:
            rejected += 1
        elif r["entry"] in left:
            unread += 1
        else:
            report.bad(
                "poison entry not rejected",
                f"{what}: entry {r['entry']} was consumed and no operator logged it dropped",
            )
        body = by_name.get(r.get("names") or "")
        if body is None:
            continue
        execution = (body.get("status") or {}).get("execution") or {}
        own = (body.get("spec") or {}).get("agent") == h["agent"]
        foreign = execution and (
            own or (execution.get("outcome"), execution.get("message")) != ("Executed", honest)
        )
        if foreign or (r.get("message") and execution.get("message") == r["message"]):
            report.bad(
                "poison recorded",
                f"{what}: {body['metadata']['name']} is"
                f" {execution.get('outcome')} ({str(execution.get('message'))[:80]!r})",
            )
    report.counts["poison outcome entries: written / dropped by the operator / left unread"] = (
        f"{len(poison)} / {rejected} / {unread}"
    )
    if not poison:
        return
    first, last = min(r["at"] for r in poison), max(r["at"] for r in poison)
    times = [
        ts(e["at"])
        for uid in filed
        if (e := ((cluster.get(uid) or {}).get("status") or {}).get("execution") or {}).get("at")
    ]
    after_first, after_last = sum(t > first for t in times), sum(t > last for t in times)
    report.counts["honest outcomes recorded after the first / last poison entry"] = (
        f"{after_first} / {after_last}"
    )
    if not after_first or not after_last:
        report.bad(
            "outcome reader stopped",
            f"honest outcomes recorded after the first poison"
            f" entry: {after_first}, after the last: {after_last}",
        )


def _check_victims(data: "RunData", h: Json, report: "Report") -> None:
    same = 0
    for key in h["victims"]:
        before, after = data.victims_before.get(key), data.victims_after.get(key)
        if before is None or after is None:
            report.bad(
                "victim changed", f"{key}: not seen {'before' if before is None else 'after'}"
            )
        elif before != after:
            fields = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            report.bad("victim changed", f"{key}: {', '.join(fields)} changed")
        else:
            same += 1
    report.counts["victims unchanged (resourceVersion and content)"] = (
        f"{same} of {len(h['victims'])}"
    )


def _check_bait(data: "RunData", h: Json, report: "Report") -> None:
    """The victim Secret's value appears in no request, Event or audit line."""
    bait = h["bait"]
    forms = (bait, base64.b64encode(bait.encode()).decode())
    for where, items in (
        ("request", data.requests),
        ("Event", data.events),
        ("audit line", data.audit_redis),
    ):
        for item in items:
            text = json.dumps(item)
            if any(form in text for form in forms):
                name = (item.get("metadata") or item.get("involvedObject") or item).get("name")
                report.bad("secret leaked", f"the victim Secret's value is in the {where} {name}")
