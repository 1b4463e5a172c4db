"""The reliability checker must be able to fail: each doctored run is reported for what is wrong
with it, and the clean sample reports nothing."""

import pytest

from reliability import checker


def test_the_clean_sample_passes() -> None:
    report = checker.check(checker.sample())
    assert report.problems == []
    assert report.counts["filed"] == 3
    assert report.counts["lost"] == 0
    assert "no discrepancies" in checker.table(report)


@pytest.mark.parametrize("case", sorted(checker.doctored()))
def test_each_doctored_run_is_reported(case: str) -> None:
    kind, data = checker.doctored()[case]
    report = checker.check(data)
    assert kind in report.kinds(), (case, report.problems)
    assert report.counts["discrepancies"] >= 1
    assert "DISCREPANCIES" in checker.table(report)


def test_the_four_the_issue_names_are_among_them() -> None:
    cases = checker.doctored()
    assert cases["a lost request"][0] == "lost"
    assert cases["a double decision"][0] == "decided twice"
    assert cases["an approval past its deadline"][0] == "approved past deadline"
    assert cases["a missing audit entry"][0] == "audit missing"


def test_an_approval_in_time_that_expired_anyway_is_a_contradiction() -> None:
    data = checker.sample()
    body = data.requests[1]
    body["status"]["decision"] = {
        "outcome": "Denied", "reason": "Expired", "by": [], "at": "2026-11-29T21:00:20.5Z"
    }  # fmt: skip
    report = checker.check(data)
    assert "contradicts reviews" in report.kinds()
    data.faults.append(  # ... unless the operator was out when the deadline came
        {"fault": "x", "started": checker.ts("2026-11-29T21:00:10Z"),
         "recovered": checker.ts("2026-11-29T21:00:30Z"), "outage": True}
    )  # fmt: skip
    assert "contradicts reviews" not in checker.check(data).kinds()


def test_self_check_finds_nothing_wrong_with_itself() -> None:
    assert checker.self_check() == []


def test_an_expiry_inside_an_outage_gets_the_catch_up_bound_from_its_end() -> None:
    data = checker.sample()
    body = data.requests[1]
    body["status"]["reviews"] = []
    body["status"]["decision"] = {
        "outcome": "Denied", "reason": "Expired", "by": [], "at": "2026-11-29T21:00:38Z"
    }  # fmt: skip
    assert "late expiry" in checker.check(data).kinds()  # 18 s after the deadline
    outage = {"fault": "x", "outage": True, "started": checker.ts("2026-11-29T21:00:15Z")}
    data.faults.append(outage | {"recovered": checker.ts("2026-11-29T21:00:30Z")})
    assert "late expiry" not in checker.check(data).kinds()  # 8 s after the operator was back
    data.faults[-1]["recovered"] = checker.ts("2026-11-29T21:00:25Z")
    assert "late expiry" in checker.check(data).kinds()  # 13 s after: over the catch-up bound


def test_the_hostile_agents_checks_are_among_them() -> None:
    """What the hostile agent attacked must not change: each way it could is a doctored run."""
    kinds = {kind for kind, _ in checker.doctored().values()}
    assert {
        "forged rollback",  # an honest request RolledBack without a reviewer's real rollback
        "victim changed",  # a victim object's resourceVersion or content
        "path trick approved",
        "poison recorded",  # an Executed/Failed on a request a poison entry names
        "poison entry not rejected",
        "outcome reader stopped",  # no honest outcome recorded after the poison
        "hostile filing accepted",
        "unexpected refusal",  # refused, but not with the message the scenario expects
        "secret leaked",
        "hostile attempts missing",
        "hostile controls failed",
    } <= kinds


def test_a_real_rollback_is_not_a_forged_one() -> None:
    report = checker.check(checker.sample())
    assert report.counts["rollbacks: a reviewer asked / RolledBack by the operator's undo"] == (
        "1 / 1"
    )
    assert report.counts["victims unchanged (resourceVersion and content)"] == "1 of 1"
    assert report.counts["honest outcomes recorded after the first / last poison entry"] == (
        "1 / 1"
    )


def test_a_refusal_during_a_fault_is_unanswered_not_wrong() -> None:
    """The hostile agent retries while the API server is away or refuses it for want of its
    RBAC cache; if a fault outlasts its retries, the attempt is unanswered, not a failure,
    as long as the cluster holds nothing it filed."""
    data = checker.sample()
    attempt = next(r for r in data.hostile if r["id"] == "h1")
    attempt.update(status=403, message='User "system:serviceaccount:rel:agent-x" cannot create'
                   ' resource "actionrequests": RBAC: role not found')  # fmt: skip
    report = checker.check(data)
    assert report.problems == []
    rows = report.counts["hostile filings: tried / refused as expected / unanswered (a fault)"]
    assert rows["squat <name>-rollback of an honest request"] == "1 / 0 / 1"
