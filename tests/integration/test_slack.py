"""Approve and deny from Slack, against the real control plane: the console's interactivity
endpoint gets signed callbacks as Slack would post them, talks to a local fake of Slack's Web
API, and writes reviews as the mapped (impersonated) person, judged by RBAC and admission."""

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from handoff.devenv.environment import apply
from handoff.devenv.manifests import OPERATOR_NAMESPACE, SLACK_USERS, slack_objects
from handoff.review.slackblocks import APPROVE, DENY
from handoff.review.slackseal import seal
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess, eventually
from handoff.testing.slack import (
    FakeSlack,
    callback,
    operator_with_slack,
    slack_console,
    submission,
)

from .helpers import apply_ready_policy, file, policy, request, review, wait_for

pytestmark = pytest.mark.integration
SECRET = "slack-signing-secret-for-tests"  # noqa: S105 - a test value
TOKEN = "xoxb-bot-token-for-tests"  # noqa: S105 - a test value
ALICE, CAROL, BOB, STRANGER = "U0ALICE", "U0CAROL", "U0BOB", "U0STRANGER"
CHANNEL = "C0REVIEWS"


@pytest.fixture(scope="module")
def ns(cluster: Cluster) -> str:
    name = cluster.new_namespace()
    target = {"name": "reviews", "format": "SlackApp", "channel": CHANNEL}
    apply_ready_policy(cluster, policy(name, notifications=[target]))
    # carol may read requests and write reviews here, but is no reviewer of the policy.
    apply(cluster.control_plane, [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "carol-reads", "namespace": name},
         "rules": [{"apiGroups": ["handoff.dev"], "resources": ["actionrequests"], "verbs": ["get"]},
                   {"apiGroups": ["handoff.dev"], "resources": ["actionrequests/status"],
                    "verbs": ["patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "carol-reads", "namespace": name},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "carol-reads"},
         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "carol"}]},
    ])  # fmt: skip
    return name


@pytest.fixture(scope="module")
def slack(cluster: Cluster) -> Iterator[FakeSlack]:
    fake = FakeSlack(TOKEN).start()
    # bob is mapped but not among the identities the console may impersonate.
    apply(cluster.control_plane, [
        *slack_objects(["alice", "carol"], ["payments-approvers", "sre-approvers"]),
        {"apiVersion": "v1", "kind": "ConfigMap",
         "metadata": {"name": SLACK_USERS, "namespace": OPERATOR_NAMESPACE},
         "data": {ALICE: '{"user": "alice", "groups": ["payments-approvers"]}',
                  CAROL: '{"user": "carol", "groups": ["sre-approvers"]}',
                  BOB: '{"user": "bob", "groups": ["payments-approvers"]}'}},
    ])  # fmt: skip
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def slack_operator(operator: OperatorProcess, slack: FakeSlack) -> Iterator[OperatorProcess]:
    """The session's operator, started again with the Slack app's bot token (then without)."""
    with operator_with_slack(operator, slack.url, TOKEN):
        yield operator


@pytest.fixture(scope="module")
def console(
    cluster: Cluster, slack_operator: OperatorProcess, ns: str, slack: FakeSlack,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ConsoleProcess]:  # fmt: skip
    folder = tmp_path_factory.mktemp("console")
    process = slack_console(cluster, folder, [ns], slack.url, secret=SECRET, token=TOKEN)
    yield process
    process.stop()


def endpoint(console: ConsoleProcess) -> str:
    return f"{console.url}/slack/interactivity"


def click(console: ConsoleProcess, who: str, ns: str, name: str, uid: str, action: str = APPROVE,
          ts: str = "1700000000.999999", **extra: Any) -> tuple[int, str]:  # fmt: skip
    payload = {
        "type": "block_actions", "user": {"id": who, "name": "alice"}, "trigger_id": f"t-{name}",
        "team": {"id": "T0TEAM"}, "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL},
        "actions": [{"action_id": action, "value": f"{ns}/{name}/{uid}"}], **extra,
    }  # fmt: skip
    return callback(endpoint(console), SECRET, payload)


