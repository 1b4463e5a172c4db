"""A private Redis server on loopback with append-only persistence, for dev and tests.

The default user has a password, so the only way in for an agent is its own ACL user.
Bounds: ``maxmemory`` with ``noeviction`` (when full, writes are refused; nothing is evicted,
because Handoff's own dedup marks carry TTLs too and any ``volatile-*`` policy could drop them),
one database (an agent cannot SELECT its way out of database 0), and no value over 1 MiB
(``proto-max-bulk-len``'s minimum).
"""

import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from handoff.devenv import processes

BOUNDS = ("maxmemory-policy noeviction", "databases 1", "proto-max-bulk-len 1mb")


@dataclass
class RedisServer:
    folder: Path
    port: int = 0
    password: str = ""
    maxmemory: str = "512mb"
    _child: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The admin URL (the default user)."""
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.folder / "redis.pid"

    def start(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port, self.password = processes.port_and_password(self.folder / "redis.conn")
        if processes.read_pid(self.pidfile) is None:
            users = self.folder / "users.acl"
            if (
                not users.exists()
            ):  # the agents' users are saved here (ACL SAVE) and survive restarts
                users.touch(mode=0o600)
                users.write_text(f"user default on >{self.password} ~* &* +@all\n")
            config = self.folder / "redis.conf"
            config.touch(mode=0o600)
            config.write_text(
                "\n".join([
                    f"port {self.port}", "bind 127.0.0.1", f"dir {self.folder}",
                    "appendonly yes", "appendfsync everysec", 'save ""',
                    f"aclfile {users}", "protected-mode yes", *BOUNDS,
                    f"maxmemory {self.maxmemory}",
                ]) + "\n"
            )  # fmt: skip
            data = self.folder
            self._child = processes.spawn("redis", [server, str(config)], data)
        processes.wait_until(self.ping, 20, "redis", self.folder / "redis.log")

    def ping(self) -> bool:
        cli = shutil.which("redis-cli")
        if cli is None:
            return processes.read_pid(self.pidfile) is not None
        result = subprocess.run(  # noqa: S603 - our own redis-cli against our own server
            [cli, "-p", str(self.port), "--no-auth-warning", "-a", self.password, "ping"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.stdout.strip() == "PONG"

    def stop(self) -> None:
        processes.stop(self.pidfile)
        self._reap()

    def kill(self) -> None:
        """SIGKILL, as a crash: what was fsynced to the append-only file survives."""
        processes.stop(self.pidfile, sig=signal.SIGKILL, timeout=5)
        self._reap()

    def _reap(self) -> None:
        if self._child is not None:
            self._child.wait(5)
            self._child = None
