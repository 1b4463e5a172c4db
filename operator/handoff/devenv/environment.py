"""``handoff dev up | down | status``: the whole product on loopback, no cluster needed.

Idempotent: ``up`` reuses what runs and what was made before (certificates, etcd's data, ports,
tokens), so a second ``up`` is quick and keeps every object.
"""

import asyncio
import json
import os
import secrets
import sys
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import yaml

from handoff import paths
from handoff.adapters.redis_acl import ensure_reader
from handoff.console import devlogin
from handoff.devenv import prerequisites, processes
from handoff.devenv.controlplane import USERS, ControlPlane
from handoff.devenv.gateway import start_gateway
from handoff.devenv.manifests import (
    CONSOLE_ACCOUNT,
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    agent_namespace_objects,
    as_list,
    console_objects,
    gateway_objects,
    operator_objects,
)
from handoff.devenv.postgres import ADMIN, PostgresServer
from handoff.devenv.prerequisites import NotReady, did_not_start
from handoff.devenv.redis import RedisServer
from handoff.domain.keys import AUDIT_STREAM

AGENTS_NAMESPACE = "agents"
AGENT = "payments-agent"
CRDS = (
    "actionrequests.handoff.dev",
    "agentactionpolicies.handoff.dev",
    "mcpservers.handoff.dev",
    "actiongrants.handoff.dev",
)


