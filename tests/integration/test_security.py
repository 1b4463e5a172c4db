"""Security checks beyond the boundaries of test_enforcement.py (which covers an agent approving
itself, a review signed with another name, a reviewer of another policy, rewritten reviews and
reviews after the decision) and test_console.py (a guessed CSRF token, the checklist checked
again on the server, script in a summary shown as text):

- replayed reviews count once, a third is refused, and a stale replay is refused;
- one reviewer cannot fill status.reviews and so crowd out the others' veto;
- forged reviewer names and impersonation are refused;
- a reviewer's ServiceAccount token stops working, in the API and the console, when revoked;
- the console refuses cross-site and cross-session posts and escapes every agent-written field;
- passwords and tokens never reach the operator's or the console's log, nor Events.
"""

import base64
import json
import secrets
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from handoff.devenv.environment import console_reader
from handoff.devenv.postgres import ADMIN, PostgresServer
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess, eventually

from .helpers import AGENT, apply_ready_policy, condition, file, policy, request, review, wait_for
from .hostile import Web

pytestmark = pytest.mark.integration
BOT = "reviewer-bot"


def patch_status(cluster: Cluster, ns: str, name: str, who: str, patch: str, *extra: str) -> Any:
    return cluster.kubectl(
        "patch", "actionrequest", name, "-n", ns, "--subresource=status", "--type=json",
        "-p", patch, *extra, who=who, check=False,
    )  # fmt: skip


def refused(result: Any, *phrases: str) -> None:
    assert result.returncode != 0, result.stdout
    for phrase in phrases:
        assert phrase in result.stderr, result.stderr


def approval_patch(who: str) -> str:
    entry = {"reviewer": who, "decision": "Approve", "acknowledged": ["what", "impact", "rollback"]}
    return json.dumps([{"op": "add", "path": "/status/reviews/-", "value": entry}])


def two_approvals(ns: str, **extra: Any) -> dict[str, Any]:
    return policy(ns, tiers={"tier4": {"approvals": 2, "decisionWindow": "10m"}}, **extra)


# -- replayed and forged reviews -------------------------------------------------------------


def test_a_replayed_review_counts_once_and_a_stale_one_is_refused(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, two_approvals(namespace))
    name = file(cluster, namespace, "deploy.production")
    before = wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    captured = approval_patch("alice")
    assert patch_status(cluster, namespace, name, "alice", captured).returncode == 0

    # alice sends the very same patch again: appended, but one person is one approval.
    replay = patch_status(cluster, namespace, name, "alice", captured)
    assert replay.returncode == 0, replay.stderr

    def counted() -> dict[str, Any] | None:
        body = request(cluster, namespace, name)
        message = condition(body, "Decided")["message"]
        return (
            body
            if len(body["status"]["reviews"]) == 2 and "1 of 2 approval(s)" in message
            else None
        )

    body = eventually(counted, 30, "the replayed approval counted once")
    assert body["status"]["phase"] == "AwaitingApproval"
    assert "decision" not in body["status"]
    refused(
        patch_status(cluster, namespace, name, "alice", captured),
        "you have already approved this request twice",
    )

    # bob replays alice's captured patch: it is signed with her name, not his.
    refused(
        patch_status(cluster, namespace, name, "bob", captured),
        'a review is signed with your own user name: you are "bob", not "alice" (5 characters)',
    )
    # A whole status captured before, sent back: the resourceVersion is stale.
    stale = dict(before)
    stale["status"] = {**before["status"], "reviews": [json.loads(captured)[0]["value"]]}
    put = cluster.kubectl(
        "replace", "--subresource=status", "-f", "-", input=json.dumps(stale), who="alice",
        check=False,
    )  # fmt: skip
    refused(put, "the object has been modified; please apply your changes to the latest version")

    assert review(cluster, namespace, name, "bob").returncode == 0
    decided = wait_for(cluster, namespace, name, "decision.reason", "HumanApproved")
    assert decided["status"]["decision"]["by"] == ["alice", "bob"]
    refused(
        patch_status(cluster, namespace, name, "alice", captured),
        "this request was already decided (Approved, HumanApproved): no more reviews are taken",
    )


