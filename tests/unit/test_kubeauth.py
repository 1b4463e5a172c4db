"""The credential provider with a fixed clock and real plugin processes (small scripts)."""

import asyncio
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from handoff.adapters.kubeauth import CredentialError, Credentials
from handoff.adapters.kubeconfig import Cluster, ExecPlugin, User

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
ONE, TWO, SIGNED_IN = "one", "two, longer", "t"
SCRIPT = """
import json, os, sys
from pathlib import Path
runs = Path(sys.argv[1])
runs.write_text(runs.read_text() + "x" if runs.exists() else "x")
answer = json.loads(Path(sys.argv[2]).read_text())
if "exit" in answer:
    sys.stderr.write(answer["stderr"])
    sys.exit(answer["exit"])
print(answer["stdout"] if "stdout" in answer else json.dumps(answer))
"""


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def plugin(tmp_path: Path, answer: dict[str, Any], **extra: Any) -> tuple[Credentials, Clock, Path]:
    (tmp_path / "plugin.py").write_text(SCRIPT)
    (tmp_path / "answer.json").write_text(json.dumps(answer))
    runs = tmp_path / "runs"
    exec_ = ExecPlugin(
        command=sys.executable,
        args=(str(tmp_path / "plugin.py"), str(runs), str(tmp_path / "answer.json")),
        **extra,
    )
    clock = Clock()
    user = User(
        exec=exec_, description=f"the credentials of the exec credential plugin {sys.executable}"
    )
    return (
        Credentials("https://k", cluster=Cluster("https://k"), user=user, clock=clock),
        clock,
        runs,
    )


def credential(token: str, expires: datetime | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"token": token}
    if expires:
        status["expirationTimestamp"] = expires.isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    }


def count(runs: Path) -> int:
    return len(runs.read_text()) if runs.exists() else 0


def test_renewed_shortly_before_the_expiry_it_was_given(tmp_path: Path) -> None:
    auth, clock, runs = plugin(tmp_path, credential("one", NOW + timedelta(minutes=15)))

    async def scenario() -> None:
        first = await auth.current()
        assert first.token == ONE
        assert first.renew_at == NOW + timedelta(minutes=15) - timedelta(seconds=30)
        clock.now = NOW + timedelta(minutes=14)
        assert await auth.current() is first
        assert count(runs) == 1
        (tmp_path / "answer.json").write_text(
            json.dumps(credential("two", NOW + timedelta(hours=1)))
        )
        clock.now = first.renew_at
        assert (await auth.current()).token == "two"  # noqa: S105 - a test token
        assert count(runs) == 2

    asyncio.run(scenario())


def test_a_short_lifetime_is_renewed_a_fifth_early(tmp_path: Path) -> None:
    auth, _, _ = plugin(tmp_path, credential("one", NOW + timedelta(seconds=10)))
    held = asyncio.run(auth.current())
    assert held.renew_at == NOW + timedelta(seconds=8)


def test_one_renewal_for_callers_that_saw_the_same_refusal(tmp_path: Path) -> None:
    auth, _, runs = plugin(tmp_path, credential("one"))

    async def scenario() -> None:
        first = await auth.current()
        (tmp_path / "answer.json").write_text(json.dumps(credential("two")))
        renewed = await asyncio.gather(*(auth.refresh(first) for _ in range(10)))
        assert {r.token for r in renewed} == {"two"}
        assert count(runs) == 2
        # The plugin's own cache gives the same token again: nothing new, no retry.
        assert await auth.refresh(renewed[0]) is renewed[0]

    asyncio.run(scenario())


def test_a_login_hook_gets_new_credentials_after_a_refusal(tmp_path: Path) -> None:
    auth, clock, runs = plugin(tmp_path, credential("one", NOW + timedelta(minutes=15)))

    async def scenario() -> None:
        first, until, why = await auth.login()
        assert (first.token, until, why) == ("one", first.renew_at, "the first login")
        (tmp_path / "answer.json").write_text(
            json.dumps(credential("two", NOW + timedelta(hours=1)))
        )
        second, _, why = await auth.login()  # before the expiry: kopf saw a 401
        assert (second.token, why) == ("two", "the API server refused the last ones")
        clock.now = NOW + timedelta(hours=2)
        (tmp_path / "answer.json").write_text(
            json.dumps(credential("three", NOW + timedelta(hours=3)))
        )
        _, _, why = await auth.login()
        assert why == "the last ones were due"
        assert count(runs) == 3

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("answer", "extra", "said"),
    [
        ({"exit": 3, "stderr": "\nlogin expired: run aws sso login\nmore\n"}, {},
         "exited with 3: login expired: run aws sso login$"),
        ({"exit": 1, "stderr": ""}, {}, "exited with 1: nothing on stderr"),
        ({"stdout": "not json"}, {}, "did not print an ExecCredential"),
        ({"kind": "ExecCredential", "status": {}}, {}, "neither a token nor a client certificate"),
        (credential("t"), {"interactive": "Always"}, "wants a terminal"),
    ],
)  # fmt: skip
def test_a_plugin_that_fails_says_which_and_why(
    tmp_path: Path, answer: dict[str, Any], extra: dict[str, Any], said: str
) -> None:
    auth, _, _ = plugin(tmp_path, answer, **extra)
    with pytest.raises(CredentialError, match=said) as caught:
        asyncio.run(auth.current())
    if "exit" in answer:
        assert f"the exec credential plugin {sys.executable}" in str(caught.value)


def test_a_missing_plugin_gives_its_install_hint(tmp_path: Path) -> None:
    user = User(exec=ExecPlugin(command=str(tmp_path / "gke-gcloud-auth-plugin"),
                                install_hint="Install it with gcloud components install."))  # fmt: skip
    auth = Credentials("https://k", cluster=Cluster("https://k"), user=user)
    with pytest.raises(CredentialError, match=r"No such file.*; Install it with gcloud"):
        asyncio.run(auth.current())


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("one\n")
    user = User(token_file=str(token), description=f"the token in {token}")
    auth = Credentials("https://k", cluster=Cluster("https://k"), user=user)

    async def scenario() -> None:
        first = await auth.current()
        assert first.token == ONE
        assert await auth.current() is first  # unchanged: not read again
        assert await auth.refresh(first) is first  # refused, but nothing new on disk
        token.write_text(TWO + "\n")
        assert (await auth.current()).token == TWO
        token.unlink()
        with pytest.raises(CredentialError, match=f"cannot read the token in {token}"):
            await auth.current()

    asyncio.run(scenario())


def test_a_static_token_cannot_be_renewed_and_says_so() -> None:
    auth = Credentials("https://k", token=SIGNED_IN)
    held = asyncio.run(auth.current())
    assert asyncio.run(auth.refresh(held)) is held
    assert not auth.renewable
    assert "use a fresh kubeconfig" in auth.refused()


def test_a_plugin_that_hangs_is_stopped_and_said_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = tmp_path / "hang.py"
    script.write_text(
        "import os, sys, time\n"
        f"open({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    monkeypatch.setattr("handoff.adapters.kubeauth.PLUGIN_TIMEOUT", 1.0)
    user = User(exec=ExecPlugin(command=sys.executable, args=(str(script),)))
    auth = Credentials("https://k", cluster=Cluster("https://k"), user=user)
    with pytest.raises(CredentialError, match="did not answer within 1 s"):
        asyncio.run(auth.current())
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(pid, 0)
