"""The benchmarks' own control plane, Redis and operator, in .handoff/bench (never the dev one).

Built on the test fixtures (handoff.testing): a fresh etcd and kube-apiserver with Handoff's CRDs
and admission policies, a private Redis, and ``handoff operator`` as a child process. Each figure
gets dedicated namespaces and agents, so no other policy can change a tier.
"""

import asyncio
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

from handoff import GROUP, POLICIES, VERSION, paths
from handoff.adapters.kube import Credentials, KubeApi, NotFound, resource_path
from handoff.devenv.controlplane import ControlPlane
from handoff.devenv.redis import RedisServer
from handoff.testing.cluster import Cluster, OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / ".handoff" / "bench"


class BenchEnvironment:
    def __init__(self, folder: Path = FOLDER) -> None:
        self.folder = folder
        self.cluster: Cluster | None = None
        self.redis: RedisServer | None = None
        self.operator: OperatorProcess | None = None
        self.namespaces: list[str] = []
        self.operator_env: dict[str, str] = {}  # e.g. profiler.operator_env

    def start(self) -> "BenchEnvironment":
        if (self.folder / "controlplane").exists():  # a run that was interrupted: stop it first
            with contextlib.suppress(Exception):
                ControlPlane(self.folder / "controlplane", paths.bin_dir()).stop()
        if (self.folder / "redis").exists():
            with contextlib.suppress(Exception):
                RedisServer(self.folder / "redis").stop()
        for child in ("controlplane", "redis", "operator"):
            shutil.rmtree(self.folder / child, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cluster = Cluster(self.folder / "controlplane").start()
        self.redis = RedisServer(self.folder / "redis")
        self.redis.start()
        return self

    def start_operator(self, namespaces: list[str]) -> OperatorProcess:
        assert self.cluster is not None
        assert self.redis is not None
        self.namespaces = namespaces
        self.operator = OperatorProcess(
            self.cluster, self.folder / "operator", redis_url=self.redis.url
        )
        self.operator.extra_args = [f"--namespace={ns}" for ns in namespaces]
        self.operator.extra_env = dict(self.operator_env)
        return self.operator.start()

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.cluster is not None:
            self.cluster.stop()

    # -- clients -------------------------------------------------------------------------------

    def api(self, who: str = "admin") -> KubeApi:
        """A client as ``who``: a contract user, ``namespace/serviceaccount`` or ``operator``."""
        assert self.cluster is not None
        control = self.cluster.control_plane
        if who == "operator":
            return KubeApi(Credentials.load(str(self.cluster.operator_kubeconfig())))
        return KubeApi(
            Credentials(
                server=control.server, ca_file=str(control.ca_file), token=self.cluster.token(who)
            )
        )

    def namespace(self, name: str, agents: tuple[str, ...]) -> str:
        from handoff.devenv.environment import apply  # noqa: PLC0415
        from handoff.devenv.manifests import agent_namespace_objects  # noqa: PLC0415

        assert self.cluster is not None
        apply(self.cluster.control_plane, agent_namespace_objects(name, list(agents)))
        return name

    async def apply_policy(self, namespace: str, name: str, spec: dict[str, Any]) -> None:
        """Apply a policy and wait until the operator has compiled it (Ready) and the agents
        may file requests (the Role it generates)."""
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "AgentActionPolicy",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec}  # fmt: skip
        async with self.api() as api:
            await api.apply(body, manager="bench")
            path = resource_path(GROUP, VERSION, POLICIES, namespace, name)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with contextlib.suppress(NotFound):
                    status = (await api.get(path)).get("status") or {}
                    ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
                    if ready and ready[0].get("status") == "True":
                        break
                await asyncio.sleep(0.2)
            else:
                raise RuntimeError(f"policy {namespace}/{name} did not become Ready")
        await asyncio.sleep(1)  # the generated Role reaches the authorizer's cache

    async def grant_create(self, namespace: str, agent: str) -> None:
        """For the floor: let an agent file requests with no policy (and so no operator) at all."""
        role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": f"{agent}-floor", "namespace": namespace},
                "rules": [{"apiGroups": [GROUP], "resources": ["actionrequests"],
                           "verbs": ["create", "get", "list", "watch"]}]}  # fmt: skip
        binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": f"{agent}-floor", "namespace": namespace},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": f"{agent}-floor"},
                   "subjects": [{"kind": "ServiceAccount", "name": agent, "namespace": namespace}]}  # fmt: skip
        async with self.api() as api:
            await api.apply(role, manager="bench")
            await api.apply(binding, manager="bench")
        await asyncio.sleep(1)


def operator_rss_mb(operator: OperatorProcess) -> float:
    """Resident memory of the operator process (VmRSS), in MB."""
    assert operator.process is not None
    for line in Path(f"/proc/{operator.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, rest = head.partition("{")
        if metric != name:
            continue
        if all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += float(value)
    return total