def test_one_reviewer_cannot_crowd_out_the_others_veto(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    """status.reviews holds 32 entries: approvals that do not count (no checklist), repeated,
    would fill it, and then nobody could veto a HOTL hold before it runs."""
    apply_ready_policy(
        cluster, policy(namespace, tiers={"tier3": {"oversight": "HOTL", "holdFor": "5m"}})
    )
    name = file(cluster, namespace, "payments.refund", parameters={"amount": 50})
    wait_for(cluster, namespace, name, "phase", "Queued")
    hollow = json.dumps([{"op": "add", "path": "/status/reviews/-",
                          "value": {"reviewer": "alice", "decision": "Approve", "acknowledged": []}}])  # fmt: skip
    for _ in range(2):
        assert patch_status(cluster, namespace, name, "alice", hollow).returncode == 0
    refused(
        patch_status(cluster, namespace, name, "alice", hollow),
        "you have already approved this request twice; more reviews from you would only crowd"
        " out the other reviewers (a Deny is still taken)",
    )
    assert review(cluster, namespace, name, "bob", "Deny", comment="not this one").returncode == 0
    vetoed = wait_for(cluster, namespace, name, "decision.reason", "Vetoed")
    assert vetoed["status"]["decision"]["by"] == ["bob"]
    assert len(vetoed["status"]["reviews"]) == 3


def test_forged_reviewer_names_and_impersonation_are_refused(
    cluster: Cluster, operator: OperatorProcess, namespace: str
) -> None:
    apply_ready_policy(cluster, two_approvals(namespace))
    name = file(cluster, namespace, "deploy.production")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    for forged, shown in (
        ("Alice", '"Alice" (5 characters)'),
        ("alice ", '"alice " (6 characters)'),
        ("alice\u200b", '"alice\u200b" (6 characters)'),  # invisible, but counted
        (
            f"system:serviceaccount:{namespace}:{AGENT}",
            f'"system:serviceaccount:{namespace}:{AGENT}"',
        ),
        ("bob", '"bob" (3 characters)'),
    ):
        refused(
            patch_status(cluster, namespace, name, "alice", approval_patch(forged)),
            # Quoted and counted: a look-alike name (a trailing space, a zero-width one) is told apart.
            f'a review is signed with your own user name: you are "alice", not {shown}',
        )
    empty = patch_status(cluster, namespace, name, "alice", approval_patch(""))
    refused(empty, "status.reviews[0].reviewer", "should be at least 1 chars long")
    # Acting as bob takes the right to impersonate him, which no reviewer has.
    impersonated = patch_status(
        cluster, namespace, name, "alice", approval_patch("bob"), "--as=bob"
    )
    refused(impersonated, 'User "alice" cannot impersonate')
    # Nor can the agent sneak a review in through a create: status is dropped on create.
    assert request(cluster, namespace, name)["status"]["reviews"] == []


# -- the console over plain HTTP -------------------------------------------------------------


@pytest.fixture
def console(
    cluster: Cluster,
    operator: OperatorProcess,
    redis_server: RedisServer,
    tmp_path: Path,
) -> Iterator[tuple[str, ConsoleProcess]]:
    ns = cluster.new_namespace(agents=(AGENT, BOT))
    bot_user = f"system:serviceaccount:{ns}:{BOT}"
    apply_ready_policy(
        cluster, policy(ns, reviewers={"groups": ["payments-approvers"], "users": [bot_user]})
    )
    process = ConsoleProcess(cluster, tmp_path, [ns], console_reader(redis_server, tmp_path))
    process.extra_args = ["--allow-service-accounts"]  # BOT, a ServiceAccount, reviews here
    process.start()
    yield ns, process
    process.stop()


def waiting_request(cluster: Cluster, ns: str, **spec: Any) -> str:
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "req-", "namespace": ns},
        "spec": {"agent": AGENT, "action": "payments.charge", "summary": "charge", **spec},
    }  # fmt: skip
    created = cluster.create(document, who=f"{ns}/{AGENT}")
    name = str(json.loads(created.stdout)["metadata"]["name"])
    wait_for(cluster, ns, name, "phase", "AwaitingApproval")
    return name


