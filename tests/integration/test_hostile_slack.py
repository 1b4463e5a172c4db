"""The Slack bridge attacked, against the real control plane: a hostile agent (its own
ServiceAccount and Redis user) and a hostile Slack user or network attacker (signatures,
timestamps, edited modals, identities the bridge must not act as, replays). Each row was first
seen to get through, or is a variant a careful attacker would try next."""

import asyncio
import http.client
import json
import secrets
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from handoff.adapters.outbox import dedup_key
from handoff.adapters.redis_acl import RedisAdmin
from handoff.adapters.slack import sign
from handoff.devenv.environment import apply
from handoff.devenv.manifests import OPERATOR_NAMESPACE, SLACK_USERS, slack_objects
from handoff.devenv.redis import RedisServer
from handoff.review.slackblocks import APPROVE, DENY
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess, eventually
from handoff.testing.slack import (
    FakeSlack,
    block_kit_errors,
    callback,
    operator_with_slack,
    slack_console,
    submission,
)

from .helpers import apply_ready_policy, file, policy, request, review, wait_for

pytestmark = pytest.mark.integration
SECRET = "slack-signing-secret-for-hostile-tests"  # noqa: S105 - a test value
TOKEN = "xoxb-bot-token-for-hostile-tests"  # noqa: S105 - a test value
ALICE, BOB, MALLORY, MASTER, AGENT_ID, GROUPIE = (
    "U0ALICE", "U0BOB", "U0MALLORY", "U0MASTER", "U0AGENT", "U0GROUPIE",
)  # fmt: skip
CHANNEL = "C0HOSTILE"
CHECKLIST = ["what", "impact", "rollback"]


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    """Tier 3 (refunds of 100 or less): HITL, two approvals, 2 s of review. Tier 4: 600 s."""
    name = cluster.new_namespace()
    target = {"name": "reviews", "format": "SlackApp", "channel": CHANNEL}
    apply_ready_policy(cluster, policy(
        name, notifications=[target],
        tiers={"tier3": {"oversight": "HITL", "decisionWindow": "10m", "approvals": 2,
                         "minReviewSeconds": 2},
               "tier4": {"decisionWindow": "30m", "approvals": 1, "minReviewSeconds": 600}},
        rules=[{"name": "refunds", "actions": ["payments.refund"],
                "when": "parameters.amount <= 100", "tier": 3},
               {"name": "money", "actions": ["payments.*"], "tier": 4}],
    ))  # fmt: skip
    return name


@pytest.fixture(scope="module")
def slack(cluster: Cluster, ns: str) -> Iterator[FakeSlack]:
    fake = FakeSlack(TOKEN).start()
    # The bridge may impersonate alice, bob and payments-approvers; the mapping also names
    # people and groups it may not, and identities no mapping may name.
    apply(cluster.control_plane, [
        *slack_objects(["alice", "bob"], ["payments-approvers"]),
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": SLACK_USERS, "namespace": OPERATOR_NAMESPACE},
         "data": {ALICE: '{"user": "alice", "groups": ["payments-approvers"]}',
                  BOB: '{"user": "bob", "groups": ["payments-approvers"]}',
                  MALLORY: '{"user": "mallory"}',
                  GROUPIE: '{"user": "alice", "groups": ["payments-approvers", "sre-approvers"]}',
                  MASTER: '{"user": "admin", "groups": ["system:masters"]}',
                  AGENT_ID: json.dumps({"user": f"system:serviceaccount:{ns}:payments-agent"})}},
    ])  # fmt: skip
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def slack_operator(operator: OperatorProcess, slack: FakeSlack) -> Iterator[OperatorProcess]:
    with operator_with_slack(operator, slack.url, TOKEN):
        yield operator


def start_console(cluster: Cluster, folder: Any, ns: str, slack: FakeSlack) -> ConsoleProcess:
    return slack_console(cluster, folder, [ns], slack.url, secret=SECRET, token=TOKEN)