def install(control_plane: ControlPlane) -> None:
    """CRDs, admission policies and the operator's RBAC: what a cluster install also puts in."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(paths.crd_dir()))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{c}" for c in CRDS)
    )
    thirdparty = paths.crd_dir() / "thirdparty"
    if thirdparty.is_dir():  # the PolicyReport kind, when the cluster lacks it
        control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(thirdparty))
    if paths.admission_dir().is_dir():
        control_plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(paths.admission_dir())
        )
    apply(control_plane, operator_objects() + console_objects() + gateway_objects())


def apply(control_plane: ControlPlane, objects: list[dict[str, object]]) -> None:
    control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-",
        input=yaml.safe_dump(as_list(objects)),
    )  # fmt: skip


@dataclass
class DevEnvironment:
    folder: Path

    @classmethod
    def default(cls) -> "DevEnvironment":
        return cls(paths.dev_dir())

    @property
    def control_plane(self) -> ControlPlane:
        return ControlPlane(self.folder, paths.bin_dir())

    @property
    def kubeconfig(self) -> Path:
        return self.folder / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.folder / "env"

    def up(self, say: Callable[[str], None], postgres: bool = True) -> None:
        """Start what is not running and report ready, or refuse with one sentence: a server the
        environment promises (Redis; PostgreSQL unless ``postgres`` is False) that is missing
        stops it before anything starts, one that will not start stops what had started."""
        redis_server = prerequisites.redis_server()
        postgres_bin = prerequisites.postgres_bin_dir() if postgres else None
        try:
            with processes.detached():  # the servers outlive this command
                self._up(say, redis_server, postgres_bin)
        except BaseException:  # an error, or Ctrl-C: nothing half-started stays behind
            self.down(lambda _: None)
            raise

    def _up(
        self, say: Callable[[str], None], redis_server: Path, postgres_bin: Path | None
    ) -> None:
        cp = self.control_plane
        say(f"control plane: etcd and kube-apiserver from {paths.bin_dir()}")
        cp.start()
        say("control plane: running; applying the CRDs, admission policies and RBAC")
        install(cp)
        apply(cp, agent_namespace_objects(AGENTS_NAMESPACE, [AGENT]))
        identities = {user: cp.tokens[user] for user in USERS}
        identities[AGENT] = cp.service_account_token(AGENTS_NAMESPACE, AGENT)
        cp.write_kubeconfig(self.kubeconfig, identities, AGENTS_NAMESPACE, current="admin")
        operator_token = cp.service_account_token(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT)
        operator_kubeconfig = cp.write_kubeconfig(
            self.folder / "operator.kubeconfig", {"handoff-operator": operator_token}
        )
        env = {"KUBECONFIG": str(self.kubeconfig)}
        console_port = self._port("console")
        console_url = f"http://127.0.0.1:{console_port}"
        operator_args: list[str] = [f"--console-url={console_url}"]
        console_args: list[str] = []
        redis = self._redis(say, redis_server)
        env["REDIS_URL"] = redis.url
        operator_args.append(f"--redis-url={redis.url}")
        console_args.append(f"--redis-url={console_reader(redis, self.folder)}")
        if postgres_bin is not None:
            env["DATABASE_URL"] = self._postgres(say, cp, postgres_bin).url
        else:
            say("postgres: left out (--without-postgres): no DATABASE_URL, no analytics examples")
        metrics_port = self._port("metrics")
        health_port = self._port("health")
        env["METRICS_URL"] = f"http://127.0.0.1:{metrics_port}/metrics"
        if processes.read_pid(self.folder / "operator.pid") is None:
            say("operator: starting (its log: operator.log)")
            processes.spawn(
                "operator",
                [
                    sys.executable, "-m", "handoff", "operator",
                    f"--kubeconfig={operator_kubeconfig}",
                    f"--metrics-address=127.0.0.1:{metrics_port}",
                    f"--liveness=http://127.0.0.1:{health_port}/healthz",
                    *operator_args,
                ],
                self.folder,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        processes.wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{health_port}/healthz"),
            60, "the operator", self.folder / "operator.log",
        )  # fmt: skip
        if not _http_ok(console_url + devlogin.ROUTE):  # none, or one from before sign-in links
            processes.stop(self.folder / "console.pid")
            say(f"console: {console_url}")
            console_token = cp.service_account_token(OPERATOR_NAMESPACE, CONSOLE_ACCOUNT)
            console_kubeconfig = cp.write_kubeconfig(
                self.folder / "console.kubeconfig", {"handoff-console": console_token}
            )
            processes.spawn(
                "console",
                [
                    sys.executable, "-m", "handoff", "console",
                    f"--kubeconfig={console_kubeconfig}", f"--listen=127.0.0.1:{console_port}",
                    f"--namespace={AGENTS_NAMESPACE}", f"--dev-logins={self.folder}",
                    *console_args,
                ],
                self.folder,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        processes.wait_until(
            lambda: _http_ok(f"{console_url}/healthz"),
            30,
            "the console",
            self.folder / "console.log",
        )
        env["CONSOLE_URL"] = console_url
        env["GATEWAY_URL"] = start_gateway(cp, self.folder, self._port("gateway"), redis.url, say)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        say(f"ready: export KUBECONFIG={self.kubeconfig}  (contexts: {', '.join(identities)})")
        say(f"environment: {self.env_file}; stop it with 'handoff dev down'")
        say("sign in to the console: 'handoff dev login alice' prints a one-time link")

    def _redis(self, say: Callable[[str], None], program: Path) -> RedisServer:
        say(f"redis: {program}, append-only, fsync every second, a password on the default user")
        redis = RedisServer(self.folder / "redis")
        try:
            redis.start()
        except (OSError, TimeoutError, RuntimeError) as e:
            raise did_not_start("Redis", e, redis.folder / "redis.log") from e
        return redis

    def _postgres(
        self, say: Callable[[str], None], cp: ControlPlane, bin_dir: Path
    ) -> PostgresServer:
        say(f"postgres: {bin_dir}, a private server with an analytics database")
        postgres = PostgresServer(self.folder / "postgres")
        try:
            postgres.start()
        except (OSError, TimeoutError, RuntimeError) as e:
            raise did_not_start(
                "PostgreSQL", e, postgres.folder / "postgres.log",
                " To go on without it: 'handoff dev up --without-postgres'.",
            ) from e  # fmt: skip
        self._analytics_database(cp, postgres)
        return postgres

    def _analytics_database(self, cp: ControlPlane, postgres: PostgresServer) -> None:
        """An ``analytics`` database and its admin Secret, as policies/analytics expects."""
        if not postgres.psql("SELECT 1 FROM pg_database WHERE datname = 'analytics'").strip():
            postgres.psql("CREATE DATABASE analytics")
        admin = {
            "host": "127.0.0.1", "port": str(postgres.port), "database": "analytics",
            "username": ADMIN, "password": postgres.password,
        }  # fmt: skip
        secret: dict[str, object] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "analytics-admin", "namespace": AGENTS_NAMESPACE},
            "stringData": admin,
        }
        apply(cp, [secret])

    def down(self, say: Callable[[str], None]) -> None:
        if processes.stop(self.folder / "gateway.pid"):
            say("stopped the gateway")
        if processes.stop(self.folder / "console.pid"):
            say("stopped the console")
        if processes.stop(self.folder / "operator.pid"):
            say("stopped the operator")
        if processes.stop(self.folder / "redis" / "redis.pid"):
            say("stopped redis")
        PostgresServer(self.folder / "postgres").stop()
        self.control_plane.stop()
        say(
            "stopped the control plane (its data stays in "
            f"{self.folder}; 'handoff dev up' reuses it)"
        )

    def login_link(self, user: str, now: float) -> str:
        """A one-time link that signs ``user`` in to this environment's console."""
        env = self.settings()
        console = env.get("CONSOLE_URL", "")
        if not console or processes.read_pid(self.folder / "console.pid") is None:
            raise NotReady(
                f"the local environment in {self.folder} is not running: start it with"
                " 'handoff dev up' (or 'make demo'), then ask for a link again"
            )
        tokens: dict[str, str] = json.loads((self.folder / "state.json").read_text())["tokens"]
        if user not in tokens:
            raise NotReady(
                f"the local environment has no user {user!r}: choose one of {', '.join(tokens)}"
            )
        if not _http_ok(console + devlogin.ROUTE):
            raise NotReady(
                f"the console at {console} was started without one-time sign-in links (by an"
                " older 'handoff dev up'): run 'handoff dev down' and 'handoff dev up', then"
                " ask for a link again"
            )
        code = devlogin.issue(self.folder, user, tokens[user], now)
        return f"{console}{devlogin.ROUTE}/{code}"

    def settings(self) -> dict[str, str]:
        """What ``up`` wrote to the env file (empty when it never finished)."""
        if not self.env_file.exists():
            return {}
        lines = self.env_file.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def status(self) -> dict[str, int | None]:
        running = self.control_plane.running()
        running["redis"] = processes.read_pid(self.folder / "redis" / "redis.pid")
        postgres = PostgresServer(self.folder / "postgres")
        running["postgres"] = postgres.pid() if postgres.running() else None
        running["operator"] = processes.read_pid(self.folder / "operator.pid")
        running["console"] = processes.read_pid(self.folder / "console.pid")
        running["gateway"] = processes.read_pid(self.folder / "gateway.pid")
        return running

    def _port(self, name: str) -> int:
        """A port chosen once and kept, so URLs stay the same across ``up``s."""
        file = self.folder / f"{name}.port"
        if file.exists():
            return int(file.read_text())
        port = processes.free_port()
        file.write_text(str(port))
        return port


def console_reader(redis: RedisServer, folder: Path) -> str:
    """The console's Redis user: it may read the audit stream and nothing else."""
    secret = folder / "console-redis.password"
    if not secret.exists():
        secret.touch(mode=0o600)
        secret.write_text(secrets.token_urlsafe(18))
    password = secret.read_text().strip()
    # In a thread of its own: callers may already run an event loop (Playwright's, in tests).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(
            asyncio.run, ensure_reader(redis.url, "handoff-console", password, [AUDIT_STREAM])
        ).result()
    return f"redis://handoff-console:{password}@127.0.0.1:{redis.port}/0"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False