ACKS = {"ack": ["what", "impact", "rollback"]}


def test_a_revoked_service_account_token_is_refused_by_the_api_and_the_console(
    cluster: Cluster, console: tuple[str, ConsoleProcess]
) -> None:
    ns, process = console
    name = waiting_request(cluster, ns)
    token = cluster.control_plane.service_account_token(ns, BOT, hours=1)
    bot = Web(process)
    assert bot.sign_in(token)[0] == 303
    page = f"/requests/{ns}/{name}"
    csrf = bot.csrf(page)  # signed in, and may read the request
    whoami = cluster.control_plane.kubectl("auth", "whoami", "-o", "json", token=token)
    assert (
        json.loads(whoami.stdout)["status"]["userInfo"]["username"]
        == f"system:serviceaccount:{ns}:{BOT}"
    )

    cluster.kubectl("delete", "serviceaccount", BOT, "-n", ns)

    def api_refuses() -> str | None:
        result = cluster.control_plane.kubectl(
            "get", "actionrequest", name, "-n", ns, token=token, check=False
        )
        return str(result.stderr) if result.returncode != 0 else None

    assert "Unauthorized" in eventually(api_refuses, 60, "the API to refuse the revoked token")
    # The console's session still holds the token: the cluster refuses the approval made with
    # it, and that refusal ends the session: the browser goes to the sign-in, told why.
    status, headers, text = bot.send(
        "POST", f"{page}/approve", {"csrf": csrf, **ACKS}, Origin=process.url
    )
    assert (status, headers.get("location")) == (303, "/login?expired=1"), text
    assert request(cluster, ns, name)["status"]["reviews"] == []
    status, headers, _ = bot.send("GET", page)
    assert (status, headers["location"]) == (303, "/login")
    status, _, text = bot.send("GET", "/login?expired=1")
    assert "no longer accepts your token" in text
    # Signing in again with it is refused by the TokenReview.
    again = Web(process)
    status, _, text = again.sign_in(token)
    assert status == 401
    assert "The cluster does not accept this token." in text
    assert again.cookie is None


def test_the_console_refuses_cross_site_and_cross_session_posts(
    cluster: Cluster, console: tuple[str, ConsoleProcess]
) -> None:
    ns, process = console
    name = waiting_request(cluster, ns)
    page = f"/requests/{ns}/{name}"
    alice = Web(process)
    assert alice.sign_in(cluster.token("alice"))[0] == 303
    csrf = alice.csrf(page)
    form = {"csrf": csrf, **ACKS}
    status, _, text = alice.send("POST", f"{page}/approve", form, Origin="https://evil.example")
    assert (status, text) == (403, "cross-site request refused")
    status, _, text = alice.send("POST", f"{page}/approve", form, Origin="null")
    assert (status, text) == (403, "cross-site request refused")
    # Her token in a form posted without her cookie: no session, no decision.
    stranger = Web(process)
    status, headers, _ = stranger.send("POST", f"{page}/approve", form, Origin=process.url)
    assert status == 303
    assert headers["location"] == "/login"
    # Bob's session with alice's CSRF token: refused.
    bob = Web(process)
    assert bob.sign_in(cluster.token("bob"))[0] == 303
    status, _, text = bob.send("POST", f"{page}/approve", form, Origin=process.url)
    assert status == 403
    assert "did not come from this console" in text
    # A cookie that was never issued is no session either.
    forged = Web(process)
    forged.cookie = secrets.token_urlsafe(32)
    status, headers, _ = forged.send("POST", f"{page}/approve", form, Origin=process.url)
    assert (status, headers["location"]) == (303, "/login")
    assert request(cluster, ns, name)["status"]["reviews"] == []
    # Another site cannot sign this browser in as someone else (login CSRF).
    victim = Web(process)
    status, _, text = victim.send(
        "POST", "/login", {"token": cluster.token("mallory")}, Origin="https://evil.example"
    )
    assert (status, text) == (403, "cross-site request refused")
    assert victim.sign_in(cluster.token("bob"))[0] == 303  # no Origin: a non-browser client
    # The session cookie is out of scripts' and other sites' reach.
    status, headers, _ = Web(process).sign_in(cluster.token("alice"))
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert cluster.token("alice") not in cookie
    # The real thing still works, from the console's own origin.
    status, headers, _ = alice.send("POST", f"{page}/approve", form, Origin=process.url)
    assert status == 303, headers
    assert request(cluster, ns, name)["status"]["reviews"][0]["reviewer"] == "alice"


