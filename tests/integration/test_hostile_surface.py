"""A hostile agent (and a curious user) at Handoff's surfaces: Redis, the console's sign-in, the
terminal. Each test reproduces an attack of issue 14 (items 9 to 11) first, then the variants a
careful attacker would try next."""

import asyncio
import html
import json
import re
import secrets
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import redis
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from handoff.adapters.kube import Credentials
from handoff.adapters.outbox import OutboxError, RedisOutbox, dedup_key
from handoff.adapters.redis_acl import RedisAdmin
from handoff.console.app import Config, make_app
from handoff.console.signin import SignInGate
from handoff.devenv.environment import console_reader
from handoff.devenv.manifests import CONSOLE_ACCOUNT, OPERATOR_NAMESPACE
from handoff.devenv.redis import RedisServer
from handoff.domain.records import Record
from handoff.testing.cluster import Cluster, OperatorProcess, redis_client

from .helpers import AGENT, apply_ready_policy, file, policy, request, review, wait_for

pytestmark = [
    pytest.mark.integration,
    # The console keys its application state with strings; aiohttp suggests AppKey, a style
    # warning only (the console runs as a process elsewhere, where it is not an error).
    pytest.mark.filterwarnings("ignore::aiohttp.web_exceptions.NotAppKeyWarning"),
]
MIB = 1024 * 1024
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")


def agent_user(server: RedisServer, namespace: str, agent: str = "payments-agent") -> str:
    """The agent's own Redis URL, made as the operator makes it."""
    admin = RedisAdmin(server.url)
    password = secrets.token_urlsafe(24)
    user, _ = asyncio.run(admin.ensure_agent(namespace, agent, password))
    return admin.url_for(user, password)


def setex(client: "redis.Redis", key: str, seconds: int, value: bytes) -> bool:
    """SETEX as the SDK sends it (redis-py deprecates its setex() helper)."""
    return bool(client.execute_command("SETEX", key, seconds, value))


# -- item 9: Redis ---------------------------------------------------------------------------


def test_an_agent_cannot_leave_database_zero(redis_server: RedisServer) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    assert agent.execute_command("SELECT", 0)  # clients that select 0 still work
    for database in (1, 15, -1):
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent.execute_command("SELECT", database)
    # And the server has one database: even its administrator finds no other.
    admin = redis_client(redis_server.url)
    with pytest.raises(redis.exceptions.ResponseError, match="DB index is out of range"):
        admin.execute_command("SELECT", 1)
    for command in (("SWAPDB", 0, 1), ("MOVE", f"handoff:state:{ns}:payments-agent:x", 1),
                    ("COPY", f"handoff:state:{ns}:payments-agent:x", "y", "DB", 1)):  # fmt: skip
        with pytest.raises(redis.exceptions.NoPermissionError):
            agent.execute_command(*command)


