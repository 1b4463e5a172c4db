"""The request handler's grant step (controller/grants.py) over FakeKube: the use counted with a
resourceVersion-guarded write, two requests racing for the last use (exactly one covered), a
retry that takes no second use, a grant deleted between reading and writing, a grant refused
for being wider than the request that prompted it, and nothing read when the rule is not
grantable."""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from handoff.adapters.kube import NotFound
from handoff.controller.grants import Grants, grants_path
from handoff.domain.classify import RequestFacts
from handoff.domain.model import Event, RequestState, Step
from handoff.domain.policy import compile_policy
from handoff.domain.reasons import Reason, Transition
from handoff.testing.kube import FakeKube

NS, AGENT = "agents", "payments-agent"
NOW = datetime(2026, 12, 1, 12, 30, tzinfo=UTC)
RULES: list[Any] = [
    {"name": "small-refunds", "actions": ["payments.refund"], "tier": 4,
     "grantable": {"maxDuration": "1h", "maxCount": 3}},
    {"name": "money", "actions": ["payments.*"], "tier": 4},
]  # fmt: skip
POLICIES = [compile_policy(NS, "payments", {"agents": {"serviceAccounts": [AGENT]},
                                            "rules": RULES})]  # fmt: skip
PROMPT_PATH = f"/apis/handoff.dev/v1alpha1/namespaces/{NS}/actionrequests/refund-0"


def setup(uses: int = 1, target: str = "stripe:*") -> FakeKube:
    kube = FakeKube()
    kube.add(PROMPT_PATH, {
        "metadata": {"namespace": NS, "name": "refund-0"},
        "spec": {"agent": AGENT, "action": "payments.refund", "target": "stripe:ch_0"},
        "status": {"policy": "payments", "rule": "small-refunds",
                   "reviews": [{"reviewer": "alice", "decision": "Approve"}],
                   "decision": {"outcome": "Approved", "reason": "HumanApproved", "by": ["alice"]}},
    })  # fmt: skip
    kube.add(grants_path(NS, "g"), {
        "metadata": {"namespace": NS, "name": "g", "creationTimestamp": "2026-12-01T12:00:00Z"},
        "spec": {"grantedBy": "alice", "agent": AGENT, "action": "payments.refund",
                 "policy": "payments", "rule": "small-refunds", "target": target,
                 "expiresAt": "2026-12-01T13:00:00Z", "maxUses": uses, "request": "refund-0"},
    })  # fmt: skip
    return kube


def waiting(rule: str = "small-refunds", reason: str = Reason.AWAITING_REVIEW) -> Step:
    patch = {"policy": "payments", "rule": rule, "phase": "AwaitingApproval", "deadline": "d",
             "conditions": []}  # fmt: skip
    return Step(patch, None, Event("Normal", reason, "waits"), NOW + timedelta(minutes=5),
                Transition.STARTED_WAITING)  # fmt: skip


def state(target: str = "stripe:ch_9") -> RequestState:
    facts = RequestFacts(NS, AGENT, "payments.refund", target)
    return RequestState(facts, NOW, f"system:serviceaccount:{NS}:{AGENT}")


def body(uid: str, requested_by: str = f"system:serviceaccount:{NS}:{AGENT}") -> dict[str, Any]:
    annotations = {"handoff.dev/requested-by": requested_by}
    return {"metadata": {"namespace": NS, "name": f"refund-{uid}", "uid": uid,
                         "annotations": annotations}}  # fmt: skip


def cover(kube: FakeKube, uid: str, step: Step | None = None, target: str = "stripe:ch_9") -> Step:
    grants = Grants(kube, lambda: NOW)  # type: ignore[arg-type]
    return asyncio.run(grants.cover(body(uid), state(target), step or waiting(), POLICIES))


def reason(step: Step) -> str | None:
    return None if step.decision is None else str(step.decision.reason)


def grant(kube: FakeKube) -> dict[str, Any]:
    return kube.objects[grants_path(NS, "g")]


def test_a_use_is_counted_and_a_retry_takes_no_second_one() -> None:
    kube = setup(uses=2)
    assert reason(cover(kube, "u1")) == "GrantApproved"
    status = grant(kube)["status"]
    assert status == {"checked": True, "used": 1,
                      "usedBy": [{"uid": "u1", "request": "refund-u1", "at": "2026-12-01T12:30:00Z"}]}  # fmt: skip
    again = cover(kube, "u1")  # the request's own write conflicted: decided again
    assert reason(again) == "GrantApproved"
    assert again.decision is not None
    assert "use 1 of 2" in again.decision.message
    assert grant(kube)["status"]["used"] == 1
    assert kube.count("PATCH") == 1


class Racing(FakeKube):
    """Both requests read the grants before either writes: the race, every time."""

    listed = 0
    both: asyncio.Event | None = None

    async def get(self, path: str) -> Any:
        found = await super().get(path)
        if path.endswith("/actiongrants"):
            self.both = self.both or asyncio.Event()
            self.listed += 1
            if self.listed == 2:
                self.both.set()
            await self.both.wait()
        return found


def test_two_requests_racing_for_the_last_use_exactly_one_is_covered() -> None:
    kube = Racing()
    kube.objects = setup(uses=1).objects
    grants = Grants(kube, lambda: NOW)  # type: ignore[arg-type]

    async def race() -> list[Step]:
        return list(await asyncio.gather(
            grants.cover(body("u1"), state(), waiting(), POLICIES),
            grants.cover(body("u2"), state(), waiting(), POLICIES),
        ))  # fmt: skip

    steps = asyncio.run(race())
    assert sorted(str(reason(s)) for s in steps) == ["GrantApproved", "None"]
    assert grant(kube)["status"]["used"] == 1
    assert kube.count("PATCH") == 2  # the loser's guarded write was refused (409), then re-read


