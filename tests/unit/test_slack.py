"""Slack's side of a decision: the signature check, the mapping, the Block Kit the package
becomes, and an endpoint that refuses before it reads (the end-to-end runs are in
tests/integration/test_slack.py)."""

import asyncio
import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from handoff.adapters.kube import Credentials
from handoff.adapters.slack import (
    MAX_BODY,
    SignatureError,
    SlackApi,
    check_signature,
    check_timestamp,
    sign,
)
from handoff.console.app import Config, make_app
from handoff.console.pages.slack import SlackBridge
from handoff.review.package import build
from handoff.review.slackblocks import APPROVE, BARE, DENY, clip, message, modal, plain, units
from handoff.review.slackseal import seal, unseal
from handoff.review.slackusers import Identity, parse
from handoff.testing.slack import FakeSlack, block_kit_errors

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"  # noqa: S105 - Slack's documented example secret
TOKEN = "xoxb-test-token"  # noqa: S105 - a test value
QUIET_KEYS = "ignore::aiohttp.web_exceptions.NotAppKeyWarning"


def test_slacks_documented_example_verifies() -> None:
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmib"
        b"IGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert sign(SECRET, "1531420618", body) == expected
    check_signature(SECRET, "1531420618", body, expected)


@pytest.mark.parametrize(
    ("secret", "body", "signature"),
    [
        ("another-secret", b"payload=x", None),  # signed with another app's secret
        (SECRET, b"payload=y", None),  # the body changed after signing
        (SECRET, b"payload=x", ""),  # no signature
        (SECRET, b"payload=x", "v1=" + "0" * 64),  # another scheme
        (SECRET, b"payload=x", "v0=\u00e9" * 10),  # not ASCII: compared, not crashed on
    ],
)
def test_a_signature_that_does_not_match_is_refused(
    secret: str, body: bytes, signature: str | None
) -> None:
    good = sign(secret, "100", b"payload=x")
    with pytest.raises(SignatureError):
        check_signature(SECRET, "100", body, good if signature is None else signature)


@pytest.mark.parametrize(
    ("stamp", "ok"),
    [("1000", True), ("701", True), ("699", False), ("1301", False), ("", False), (None, False),
     ("1e3", False), ("-1000", False), (" 1000", False), ("\u0661\u0660\u0660\u0660", False),
     ("9" * 40, False)],
)  # fmt: skip
def test_timestamps_older_or_newer_than_five_minutes_are_replays(
    stamp: str | None, ok: bool
) -> None:
    if ok:
        assert check_timestamp(stamp, now=1000.0) == int(str(stamp))
    else:
        with pytest.raises(SignatureError):
            check_timestamp(stamp, now=1000.0)


def test_the_mapping_takes_people_never_system_identities() -> None:
    mapping, skipped = parse({
        "U012ALICE": '{"user": "alice", "groups": ["payments-approvers"]}',
        "W0ENTERPRISE": "user: carol\ngroups: [sre-approvers]",
        "U0MASTERS": '{"user": "eve", "groups": ["system:masters"]}',
        "U0SA": '{"user": "system:serviceaccount:agents:payments-agent"}',
        "U0ADMIN": '{"user": "system:admin"}',
        "U0EMPTY": '{"user": ""}',
        "U0LIST": "[alice]",
        "U0BROKEN": "{user: [",
        "alice": '{"user": "alice"}',  # a display name is not an ID
        "U0NEWLINE": '{"user": "ali\\nce"}',
    })  # fmt: skip
    assert mapping == {
        "U012ALICE": Identity("alice", ("payments-approvers",)),
        "W0ENTERPRISE": Identity("carol", ("sre-approvers",)),
    }
    assert len(skipped) == 8


HOSTILE = "<!channel> *urgent* _now_ <http://evil.example|the ticket> &amp; \x1b[31m\u202e done"


def body(**status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "agents", "name": "refund-1", "uid": "0a1b-2c"},
        "spec": {"agent": "payments-agent", "action": "payments.refund", "target": "stripe:ch_1",
                 "summary": HOSTILE, "reasoning": HOSTILE, "blastRadius": HOSTILE,
                 "rollback": {"description": HOSTILE}},
        "status": {"phase": "AwaitingApproval", "tier": 4, "oversight": "HITL",
                   "policy": "payments", "rule": "money", "deadline": "2026-12-01T16:00:00Z",
                   "checklist": [{"id": "what", "text": "I read it"},
                                 {"id": "impact", "text": "I know the impact"}],
                   "reviews": [], **status},
    }  # fmt: skip


def texts(value: Any) -> Iterator[tuple[str, str]]:
    """Every (type, text) of the text objects in a Block Kit structure."""
    if isinstance(value, dict):
        if value.get("type") in ("plain_text", "mrkdwn") and "text" in value:
            yield value["type"], value["text"]
        for item in value.values():
            yield from texts(item)
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)