def submit(console: ConsoleProcess, who: str, view: dict[str, Any], acks: list[str],
           comment: str | None) -> tuple[int, str]:  # fmt: skip
    return callback(endpoint(console), SECRET, submission(who, view, acks, comment))


def sealed_view(who: str, ref: str, decision: str = "Approve") -> dict[str, Any]:
    """A modal's answer as the console would have sealed it for ``who`` (a minute ago)."""
    facts = {"ref": ref, "channel": CHANNEL, "ts": "1.1", "user": who, "decision": decision,
             "stage": "", "opened": time.time() - 60}  # fmt: skip
    return {"callback_id": APPROVE if decision == "Approve" else DENY,
            "private_metadata": seal(SECRET, facts)}  # fmt: skip


def waiting(cluster: Cluster, ns: str, action: str = "payments.charge") -> tuple[str, str]:
    name = file(cluster, ns, action)
    body = wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    return name, body["metadata"]["uid"]


def opened_view(slack: FakeSlack, name: str) -> dict[str, Any]:
    views = [c for c in slack.of("views.open") if c["trigger_id"] == f"t-{name}"]
    assert len(views) == 1
    return dict(views[0]["view"])


def told(slack: FakeSlack, who: str, since: int) -> list[str]:
    return [c["text"] for c in slack.of("chat.postEphemeral")[since:] if c["user"] == who]


def test_alice_approves_through_the_modal_with_the_whole_checklist(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns)
    assert click(console, ALICE, ns, name, uid) == (200, "")
    view = opened_view(slack, name)
    assert view["callback_id"] == APPROVE
    (console.folder / "modal-approve.json").write_text(json.dumps(view, indent=2))
    ack = next(b for b in view["blocks"] if b.get("block_id") == "ack")
    items = [o["value"] for o in ack["element"]["options"]]
    assert items == ["what", "impact", "rollback"]
    since = len(slack.of("chat.postEphemeral"))
    assert submit(console, ALICE, view, items, "matches ticket 881") == (200, "")
    decided = wait_for(cluster, ns, name, "decision.reason", "HumanApproved")
    assert decided["status"]["decision"]["by"] == ["alice"]
    assert decided["status"]["reviews"][0]["reviewer"] == "alice"
    assert decided["status"]["reviews"][0]["comment"] == "matches ticket 881"
    assert told(slack, ALICE, since) == [f"Your approval of {ns}/{name} is recorded."]
    assert all(c.authorized for c in slack.calls)  # every call carried the bot token


def test_an_incomplete_checklist_is_refused_and_nothing_is_written(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns)
    click(console, ALICE, ns, name, uid)
    status, text = submit(console, ALICE, opened_view(slack, name), ["what", "impact"], None)
    assert status == 200
    answer = json.loads(text)
    assert answer["response_action"] == "errors"
    assert "Tick every checklist item before approving: rollback" in answer["errors"]["ack"]
    assert request(cluster, ns, name)["status"]["reviews"] == []


def test_deny_needs_a_reason_and_with_one_decides(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns)
    click(console, ALICE, ns, name, uid, action=DENY)
    view = opened_view(slack, name)
    assert view["callback_id"] == DENY
    for empty in (None, "", "   "):
        _status, text = submit(console, ALICE, view, [], empty)
        assert "Say why you deny it" in json.loads(text)["errors"]["comment"]
    assert request(cluster, ns, name)["status"]["reviews"] == []
    assert submit(console, ALICE, view, [], "wrong customer") == (200, "")
    decided = wait_for(cluster, ns, name, "decision.reason", "HumanDenied")
    assert decided["status"]["reviews"][0]["comment"] == "wrong customer"
    assert decided["status"]["reviews"][0]["reviewer"] == "alice"