XSS = "<script>alert(1)</script><img src=x onerror=alert(2)>\"'><svg onload=alert(3)>"


def test_every_agent_written_field_is_escaped_in_the_console(
    cluster: Cluster, console: tuple[str, ConsoleProcess]
) -> None:
    ns, process = console
    name = waiting_request(
        cluster, ns, target=f"t:{XSS}", blastRadius=f"b {XSS}", reasoning=f"r {XSS}",
        summary=f"s {XSS}", parameters={XSS: XSS, "n": [XSS]},
        rollback={"description": f"d {XSS}", "action": "payments.refund"},
    )  # fmt: skip
    # A reviewer's own text is shown to the others: escaped too.
    assert review(cluster, ns, name, "bob", "Deny", comment=f"c {XSS}").returncode == 0
    wait_for(cluster, ns, name, "decision.reason", "HumanDenied")
    alice = Web(process)
    alice.sign_in(cluster.token("alice"))
    for path in (f"/requests/{ns}/{name}", "/queue", "/feed"):
        status, headers, html = alice.send("GET", path)
        assert status == 200, html
        for live in ("<script>alert", "<img src=x", "<svg onload", "onerror=alert(2)>"):
            assert live not in html, f"{path} carries {live!r}"
        assert "script-src 'self'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
    _, _, html = alice.send("GET", f"/requests/{ns}/{name}")
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6  # summary ... comment
    assert "c &lt;script&gt;" in html


# -- secrets never printed -------------------------------------------------------------------