def test_agent_text_is_inert_in_the_message_and_the_modals() -> None:
    package = build(body())
    text, blocks = message(package, "https://console.example/requests/agents/refund-1")
    views = [modal(package, "Approve", "x"), modal(package, "Deny", "x")]
    for kind, shown in texts([blocks, views]):
        assert kind == "plain_text"  # Slack renders no markup there: no ping, no link, no bold
        assert "\x1b" not in shown
        assert "\u202e" not in shown
    assert text == "Tier 4 request waits for review: agents/refund-1"  # no agent text at all
    actions = next(b for b in blocks if b["type"] == "actions")["elements"]
    assert [a.get("action_id") for a in actions] == [APPROVE, DENY, "handoff.open"]
    assert actions[0]["value"] == "agents/refund-1/0a1b-2c"


def test_the_modals_ask_for_the_checklist_and_for_a_reason() -> None:
    package = build(body())
    approve = modal(package, "Approve", "sealed")
    deny = modal(package, "Deny", "sealed")
    ack = next(b for b in approve["blocks"] if b.get("block_id") == "ack")
    assert [o["value"] for o in ack["element"]["options"]] == ["what", "impact"]
    assert not any(b.get("block_id") == "ack" for b in deny["blocks"])
    reason = next(b for b in deny["blocks"] if b.get("block_id") == "comment")
    assert reason["optional"] is False
    assert deny["private_metadata"] == "sealed"


def test_a_decided_request_says_how_and_by_whom_and_has_no_buttons() -> None:
    decided = body(phase="Approved", decision={"outcome": "Approved", "reason": "HumanApproved",
                                              "by": ["alice"], "at": "2026-12-01T15:00:00Z"})  # fmt: skip
    _text, blocks = message(build(decided))
    assert blocks[0]["text"]["text"] == "Decided: Approved (HumanApproved) by alice"
    assert not any(b["type"] == "actions" for b in blocks)
    expired = body(phase="Denied", decision={"outcome": "Denied", "reason": "Expired"})
    assert message(build(expired))[1][0]["text"]["text"] == "Decided: Denied (Expired)"


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    fake = FakeSlack(TOKEN).start()
    yield fake
    fake.stop()