@pytest.fixture(scope="module")
def consoles(
    cluster: Cluster, slack_operator: OperatorProcess, ns: str, slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ConsoleProcess, ConsoleProcess]]:  # fmt: skip
    """Two console replicas behind one interactivity URL (nothing shared but the cluster)."""
    first = start_console(cluster, tmp_path_factory.mktemp("console-a"), ns, slack)
    second = start_console(cluster, tmp_path_factory.mktemp("console-b"), ns, slack)
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def console(consoles: tuple[ConsoleProcess, ConsoleProcess]) -> ConsoleProcess:
    return consoles[0]


def endpoint(console: ConsoleProcess) -> str:
    return f"{console.url}/slack/interactivity"


def click(console: ConsoleProcess, who: str, value: str, action: str = APPROVE,
          trigger: str = "t-1") -> tuple[int, str]:  # fmt: skip
    payload = {
        "type": "block_actions", "user": {"id": who}, "trigger_id": trigger,
        "team": {"id": "T0TEAM"}, "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": CHANNEL},
        "actions": [{"action_id": action, "value": value}],
    }  # fmt: skip
    return callback(endpoint(console), SECRET, payload)


def submit(console: ConsoleProcess, who: str, view: dict[str, Any], acks: list[str],
           comment: str | None) -> tuple[int, str]:  # fmt: skip
    return callback(endpoint(console), SECRET, submission(who, view, acks, comment))


def waiting(cluster: Cluster, ns: str, amount: int = 2500, **spec: Any) -> tuple[str, str]:
    """A request waiting for review: tier 4 (600 s of review) or, for 100 or less, tier 3."""
    name = file(cluster, ns, "payments.refund", parameters={"amount": amount})
    body = wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    return name, body["metadata"]["uid"]


def opened(slack: FakeSlack, trigger: str) -> dict[str, Any]:
    views = [c["view"] for c in slack.of("views.open") if c["trigger_id"] == trigger]
    assert len(views) == 1, views
    return dict(views[0])


def told(slack: FakeSlack, who: str, since: int) -> list[str]:
    return [c["text"] for c in slack.of("chat.postEphemeral")[since:] if c["user"] == who]


def errors(answer: tuple[int, str]) -> str:
    status, text = answer
    assert status == 200
    return " ".join(json.loads(text)["errors"].values())


def agent_user(server: RedisServer, namespace: str) -> str:
    """The agent's own Redis URL, made as the operator makes it."""
    admin = RedisAdmin(server.url)
    password = secrets.token_urlsafe(24)
    user, _ = asyncio.run(admin.ensure_agent(namespace, "payments-agent", password))
    return admin.url_for(user, password)


def reviews(cluster: Cluster, ns: str, name: str) -> list[dict[str, Any]]:
    return list(request(cluster, ns, name)["status"]["reviews"])


# --- a hostile agent -------------------------------------------------------------------------

LONG = {"summary": 1024, "reasoning": 4096, "blastRadius": 1024, "target": 1024}
ONE_LINE = ("summary", "target")
BIDI = "\u202e"


@pytest.mark.parametrize("fill", ["\U0001f600", "\x1b", "<!channel>```", "&"])
def test_agent_text_at_every_bound_still_makes_a_message_slack_accepts(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str, fill: str
) -> None:
    """Fields at their schema maxima, in characters that grow when counted (an emoji is two
    UTF-16 units) or escaped (a control character is shown as four): the message, its update
    and the modal must still be within Block Kit's limits, or the request gets no notice."""
    # The CRD refuses control characters in one-line fields (summary, target): there a bidi
    # control, allowed and escaped as six characters, grows the text the most.
    spec = {key: ((BIDI if fill == "\x1b" and key in ONE_LINE else fill) * n)[:n]
            for key, n in LONG.items()}  # fmt: skip
    spec["rollback"] = {"description": (fill * 1024)[:1024]}
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "long-", "namespace": ns},
        "spec": {"agent": "payments-agent", "action": "payments.refund",
                 "parameters": {"amount": 2500}, "confidence": 0.5, **spec},
    }  # fmt: skip
    created = json.loads(cluster.create(document, who=f"{ns}/payments-agent").stdout)
    name, uid = created["metadata"]["name"], created["metadata"]["uid"]
    wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    eventually(
        lambda: slack.posted(name) or [c.answer for c in slack.refused("chat.postMessage")
                                       if name in json.dumps(c.body)],
        what="the announcement or its refusal",
    )  # fmt: skip
    assert not [c.answer for c in slack.refused("chat.postMessage") if name in json.dumps(c.body)]
    ((posted, _ts),) = slack.posted(name)
    assert block_kit_errors("chat.postMessage", posted) == []
    click(console, BOB, f"{ns}/{name}/{uid}", action=DENY, trigger=f"t-{name}")
    assert not [c.answer for c in slack.refused("views.open")]
    opened(slack, f"t-{name}")


