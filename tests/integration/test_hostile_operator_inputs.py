"""Hostile input aimed at the operator's own long-running work, against the real API server,
Redis and operator: an agent's outcome stream, the CEL a policy runs on an agent's parameters,
and parameters built to break every client that lists requests.

- One malformed entry on an agent's own outcome stream used to kill the operator's only
  outcome reader, for every agent, again after every restart (the entry stayed pending).
- A cheap-looking rule over parameters an agent sizes stalled the whole operator for seconds:
  CEL ran on the event loop with no budget. Ten functions the compile check accepted did not
  exist at run time, so a Ready policy sent every request reaching them to tier 4.
- Parameters nested 9,990 deep were stored, and ``kubectl get actionrequests`` then failed for
  everyone in the namespace.
"""

import json
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest
from handoff.cli.limits import JSON_DEPTH_LIMIT
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .helpers import AGENT, apply_ready_policy, condition, file, policy, request, value, wait_for
from .hostile import call, requests_path, still_running

pytestmark = pytest.mark.integration
OTHER = "other-agent"


def events(cluster: Cluster, ns: str, name: str, reason: str) -> list[dict[str, Any]]:
    listed = json.loads(cluster.kubectl("get", "events", "-n", ns, "-o", "json").stdout)
    return [
        e for e in listed["items"] if e["involvedObject"]["name"] == name and e["reason"] == reason
    ]


def healthz(operator: OperatorProcess) -> tuple[int, str]:
    url = f"http://127.0.0.1:{operator.health_port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read().decode()


# -- the outcome stream ----------------------------------------------------------------------


def poison(
    mine: str, uid: str, theirs: str, their_uid: str
) -> list[tuple[str, dict[bytes, bytes]]]:
    """Entries an agent can append to its own outcome stream, and why each is refused."""
    ok = {b"uid": uid.encode(), b"outcome": b"Executed"}
    return [
        ("no name", {b"uid": uid.encode(), b"outcome": b"Executed"}),
        ("an empty name", {b"name": b"", **ok}),
        ("a name that is not UTF-8", {b"name": b"\xff\xfe\xc3(", **ok}),
        ("a field name that is not UTF-8", {b"\xc3(": b"x", b"name": mine.encode(), **ok}),
        ("a message that is not UTF-8", {b"name": mine.encode(), b"message": b"\xc0\x80", **ok}),
        ("binary garbage", {bytes(range(256)): bytes(range(255, -1, -1))}),
        ("a path for a name", {b"name": b"../../../api/v1/namespaces/default/secrets/x", **ok}),
        ("percent-encoded dots", {b"name": b"%2e%2e%2f%2e%2e%2fsecrets", **ok}),
        ("a name with a query", {b"name": f"{mine}?dryRun=All".encode(), **ok}),
        ("a name with a fragment", {b"name": f"{mine}#x".encode(), **ok}),
        ("a name of 300 characters", {b"name": b"a" * 300, **ok}),
        ("a huge message", {b"name": mine.encode(), b"message": b"x" * 1_000_000, **ok}),
        ("a huge field name", {b"k" * 100_000: b"v", b"name": mine.encode(), **ok}),
        ("an unknown outcome", {b"name": mine.encode(), b"uid": uid.encode(), b"outcome": b"Done"}),
        ("no outcome", {b"name": mine.encode(), b"uid": uid.encode()}),
        ("a uid that is not this request's", {b"name": mine.encode(), b"uid": b"0000-1111",
                                              b"outcome": b"Executed"}),
        ("a uid that is no uid", {b"name": mine.encode(), b"uid": b"a/b", b"outcome": b"Failed"}),
        ("a request that does not exist", {b"name": b"no-such-request", **ok}),
        ("another agent's request", {b"name": theirs.encode(), b"uid": their_uid.encode(),
                                     b"outcome": b"Executed"}),
    ]  # fmt: skip


