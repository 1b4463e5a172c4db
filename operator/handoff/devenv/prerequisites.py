"""What ``handoff dev up`` needs besides the control plane, found before anything starts.

A missing server stops the environment with one sentence that says which, where it was looked
for, and how to get it, rather than a skipped line now and a crash later in an agent.
"""

import os
import shutil
from pathlib import Path

from handoff.devenv.postgres import find_bin_dir, search_path


class NotReady(RuntimeError):
    """The environment cannot be ready: the message says what is missing and what to do."""


def redis_server() -> Path:
    """The ``redis-server`` program, from PATH."""
    found = shutil.which("redis-server")
    if found is None:
        path = os.environ.get("PATH", "")
        raise NotReady(
            f"Redis is not installed: there is no redis-server on PATH ({path})."
            " Install it with 'sudo apt-get install redis-server', or run 'make demo', which"
            " installs it."
        )
    return Path(found)


def postgres_bin_dir() -> Path:
    """The folder of PostgreSQL's server programs (postgres, initdb, pg_ctl)."""
    found = find_bin_dir()
    if found is None:
        raise NotReady(
            f"PostgreSQL is not installed: there is no postgres program in {search_path()}."
            " Install it with 'sudo apt-get install postgresql', or run 'make demo', which"
            " installs it; or start without it: 'handoff dev up --without-postgres'."
        )
    return found


def did_not_start(what: str, error: Exception, log: Path, instead: str = "") -> NotReady:
    """A server that is installed but would not start: its own words, where its log is, and
    what else to do (``instead``)."""
    first = str(error).splitlines()[0] if str(error) else type(error).__name__
    see = f"; its log is {log}" if log.exists() else ""
    return NotReady(f"{what} did not start ({first}){see}.{instead}")