def test_a_message_slack_refuses_is_posted_again_without_the_agent_s_text(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    """Whatever Slack refuses in the agent's text (a limit we do not know of), the reviewers
    still get a message with the request's name and the buttons."""
    slack.refuse["chat.postMessage"] = ["invalid_blocks"]
    name, _ = waiting(cluster, ns)
    ((posted, _ts),) = eventually(lambda: slack.posted(name), what="the second announcement")
    shown = json.dumps(posted)
    assert "test payments.refund" not in shown  # the agent's summary left out
    assert APPROVE in shown
    assert DENY in shown


def test_the_agent_cannot_touch_what_the_bridge_trusts(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str,
    redis_server: RedisServer,
) -> None:  # fmt: skip
    name, uid = waiting(cluster, ns)
    agent = f"{ns}/payments-agent"
    patch = json.dumps({"data": {"U0EVIL": '{"user": "alice"}'}})
    for attempt in (
        ["patch", "configmap", SLACK_USERS, "-n", OPERATOR_NAMESPACE, "-p", patch],
        ["create", "configmap", SLACK_USERS, "-n", ns, "--from-literal=U0EVIL={}"],
        ["create", "configmap", "x", "-n", OPERATOR_NAMESPACE, "--from-literal=a=b"],
        ["get", "configmap", SLACK_USERS, "-n", OPERATOR_NAMESPACE],
        ["patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=json", "-p",
         json.dumps([{"op": "add", "path": "/status/reviews/-",
                      "value": {"reviewer": "alice", "decision": "Approve"}}])],
        ["create", "-f", "-"],  # a Role letting it impersonate (it may not grant what it lacks)
    ):  # fmt: skip
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "me", "namespace": ns},
                "rules": [{"apiGroups": [""], "resources": ["users"],
                           "verbs": ["impersonate"]}]}  # fmt: skip
        stdin = json.dumps(role) if attempt[0] == "create" and attempt[1] == "-f" else None
        result = cluster.kubectl(*attempt, who=agent, input=stdin, check=False)
        assert result.returncode != 0, attempt
        assert "forbidden" in result.stderr.lower(), result.stderr
    # Its Redis user cannot redirect the message update (channel and ts are kept in the
    # operator's marks) to another message of the bot's.
    client = redis.Redis.from_url(agent_user(redis_server, ns))
    with pytest.raises(redis.exceptions.NoPermissionError):
        client.hset(dedup_key(ns, uid), "slack:reviews", "C0OTHER 1700000000.000001")
    client.close()
    assert reviews(cluster, ns, name) == []


# --- who is clicking -------------------------------------------------------------------------


@pytest.mark.parametrize("who", [MASTER, AGENT_ID])
def test_a_mapping_to_system_masters_or_to_the_agent_itself_is_never_used(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str, who: str
) -> None:
    name, uid = waiting(cluster, ns)
    since = len(slack.of("chat.postEphemeral"))
    click(console, who, f"{ns}/{name}/{uid}", trigger=f"t-{name}")
    (said,) = told(slack, who, since)
    assert "not mapped to a Kubernetes user" in said
    assert not [v for v in slack.of("views.open") if v["trigger_id"] == f"t-{name}"]
    assert reviews(cluster, ns, name) == []


@pytest.mark.parametrize(
    ("who", "missing"), [(MALLORY, "user mallory"), (GROUPIE, "group sre-approvers")]
)
def test_an_identity_the_bridge_may_not_impersonate_is_named_to_the_user_and_the_admins(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str, who: str, missing: str
) -> None:
    name, uid = waiting(cluster, ns)
    since = len(slack.of("chat.postEphemeral"))
    click(console, who, f"{ns}/{name}/{uid}", trigger=f"t-{name}")
    (said,) = told(slack, who, since)
    assert f"may not act as {missing}" in said
    assert "console.slack.impersonate" in said
    assert not [v for v in slack.of("views.open") if v["trigger_id"] == f"t-{name}"]
    assert reviews(cluster, ns, name) == []
    # The administrators see it too: an Event on the mapping, and the console's log.
    eventually(
        lambda: [e for e in cluster_events(cluster) if who in e.get("message", "")
                 and missing in e["message"] and e["reason"] == "SlackMappingUnusable"],
        what="the Event on the mapping",
    )  # fmt: skip
    log = (console.folder / "console.log").read_text()
    assert f"SlackMappingUnusable: Slack user {who}" in log