def test_poison_outcome_entries_are_rejected_and_the_reader_lives_on(
    cluster: Cluster, operator: OperatorProcess, redis_server: RedisServer
) -> None:
    ns = cluster.new_namespace(agents=(AGENT, OTHER))
    apply_ready_policy(cluster, policy(ns, agents={"serviceAccounts": [AGENT, OTHER]}))
    mine = file(cluster, ns, "db.query")
    theirs = file(cluster, ns, "db.query", agent=OTHER)
    uid = wait_for(cluster, ns, mine, "phase", "Approved")["metadata"]["uid"]
    their_uid = wait_for(cluster, ns, theirs, "phase", "Approved")["metadata"]["uid"]
    redis = redis_client(redis_server.url)
    stream = f"handoff:outcomes:{ns}:{AGENT}"
    entries = poison(mine, uid, theirs, their_uid)
    for _, fields in entries:
        redis.xadd(stream, fields)
    redis.xadd(stream, {"name": mine, "uid": uid, "outcome": "Executed", "message": "done"})

    # The reader survived them all: the good entry behind them is recorded.
    executed = wait_for(cluster, ns, mine, "phase", "Executed", timeout=60)
    assert executed["status"]["execution"]["message"] == "done"
    rejected = value(operator, "handoff_rejected_outcomes_total", namespace=ns)
    assert rejected == len(entries), [case for case, _ in entries]
    # Each was acknowledged and deleted: the stream holds nothing consumed.
    eventually(lambda: redis.xlen(stream) == 0, 30, "the consumed entries deleted")
    # Entries that name a request are shown on it, once per problem, as the agent's doing.
    on_mine = eventually(
        lambda: (found := events(cluster, ns, mine, "RejectedOutcome")) and len(found) >= 8
        and found, 30, "RejectedOutcome events on the request",
    )  # fmt: skip
    messages = "\n".join(e["message"] for e in on_mine)
    assert e_count(on_mine, "is not UTF-8 text") == 2  # a field name, and a message
    assert "outcome 'Done' is neither Executed nor Failed" in messages
    assert "it names uid 0000-1111, not this request's" in messages
    assert "over 16384" in messages
    assert all(
        e["type"] == "Warning" and e["message"].startswith(f"{AGENT} wrote") for e in on_mine
    )
    on_theirs = eventually(lambda: events(cluster, ns, theirs, "RejectedOutcome"), 30, "event")
    assert f"{AGENT} did not file {theirs}" in on_theirs[0]["message"]
    assert request(cluster, ns, theirs)["status"]["phase"] == "Approved"  # not Executed
    assert healthz(operator) == (200, "leading\n")

    # A restart finds nothing left pending to trip over; and a new poison entry written while the
    # operator is down is rejected like the others when it comes back.
    operator.stop()
    redis.xadd(stream, {b"name": b"\xff"})
    operator.start()
    second = file(cluster, ns, "db.query")
    second_uid = wait_for(cluster, ns, second, "phase", "Approved")["metadata"]["uid"]
    redis.xadd(stream, {"name": second, "uid": second_uid, "outcome": "Failed", "message": "no"})
    wait_for(cluster, ns, second, "phase", "Failed", timeout=60)
    assert value(operator, "handoff_rejected_outcomes_total", namespace=ns) == 1
    assert healthz(operator)[0] == 200


def e_count(found: list[dict[str, Any]], phrase: str) -> int:
    return sum(1 for e in found if phrase in e["message"])


# -- CEL: a budget, and the functions the compile check accepts -------------------------------

CROSS = "parameters.a.map(x, parameters.b).exists(l, l.exists(y, y == -1))"
GROW = "parameters.s.replace('', parameters.s).size() > 0"
FUNCTIONS = (
    "action.lowerAscii() == 'report.daily' && target.upperAscii() == 'TEST:1'"
    " && parameters.csv.split(',').join('-') == 'a-b' && parameters.pad.trim() == 'x'"
    " && parameters.csv.replace(',', ';') == 'a;b' && parameters.csv.substring(0, 1) == 'a'"
    " && parameters.csv.indexOf(',') == 1 && parameters.csv.lastIndexOf(',') == 1"
    " && bool('true') && max(1, 2) == 2 && min([3, 1]) == 1"
)