def test_an_unmapped_slack_user_is_told_why_and_nothing_is_written(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns)
    since = len(slack.of("chat.postEphemeral"))
    # a forged display name of a reviewer changes nothing: only the ID is looked up.
    assert click(console, STRANGER, ns, name, uid, user={"id": STRANGER, "name": "alice"})[0] == 200
    (said,) = told(slack, STRANGER, since)
    assert "not mapped to a Kubernetes user" in said
    assert SLACK_USERS in said
    assert not [v for v in slack.of("views.open") if v["trigger_id"] == f"t-{name}"]
    view = sealed_view(STRANGER, f"{ns}/{name}/{uid}")
    _status, text = submit(console, STRANGER, view, ["what", "impact", "rollback"], None)
    assert "not mapped" in json.loads(text)["errors"]["comment"]
    assert request(cluster, ns, name)["status"]["reviews"] == []


def test_a_mapped_user_without_the_right_is_refused_by_the_cluster(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns)
    since = len(slack.of("chat.postEphemeral"))
    click(console, CAROL, ns, name, uid)
    (said,) = told(slack, CAROL, since)
    assert "carol may not decide requests of policy payments" in said
    # A modal sealed for carol (as if opened while she still had the right): admission judges
    # carol, not Handoff.
    view = sealed_view(CAROL, f"{ns}/{name}/{uid}")
    _status, text = submit(console, CAROL, view, ["what", "impact", "rollback"], "ok")
    (error,) = json.loads(text)["errors"].values()
    assert "carol may not decide requests governed by policy payments" in error  # admission's
    assert "approve on agentactionpolicies/payments" in error
    assert request(cluster, ns, name)["status"]["reviews"] == []
    # bob is mapped, but the console may not impersonate him: refused, nothing written.
    since = len(slack.of("chat.postEphemeral"))
    click(console, BOB, ns, name, uid)
    (said,) = told(slack, BOB, since)
    assert "Handoff may not act as user bob" in said
    assert request(cluster, ns, name)["status"]["reviews"] == []


def test_bad_signatures_and_replays_are_refused_before_anything_is_read(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns)
    eventually(lambda: slack.posted(name), what="the announcement")  # posted before counting
    before = len(slack.calls)
    payload = {"type": "block_actions", "user": {"id": ALICE}, "trigger_id": "t-forged",
               "actions": [{"action_id": APPROVE, "value": f"{ns}/{name}/{uid}"}]}  # fmt: skip
    assert callback(endpoint(console), "a-guessed-secret", payload)[0] == 401
    old = callback(endpoint(console), SECRET, payload, timestamp=1_700_000_000)
    assert old[0] == 401
    assert "5 minutes" in old[1]
    assert len(slack.calls) == before
    assert request(cluster, ns, name)["status"]["reviews"] == []