def cluster_events(cluster: Cluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "events", "-n", OPERATOR_NAMESPACE, "-o", "json").stdout
    return [e for e in json.loads(out)["items"] if e["involvedObject"]["name"] == SLACK_USERS]


# --- the modal -------------------------------------------------------------------------------


def test_min_review_seconds_counts_from_the_modal_on_any_replica(
    cluster: Cluster, consoles: tuple[ConsoleProcess, ConsoleProcess], slack: FakeSlack, ns: str
) -> None:
    first, second = consoles
    # 600 s: an approval at once is refused, on the replica that opened it and on the other.
    name, uid = waiting(cluster, ns)
    click(first, ALICE, f"{ns}/{name}/{uid}", trigger=f"t-{name}")
    view = opened(slack, f"t-{name}")
    for replica in consoles:
        assert "at least 600s" in errors(submit(replica, ALICE, view, CHECKLIST, None))
    assert reviews(cluster, ns, name) == []
    # 2 s (tier 3): the modal opened on one replica is accepted by the other once 2 s passed.
    name, uid = waiting(cluster, ns, amount=50)
    before = time.monotonic()
    click(first, ALICE, f"{ns}/{name}/{uid}", trigger=f"t-{name}")
    view = opened(slack, f"t-{name}")

    def accepted() -> bool:
        status, text = submit(second, ALICE, view, CHECKLIST, "read it")
        if text:
            assert "at least 2s" in errors((status, text))
        return not text

    eventually(accepted, what="the approval after 2 s")
    assert time.monotonic() - before >= 2
    (entry,) = reviews(cluster, ns, name)
    assert (entry["reviewer"], entry["decision"]) == ("alice", "Approve")


def test_the_same_approval_submitted_twice_is_written_once(
    cluster: Cluster, consoles: tuple[ConsoleProcess, ConsoleProcess], slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns, amount=50)  # two approvals needed
    click(consoles[0], ALICE, f"{ns}/{name}/{uid}", trigger=f"t-{name}")
    view = opened(slack, f"t-{name}")
    eventually(lambda: not submit(consoles[0], ALICE, view, CHECKLIST, None)[1], what="approval")
    # A replay (within the 5 minutes), or a second modal, on either replica: nothing more.
    for replica in consoles:
        assert "already approved" in errors(submit(replica, ALICE, view, CHECKLIST, None))
    assert [r["reviewer"] for r in reviews(cluster, ns, name)] == ["alice"]
    assert review(cluster, ns, name, "bob").returncode == 0
    wait_for(cluster, ns, name, "decision.reason", "HumanApproved")


