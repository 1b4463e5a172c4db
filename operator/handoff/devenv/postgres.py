"""A private PostgreSQL server on loopback, from Debian's packages, for `handoff dev up` and tests.

PostgreSQL refuses to run as root, so when we are root the server runs as the ``postgres`` user
that the Debian package creates. TCP connections need a password (scram-sha-256).
"""

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from handoff.devenv import processes

ADMIN = "handoff_admin"


DEBIAN_BIN = "/usr/lib/postgresql/*/bin"


def find_bin_dir() -> Path | None:
    """Where PostgreSQL's server programs are: $HANDOFF_PG_BIN when set (and only there), else
    Debian's /usr/lib/postgresql/<major>/bin (newest first), else the folder of a ``postgres``
    on PATH (other distributions, Homebrew)."""
    if chosen := os.environ.get("HANDOFF_PG_BIN"):
        return Path(chosen) if (Path(chosen) / "postgres").is_file() else None
    found = sorted(glob.glob(f"{DEBIAN_BIN}/postgres"), reverse=True)
    if found:
        return Path(found[0]).parent
    on_path = shutil.which("postgres")
    return Path(on_path).parent if on_path else None


def search_path() -> str:
    """Where :func:`find_bin_dir` looks, in words, for messages."""
    if chosen := os.environ.get("HANDOFF_PG_BIN"):
        return f"{chosen} ($HANDOFF_PG_BIN)"
    return f"{DEBIAN_BIN} nor on PATH ({os.environ.get('PATH', '')})"


@dataclass
class PostgresServer:
    folder: Path
    port: int = 0
    password: str = ""

    @property
    def data(self) -> Path:
        return self.folder / "pgdata"

    @property
    def url(self) -> str:
        return f"postgresql://{ADMIN}:{self.password}@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError(
                f"PostgreSQL is not installed: no postgres in {search_path()}"
                " (apt-get install postgresql)"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port, self.password = processes.port_and_password(self.folder / "postgres.conn")
        if not (self.data / "PG_VERSION").exists():
            self._initdb(bin_dir)
        if not self.running():
            log = str(self.folder / "postgres.log")
            options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1"
            self._run(
                str(bin_dir / "pg_ctl"), "-D", str(self.data), "-l", log, "-o", options,
                "-w", "-t", "60", "start",
            )  # fmt: skip
        processes.wait_until(self.running, 30, "postgres", self.folder / "postgres.log")

    def stop(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is not None and (self.data / "postmaster.pid").exists():
            self._run(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "fast",
                "-w",
                "stop",
                check=False,
            )

    def pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and processes.alive(pid)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the admin (for fixtures and the demo)."""
        psql = shutil.which("psql") or str((find_bin_dir() or Path("/usr/bin")) / "psql")
        result = subprocess.run(  # noqa: S603 - our own psql against our own server
            [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", ADMIN, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql],
            env=os.environ | {"PGPASSWORD": self.password},
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip())
        return result.stdout

    def _initdb(self, bin_dir: Path) -> None:
        pwfile = self.folder / "pwfile"
        pwfile.write_text(self.password + "\n")
        self._chown(self.folder)
        self._run(
            str(bin_dir / "initdb"), "-D", str(self.data), "-U", ADMIN, f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
        )  # fmt: skip
        pwfile.unlink()

    def _chown(self, path: Path) -> None:
        if os.getuid() == 0:
            shutil.chown(path, "postgres", "postgres")
            for child in path.rglob("*"):
                shutil.chown(child, "postgres", "postgres")

    def _run(self, *argv: str, check: bool = True) -> None:
        command = list(argv)
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{Path(argv[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}"
            )