def test_costly_cel_is_stopped_at_its_budget_and_fails_closed(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    rules = [
        {"name": "reads", "actions": ["db.query"], "tier": 1},
        {"name": "cross", "actions": ["payments.refund"], "tier": 1, "when": CROSS},
        {"name": "grow", "actions": ["payments.payout"], "tier": 1, "when": GROW},
        {"name": "member", "actions": ["payments.charge"], "tier": 1,
         "when": "parameters.a.exists(x, x in parameters.b)"},
        {"name": "functions", "actions": ["Report.*"], "tier": 1, "when": FUNCTIONS},
    ]  # fmt: skip
    apply_ready_policy(cluster, policy(namespace, rules=rules, defaultTier=4))
    assert operator.process is not None
    # 256 items each, the most admission lets through: before the budget this one request held
    # the operator's event loop for seconds (in process: 3.3 s on the test machine).
    lists = {"a": list(range(256)), "b": list(range(256))}
    costly = file(cluster, namespace, "payments.refund", parameters=lists)
    ordinary = file(cluster, namespace, "db.query")
    wait_for(cluster, namespace, ordinary, "decision.reason", "AutoApproved", timeout=60)
    waiting = wait_for(cluster, namespace, costly, "tier", 4, timeout=60)
    classified = condition(waiting, "Classified")
    assert classified["reason"] == "FailClosed"
    assert (
        f"rule cross: {CROSS!r} exceeded the evaluation budget (100 ms of CPU"
        in (classified["message"])
    )
    assert "tier 4 (fail closed)" in classified["message"]
    assert value(operator, "handoff_when_budget_exceeded_total") >= 1
    # A string function that would build megabytes fails, and so fails closed, at once.
    grown = file(cluster, namespace, "payments.payout", parameters={"s": "ab" * 1000})
    message = condition(wait_for(cluster, namespace, grown, "tier", 4), "Classified")["message"]
    assert "replace would build a string over 1048576 characters" in message
    # Linear work over the same lists is well within the budget: decided by its rule.
    member = file(cluster, namespace, "payments.charge", parameters={**lists, "b": [5]})
    assert (
        wait_for(cluster, namespace, member, "decision.reason", "AutoApproved")["status"]["rule"]
        == "member"
    )
    # Every function the compile check lets a rule call exists when a request arrives.
    parameters = {"csv": "a,b", "pad": "  x  "}
    called = file(cluster, namespace, "Report.Daily", parameters=parameters)
    decided = wait_for(cluster, namespace, called, "decision.reason", "AutoApproved")
    assert (decided["status"]["tier"], decided["status"]["rule"]) == (1, "functions")
    still_running(cluster, operator, namespace)


# -- parameters nested or sized to break the clients that list requests -------------------------


def nested_json(depth: int, opening: str = '{"x": ', closing: str = "}") -> str:
    """``depth`` levels of maps (or lists), parameters itself the first."""
    return '{"n": ' + opening * (depth - 1) + "1" + closing * (depth - 1) + "}"


def document(ns: str, parameters: str, rollback: str | None = None) -> bytes:
    spec = {"agent": AGENT, "action": "db.query", "target": "test:1", "summary": "bounds"}
    text = json.dumps({"apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
                       "metadata": {"generateName": "hostile-", "namespace": ns}, "spec": spec})  # fmt: skip
    extra = f'"parameters": {parameters}, '
    if rollback is not None:
        extra += f'"rollback": {{"description": "undo", "parameters": {rollback}}}, '
    return text.replace('"summary"', extra + '"summary"').encode()


DEEP = "nest deeper than 32 levels, or one of their lists or maps holds more than 256 items"
REFUSED: list[tuple[str, str, str | None, str]] = [
    ("nested 9,990 deep", nested_json(9_990), None, "spec.parameters " + DEEP),
    ("nested 33 deep", nested_json(33), None, "spec.parameters " + DEEP),
    ("lists nested 33 deep", nested_json(33, "[", "]"), None, "spec.parameters " + DEEP),
    ("a list of 257 items", json.dumps({"l": list(range(257))}), None, "spec.parameters " + DEEP),
    ("a map of 257 keys inside", json.dumps({"m": {f"k{i}": i for i in range(257)}}), None,
     "spec.parameters " + DEEP),
    ("a 70,000-character string", json.dumps({"s": "x" * 70_000}), None,
     "spec.parameters are 70008 characters as compact JSON, over 65536"),
    ("64 keys of 1,100 characters", json.dumps({"k" * 1100 + str(i): 1 for i in range(64)}), None,
     "over 65536"),
    ("a rollback nested 33 deep", "{}", nested_json(33), "spec.rollback.parameters " + DEEP),
]  # fmt: skip


def test_parameters_too_deep_wide_or_large_are_refused_and_the_namespace_still_lists(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    agent = f"{namespace}/{AGENT}"
    path = requests_path(namespace)
    problems = []
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(JSON_DEPTH_LIMIT)  # to read an answer back, should one be accepted
    try:
        for case, parameters, rollback, phrase in REFUSED:
            answer = call(cluster, "POST", path, document(namespace, parameters, rollback), agent)
            if answer.status != 422 or phrase not in answer.message:
                problems.append(f"{case}: {answer.status} {answer.message[:300]!r}")
    finally:
        sys.setrecursionlimit(limit)
    assert not problems, "\n".join(problems)
    # At the bounds: accepted, decided, and listed by the real kubectl for everyone.
    accepted = []
    for parameters in (nested_json(32), nested_json(32, "[", "]"),
                       json.dumps({"l": list(range(256)), "s": "x" * 60_000})):  # fmt: skip
        answer = call(cluster, "POST", path, document(namespace, parameters), agent)
        assert answer.status == 201, answer.message[:300]
        accepted.append(answer.message)
    for name in accepted:
        wait_for(cluster, namespace, name, "decision.reason", "AutoApproved", timeout=60)
    for who in ("admin", agent, "alice"):
        for output in ((), ("-o", "wide"), ("-o", "json")):
            listed = cluster.kubectl("get", "actionrequests", "-n", namespace, *output, who=who)
            assert all(name in listed.stdout for name in accepted), (who, output)
    still_running(cluster, operator, namespace)