def test_an_edited_modal_is_refused(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    """What Slack returns of the modal (private_metadata) is the console's own, sealed: a
    modal opened for A submitted for B, by another user, or as the other decision is refused."""
    name_a, uid_a = waiting(cluster, ns)
    name_b, uid_b = waiting(cluster, ns)
    click(console, ALICE, f"{ns}/{name_a}/{uid_a}", action=DENY, trigger=f"t-{name_a}")
    view = opened(slack, f"t-{name_a}")
    metadata = json.loads(view["private_metadata"])

    def edited(**change: Any) -> dict[str, Any]:
        text = json.dumps(metadata).replace(f"{ns}/{name_a}/{uid_a}", f"{ns}/{name_b}/{uid_b}")
        return {**view, "private_metadata": text, **change}

    for attempt, who in (
        (edited(), ALICE),  # request B, from A's modal
        ({**view, "private_metadata": json.dumps({"ref": f"{ns}/{name_b}/{uid_b}",
                                                    "channel": CHANNEL, "ts": "1.1"})}, ALICE),
        (view, BOB),  # alice's modal, submitted as bob
        ({**view, "callback_id": APPROVE}, ALICE),  # the Deny modal as an approval
    ):  # fmt: skip
        assert "open it again from the message" in errors(submit(console, who, attempt, [], "no"))
    assert reviews(cluster, ns, name_a) == []
    assert reviews(cluster, ns, name_b) == []
    assert submit(console, ALICE, view, [], "wrong customer") == (200, "")  # the real one
    wait_for(cluster, ns, name_a, "decision.reason", "HumanDenied")


def test_a_button_naming_another_request_shows_and_decides_that_request_only(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    """Request A's message with a value naming B (only Slack can sign it, and Slack sends back
    the value the operator posted; this is what the console does if it ever arrived): the modal
    shows B, is sealed for B, and its answer decides B alone; A is untouched."""
    name_a, _ = waiting(cluster, ns)
    name_b, uid_b = waiting(cluster, ns)
    ((_, ts_a),) = eventually(lambda: slack.posted(name_a), what="A's announcement")
    payload = {
        "type": "block_actions", "user": {"id": ALICE}, "trigger_id": f"t-{name_b}-x",
        "channel": {"id": CHANNEL}, "container": {"message_ts": ts_a, "channel_id": CHANNEL},
        "actions": [{"action_id": DENY, "value": f"{ns}/{name_b}/{uid_b}"}],
    }  # fmt: skip
    assert callback(endpoint(console), SECRET, payload) == (200, "")
    view = opened(slack, f"t-{name_b}-x")
    assert f"Request: {ns}/{name_b}" in json.dumps(view["blocks"])
    assert name_a not in json.dumps(view)
    assert submit(console, ALICE, view, [], "not this one") == (200, "")
    wait_for(cluster, ns, name_b, "decision.reason", "HumanDenied")
    assert reviews(cluster, ns, name_a) == []


# --- signatures and what is not an interaction -----------------------------------------------


def raw_post(console: ConsoleProcess, body: bytes, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", console.port, timeout=20)
    try:
        connection.request("POST", "/slack/interactivity", body=body, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def test_forged_skewed_huge_and_unknown_callbacks_change_nothing(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns)
    eventually(lambda: slack.posted(name), what="the announcement")  # before counting calls
    before = len(slack.calls)
    payload = {"type": "block_actions", "user": {"id": ALICE}, "trigger_id": "t-forged",
               "channel": {"id": CHANNEL},
               "actions": [{"action_id": DENY, "value": f"{ns}/{name}/{uid}"}]}  # fmt: skip
    body = urllib.parse.urlencode({"payload": json.dumps(payload)}).encode()
    now = int(time.time())
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    for stamp, signature in (
        (str(now + 301), None), (str(now - 301), None),  # skew both ways
        (f"+{now}", None), (f" {now}", None), (f"{now}.0", None), ("\u00b9" * 10, None),
        (str(now), sign(SECRET, str(now - 1), body)),  # another timestamp's signature
        (str(now), sign(SECRET, str(now), body + b"&x=1")),  # another body's
        (str(now), sign(SECRET, str(now), body).upper()), (str(now), "v1=" + "0" * 64), (str(now), ""),
    ):  # fmt: skip
        valid = sign(SECRET, stamp, body)
        headers = {**form, "X-Slack-Request-Timestamp": stamp,
                   "X-Slack-Signature": valid if signature is None else signature}  # fmt: skip
        assert raw_post(console, body, headers) == 401, (stamp, signature)
    huge = b"payload=" + b"x" * (300 * 1024)
    stamp = str(now)
    signed = {
        **form,
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": sign(SECRET, stamp, huge),
    }
    assert raw_post(console, huge, signed) == 413
    for other in ({"type": "shortcut"}, {"type": "view_closed", "view": {"callback_id": APPROVE}},
                  {"type": "block_actions", "actions": [{"action_id": "x", "value": "y"}]},
                  {"type": "view_submission", "view": {"callback_id": "handoff.other"}},
                  {"type": ["block_actions"]}, {}):  # fmt: skip
        assert callback(endpoint(console), SECRET, {**other, "user": {"id": ALICE}}) == (200, "")
    assert len(slack.calls) == before
    assert reviews(cluster, ns, name) == []
