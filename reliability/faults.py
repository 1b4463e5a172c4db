"""The faults, injected in turn while the load runs. Each is journaled with when it started, when
the harness saw the service back, and checks that it really happened (the process died, a new
one runs, the credentials failed and recovered)."""

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from handoff.devenv import processes
from handoff.devenv.postgres import ADMIN
from handoff.testing.cluster import Cluster, OperatorProcess

from reliability.load import Journal

if TYPE_CHECKING:
    from reliability.run import Environment

ROTATE_EVERY_S = 12
CREDENTIALS_AGENT = "analyst"
SECRET_NAME = "analyst-analytics-ro"  # noqa: S105 - a Secret's name, not a password


def lease_holder(cluster: Cluster, lease: tuple[str, str]) -> str:
    return str(_lease(cluster, lease).get("holderIdentity") or "")


def _lease(cluster: Cluster, lease: tuple[str, str]) -> dict[str, Any]:
    result = cluster.kubectl("get", "lease", lease[1], "-n", lease[0], "-o", "json", check=False)
    if result.returncode != 0:
        return {}
    return dict(json.loads(result.stdout).get("spec") or {})


def _micro(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def _wait(probe: Callable[[], Any], seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            if probe():
                return True
        except (RuntimeError, OSError, KeyError, ValueError):
            pass
        time.sleep(0.3)
    return False


class Faults:
    def __init__(
        self,
        env: "Environment",
        journal: Journal,
        load_namespace: str,
        lease: tuple[str, str],
        offsets: dict[str, float],
    ) -> None:
        self.env = env
        self.journal = journal
        self.load_namespace = load_namespace
        self.lease = lease
        self.offsets = offsets
        self.creds_namespace = ""
        self.database = f"rel_{uuid.uuid4().hex[:8]}"
        self.lock = threading.Lock()  # faults and the supervisor never start a replica together
        self.done = threading.Event()

    # -- the supervisor: what a Deployment would do --------------------------------------------

    def supervise(self) -> None:
        """Start again any replica that exited by itself (a leader that lost its Lease exits on
        purpose, for its Deployment to restart it); journal each restart."""
        while not self.done.wait(1.0):
            with self.lock:
                for op in self.env.operators:
                    if op.process is None or op.process.poll() is None:
                        continue
                    code = op.process.returncode
                    op.process = None
                    record = {"name": op.name, "exit": code, "at": time.time()}
                    try:
                        op.start()
                    except (RuntimeError, TimeoutError, OSError) as e:
                        record["error"] = str(e)[:300]
                    record["back"] = time.time()
                    print(f"[{time.strftime('%H:%M:%S')}] supervisor: {json.dumps(record)}")
                    self.journal.write("restarts", record)

    # -- PostgreSQL credentials with rotation, in a namespace of their own ---------------------

    def prepare(self) -> None:
        cluster, server = self.env.cluster, self.env.postgres
        server.psql(f"CREATE DATABASE {self.database}")
        server.psql(
            "CREATE TABLE orders (id int PRIMARY KEY, amount int);"
            "INSERT INTO orders VALUES (1, 100), (2, 250);",
            database=self.database,
        )
        ns = self.creds_namespace = cluster.new_namespace(agents=(CREDENTIALS_AGENT,))
        cluster.apply({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "analytics-admin", "namespace": ns},
            "stringData": {"host": "127.0.0.1", "port": str(server.port),
                           "database": self.database, "username": ADMIN,
                           "password": server.password},
        })  # fmt: skip
        cluster.apply({
            "apiVersion": "handoff.dev/v1alpha1", "kind": "AgentActionPolicy",
            "metadata": {"name": "analytics", "namespace": ns},
            "spec": {
                "agents": {"serviceAccounts": [CREDENTIALS_AGENT]},
                "reviewers": {"groups": ["payments-approvers"]},
                "rules": [{"name": "reads", "actions": ["db.query"], "tier": 1}],
                "credentials": [{
                    "name": "analytics-ro", "secretName": SECRET_NAME,
                    "rotateEvery": f"{ROTATE_EVERY_S}s",
                    "postgres": {"adminSecretRef": {"name": "analytics-admin"},
                                 "database": self.database, "schemas": ["public"]},
                }],
            },
        })  # fmt: skip
        if not _wait(lambda: self._secret() and self._ready()[0] == "True", 60):
            raise RuntimeError("the credentials policy never became Ready")

    def _secret(self) -> dict[str, Any] | None:
        result = self.env.cluster.kubectl(
            "get", "secret", SECRET_NAME, "-n", self.creds_namespace, "-o", "json", check=False
        )
        return dict(json.loads(result.stdout)) if result.returncode == 0 else None

    def _credentials(self) -> dict[str, str]:
        secret = self._secret() or {}
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    def _rotated_at(self) -> float:
        secret = self._secret() or {}
        return _micro(secret["metadata"]["annotations"]["handoff.dev/rotated-at"])

    def _ready(self) -> tuple[str, str]:
        body = self.env.cluster.get("agentactionpolicy", "analytics", self.creds_namespace)
        for c in (body.get("status") or {}).get("conditions") or []:
            if c["type"] == "Ready":
                return str(c["status"]), str(c.get("reason", ""))
        return "", ""

    # -- the schedule --------------------------------------------------------------------------

    def run_all(self) -> None:
        start = time.monotonic()
        for name, offset in sorted(self.offsets.items(), key=lambda kv: kv[1]):
            time.sleep(max(0.0, start + offset - time.monotonic()))
            record: dict[str, Any] = {"fault": name, "started": time.time()}
            print(f"[{time.strftime('%H:%M:%S')}] fault: {name}", flush=True)
            try:
                with self.lock:
                    getattr(self, name.replace("-", "_"))(record)
            except Exception as e:  # journal it: the checker reports an unconfirmed fault
                record.setdefault("checks", {})["completed"] = False
                record["error"] = f"{type(e).__name__}: {e}"
            record.setdefault("recovered", time.time())
            print(f"[{time.strftime('%H:%M:%S')}]   {json.dumps(record)}", flush=True)
            self.journal.write("faults", record)

    def operator_kill(self, record: dict[str, Any]) -> None:
        """SIGKILL every replica (no Lease release, no cleanup), then start them again."""
        operators = self.env.operators
        pids = [op.process.pid for op in operators if op.process is not None]
        for op in operators:
            op.kill()
        record["outage"] = True
        record["pids_before"] = pids
        died = all(not processes.alive(pid) for pid in pids)
        time.sleep(2)
        for op in operators:
            op.start()
        restarted = time.time()
        record["pids_after"] = [op.process.pid for op in operators if op.process is not None]
        back = self._leading_since(restarted)
        record["recovered"] = time.time()
        record["checks"] = {
            "all replicas died": died and bool(pids),
            "new processes": set(record["pids_after"]).isdisjoint(pids),
            "a replica leads again": back,
        }

    def _leading_since(self, since: float) -> bool:
        """A live replica has renewed the Lease after ``since`` (without leader election: the
        one replica is healthy)."""
        if not self.env.ha:
            return True

        def probe() -> bool:
            spec = _lease(self.env.cluster, self.lease)
            renew = spec.get("renewTime")
            return bool(renew) and _micro(str(renew)) > since and bool(spec.get("holderIdentity"))

        return _wait(probe, 60)

    def redis_kill(self, record: dict[str, Any]) -> None:
        """SIGKILL Redis (append-only file, fsync every second), then start it again."""
        server = self.env.redis
        pid = processes.read_pid(server.pidfile)
        server.kill()
        record["pid_before"] = pid
        died = pid is not None and not processes.alive(pid)
        time.sleep(3)
        server.start()
        new = processes.read_pid(server.pidfile)
        record["pid_after"] = new
        record["recovered"] = time.time()
        record["outage"] = False  # decisions do not wait on Redis: only their publication does
        record["checks"] = {"redis died": died, "a new redis runs": new is not None and new != pid,
                            "answers": server.ping()}  # fmt: skip

    def apiserver_restart(self, record: dict[str, Any]) -> None:
        """Stop kube-apiserver and start it again; etcd keeps running, and the data."""
        control = self.env.cluster.control_plane
        before = control.running()
        control.restart_apiserver()
        after = control.running()
        record.update(before=before, after=after, outage=True, serving=time.time())
        # The leader may have lost its Lease meanwhile and exited: the operator is back when a
        # replica holds a freshly renewed Lease again.
        leading = self._leading_since(record["serving"])
        record["recovered"] = time.time()
        old = before["kube-apiserver"]
        record["checks"] = {
            "apiserver died": old is not None and not processes.alive(old),
            "a new apiserver serves": after["kube-apiserver"] not in (None, old)
            and control.ready(),
            "etcd kept running": before["etcd"] is not None and before["etcd"] == after["etcd"],
            "a replica leads again": leading,
        }

    def postgres_rotation(self, record: dict[str, Any]) -> None:
        """Stop PostgreSQL just after a rotation, so the next one (due ``ROTATE_EVERY_S`` later)
        falls while it is down; the policy must say CredentialsFailed, then recover, rotate, and
        the agent's Secret must work."""
        server = self.env.postgres
        first = self._rotated_at()
        _wait(lambda: self._rotated_at() > first, ROTATE_EVERY_S + 20)  # a rotation just happened
        old = self._credentials()
        rotated_before = self._rotated_at()
        pid = server.pid()
        record["started"] = time.time()
        server.stop()
        record["pid_before"] = pid
        died = pid is not None and not processes.alive(pid)
        failed = _wait(lambda: self._ready() == ("False", "CredentialsFailed"),
                       ROTATE_EVERY_S + 30)  # fmt: skip
        record["failed_seen"] = time.time()
        time.sleep(3)
        server.start()
        record["pid_after"] = server.pid()
        rotated = _wait(
            lambda: self._ready()[0] == "True" and self._rotated_at() > record["started"], 90
        )
        record["recovered"] = time.time()
        record["outage"] = False
        new = self._credentials()
        works, refused = False, False
        try:
            with psycopg.connect(new["uri"], connect_timeout=5, autocommit=True) as connection:
                works = connection.execute("SELECT count(*) FROM orders").fetchone() == (2,)
        except psycopg.Error as e:
            record["new_password_error"] = str(e)[:200]
        try:
            with psycopg.connect(old["uri"], connect_timeout=5, autocommit=True):
                pass
        except psycopg.OperationalError as e:
            refused = "password authentication failed" in str(e)
        record["rotated_before"], record["rotated_after"] = rotated_before, self._rotated_at()
        record["checks"] = {
            "postgres stopped": died,
            "policy said CredentialsFailed": failed,
            "Ready again and rotated after the outage": rotated,
            "the new Secret reads the database": works,
            "the old password is refused": refused,
        }

    def ha_leader_kill(self, record: dict[str, Any]) -> None:
        """SIGKILL whichever replica holds the Lease; the standby must take over."""
        if not self.env.ha:
            record["skipped"] = (
                "`handoff operator --leader-election` is not available: one replica ran"
            )
            print("SKIPPED ha-leader-kill: no --leader-election flag; one operator replica ran")
            return
        holder = lease_holder(self.env.cluster, self.lease)
        by_name: dict[str, OperatorProcess] = {op.name: op for op in self.env.operators}
        leader = by_name.get(holder)
        if leader is None or leader.process is None:
            record["checks"] = {"found the leader": False}
            record["holder"] = holder
            return
        pid = leader.process.pid
        leader.kill()
        record.update(holder=holder, pid=pid, outage=True)
        died = not processes.alive(pid)
        others = set(by_name) - {holder}
        took_over = _wait(lambda: lease_holder(self.env.cluster, self.lease) in others, 60)
        record["new_holder"] = lease_holder(self.env.cluster, self.lease)
        record["recovered"] = time.time()
        leader.start()  # back as the standby
        record["checks"] = {
            "the leader died": died,
            "the standby took the Lease": took_over,
            "the killed replica came back": leader.process is not None,
        }
