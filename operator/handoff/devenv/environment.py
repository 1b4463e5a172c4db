"""``handoff dev up | down | status``: the whole product on loopback, no cluster needed.

Idempotent: ``up`` reuses what runs and what was made before (certificates, etcd's data, ports,
tokens), so a second ``up`` is quick and keeps every object.
"""

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from handoff import paths
from handoff.devenv import processes
from handoff.devenv.controlplane import USERS, ControlPlane
from handoff.devenv.manifests import (
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    agent_namespace_objects,
    as_list,
    operator_objects,
)

AGENTS_NAMESPACE = "agents"
AGENT = "payments-agent"
CRDS = ("actionrequests.handoff.dev", "agentactionpolicies.handoff.dev")


def install(control_plane: ControlPlane) -> None:
    """CRDs, admission policies and the operator's RBAC: what a cluster install also puts in."""
    control_plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(paths.crd_dir()))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{c}" for c in CRDS)
    )
    if paths.admission_dir().is_dir():
        control_plane.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", str(paths.admission_dir())
        )
    apply(control_plane, operator_objects())


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

    def up(self, say: Callable[[str], None]) -> None:
        cp = self.control_plane
        say(f"control plane: etcd and kube-apiserver from {paths.bin_dir()}")
        cp.start()
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
        redis_url = self._start_redis(say)
        if redis_url:
            env["REDIS_URL"] = redis_url
        metrics_port = self._port("metrics")
        health_port = self._port("health")
        env["METRICS_URL"] = f"http://127.0.0.1:{metrics_port}/metrics"
        if processes.read_pid(self.folder / "operator.pid") is None:
            say("operator: handoff operator")
            processes.spawn(
                "operator",
                [
                    sys.executable, "-m", "handoff", "operator",
                    f"--kubeconfig={operator_kubeconfig}",
                    f"--metrics-address=127.0.0.1:{metrics_port}",
                    f"--liveness=http://127.0.0.1:{health_port}/healthz",
                ],
                self.folder,
                env=os.environ | {"PYTHONUNBUFFERED": "1"},
            )  # fmt: skip
        processes.wait_until(
            lambda: _http_ok(f"http://127.0.0.1:{health_port}/healthz"),
            60, "the operator", self.folder / "operator.log",
        )  # fmt: skip
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
        say(f"ready: export KUBECONFIG={self.kubeconfig}  (contexts: {', '.join(identities)})")
        say(f"environment: {self.env_file}; stop it with 'handoff dev down'")

    def down(self, say: Callable[[str], None]) -> None:
        for name in ("operator", "redis"):
            if processes.stop(self.folder / f"{name}.pid"):
                say(f"stopped {name}")
        self.control_plane.stop()
        say(
            "stopped the control plane (its data stays in "
            f"{self.folder}; 'handoff dev up' reuses it)"
        )

    def status(self) -> dict[str, int | None]:
        running = self.control_plane.running()
        for name in ("redis", "operator"):
            running[name] = processes.read_pid(self.folder / f"{name}.pid")
        return running

    def _port(self, name: str) -> int:
        """A port chosen once and kept, so URLs stay the same across ``up``s."""
        file = self.folder / f"{name}.port"
        if file.exists():
            return int(file.read_text())
        port = processes.free_port()
        file.write_text(str(port))
        return port

    def _start_redis(self, say: Callable[[str], None]) -> str | None:
        server = shutil.which("redis-server")
        if server is None:
            say(
                "redis: redis-server is not installed; skipping (sudo apt-get install redis-server)"
            )
            return None
        port = self._port("redis")
        if processes.read_pid(self.folder / "redis.pid") is None:
            data = self.folder / "redis"
            data.mkdir(parents=True, exist_ok=True)
            say("redis: append-only persistence, fsync every second")
            processes.spawn(
                "redis",
                [
                    server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data),
                    "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                    "--protected-mode", "yes",
                ],
                self.folder,
            )  # fmt: skip
            processes.wait_until(lambda: _redis_ping(port), 20, "redis", self.folder / "redis.log")
        return f"redis://127.0.0.1:{port}/0"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


def _redis_ping(port: int) -> bool:
    cli = shutil.which("redis-cli")
    if cli is None:
        return True
    result = subprocess.run(  # noqa: S603
        [cli, "-p", str(port), "ping"], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() == "PONG"
