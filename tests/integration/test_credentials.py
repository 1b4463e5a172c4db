"""Generated credentials are read-only at the connection level: PostgreSQL roles that can only
SELECT, and Redis users that can only touch their own agent's keys."""

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import redis
from handoff.devenv.postgres import ADMIN, PostgresServer
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess, eventually, redis_client

from .helpers import AGENT, apply_ready_policy, condition, policy, ready

pytestmark = pytest.mark.integration


def secret(cluster: Cluster, ns: str, name: str, who: str = "admin") -> dict[str, str]:
    body = json.loads(
        cluster.kubectl("get", "secret", name, "-n", ns, "-o", "json", who=who).stdout
    )
    return {k: base64.b64decode(v).decode() for k, v in body["data"].items()}


def admin_secret(
    cluster: Cluster, ns: str, server: PostgresServer, database: str, port: int | None = None
) -> None:
    cluster.apply({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "analytics-admin", "namespace": ns},
        "stringData": {"host": "127.0.0.1", "port": str(port or server.port), "database": database,
                       "username": ADMIN, "password": server.password},
    })  # fmt: skip


def with_credentials(ns: str, database: str, **extra: Any) -> dict[str, Any]:
    credential = {
        "name": "analytics-ro",
        "postgres": {
            "adminSecretRef": {"name": "analytics-admin"},
            "database": database,
            "schemas": ["public"],
        },
        "secretName": "payments-agent-analytics-ro",
        **extra,
    }
    return policy(ns, credentials=[credential])


@pytest.fixture
def database(postgres_server: PostgresServer) -> Iterator[str]:
    """A database with a table, some rows, and a function that writes."""
    name = f"analytics_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"CREATE DATABASE {name}")
    postgres_server.psql(
        "CREATE TABLE orders (id int PRIMARY KEY, amount int);"
        "INSERT INTO orders VALUES (1, 100), (2, 250);"
        "CREATE FUNCTION bump() RETURNS void LANGUAGE sql AS $$ INSERT INTO orders VALUES (99, 1) $$;",
        database=name,
    )
    yield name
    postgres_server.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def connect(credentials: dict[str, str]) -> psycopg.Connection[Any]:
    return psycopg.connect(credentials["uri"], connect_timeout=5, autocommit=True)


def refusal(credentials: dict[str, str], statements: str, copy: bool = False) -> str | None:
    """Run ``statements`` (split on '; ') as the agent's role: PostgreSQL's error, or None if
    everything went through."""
    with connect(credentials) as connection:
        try:
            for part in statements.split("; "):
                connection.execute(part)  # type: ignore[call-overload]
            if copy:
                with connection.cursor().copy("COPY orders FROM STDIN") as writer:
                    writer.write_row((6, 1))
        except psycopg.Error as e:
            return str(e).splitlines()[0]
    return None


# Each write is tried with default_transaction_read_only turned off first, as a hostile client
# would: what refuses them must be the role's privileges, not the setting.
OFF = "SET default_transaction_read_only = off; "
WRITES = {
    "INSERT": OFF + "INSERT INTO orders VALUES (3, 1)",
    "UPDATE": OFF + "UPDATE orders SET amount = 0",
    "DELETE": OFF + "DELETE FROM orders",
    "TRUNCATE": OFF + "TRUNCATE orders",
    "CREATE TABLE": OFF + "CREATE TABLE loot (x int)",
    "CREATE TEMP TABLE": OFF + "CREATE TEMP TABLE loot (x int)",
    "BEGIN READ WRITE, then INSERT": "BEGIN READ WRITE; INSERT INTO orders VALUES (5, 1)",
    "a function that writes": OFF + "SELECT bump()",
    "a large object": OFF + "SELECT lo_create(0)",
    "CREATE SCHEMA": OFF + "CREATE SCHEMA loot",
}


def test_postgres_role_reads_and_cannot_write(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    postgres_server: PostgresServer,
    database: str,
) -> None:
    admin_secret(cluster, namespace, postgres_server, database)
    apply_ready_policy(cluster, with_credentials(namespace, database))
    credentials = secret(
        cluster, namespace, "payments-agent-analytics-ro", who=f"{namespace}/{AGENT}"
    )
    assert set(credentials) == {"host", "port", "database", "username", "password", "uri"}
    assert credentials["database"] == database

    with connect(credentials) as connection:
        assert connection.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    failures = {what: refusal(credentials, statement) for what, statement in WRITES.items()}
    failures["COPY FROM"] = refusal(credentials, OFF.rstrip("; "), copy=True)
    failures["INSERT, read-only left on"] = refusal(credentials, "INSERT INTO orders VALUES (3, 1)")
    assert postgres_server.psql("SELECT count(*) FROM orders", database=database).strip() == "2"
    print(json.dumps(failures, indent=1))  # the refusals, for the record (pytest -s shows them)
    for what, error in failures.items():
        expected = "read-only transaction" if what.endswith("left on") else "permission denied"
        assert expected in str(error), (what, error)

    # Tables made later are readable too (default privileges), still not writable.
    postgres_server.psql(
        "CREATE TABLE refunds (id int); INSERT INTO refunds VALUES (7)", database=database
    )
    with connect(credentials) as connection:
        assert connection.execute("SELECT id FROM refunds").fetchone() == (7,)

    cluster.kubectl("delete", "agentactionpolicy", "payments", "-n", namespace, "--timeout=30s")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(credentials)
    gone = cluster.kubectl(
        "get", "secret", "payments-agent-analytics-ro", "-n", namespace, check=False
    )
    assert gone.returncode != 0


