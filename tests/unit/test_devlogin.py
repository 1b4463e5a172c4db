"""One-time sign-in links of the local environment: the files behind them (the console's side
runs against the real API server in tests/integration/test_first_run.py)."""

import asyncio
import stat
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from handoff.adapters.kube import Credentials
from handoff.console.app import Config, make_app
from handoff.console.devlogin import LIFETIME, issue, redeem

TOKEN = "alice-secret-token"  # noqa: S105 - a test value, no real secret


def test_a_link_works_once(tmp_path: Path) -> None:
    code = issue(tmp_path, "alice", TOKEN, now=1000.0)
    ticket = redeem(tmp_path, code, now=1001.0)
    assert ticket is not None
    assert (ticket.user, ticket.token) == ("alice", TOKEN)
    assert redeem(tmp_path, code, now=1002.0) is None
    assert list((tmp_path / "logins").iterdir()) == []


def test_a_link_past_its_lifetime_is_refused_and_gone(tmp_path: Path) -> None:
    code = issue(tmp_path, "alice", TOKEN, now=1000.0)
    assert redeem(tmp_path, code, now=1000.0 + LIFETIME + 1) is None
    assert redeem(tmp_path, code, now=1001.0) is None  # not even with the clock turned back
    assert LIFETIME <= 600  # short: minutes, not a session


def test_the_code_is_no_token_and_the_token_is_kept_private(tmp_path: Path) -> None:
    code = issue(tmp_path, "alice", TOKEN, now=1000.0)
    assert TOKEN not in code
    (ticket,) = (tmp_path / "logins").iterdir()
    assert code not in ticket.name  # the file is named after the code's digest
    assert stat.S_IMODE(ticket.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "logins").stat().st_mode) == 0o700


def test_codes_that_are_not_codes_find_nothing(tmp_path: Path) -> None:
    code = issue(tmp_path, "alice", TOKEN, now=1000.0)
    (ticket,) = (tmp_path / "logins").iterdir()
    for guess in ("", "x", ticket.name, "../" + ticket.name, code[:-1], code + "A", code.upper()):
        assert redeem(tmp_path, guess, now=1001.0) is None
    assert redeem(tmp_path, code, now=1001.0) is not None  # the real one still works


def test_issuing_sweeps_expired_links(tmp_path: Path) -> None:
    issue(tmp_path, "alice", TOKEN, now=1000.0)
    fresh = issue(tmp_path, "bob", "bob-token", now=1000.0 + LIFETIME + 1)
    assert len(list((tmp_path / "logins").iterdir())) == 1
    ticket = redeem(tmp_path, fresh, now=1000.0 + LIFETIME + 2)
    assert ticket is not None
    assert ticket.user == "bob"


def test_another_folder_redeems_nothing(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    code = issue(tmp_path / "dev", "alice", TOKEN, now=1000.0)
    assert redeem(tmp_path / "elsewhere", code, now=1001.0) is None
    assert redeem(tmp_path / "dev", code, now=1001.0) is not None


def answer(dev_logins: Path | None, code: str) -> tuple[int, str, bool]:
    """A console (its API server unreachable) asked for ``/dev-login/CODE``: status, page,
    and whether it set a session cookie."""

    async def scenario() -> tuple[int, str, bool]:
        config = Config(
            credentials=Credentials(server="https://127.0.0.1:9", verify=False),
            namespaces=["agents"], dev_logins=dev_logins,
        )  # fmt: skip
        async with TestClient(TestServer(make_app(config))) as client:
            response = await client.get(f"/dev-login/{code}", allow_redirects=False)
            return response.status, await response.text(), "Set-Cookie" in response.headers

    return asyncio.run(scenario())


# The console keeps its own state under string keys (app["config"]): aiohttp recommends AppKeys.
QUIET_KEYS = "ignore::aiohttp.web_exceptions.NotAppKeyWarning"


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_console_not_started_for_the_dev_environment_has_no_such_page(tmp_path: Path) -> None:
    code = issue(tmp_path, "alice", TOKEN, now=time.time())
    assert answer(None, code)[0] == 404
    assert redeem(tmp_path, code, now=time.time()) is not None  # untouched


@pytest.mark.filterwarnings(QUIET_KEYS)
def test_a_used_link_is_spent_even_when_the_cluster_cannot_check_it(tmp_path: Path) -> None:
    code = issue(tmp_path, "alice", TOKEN, now=time.time())
    status, page, cookie = answer(tmp_path, code)
    assert (status, cookie) == (503, False)
    assert "could not check the token" in page
    status, page, cookie = answer(tmp_path, code)
    assert (status, cookie) == (410, False)
    assert "used already or has expired" in page
    assert "handoff dev login NAME" in page
