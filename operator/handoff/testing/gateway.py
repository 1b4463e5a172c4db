"""``handoff gateway`` in a child process, as its own ServiceAccount, for tests."""

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

from handoff.devenv import processes
from handoff.devenv.gateway import gateway_redis_url
from handoff.devenv.manifests import GATEWAY_ACCOUNT, OPERATOR_NAMESPACE
from handoff.testing.cluster import Cluster


class GatewayProcess:
    def __init__(
        self, cluster: Cluster, folder: Path, redis_url: str, wait: float = 3.0,
        args: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.cluster = cluster
        self.args = args  # more of handoff gateway's flags
        self.folder = folder
        self.redis_url = redis_url
        self.wait = wait
        self.port = processes.free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def log(self) -> Path:
        return self.folder / "gateway.log"

    def start(self) -> "GatewayProcess":
        control = self.cluster.control_plane
        token = control.service_account_token(OPERATOR_NAMESPACE, GATEWAY_ACCOUNT, 24)
        kubeconfig = control.write_kubeconfig(
            self.folder / "gateway.kubeconfig", {"handoff-gateway": token}
        )
        argv = [
            sys.executable, "-m", "handoff", "gateway", f"--kubeconfig={kubeconfig}",
            f"--listen=127.0.0.1:{self.port}",
            f"--redis-url={gateway_redis_url(self.redis_url)}",
            f"--wait={self.wait}", *self.args,
        ]  # fmt: skip
        self.process = processes.spawn(
            "gateway", argv, self.folder, env=os.environ | {"PYTHONUNBUFFERED": "1"}
        )
        processes.wait_until(self._healthy, 60, "the gateway", self.log)
        return self

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or an evicted pod."""
        processes.end(self.process, None)
        self.process = None

    def stop(self) -> None:
        processes.end(self.process, 10)
        self.process = None

    def healthz(self) -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return 0

    def _healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {self.process.returncode}: see {self.log}")
        return self.healthz() == 200
