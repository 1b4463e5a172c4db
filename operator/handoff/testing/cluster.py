"""A real control plane for tests, and the operator as a process."""

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from handoff import paths
from handoff.devenv import processes
from handoff.devenv.controlplane import ControlPlane
from handoff.devenv.environment import apply, install
from handoff.devenv.manifests import (
    CONSOLE_ACCOUNT,
    OPERATOR_ACCOUNT,
    OPERATOR_NAMESPACE,
    agent_namespace_objects,
)

T = TypeVar("T")


class NotFound(RuntimeError):
    """The API server answered 404 for an object a test read: not there (or not there yet)."""


# Where the kinds the tests read (and poll) are in the API, by the names kubectl takes for them.
_API = "apis/handoff.dev/v1alpha1"
PATHS = {
    **{kind: f"{_API}/namespaces/{{ns}}/{plural}/{{name}}" for kind, plural in [
        ("actionrequest", "actionrequests"), ("agentactionpolicy", "agentactionpolicies"),
        ("mcpserver", "mcpservers"), ("actiongrant", "actiongrants")]},
    "deployment": "apis/apps/v1/namespaces/{ns}/deployments/{name}",
    "serviceaccount": "api/v1/namespaces/{ns}/serviceaccounts/{name}",
    "secret": "api/v1/namespaces/{ns}/secrets/{name}",
    "configmap": "api/v1/namespaces/{ns}/configmaps/{name}",
}  # fmt: skip


class Cluster:
    """kube-apiserver and etcd with Handoff installed; one per test session."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.control_plane = ControlPlane(folder, paths.bin_dir())
        self._tokens: dict[tuple[str, str], str] = {}
        self._tls: ssl.SSLContext | None = None

    def start(self) -> "Cluster":
        self.control_plane.start()
        install(self.control_plane)
        return self

    def stop(self) -> None:
        self.control_plane.stop()

    def token(self, who: str) -> str:
        """The bearer token of a contract user (alice, ...) or of ``namespace/serviceaccount``."""
        if "/" not in who:
            return self.control_plane.tokens[who]
        namespace, name = who.split("/", 1)
        if (namespace, name) not in self._tokens:
            self._tokens[(namespace, name)] = self.control_plane.service_account_token(
                namespace, name, hours=24
            )
        return self._tokens[(namespace, name)]

    def kubectl(
        self, *args: str, who: str = "admin", input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.control_plane.kubectl(*args, token=self.token(who), input=input, check=check)

    def apply(
        self, document: dict[str, Any] | str, who: str = "admin", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        return self.kubectl("apply", "-f", "-", who=who, input=text, check=check)

    def create(
        self, document: dict[str, Any], who: str = "admin", check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.kubectl(
            "create", "-o", "json", "-f", "-", who=who, input=json.dumps(document), check=check
        )

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any]:
        """The object as ``kubectl get -o json`` prints it, as admin. The kinds of ``PATHS`` are
        read from the API server directly: the tests poll them, and a kubectl process per poll
        costs a tenth of a second of CPU or more, taken from the operator and API server that
        the test waits on (several test workers share two cores)."""
        if kind not in PATHS:
            out = self.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
            return dict(json.loads(out))
        body = self._call("GET", PATHS[kind].format(ns=namespace, name=name), "admin")
        body.get("metadata", {}).pop("managedFields", None)  # kubectl leaves them out too
        return body

    def patch_status(
        self, kind: str, name: str, namespace: str, patch: list[dict[str, Any]], who: str
    ) -> dict[str, Any]:
        """``kubectl patch --subresource=status --type=json`` as ``who``, without kubectl's start
        (a tenth of a second or more on a loaded machine): for a write that must land in a given
        second. Raises RuntimeError with the API server's message when refused."""
        path = PATHS[kind].format(ns=namespace, name=name) + "/status"
        return self._call("PATCH", path, who, patch, "application/json-patch+json")

    def _call(
        self, method: str, path: str, who: str, document: Any = None, content_type: str = ""
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token(who)}"}
        data = None
        if document is not None:
            data, headers["Content-Type"] = json.dumps(document).encode(), content_type
        url = f"{self.control_plane.server}/{path}"
        request = urllib.request.Request(url, data, headers, method=method)  # noqa: S310 - https
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=str(self.control_plane.ca_file))
        try:
            with urllib.request.urlopen(request, context=self._tls, timeout=30) as response:  # noqa: S310
                return dict(json.loads(response.read()))
        except urllib.error.HTTPError as error:
            said = json.loads(error.read() or b"{}").get("message", error.reason)
            failure = NotFound if error.code == 404 else RuntimeError
            raise failure(f"{method} {path} as {who} failed: {said}") from None

    def new_namespace(self, agents: tuple[str, ...] = ("payments-agent",)) -> str:
        """A fresh namespace with these agent ServiceAccounts (and no rights until a policy)."""
        name = f"t-{uuid.uuid4().hex[:10]}"
        apply(self.control_plane, agent_namespace_objects(name, list(agents)))
        return name

    def operator_kubeconfig(self) -> Path:
        token = self.control_plane.service_account_token(OPERATOR_NAMESPACE, OPERATOR_ACCOUNT, 24)
        return self.control_plane.write_kubeconfig(
            self.folder / "operator.kubeconfig", {"handoff-operator": token}
        )