def test_the_button_of_an_expired_request_says_it_expired(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, uid = waiting(cluster, ns, "deploy.api")  # the lane's 10 s window
    (_, ts), *_ = eventually(lambda: slack.posted(name), what="the announcement")
    wait_for(cluster, ns, name, "decision.reason", "Expired", timeout=30)
    (update,) = eventually(lambda: slack.updates(ts), what="the message updated at expiry")
    assert update["blocks"][0]["text"]["text"] == "Decided: Denied (Expired)"
    assert not buttons(update) & {APPROVE, DENY}
    since = len(slack.of("chat.postEphemeral"))
    click(console, ALICE, ns, name, uid, ts=ts)  # a client that had not refreshed yet
    (said,) = told(slack, ALICE, since)
    assert "already decided: Denied (Expired)" in said
    assert slack.updates(ts)[-1]["blocks"][0] == update["blocks"][0]
    assert not buttons(slack.updates(ts)[-1]) & {APPROVE, DENY}
    assert not [v for v in slack.of("views.open") if v["trigger_id"] == f"t-{name}"]


def buttons(sent: dict[str, Any]) -> set[str]:
    return {
        e.get("action_id") for b in sent["blocks"] if b["type"] == "actions" for e in b["elements"]
    }


HOSTILE = "<!channel> *urgent* <http://evil.example|ticket 881> & \x1b[2J done"
HOSTILE_LINE = HOSTILE.replace("\x1b", "\u202e")  # the CRD refuses controls in one-line fields


def texts(value: Any) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        found = (
            [(value["type"], value["text"])]
            if value.get("type") in ("plain_text", "mrkdwn")
            else []
        )
        return found + [t for item in value.values() for t in texts(item)]
    if isinstance(value, list):
        return [t for item in value for t in texts(item)]
    return []


def test_the_announcement_carries_the_package_and_follows_a_kubectl_decision(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "req-", "namespace": ns},
        "spec": {"agent": "payments-agent", "action": "payments.charge", "target": "stripe:c_1",
                 "parameters": {"amount": 2500}, "summary": HOSTILE_LINE, "reasoning": HOSTILE,
                 "blastRadius": HOSTILE, "rollback": {"description": HOSTILE}, "confidence": 0.9},
    }  # fmt: skip
    created = cluster.create(document, who=f"{ns}/payments-agent")
    name = json.loads(created.stdout)["metadata"]["name"]
    wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    ((posted, ts),) = eventually(lambda: slack.posted(name), what="the announcement")
    assert posted["channel"] == CHANNEL
    shown = dict(t[1].split(": ", 1) for t in texts(posted["blocks"]) if ": " in t[1])
    assert shown["Tier"] == "4 (HITL)"
    assert shown["Policy / rule"] == "payments / money"
    assert shown["Request"] == f"{ns}/{name}"
    assert {"What", "Why", "Blast radius", "Rollback", "Deadline"} <= shown.keys()
    assert all(kind == "plain_text" for kind, _ in texts(posted["blocks"]))  # never markup
    assert "\x1b" not in json.dumps(posted)  # the escape character itself never arrives
    assert posted["text"] == f"Tier 4 request waits for review: {ns}/{name}"  # no agent text
    assert posted["mrkdwn"] is False
    buttons = next(b for b in posted["blocks"] if b["type"] == "actions")["elements"]
    assert [b.get("action_id") for b in buttons[:2]] == [APPROVE, DENY]
    assert review(cluster, ns, name, "bob").returncode == 0  # decided with kubectl
    wait_for(cluster, ns, name, "decision.reason", "HumanApproved")
    (update,) = eventually(lambda: slack.updates(ts), what="the message updated")
    assert update["channel"] == CHANNEL
    assert update["blocks"][0]["text"]["text"] == "Decided: Approved (HumanApproved) by bob"
    assert [
        b.get("action_id")
        for b in next(b for b in update["blocks"] if b["type"] == "actions")["elements"]
    ] == ["handoff.open"]
    # Beside the console's log: the message before and after, as Slack received them.
    (console.folder / "message-before.json").write_text(json.dumps(posted, indent=2))
    (console.folder / "message-after.json").write_text(json.dumps(update, indent=2))


def test_a_button_for_a_request_of_the_same_name_but_another_uid_is_refused(
    cluster: Cluster, console: ConsoleProcess, slack: FakeSlack, ns: str
) -> None:
    name, _ = waiting(cluster, ns)
    since = len(slack.of("chat.postEphemeral"))
    click(console, ALICE, ns, name, "00000000-0000-0000-0000-000000000000")
    (said,) = told(slack, ALICE, since)
    assert "no longer the request of this message" in said


@pytest.mark.parametrize(
    ("target", "refused"),
    [
        ({"format": "SlackApp"}, True),  # no channel
        ({"format": "SlackApp", "channel": CHANNEL, "url": "https://hooks.example/x"}, True),
        ({"format": "SlackApp", "channel": "#reviews"}, True),  # a name, not an ID
        ({"format": "Slack", "url": "https://hooks.example/x", "channel": CHANNEL}, True),
        ({"format": "SlackApp", "channel": CHANNEL}, False),
        ({"format": "Slack", "url": "https://hooks.example/x"}, False),
    ],
)
def test_a_slackapp_target_takes_a_channel_and_no_url(
    cluster: Cluster, namespace: str, target: dict[str, Any], refused: bool
) -> None:
    document = policy(namespace, name="shape", notifications=[{"name": "t", **target}])
    result = cluster.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(document),
                             check=False)  # fmt: skip
    assert (result.returncode != 0) == refused, result.stderr