def test_an_injected_conflict_reads_again_and_a_deleted_grant_covers_nothing() -> None:
    kube = setup(uses=2)
    kube.conflict("/actiongrants/g/status")
    assert reason(cover(kube, "u1")) == "GrantApproved"
    assert kube.count("PATCH") == 2
    kube.conflict("/actiongrants/g/status")
    kube.fail("GET", "/actiongrants/g", NotFound(404, "gone"))
    assert cover(kube, "u2").decision is None


def test_a_grant_wider_than_its_prompt_is_refused_for_good() -> None:
    kube = setup(uses=3, target="*")
    kube.objects[PROMPT_PATH]["status"]["reviews"] = []  # alice never approved it
    assert cover(kube, "u1").decision is None
    assert grant(kube)["status"] == {"refused": "GrantRefused: alice did not approve refund-0"}
    kube.objects[PROMPT_PATH]["status"]["reviews"] = [{"reviewer": "alice", "decision": "Approve"}]
    assert cover(kube, "u2").decision is None  # refused stays refused
    del kube.objects[PROMPT_PATH]
    kube = setup(uses=3)
    del kube.objects[PROMPT_PATH]
    assert cover(kube, "u3").decision is None
    assert "refund-0, does not exist" in grant(kube)["status"]["refused"]


def test_nothing_is_read_unless_the_rule_is_grantable_and_the_request_waits_for_review() -> None:
    kube = setup(uses=3)
    for step in (
        waiting(rule="money"),
        waiting(reason=Reason.BUDGET_EXCEEDED),
        waiting(reason=Reason.MISSING_ROLLBACK_PLAN),
        Step(),
    ):
        assert cover(kube, "u1", step) is step
    assert kube.calls == []
    assert cover(kube, "u1", target="paypal:1").decision is None  # read, and not covered
    assert "status" not in grant(kube)


def test_an_undecided_prompt_covers_nothing_yet_and_refuses_nothing() -> None:
    kube = setup(uses=3)
    del kube.objects[PROMPT_PATH]["status"]["decision"]  # alice's Approve may not count
    assert cover(kube, "u1").decision is None
    assert "status" not in grant(kube)
    kube.objects[PROMPT_PATH]["status"]["decision"] = {
        "outcome": "Denied", "reason": "HumanDenied", "by": ["bob"],
    }  # fmt: skip
    assert cover(kube, "u2").decision is None
    refused = grant(kube)["status"]["refused"]
    assert refused.startswith("GrantRefused: alice's approval did not decide refund-0")


def test_a_request_that_takes_several_people_or_its_author_filed_is_never_covered() -> None:
    kube = setup(uses=3)
    staged = waiting()
    assert staged.patch is not None
    staged.patch["stages"] = [{"name": "manager"}, {"name": "finance"}]
    assert cover(kube, "u1", staged).decision is None
    two = waiting()
    assert two.patch is not None
    two.patch["requiredApprovals"] = 2
    assert cover(kube, "u2", two).decision is None
    grants = Grants(kube, lambda: NOW)  # type: ignore[arg-type]
    own = asyncio.run(grants.cover(body("u3", "alice"), state(), waiting(), POLICIES))
    assert own.decision is None
    assert "status" not in grant(kube)  # nothing wrong with the grant itself
    assert reason(cover(kube, "u4")) == "GrantApproved"


def test_a_grant_covers_only_what_the_agent_itself_filed() -> None:
    """A grant for an agent is a reviewer's approval of that agent's next requests. Admission
    lets a person file as any agent of the namespace (only ServiceAccounts are held to their
    own name): carol's request naming the agent, or one the cluster never stamped, is not the
    agent's and goes to people, however well it fits the grant."""
    kube = setup(uses=3)
    grants = Grants(kube, lambda: NOW)  # type: ignore[arg-type]
    for uid, filer in (("u1", "carol"), ("u2", ""), ("u3", f"system:serviceaccount:{NS}:other"),
                       ("u4", "system:serviceaccount:handoff-system:handoff-operator")):  # fmt: skip
        step = asyncio.run(grants.cover(body(uid, filer), state(), waiting(), POLICIES))
        assert step.decision is None, filer
    assert "status" not in grant(kube)  # no use taken, nothing refused
    assert reason(cover(kube, "u5")) == "GrantApproved"  # filed by the agent: covered


def test_an_author_who_lost_the_right_makes_the_grant_cover_nothing_for_good() -> None:
    kube = setup(uses=3)
    grant(kube)["spec"]["grantedGroups"] = ["payments-approvers", "system:authenticated"]
    asked: list[dict[str, Any]] = []

    def refuse(spec: dict[str, Any]) -> bool:
        asked.append(spec)
        return False

    kube.access = refuse
    assert cover(kube, "u1").decision is None
    assert asked[0]["user"] == "alice"
    assert asked[0]["groups"] == ["payments-approvers", "system:authenticated"]
    assert asked[0]["resourceAttributes"] == {
        "group": "handoff.dev", "resource": "agentactionpolicies", "verb": "approve",
        "namespace": NS, "name": "payments",
    }  # fmt: skip
    assert grant(kube)["status"]["refused"].startswith(
        "GrantAuthorUnentitled: alice no longer holds the verb approve"
    )
    kube.access = lambda spec: True
    assert cover(kube, "u2").decision is None  # refused stays refused