class OperatorProcess:
    """``handoff operator`` in a child process, with its log in ``folder``."""

    def __init__(
        self, cluster: Cluster, folder: Path, name: str = "operator", redis_url: str | None = None
    ) -> None:
        self.cluster = cluster
        self.redis_url = redis_url
        self.folder = folder
        self.name = name
        self.health_port = processes.free_port()
        self.metrics_port = processes.free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []
        self.extra_env: dict[str, str] = {}

    @property
    def log(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self) -> "OperatorProcess":
        kubeconfig = self.cluster.operator_kubeconfig()
        self.process = processes.spawn(
            self.name,
            [
                sys.executable, "-m", "handoff", "operator",
                f"--kubeconfig={kubeconfig}",
                f"--metrics-address=127.0.0.1:{self.metrics_port}",
                f"--liveness=http://127.0.0.1:{self.health_port}/healthz",
                *([f"--redis-url={self.redis_url}"] if self.redis_url else []),
                "--notify-attempts=3",
                "--console-url=http://console.invalid",
                *self.extra_args,
            ],
            self.folder,
            env=os.environ | {"PYTHONUNBUFFERED": "1"} | self.extra_env,
        )  # fmt: skip
        processes.wait_until(self._healthy, 60, "the operator", self.log)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an evicted pod."""
        processes.end(self.process, None)
        self.process = None

    def stop(self) -> None:
        processes.end(self.process, 15)
        self.process = None

    def metrics(self) -> str:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            return str(r.read().decode())

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"the operator exited with {self.process.returncode}: see {self.log}"
            )
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.health_port}/healthz", timeout=1
            ) as r:
                return bool(r.status == 200)
        except OSError:
            return False


_CLIENTS: list[Any] = []


def redis_client(url: str) -> Any:
    """A blocking Redis client that is closed at interpreter exit (no leaked sockets)."""
    import redis  # noqa: PLC0415 - only the tests that talk to Redis need it

    client = redis.Redis.from_url(url)
    _CLIENTS.append(client)
    return client


def close_clients() -> None:
    while _CLIENTS:
        _CLIENTS.pop().close()


class ConsoleProcess:
    """``handoff console`` in a child process, for the namespaces a test uses."""

    def __init__(
        self, cluster: Cluster, folder: Path, namespaces: list[str], redis_url: str | None
    ) -> None:
        self.cluster = cluster
        self.folder = folder
        self.namespaces = namespaces
        self.redis_url = redis_url
        self.port = processes.free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []  # more ``handoff console`` flags
        self.extra_env: dict[str, str] = {}  # and environment (the Slack app's secrets)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "ConsoleProcess":
        control = self.cluster.control_plane
        token = control.service_account_token(OPERATOR_NAMESPACE, CONSOLE_ACCOUNT, 24)
        kubeconfig = control.write_kubeconfig(
            self.folder / "console.kubeconfig", {"handoff-console": token}
        )
        argv = [
            sys.executable, "-m", "handoff", "console", f"--kubeconfig={kubeconfig}",
            f"--listen=127.0.0.1:{self.port}", *(f"--namespace={ns}" for ns in self.namespaces),
            *([f"--redis-url={self.redis_url}"] if self.redis_url else []), *self.extra_args,
        ]  # fmt: skip
        self.process = processes.spawn(
            "console",
            argv,
            self.folder,
            env=os.environ | {"PYTHONUNBUFFERED": "1"} | self.extra_env,
        )
        processes.wait_until(self._healthy, 30, "the console", self.folder / "console.log")
        return self

    def stop(self) -> None:
        processes.end(self.process, 10, after_kill=5)
        self.process = None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False


def eventually(probe: Callable[[], T | None], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll ``probe`` until it returns something truthy; fail with ``what`` after ``timeout``.
    A KeyError or a NotFound is "not there yet" (a status the operator has not written, or an
    object it has not filed, when the read is faster than it), never the answer: the last one
    is in the failure's message."""
    deadline = time.monotonic() + timeout
    last: T | KeyError | NotFound | None = None
    while time.monotonic() < deadline:
        try:
            found = probe()
        except (KeyError, NotFound) as e:
            last = e
        else:
            if found:
                return found
            last = found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
