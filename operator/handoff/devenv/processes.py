"""Start, find and stop the local environment's processes by pid file."""

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

# What this process started, by pid: ``stop`` collects their exit status, so a stopped child
# leaves no zombie and no "subprocess is still running" warning behind.
_started: dict[int, "subprocess.Popen[bytes]"] = {}
_detach = False  # see detached()
# Starts argv[2:] in a session of its own, writes its pid to argv[1], and exits: the server is
# then nobody's child here, so it outlives ``handoff dev up`` without a warning or a zombie.
_LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ, setsid=True)\n"
    "open(sys.argv[1], 'w').write(str(pid))\n"
)


@contextlib.contextmanager
def detached() -> Iterator[None]:
    """Within it, ``spawn`` starts servers that are meant to outlive this process (``handoff dev
    up``'s): the Popen it returns is the launcher's, already finished."""
    global _detach  # noqa: PLW0603 - one switch for every spawn of the environment's start
    _detach, before = True, _detach
    try:
        yield
    finally:
        _detach = before


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_and_password(state: Path) -> tuple[int, str]:
    """A loopback port and a password, chosen once and kept in ``state`` (mode 0600), so a
    server started again comes back on the same address with the same secret."""
    if state.exists():
        kept_port, kept_password = state.read_text().split(":", 1)
        return int(kept_port), kept_password.strip()
    port, password = free_port(), secrets.token_urlsafe(18)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.touch(mode=0o600)
    state.write_text(f"{port}:{password}")
    return port, password


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); it is not alive for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def read_pid(pidfile: Path) -> int | None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = int(pidfile.read_text().strip())
        return pid if alive(pid) else None
    return None


def spawn(
    name: str,
    argv: Sequence[str],
    folder: Path,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, output to ``folder/name.log``, pid in ``name.pid``."""
    folder.mkdir(parents=True, exist_ok=True)
    pidfile = folder / f"{name}.pid"
    launch = [sys.executable, "-c", _LAUNCHER, str(pidfile)] if _detach else []
    with open(folder / f"{name}.log", "ab") as log:
        process = subprocess.Popen(  # noqa: S603 - argv is built by us, never from user input
            [*launch, *argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(env) if env is not None else None,
        )
    if _detach:
        if process.wait(30) != 0:
            raise RuntimeError(f"could not start {Path(argv[0]).name}; see {folder / name}.log")
        return process
    pidfile.write_text(str(process.pid))
    _started[process.pid] = process
    return process


def end(
    process: "subprocess.Popen[bytes] | None", grace: float | None, after_kill: float = 10
) -> None:
    """End a process group this program started: SIGTERM and ``grace`` seconds to finish, then
    SIGKILL; ``grace`` None kills at once (a crash, an evicted pod)."""
    if process is None or process.poll() is not None:
        return
    if grace is not None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(after_kill)


def stop(pidfile: Path, timeout: float = 10.0, sig: int = signal.SIGTERM) -> bool:
    """Stop the process of ``pidfile`` (TERM, then KILL); True when one was running."""
    pid = read_pid(pidfile)
    pidfile.unlink(missing_ok=True)
    if pid is None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    child = _started.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(5)
    return True


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, log: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise TimeoutError(f"{what} was not ready after {timeout:.0f}s{tail}")