def test_only_the_governed_agent_reads_its_credentials(
    cluster: Cluster, operator: OperatorProcess, postgres_server: PostgresServer, database: str
) -> None:
    ns = cluster.new_namespace(agents=(AGENT, "other-agent"))
    admin_secret(cluster, ns, postgres_server, database)
    apply_ready_policy(cluster, with_credentials(ns, database))
    apply_ready_policy(cluster, policy(ns, "other", agents={"serviceAccounts": ["other-agent"]}))
    assert secret(cluster, ns, "payments-agent-analytics-ro", who=f"{ns}/{AGENT}")["username"]
    refused = cluster.kubectl(
        "get",
        "secret",
        "payments-agent-analytics-ro",
        "-n",
        ns,
        who=f"{ns}/other-agent",
        check=False,
    )
    assert refused.returncode != 0
    assert "forbidden" in refused.stderr
    admin = cluster.kubectl(
        "get", "secret", "analytics-admin", "-n", ns, who=f"{ns}/{AGENT}", check=False
    )
    assert admin.returncode != 0


def test_postgres_unreachable_is_reported_and_retried(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    postgres_server: PostgresServer,
    database: str,
) -> None:
    admin_secret(cluster, namespace, postgres_server, database, port=1)  # nothing listens on port 1
    cluster.apply(with_credentials(namespace, database))
    failing = eventually(
        lambda: (
            (p := cluster.get("agentactionpolicy", "payments", namespace))
            and ready(p) == "False"
            and p
        ),
        what="Ready=False for an unreachable database",
    )
    ready_condition = condition(failing, "Ready")
    assert ready_condition["reason"] == "CredentialsFailed"
    assert "PostgreSQL at 127.0.0.1:1 is unreachable" in ready_condition["message"]
    assert (
        cluster.kubectl(
            "get", "secret", "payments-agent-analytics-ro", "-n", namespace, check=False
        ).returncode
        != 0
    )
    roles = postgres_server.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'handoff_%'")
    before = int(roles)

    admin_secret(cluster, namespace, postgres_server, database)  # the database is back
    eventually(
        lambda: ready(cluster.get("agentactionpolicy", "payments", namespace)) == "True",
        timeout=40,
        what="the retry to succeed",
    )
    assert secret(cluster, namespace, "payments-agent-analytics-ro")["username"]
    after = int(
        postgres_server.psql("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'handoff_%'")
    )
    assert after == before + 1


def test_postgres_password_rotates(
    cluster: Cluster,
    operator: OperatorProcess,
    namespace: str,
    postgres_server: PostgresServer,
    database: str,
) -> None:
    admin_secret(cluster, namespace, postgres_server, database)
    apply_ready_policy(cluster, with_credentials(namespace, database, rotateEvery="10s"))
    first = secret(cluster, namespace, "payments-agent-analytics-ro")
    second = eventually(
        lambda: (
            (s := secret(cluster, namespace, "payments-agent-analytics-ro"))["password"]
            != first["password"]
            and s
        ),
        timeout=30,
        what="the password to rotate",
    )
    with connect(second) as connection:
        assert connection.execute("SELECT count(*) FROM orders").fetchone() == (2,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(first)


def test_redis_user_reaches_only_its_own_keys(
    cluster: Cluster, operator: OperatorProcess, redis_server: RedisServer
) -> None:
    ns = cluster.new_namespace(agents=(AGENT, "other-agent"))
    apply_ready_policy(cluster, policy(ns))
    apply_ready_policy(cluster, policy(ns, "other", agents={"serviceAccounts": ["other-agent"]}))
    mine = eventually(
        lambda: _try_secret(cluster, ns, f"handoff-redis-{AGENT}", f"{ns}/{AGENT}"),
        what="the Redis Secret",
    )
    refused = cluster.kubectl(
        "get", "secret", f"handoff-redis-{AGENT}", "-n", ns, who=f"{ns}/other-agent", check=False
    )
    assert refused.returncode != 0

    admin = redis_client(redis_server.url)
    admin.set(f"handoff:state:{ns}:other-agent:x", "secret plans")
    agent = redis_client(mine["url"])
    own = f"handoff:state:{ns}:{AGENT}:u-1"
    assert agent.execute_command("SETEX", own, 60, "my state")  # state always expires
    assert agent.get(own) == b"my state"
    stream = f"handoff:decisions:{ns}:{AGENT}"
    admin.xadd(stream, {"decision": "Approved"})
    delivered = agent.xreadgroup("agent", "worker-1", {stream: ">"}, count=10)
    assert delivered
    assert delivered[0][1][0][1] == {b"decision": b"Approved"}

    for attempt in (
        lambda: agent.get(f"handoff:state:{ns}:other-agent:x"),
        lambda: agent.set(own, "forever"),
        lambda: agent.execute_command("SELECT", 1),
        lambda: agent.xadd(stream, {"decision": "Approved"}),
        lambda: agent.delete(stream),
        lambda: agent.xrange("handoff:audit"),
        lambda: agent.keys("*"),
        lambda: agent.publish("handoff", "hi"),
        lambda: agent.config_get("*"),
        lambda: agent.eval("return 1", 0),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


def _try_secret(cluster: Cluster, ns: str, name: str, who: str) -> dict[str, str] | None:
    try:
        return secret(cluster, ns, name, who=who)
    except RuntimeError:
        return None