def test_passwords_and_tokens_never_reach_logs_or_events(
    cluster: Cluster,
    operator: OperatorProcess,
    redis_server: RedisServer,
    postgres_server: PostgresServer,
    console: tuple[str, ConsoleProcess],
) -> None:
    ns, process = console
    database = f"leak_{secrets.token_hex(4)}"
    postgres_server.psql(f"CREATE DATABASE {database}")
    try:
        cluster.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "analytics-admin", "namespace": ns},
            "stringData": {"host": "127.0.0.1", "port": str(postgres_server.port),
                           "database": database, "username": ADMIN, "password": postgres_server.password},
        })  # fmt: skip
        # A second admin Secret whose password is wrong: the failure is reported without it.
        wrong = f"wrong-{secrets.token_urlsafe(12)}"
        cluster.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "broken-admin", "namespace": ns},
            "stringData": {"host": "127.0.0.1", "port": str(postgres_server.port),
                           "database": database, "username": ADMIN, "password": wrong},
        })  # fmt: skip
        credentials = [
            {"name": "analytics-ro", "secretName": "agent-analytics-ro",
             "postgres": {"adminSecretRef": {"name": "analytics-admin"}, "database": database, "schemas": ["public"]}},
        ]  # fmt: skip
        bot_user = f"system:serviceaccount:{ns}:{BOT}"
        reviewers = {"groups": ["payments-approvers"], "users": [bot_user]}
        apply_ready_policy(cluster, policy(ns, reviewers=reviewers, credentials=credentials))
        broken = policy(ns, "broken", agents={"serviceAccounts": ["nobody"]}, credentials=[
            {"name": "bad", "secretName": "bad-ro",
             "postgres": {"adminSecretRef": {"name": "broken-admin"}, "database": database, "schemas": ["public"]}},
        ])  # fmt: skip
        cluster.apply(broken)
        failed = eventually(
            lambda: (b := cluster.get("agentactionpolicy", "broken", ns))
            and any(c.get("reason") == "CredentialsFailed" for c in b.get("status", {}).get("conditions", []))
            and b,
            60, "the broken credentials reported",
        )  # fmt: skip
        generated = eventually(
            lambda: _try_secret(cluster, ns, "agent-analytics-ro"), 60, "the generated role"
        )
        redis_secret = eventually(
            lambda: _try_secret(cluster, ns, f"handoff-redis-{AGENT}"), 60, "the agent's Redis user"
        )
        # Sign-ins, good and bad, and a decision, so the console and the operator log something.
        bogus_token = f"not-a-token-{secrets.token_urlsafe(16)}"
        assert Web(process).sign_in(bogus_token)[0] == 401
        alice = Web(process)
        assert alice.sign_in(cluster.token("alice"))[0] == 303
        bot_token = cluster.control_plane.service_account_token(ns, BOT, hours=1)
        assert Web(process).sign_in(bot_token)[0] == 303
        name = waiting_request(cluster, ns)
        assert review(cluster, ns, name, "alice").returncode == 0
        wait_for(cluster, ns, name, "decision.reason", "HumanApproved")
        process.stop()  # flush the console's log

        secrets_by_name = {
            "PostgreSQL admin password": postgres_server.password,
            "wrong admin password": wrong,
            "generated PostgreSQL password": generated["password"],
            "Redis default user's password": redis_server.password,
            "agent's Redis password": _password_of(redis_secret["url"]),
            "alice's token": cluster.token("alice"),
            "the agent's token": cluster.token(f"{ns}/{AGENT}"),
            "the reviewer ServiceAccount's token": bot_token,
            "a refused token": bogus_token,
        }
        assert all(secrets_by_name.values()), secrets_by_name.keys()
        events = cluster.kubectl("get", "events", "-A", "-o", "json").stdout
        policies = cluster.kubectl("get", "agentactionpolicies", "-A", "-o", "json").stdout
        places = {
            "the operator's log": operator.log.read_text(errors="replace"),
            "the console's log": (process.folder / "console.log").read_text(errors="replace"),
            "Events": events,
            "policy status": policies,
        }
        assert "signed in" in places["the console's log"]
        assert "CredentialsFailed" in json.dumps(failed["status"])
        leaks = [
            f"{what} in {where}"
            for what, value in secrets_by_name.items()
            for where, text in places.items()
            if value and value in text
        ]
        assert not leaks, leaks
    finally:
        postgres_server.psql(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")


def _secret(cluster: Cluster, ns: str, name: str) -> dict[str, str]:
    body = json.loads(cluster.kubectl("get", "secret", name, "-n", ns, "-o", "json").stdout)
    return {k: base64.b64decode(v).decode() for k, v in body["data"].items()}


def _try_secret(cluster: Cluster, ns: str, name: str) -> dict[str, str] | None:
    found = cluster.kubectl("get", "secret", name, "-n", ns, "-o", "name", check=False)
    return _secret(cluster, ns, name) if found.returncode == 0 else None


def _password_of(url: str) -> str:
    return urllib.parse.urlsplit(url).password or ""
