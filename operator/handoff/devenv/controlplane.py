"""etcd and a real kube-apiserver on loopback: the engine of ``handoff dev up`` and the tests.

TLS on every port the API server serves, RBAC authorization, the default admission chain (with
ValidatingAdmissionPolicy), ServiceAccount token signing, and static-token users as the
contract's table lists them. No controller manager runs: Handoff needs none of its loops.
"""

import json
import secrets
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from handoff.devenv import processes
from handoff.devenv.pki import ensure_pki

#: What the API server's admission answers until its informers have synced, after /readyz is 200.
NOT_YET_READY = "not yet ready to handle request"

#: The contract's people: user name -> groups.
USERS: dict[str, tuple[str, ...]] = {
    "admin": ("system:masters",),
    "alice": ("payments-approvers",),
    "bob": ("payments-approvers",),
    "carol": ("sre-approvers",),
    "mallory": (),
}
ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass
class ControlPlane:
    """One control plane whose files (certificates, data, logs, pids) live in ``folder``."""

    folder: Path
    bin_dir: Path
    etcd_port: int = 0
    peer_port: int = 0
    api_port: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    _children: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def pki(self) -> Path:
        return self.folder / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start etcd and kube-apiserver unless they run already; wait until both are ready."""
        for program in ("etcd", "kube-apiserver", "kubectl"):
            if not (self.bin_dir / program).exists():
                raise FileNotFoundError(
                    f"{self.bin_dir / program} is missing: run 'make controlplane' first"
                )
        self.folder.mkdir(parents=True, exist_ok=True)
        self._load_or_init_state()
        ensure_pki(self.pki)
        if processes.read_pid(self.folder / "etcd.pid") is None:
            self._start_etcd()
        if processes.read_pid(self.folder / "kube-apiserver.pid") is None:
            self._start_apiserver()
        processes.wait_until(self.ready, 90, "kube-apiserver", self.folder / "kube-apiserver.log")
        self.write_kubeconfig(self.folder / "admin.kubeconfig", {"admin": self.tokens["admin"]})

    def stop(self) -> None:
        processes.stop(self.folder / "kube-apiserver.pid")
        processes.stop(self.folder / "etcd.pid")
        self._reap()

    def _reap(self) -> None:
        """Collect the exit status of children this object started (no zombies, no warnings)."""
        for child in self._children:
            if child.poll() is None:
                child.wait(5)
        self._children = [c for c in self._children if c.returncode is None]

    def restart_apiserver(self) -> None:
        """Stop and start kube-apiserver alone; etcd keeps the data."""
        processes.stop(self.folder / "kube-apiserver.pid")
        # Collect the stopped apiserver only: _reap() would wait on etcd, which keeps running.
        self._children = [c for c in self._children if c.poll() is None]
        self._start_apiserver()
        processes.wait_until(self.ready, 90, "kube-apiserver", self.folder / "kube-apiserver.log")

    def running(self) -> dict[str, int | None]:
        return {
            name: processes.read_pid(self.folder / f"{name}.pid")
            for name in ("etcd", "kube-apiserver")
        }

    def ready(self) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(  # noqa: S310 - an https URL built here
            f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.tokens['admin']}"}
        )
        try:
            with urllib.request.urlopen(request, context=context, timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    # -- clients -----------------------------------------------------------------------------

    def kubectl(
        self, *args: str, token: str | None = None, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as admin, or as whoever ``token`` belongs to."""
        argv = [
            str(self.bin_dir / "kubectl"),
            f"--server={self.server}",
            f"--certificate-authority={self.ca_file}",
            f"--token={token or self.tokens['admin']}",
            *args,
        ]
        result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)  # noqa: S603
        waited = 0.0
        while result.returncode != 0 and NOT_YET_READY in result.stderr and waited < 60:
            # /readyz says nothing of the admission plugins' own caches: a busy machine sees this
            # for a while after ready (ValidatingAdmissionPolicy waits 10 s, then refuses).
            time.sleep(1)
            waited += 1
            result = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)  # noqa: S603
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def service_account_token(self, namespace: str, name: str, hours: int = 720) -> str:
        """A bound token for ``namespace/name`` from the TokenRequest API."""
        return self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={hours}h"
        ).stdout.strip()

    def write_kubeconfig(
        self,
        path: Path,
        identities: dict[str, str],
        namespace: str = "default",
        current: str | None = None,
    ) -> Path:
        """A kubeconfig with one context per identity (context name -> bearer token)."""
        cluster = "handoff-dev"
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": cluster,
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": n, "user": {"token": t}} for n, t in identities.items()],
            "contexts": [
                {"name": n, "context": {"cluster": cluster, "user": n, "namespace": namespace}}
                for n in identities
            ],
            "current-context": current or next(iter(identities)),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # -- internals ---------------------------------------------------------------------------

    def _load_or_init_state(self) -> None:
        state_file = self.folder / "state.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            self.etcd_port, self.peer_port, self.api_port = (
                state["etcd_port"], state["peer_port"], state["api_port"],
            )  # fmt: skip
            self.tokens = state["tokens"]
            return
        self.etcd_port = self.etcd_port or processes.free_port()
        self.peer_port = self.peer_port or processes.free_port()
        self.api_port = self.api_port or processes.free_port()
        self.tokens = {user: secrets.token_urlsafe(24) for user in USERS}
        state = {
            "etcd_port": self.etcd_port,
            "peer_port": self.peer_port,
            "api_port": self.api_port,
            "tokens": self.tokens,
        }
        state_file.touch(mode=0o600)
        state_file.write_text(json.dumps(state, indent=2))
        lines = [
            f'{self.tokens[user]},{user},{user},"{",".join(groups)}"'
            for user, groups in USERS.items()
        ]
        tokens_csv = self.pki / "tokens.csv"
        self.pki.mkdir(parents=True, exist_ok=True)
        tokens_csv.touch(mode=0o600)
        tokens_csv.write_text("\n".join(lines) + "\n")

    def _spawn(self, name: str, argv: list[str], folder: Path) -> None:
        self._children.append(processes.spawn(name, argv, folder))

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=handoff",
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=handoff={peer}",
                "--log-level=warn",
                "--quota-backend-bytes=4294967296",
            ],
            self.folder,
        )

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer={ISSUER}",
                f"--api-audiences={ISSUER}",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                f"--cert-dir={pki}",
                "--allow-privileged=false",
                "--profiling=false",
                "--enable-priority-and-fairness=false",
                "--endpoint-reconciler-type=none",
                "--v=1",
            ],
            self.folder,
        )