def test_the_consoles_reader_stays_in_database_zero(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    reader = redis_client(console_reader(redis_server, tmp_path))
    assert reader.execute_command("SELECT", 0)
    with pytest.raises(redis.exceptions.NoPermissionError):
        reader.execute_command("SELECT", 1)


def test_every_key_an_agent_writes_expires(redis_server: RedisServer) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    key = f"handoff:state:{ns}:payments-agent:p-1"
    assert setex(agent, key, 60, b"state")
    assert 0 < agent.ttl(key) <= 60
    assert agent.execute_command("PSETEX", key + "b", 60_000, b"state")
    # Each way to write a key without a TTL, or to take its TTL away, is refused.
    for attempt in (
        lambda: agent.set(key, b"forever"),
        lambda: agent.set(key, b"forever", keepttl=True),
        lambda: agent.getex(key, persist=True),
        lambda: agent.persist(key),
        lambda: agent.setnx(key + "c", b"forever"),
        lambda: agent.mset({key + "d": b"forever"}),
        lambda: agent.append(key, b"more"),
        lambda: agent.setrange(key, 0, b"x"),
        lambda: agent.incr(key + "e"),
        lambda: agent.hset(key + "f", "a", "b"),
        lambda: agent.lpush(key + "g", "a"),
        lambda: agent.xadd(key + "h", {"a": "b"}),
        lambda: agent.copy(key, key + "i"),
        lambda: agent.rename(key, key + "j"),
        lambda: agent.restore(key + "k", 0, agent.dump(key) or b""),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()
    assert agent.ttl(key) > 0
    assert not agent.exists(key + "c", key + "d", key + "e", key + "f", key + "g", key + "h")


def test_no_value_over_one_mebibyte(redis_server: RedisServer) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    key = f"handoff:state:{ns}:payments-agent:big"
    assert setex(agent, key, 60, b"x" * MIB)  # the most a state may take
    # "Protocol error: invalid bulk length", and the server closes the connection: the client
    # sees the answer or the reset, whichever comes first.
    refused = (redis.exceptions.ResponseError, redis.exceptions.ConnectionError)
    with pytest.raises(refused):
        setex(agent, key + "2", 60, b"x" * (MIB + 1))
    outcomes = f"handoff:outcomes:{ns}:payments-agent"
    with pytest.raises(refused):
        agent.xadd(outcomes, {"name": "r", "message": b"x" * (MIB + 1)})
    admin = redis_client(redis_server.url)
    assert not admin.exists(key + "2")
    assert not admin.exists(outcomes)


def test_the_agent_cannot_trim_or_write_what_the_operator_publishes(
    redis_server: RedisServer,
) -> None:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    agent = redis_client(agent_user(redis_server, ns))
    decisions = f"handoff:decisions:{ns}:payments-agent"
    for attempt in (
        lambda: agent.xtrim(decisions, maxlen=0),
        lambda: agent.xdel(decisions, "0-1"),
        lambda: agent.xadd(decisions, {"outcome": "Approved"}, maxlen=1),
        lambda: agent.xgroup_destroy(decisions, "agent"),
        lambda: agent.xgroup_setid(decisions, "agent", "$"),
        lambda: agent.xadd("handoff:audit", {"event": "Approved"}),
        lambda: agent.hset(dedup_key(ns, "u-1"), "decision", "1"),
        lambda: agent.execute_command("FLUSHDB"),
        lambda: agent.execute_command("FUNCTION", "FLUSH"),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis whose memory cap a test can reach in a second."""
    server = RedisServer(tmp_path / "redis", maxmemory="6mb")
    server.start()
    yield server
    server.stop()


def test_a_full_redis_refuses_writes_and_never_evicts_handoffs_keys(
    small_redis: RedisServer,
) -> None:
    """The agent fills the memory cap with state (TTLs of a century) and outcomes: its writes
    are refused, and every decision, audit entry and dedup mark stays."""
    ns = f"t-{uuid.uuid4().hex[:8]}"
    admin = redis_client(small_redis.url)
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    agent = redis_client(agent_user(small_redis, ns))
    decisions = f"handoff:decisions:{ns}:payments-agent"

    async def publish(uid: str) -> bool:
        """As the operator publishes a decision (dedup mark and stream entry in one script)."""
        outbox = RedisOutbox(small_redis.url)
        try:
            record = Record(decisions, "decision", {"name": uid, "outcome": "Approved"})
            return await outbox.publish(ns, uid, record)
        finally:
            await outbox.close()

    assert asyncio.run(publish("u-before"))
    assert admin.ttl(dedup_key(ns, "u-before")) > 0  # a volatile key: volatile-* could evict it
    century = 100 * 365 * 24 * 3600

    def fill() -> None:
        for i in range(1000):
            setex(agent, f"handoff:state:{ns}:payments-agent:{i}", century, b"x" * 64 * 1024)

    with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
        fill()
    with pytest.raises(redis.exceptions.OutOfMemoryError, match="maxmemory"):
        agent.xadd(f"handoff:outcomes:{ns}:payments-agent", {"name": "x", "pad": b"y" * 65536})
    # Handoff's own keys are all there; its next write fails whole, and is retried later.
    assert admin.exists(dedup_key(ns, "u-before"))
    assert admin.xlen(decisions) == 1
    with pytest.raises(OutboxError):
        asyncio.run(publish("u-during"))
    assert not admin.exists(dedup_key(ns, "u-during"))
    # Once the agent's keys are gone (expired, or removed by an administrator) it goes through.
    for key in admin.scan_iter(f"handoff:state:{ns}:payments-agent:*"):
        admin.delete(key)
    assert asyncio.run(publish("u-during"))
    assert admin.xlen(decisions) == 2


# -- item 10: the console's sign-in, in-process (aiohttp), with real TokenReviews -------------


def console_config(cluster: Cluster, tmp_path: Path, namespaces: list[str], **extra: Any) -> Config:
    """The console's Config with its own ServiceAccount (it may only create TokenReviews)."""
    control = cluster.control_plane
    token = control.service_account_token(OPERATOR_NAMESPACE, CONSOLE_ACCOUNT, 1)
    kubeconfig = control.write_kubeconfig(tmp_path / "console.kubeconfig", {"console": token})
    return Config(credentials=Credentials.load(str(kubeconfig)), namespaces=namespaces, **extra)


class Browserless:
    """An HTTP client of the in-process console that keeps no cookies: each sign-in's own."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client

    async def sign_in(self, token: str) -> tuple[int, str | None, str]:
        response = await self.client.post("/login", data={"token": token}, allow_redirects=False)
        cookie = response.cookies.get("handoff_session")
        return response.status, cookie.value if cookie else None, await response.text()

    async def get(self, path: str, cookie: str | None) -> tuple[int, str]:
        headers = {"Cookie": f"handoff_session={cookie}"} if cookie else {}
        response = await self.client.get(path, headers=headers, allow_redirects=False)
        return response.status, await response.text()


def run_console(config: Config, scenario: Callable[[Browserless], Awaitable[None]]) -> None:
    async def main() -> None:
        client = TestClient(TestServer(make_app(config)), cookie_jar=DummyCookieJar())
        await client.start_server()
        try:
            await scenario(Browserless(client))
        finally:
            await client.close()

    asyncio.run(main())


def test_the_console_refuses_an_agents_service_account_token(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    agent_token = cluster.token(f"{namespace}/{AGENT}")

    async def scenario(web_client: Browserless) -> None:
        status, cookie, text = await web_client.sign_in(agent_token)
        assert (status, cookie) == (403, None), text
        assert (
            f"system:serviceaccount:{namespace}:{AGENT} is a ServiceAccount, and this console is"
            " for people" in html.unescape(text)
        )
        # The console's own ServiceAccount token is refused the same way.
        own = cluster.control_plane.service_account_token(OPERATOR_NAMESPACE, CONSOLE_ACCOUNT, 1)
        assert (await web_client.sign_in(own))[0] == 403
        assert (await web_client.sign_in(cluster.token("alice")))[0] == 303  # people may

    run_console(console_config(cluster, tmp_path, [namespace]), scenario)
    # Allowed when the console is told so (a bot that reviews).

    async def allowed(web_client: Browserless) -> None:
        status, cookie, _ = await web_client.sign_in(agent_token)
        assert status == 303
        assert cookie

    gate = SignInGate(allow_service_accounts=True)
    run_console(console_config(cluster, tmp_path, [namespace], sign_in=gate), allowed)


def test_sign_ins_are_rate_limited_per_address_with_a_clear_page(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    async def scenario(web_client: Browserless) -> None:
        answers = [(await web_client.sign_in(f"guess-{i}"))[0] for i in range(10)]
        assert answers == [401] * 10  # each checked by the cluster
        response = await web_client.client.post(
            "/login", data={"token": cluster.token("alice")}, allow_redirects=False
        )
        text = await response.text()
        assert response.status == 429, text
        wait = int(response.headers["Retry-After"])
        assert 0 < wait <= 60
        assert f"Too many sign-in attempts from your address: try again in {wait} seconds." in text
        assert "handoff_session" not in response.cookies

    run_console(console_config(cluster, tmp_path, [namespace]), scenario)


def test_two_hundred_sign_ins_leave_five_sessions(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    config = console_config(cluster, tmp_path, [namespace], sign_in=SignInGate(attempts=1000))
    alice = cluster.token("alice")

    async def scenario(web_client: Browserless) -> None:
        cookies = []
        for _ in range(200):
            status, cookie, _ = await web_client.sign_in(alice)
            assert status == 303
            cookies.append(cookie)
        bob_status, bob, _ = await web_client.sign_in(cluster.token("bob"))
        assert bob_status == 303
        assert len(config.sessions) == 6
        assert (await web_client.get("/queue", cookies[0]))[0] == 303  # ended: sign in again
        assert (await web_client.get("/queue", cookies[-6]))[0] == 303
        for cookie in (*cookies[-5:], bob):
            status, text = await web_client.get("/queue", cookie)
            assert status == 200, text

    run_console(config, scenario)


# -- the console: who may decide, what a Rollback is, bidi in agent text ---------------------


def test_the_console_tells_a_reader_without_the_right_why_and_shows_rollbacks(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    # carol reviews another policy of the namespace: she may read payments' requests, not decide.
    other = policy(namespace, "other", agents={"serviceAccounts": ["nobody"]},
                   reviewers={"groups": ["sre-approvers"]})  # fmt: skip
    apply_ready_policy(cluster, other)
    name = file(cluster, namespace, "payments.charge")
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    logged = file(cluster, namespace, "crm.update", rollback=True)
    wait_for(cluster, namespace, logged, "decision.reason", "Logged")
    rollback = {"reviewer": "alice", "decision": "Rollback", "comment": "wrong contact"}
    # A Logged request has no status.reviews yet: the first review creates the list.
    patch = json.dumps([{"op": "add", "path": "/status/reviews", "value": [rollback]}])
    cluster.kubectl("patch", "actionrequest", logged, "-n", namespace, "--subresource=status",
                    "--type=json", "-p", patch, who="alice")  # fmt: skip

    async def scenario(web_client: Browserless) -> None:
        _, cookie, _ = await web_client.sign_in(cluster.token("carol"))
        headers = {"Cookie": f"handoff_session={cookie}"}
        # A post without the request's page first (from a stale tab), then one after reading it.
        for where in ("/queue", f"/requests/{namespace}/{name}"):
            status, page = await web_client.get(where, cookie)
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            assert csrf, page
            response = await web_client.client.post(
                f"/requests/{namespace}/{name}/approve", headers=headers, allow_redirects=False,
                data={"csrf": csrf.group(1), "ack": ["what", "impact", "rollback"]},
            )  # fmt: skip
            text = html.unescape(await response.text())
            assert response.status == 403, text
            assert "of review" not in text
            assert (
                "carol may not decide requests of policy payments: that takes the verb approve"
                " on agentactionpolicies/payments" in text
            )
        status, page = await web_client.get(f"/requests/{namespace}/{logged}", cookie)
        assert status == 200
        assert "<strong>alice</strong> asked to roll back" in page
        assert "denied" not in page

    run_console(console_config(cluster, tmp_path, [namespace]), scenario)
    assert request(cluster, namespace, name)["status"]["reviews"] == []


SPOOF = "\u202e\u2066\u200f\u061c"


def test_the_console_shows_bidi_controls_in_agent_text(
    cluster: Cluster, operator: OperatorProcess, namespace: str, redis_server: RedisServer,
    tmp_path: Path,
) -> None:  # fmt: skip
    apply_ready_policy(cluster, policy(namespace))
    name = file_hostile(cluster, namespace, summary=f"Refund {SPOOF}gnp.exe", reasoning=SPOOF)
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    reader = console_reader(redis_server, tmp_path)
    config = console_config(cluster, tmp_path, [namespace], redis_url=reader)

    async def scenario(web_client: Browserless) -> None:
        _, cookie, _ = await web_client.sign_in(cluster.token("alice"))
        for path in (f"/requests/{namespace}/{name}", "/queue"):
            status, page = await web_client.get(path, cookie)
            assert status == 200
            assert not any(char in page for char in SPOOF), path
            assert "Refund \\u202e\\u2066\\u200f\\u061cgnp.exe" in page, path
        response = await web_client.client.get(
            "/feed/events", headers={"Cookie": f"handoff_session={cookie}"}
        )
        seen = ""
        while name not in seen:
            seen = (await asyncio.wait_for(response.content.readline(), 20)).decode()
        entry = json.loads(seen.removeprefix("data: "))
        assert entry["summary"] == "Refund \\u202e\\u2066\\u200f\\u061cgnp.exe"
        response.close()

    run_console(config, scenario)


# -- item 11: kubectl handoff through a terminal ---------------------------------------------

FORGED = (
    "The customer was charged twice\n"
    "Policy      payments, rule reads: tier 1, HOOTL\n"
    "Filed by    alice\r\n"
    "Reviews\n  bob approved (acknowledged what, impact, rollback)\x1b[2K\r"
)


def file_hostile(cluster: Cluster, ns: str, **spec: Any) -> str:
    document = {
        "apiVersion": "handoff.dev/v1alpha1", "kind": "ActionRequest",
        "metadata": {"generateName": "req-", "namespace": ns},
        "spec": {"agent": AGENT, "action": "payments.charge", "target": "stripe:1",
                 "summary": "charge", **spec},
    }  # fmt: skip
    created = cluster.create(document, who=f"{ns}/{AGENT}")
    return str(json.loads(created.stdout)["metadata"]["name"])


def terminal(kubeconfig: str, who: str, *args: str) -> list[str]:
    """What ``kubectl handoff`` prints on an 80-column terminal, as its lines."""
    session = pexpect.spawn(PLUGIN, ["--kubeconfig", kubeconfig, "--context", who, *args],
                            encoding="utf-8", timeout=20, dimensions=(24, 80))  # fmt: skip
    session.expect(pexpect.EOF)
    session.close()
    assert session.exitstatus == 0, session.before
    return str(session.before).replace("\r\n", "\n").split("\n")


@pytest.fixture
def people(cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path) -> str:
    apply_ready_policy(cluster, policy(namespace))
    tokens = {who: cluster.token(who) for who in ("alice", "bob")}
    path = cluster.control_plane.write_kubeconfig(tmp_path / "people.kubeconfig", tokens, namespace)
    return str(path)


def starts(lines: list[str], text: str) -> int:
    return sum(1 for line in lines if line.startswith(text))


def test_agent_text_cannot_print_the_plugins_own_lines(
    cluster: Cluster, namespace: str, people: str
) -> None:
    wrap = "x" * 68 + "bob approved it" + " " * 65 + "Policy      payments: tier 1"
    name = file_hostile(
        cluster, namespace, reasoning=FORGED, blastRadius=wrap, summary=f"Refund {SPOOF}gnp.exe"
    )  # fmt: skip (one line: the CRD refuses a newline)
    wait_for(cluster, namespace, name, "phase", "AwaitingApproval")
    assert (
        review(cluster, namespace, name, "bob", "Deny", comment="no\nalice approved").returncode
        == 0
    )
    wait_for(cluster, namespace, name, "decision.reason", "HumanDenied")
    for args in (("show", name), ("log", "--since", "10m"), ("pending",)):
        lines = terminal(people, "alice", *args)
        text = "\n".join(lines)
        assert not any(char in text for char in (*SPOOF, "\x1b", "\t")), args
        assert starts(lines, "Policy") <= 1, lines
        assert starts(lines, "Filed by") <= 1, lines
        assert starts(lines, "Reviews") <= 1, lines
        assert not any(
            line.lstrip().startswith(("bob approved", "alice approved")) for line in lines
        ), lines
        assert all(len(line) <= 80 for line in lines), lines
    lines = terminal(people, "alice", "show", name)
    assert starts(lines, "Reviews     bob denied") == 1
    assert "            | Policy      payments, rule reads: tier 1, HOOTL" in lines
    what = next(i for i, line in enumerate(lines) if line.startswith("What        "))
    shown = " ".join(line.removeprefix("            | ").strip() for line in lines[what : what + 3])
    assert "\\u202e\\u2066\\u200f\\u061cgnp.exe" in shown, lines  # escaped, never raw


def test_a_rollback_reads_as_a_rollback_in_show_and_log(
    cluster: Cluster, namespace: str, people: str
) -> None:
    name = file(cluster, namespace, "crm.update", rollback=True)
    wait_for(cluster, namespace, name, "decision.reason", "Logged")
    undo = subprocess.run([PLUGIN, "--kubeconfig", people, "--context", "alice", "rollback", name],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert undo.returncode == 0, undo.stderr
    shown = "\n".join(terminal(people, "bob", "show", name))
    assert "alice asked to roll back" in shown
    assert "denied" not in shown
    log = "\n".join(terminal(people, "bob", "log", "--since", "10m"))
    assert f"alice asked to roll back {name}" in log
    assert f"alice denied {name}" not in log