def post(fake: FakeSlack, data: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """The console (its API server unreachable: nothing may reach it) given one callback."""

    async def scenario() -> tuple[int, str]:
        config = Config(credentials=Credentials(server="https://127.0.0.1:9", verify=False),
                        namespaces=["agents"])  # fmt: skip
        bridge = SlackBridge(
            SECRET, SlackApi(TOKEN, fake.url), "handoff-system", "handoff-slack-users"
        )
        async with TestClient(TestServer(make_app(config, bridge))) as client:
            response = await client.post("/slack/interactivity", data=data, headers=headers)
            return response.status, await response.text()

    return asyncio.run(scenario())


def signed(data: bytes, stamp: int | None = None) -> dict[str, str]:
    when = str(int(time.time()) if stamp is None else stamp)
    return {"X-Slack-Request-Timestamp": when, "X-Slack-Signature": sign(SECRET, when, data),
            "Content-Type": "application/x-www-form-urlencoded"}  # fmt: skip


CLICK = urllib.parse.urlencode({"payload": json.dumps({
    "type": "block_actions", "user": {"id": "U012ALICE"}, "trigger_id": "1.2.3",
    "actions": [{"action_id": APPROVE, "value": "agents/refund-1/0a1b-2c"}],
    "channel": {"id": "C1"}, "container": {"message_ts": "1.1"},
})}).encode()  # fmt: skip


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_bad_signature_is_refused_before_the_payload_is_read(fake_slack: FakeSlack) -> None:
    headers = signed(CLICK) | {"X-Slack-Signature": sign("not-the-secret", "1", CLICK)}
    status, text = post(fake_slack, CLICK, headers)
    assert status == 401
    assert "signature" in text
    assert fake_slack.calls == []


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_replayed_callback_is_refused_even_with_its_valid_signature(
    fake_slack: FakeSlack,
) -> None:
    old = int(time.time()) - 301
    status, text = post(fake_slack, CLICK, signed(CLICK, old))
    assert status == 401
    assert "5 minutes" in text
    assert (
        post(fake_slack, b"not even a form", signed(b"x", old))[0] == 401
    )  # not parsed: 401, not 400
    assert fake_slack.calls == []


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_an_oversized_body_is_refused_unread(fake_slack: FakeSlack) -> None:
    big = b"payload=" + b"a" * MAX_BODY
    assert post(fake_slack, big, signed(big))[0] == 413
    assert fake_slack.calls == []


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_signed_callback_without_a_payload_is_a_bad_request(fake_slack: FakeSlack) -> None:
    for data in (b"payload=%7B", b"nothing=1", b"payload=%5B%5D", b"\xff\xfe"):
        assert post(fake_slack, data, signed(data))[0] == 400
    assert fake_slack.calls == []


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_button_for_another_namespace_is_refused_without_asking_the_cluster(
    fake_slack: FakeSlack,
) -> None:
    data = CLICK.replace(b"agents%2Frefund-1", b"kube-system%2Frefund-1")
    assert post(fake_slack, data, signed(data))[0] == 200
    (said,) = fake_slack.of("chat.postEphemeral")
    assert said["user"] == "U012ALICE"
    assert "does not serve namespace kube-system" in said["text"]
    assert fake_slack.of("views.open") == []


def test_the_message_is_found_again_after_a_restart_and_updated(fake_slack: FakeSlack) -> None:
    from handoff.adapters.outbox import MemoryOutbox  # noqa: PLC0415 - only this test
    from handoff.controller.slackapp import SlackApp  # noqa: PLC0415
    from handoff.domain.announce import DECIDED, PENDING  # noqa: PLC0415
    from handoff.domain.policy import NotificationTarget  # noqa: PLC0415

    target = NotificationTarget("reviews", format="SlackApp", channel="C0REVIEWS")
    outbox = MemoryOutbox()
    decided = body(phase="Denied", decision={"outcome": "Denied", "reason": "Expired"})

    async def scenario() -> None:
        first = SlackApp(SlackApi(TOKEN, fake_slack.url), outbox)
        await first.announce(target, body(), PENDING)
        await first.close()
        again = SlackApp(SlackApi(TOKEN, fake_slack.url), outbox)  # a restarted operator
        await again.announce(target, decided, DECIDED)
        await again.close()

    asyncio.run(scenario())
    ((posted, ts),) = fake_slack.posted("refund-1")
    assert posted["channel"] == "C0REVIEWS"
    (update,) = fake_slack.updates(ts)
    assert update["blocks"][0]["text"]["text"] == "Decided: Denied (Expired)"
    assert all(c.authorized for c in fake_slack.calls)


@pytest.mark.parametrize(
    ("decision", "acks", "comment", "opened_ago", "refusal"),
    [
        ("Approve", ["what", "impact"], "", 60, "Tick every checklist item before approving: "),
        ("Approve", ["what", "impact"], "", None, "Tick every checklist item"),
        ("Approve", ["what", "impact", "rollback"], "", 4, "at least 5s of review"),
        ("Approve", ["what", "impact", "rollback"], "", None, "at least 5s of review"),
        ("Approve", ["what", "impact", "rollback"], "", 5, None),
        ("Deny", [], "", 60, "Say why you deny it"),
        ("Deny", [], "  \n ", 60, "Say why you deny it"),
        ("Deny", [], "wrong customer", None, None),  # a denial needs no reading time
    ],
)
def test_the_checks_the_console_and_slack_share(
    decision: str, acks: list[str], comment: str, opened_ago: int | None, refusal: str | None
) -> None:
    from datetime import UTC, datetime, timedelta  # noqa: PLC0415 - only this test

    from handoff.review.checks import check_review  # noqa: PLC0415
    from handoff.review.client import ReviewError  # noqa: PLC0415

    items = [{"id": i, "text": i} for i in ("what", "impact", "rollback")]
    package = build(body(checklist=items, minReviewSeconds=5))
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    opened = None if opened_ago is None else now - timedelta(seconds=opened_ago)
    if refusal is None:
        check_review(package, decision, acks, comment, opened=opened, now=now)
    else:
        with pytest.raises(ReviewError, match=refusal):
            check_review(package, decision, acks, comment, opened=opened, now=now)


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_large_signed_callback_is_read_whole_before_its_signature_is_checked(
    fake_slack: FakeSlack,
) -> None:
    padded = json.loads(urllib.parse.parse_qs(CLICK.decode())["payload"][0])
    padded["actions"][0]["value"] = "kube-system/refund-1/0a1b-2c"
    padded["message"] = {"blocks": [{"type": "section", "text": "x" * 1000}] * 200}  # ~220 KB
    data = urllib.parse.urlencode({"payload": json.dumps(padded)}).encode()
    assert 200_000 < len(data) < MAX_BODY
    assert post(fake_slack, data, signed(data))[0] == 200
    (said,) = fake_slack.of("chat.postEphemeral")
    assert "does not serve namespace kube-system" in said["text"]


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_body_of_unknown_length_is_refused_unread(fake_slack: FakeSlack) -> None:
    async def chunks() -> Any:
        yield CLICK

    async def scenario() -> int:
        config = Config(credentials=Credentials(server="https://127.0.0.1:9", verify=False),
                        namespaces=["agents"])  # fmt: skip
        bridge = SlackBridge(SECRET, SlackApi(TOKEN, fake_slack.url), "handoff-system", "users")
        async with TestClient(TestServer(make_app(config, bridge))) as client:
            response = await client.post(
                "/slack/interactivity", data=chunks(), headers=signed(CLICK)
            )
            return response.status

    assert asyncio.run(scenario()) == 413
    assert fake_slack.calls == []


FACTS = {"ref": "agents/refund-1/0a1b-2c", "channel": "C1", "ts": "1.2", "user": "U0ALICE",
         "decision": "Approve", "stage": "manager", "opened": 1_700_000_000.5}  # fmt: skip


def test_a_sealed_modal_opens_only_as_sealed() -> None:
    sealed = seal(SECRET, FACTS)
    assert unseal(SECRET, sealed) == FACTS
    assert len(sealed) < 3000  # Slack's private_metadata limit, with the longest names:
    longest = FACTS | {"ref": f"{'n' * 253}/{'r' * 253}/{'0' * 36}", "channel": "C" * 40,
                       "ts": "9" * 40, "user": "U" * 40, "stage": "s" * 63}  # fmt: skip
    assert len(seal(SECRET, longest)) < 3000
    outer = json.loads(sealed)
    inner = json.loads(outer["facts"])
    for forged in (
        seal("another-secret", FACTS),  # sealed by someone else
        seal(SECRET, FACTS).replace("U0ALICE", "U0BOB"),  # a fact edited
        seal(SECRET, FACTS).replace("manager", "finance"),  # the stage shown, edited
        json.dumps({"facts": json.dumps(inner | {"opened": 0}), "mac": outer["mac"]}),
        json.dumps({"facts": outer["facts"]}), json.dumps(FACTS), "", "null", "[]", "{",
        json.dumps({"facts": outer["facts"], "mac": outer["mac"].upper()}),
        json.dumps({"facts": 1, "mac": outer["mac"]}),
    ):  # fmt: skip
        assert unseal(SECRET, forged) is None, forged
    # A seal is no request signature, and a signature no seal (keys under their own label).
    assert outer["mac"] != sign(SECRET, "0", outer["facts"].encode())[3:]


@pytest.mark.parametrize(
    ("facts", "valid"),
    [
        (FACTS | {"opened": True}, False), (FACTS | {"opened": "1"}, False),
        (FACTS | {"user": 1}, False), ({k: v for k, v in FACTS.items() if k != "ts"}, False),
        (FACTS | {"opened": 1}, True), (FACTS | {"stage": ""}, True),
        (FACTS | {"stage": None}, False),
    ],
)  # fmt: skip
def test_sealed_facts_have_their_shapes(facts: dict[str, Any], valid: bool) -> None:
    body = json.dumps(facts, sort_keys=True, separators=(",", ":"))
    from handoff.review.slackseal import _mac  # noqa: PLC0415 - sealing a malformed body

    text = json.dumps({"facts": body, "mac": _mac(SECRET, body)})
    assert (unseal(SECRET, text) is not None) == valid


@pytest.mark.parametrize(
    ("text", "limit", "shown"),
    [
        ("abc", 3, "abc"), ("abcd", 3, "ab\u2026"), ("\U0001f600" * 2, 4, "\U0001f600" * 2),
        ("\U0001f600" * 3, 4, "\U0001f600\u2026"), ("a\U0001f600", 2, "a\u2026"),
    ],
)  # fmt: skip
def test_clip_counts_utf16_units_and_never_cuts_an_emoji(text: str, limit: int, shown: str) -> None:
    assert clip(text, limit) == shown
    assert units(clip(text, limit)) <= limit


@pytest.mark.parametrize("fill", ["\U0001f600", "\x1b", "&", " "])
def test_the_longest_agent_text_stays_within_block_kit(fill: str) -> None:
    spec = {"summary": fill * 1024, "reasoning": fill * 4096, "blastRadius": fill * 1024,
            "target": fill * 1024, "rollback": {"description": fill * 1024}}  # fmt: skip
    document = body()
    document["spec"].update(spec)
    package = build(document)
    for bare in (False, True):
        _text, blocks = message(package, "https://console.example/x", bare=bare)
        assert block_kit_errors("chat.postMessage", {"blocks": blocks}) == []
    view = modal(package, "Approve", seal(SECRET, FACTS))
    assert block_kit_errors("views.open", {"view": view}) == []
    assert plain("  \n ", 10)["text"] == "-"  # Slack refuses a blank text object


def test_the_bare_message_carries_no_agent_text() -> None:
    package = build(body())
    _text, blocks = message(package, bare=True)
    shown = json.dumps(blocks)
    assert package.summary not in shown
    assert package.reasoning not in shown
    assert BARE in shown
    assert [e["action_id"] for e in blocks[-1]["elements"]] == [APPROVE, DENY]
