"""Credentials that expire, rotate on disk or are revoked under a running client (issue 22).

A real exec credential plugin (exec_plugin.py) mints ServiceAccount tokens with the TokenRequest
API, each bound to a Secret: deleting the Secret revokes the token, and the API server answers
401. Token files and client certificates are rewritten under a client that stays open.
"""

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from handoff.adapters.kube import Credentials, KubeApi, KubeError
from handoff.sdk import Agent, HandoffError
from handoff.testing.cluster import Cluster, OperatorProcess

from tests.integration.helpers import AGENT, apply_ready_policy, policy
from tests.integration.renewing import (
    Plugin,
    bound_token,
    client_certificate,
    replace,
    revoke,
    whoami,
    write_kubeconfig,
)

pytestmark = pytest.mark.integration


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def test_the_plugin_runs_once_while_its_credential_lasts(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    plugin = Plugin(cluster, tmp_path, f"{namespace}/{AGENT}", expires_in=3600)

    async def scenario() -> list[str]:
        async with KubeApi(Credentials.load(str(plugin.kubeconfig()))) as api:
            return list(await asyncio.gather(*(whoami(api) for _ in range(20))))

    names = run(scenario())
    assert set(names) == {f"system:serviceaccount:{namespace}:{AGENT}"}
    assert plugin.runs == 1  # twenty concurrent calls, one run between them


def test_the_plugin_runs_again_before_the_expiry_it_gave(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    plugin = Plugin(cluster, tmp_path, f"{namespace}/{AGENT}", expires_in=2)

    async def scenario() -> None:
        async with KubeApi(Credentials.load(str(plugin.kubeconfig()))) as api:
            for _ in range(400):  # the token lives 600 s: no 401, the expiry alone renews
                assert await whoami(api) == f"system:serviceaccount:{namespace}:{AGENT}"
                assert not api.unauthorized
                if plugin.runs >= 4:
                    return
                await asyncio.sleep(0.1)
            raise AssertionError(f"400 calls and the plugin ran {plugin.runs} times")

    run(scenario())


def test_a_revoked_credential_runs_the_plugin_again_and_the_call_succeeds(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    plugin = Plugin(cluster, tmp_path, f"{namespace}/{AGENT}", expires_in=3600)
    me = f"system:serviceaccount:{namespace}:{AGENT}"

    async def scenario() -> None:
        async with KubeApi(Credentials.load(str(plugin.kubeconfig()))) as api:
            assert await whoami(api) == me
            plugin.revoke(1)  # the token of run 1 is refused from now on
            assert await whoami(api) == me  # a 401, the plugin again, the same call once more
            assert plugin.runs == 2
            assert not api.unauthorized
            plugin.revoke(2)
            # Several calls meet the refusal at once: one run between them.
            names = await asyncio.gather(*(whoami(api) for _ in range(8)))
            assert set(names) == {me}
            assert plugin.runs == 3

    run(scenario())


def test_a_plugin_that_cannot_renew_says_which_plugin_and_why(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    plugin = Plugin(cluster, tmp_path, f"{namespace}/{AGENT}", expires_in=3600)
    kubeconfig = str(plugin.kubeconfig())

    async def scenario() -> KubeError:
        async with KubeApi(Credentials.load(kubeconfig)) as api:
            await whoami(api)
            plugin.revoke(1)
            plugin.fail("error: the identity provider said: login expired\nsecond line\n")
            with pytest.raises(KubeError) as caught:
                await whoami(api)
            assert api.unauthorized
            return caught.value

    error = run(scenario())
    assert error.status == 401
    assert f"plugin {sys.executable} exited with 3" in error.message
    assert "the identity provider said: login expired" in error.message
    assert "second line" not in error.message
    assert plugin.runs == 2

    # The same through the SDK and the kubectl plugin: a sentence, no traceback, no bare 401.
    async def agent() -> None:
        async with Agent(namespace, AGENT, kubeconfig=kubeconfig):
            pass

    with pytest.raises(HandoffError, match="exited with 3: error: the identity provider said"):
        run(agent())
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kubectl-handoff"), "pending"],
        capture_output=True, text=True, check=False, timeout=60,
        env=os.environ | {"KUBECONFIG": kubeconfig},
    )  # fmt: skip
    assert result.returncode == 1
    assert "exited with 3: error: the identity provider said: login expired" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_token_file_rewritten_on_disk_is_read_again(cluster: Cluster, tmp_path: Path) -> None:
    namespace = cluster.new_namespace(agents=("first", "second"))
    token_file = tmp_path / "token"
    tokens = {"first-1": bound_token(cluster, f"{namespace}/first", "first-1")}
    token_file.write_text(tokens["first-1"])
    kubeconfig = write_kubeconfig(
        cluster, tmp_path / "kubeconfig", {"tokenFile": str(token_file)}, namespace
    )
    who = f"system:serviceaccount:{namespace}:"

    async def scenario() -> None:
        async with KubeApi(Credentials.load(str(kubeconfig))) as api:
            assert await whoami(api) == who + "first"
            # Rewritten in place: the next call reads it (no refusal needed: both are valid).
            tokens["second-1"] = bound_token(cluster, f"{namespace}/second", "second-1")
            token_file.write_text(tokens["second-1"] + "\n")
            assert await whoami(api) == who + "second"
            # Renamed over, as the kubelet rotates a projected token; the old one revoked.
            tokens["first-2"] = bound_token(cluster, f"{namespace}/first", "first-2")
            replace(token_file, tokens["first-2"])
            revoke(cluster, namespace, "second-1", tokens["second-1"])
            assert await whoami(api) == who + "first"
            # Revoked and not rewritten: read again after the refusal, then a sentence.
            revoke(cluster, namespace, "first-2", tokens["first-2"])
            with pytest.raises(KubeError) as caught:
                await whoami(api)
            assert caught.value.status == 401
            assert f"refused the token in {token_file}, also when read again" in str(caught.value)
            # And it recovers as soon as a valid token is there.
            replace(token_file, bound_token(cluster, f"{namespace}/second", "second-2"))
            assert await whoami(api) == who + "second"

    run(scenario())


def test_client_certificate_files_rewritten_on_disk_are_read_again(
    cluster: Cluster, tmp_path: Path
) -> None:
    cert, key = tmp_path / "client.crt", tmp_path / "client.key"
    alice_cert, alice_key = client_certificate(cluster, "alice", tmp_path)
    bob_cert, bob_key = client_certificate(cluster, "bob", tmp_path)
    cert.write_bytes(alice_cert.read_bytes())
    key.write_bytes(alice_key.read_bytes())
    user = {"client-certificate": str(cert), "client-key": str(key)}
    kubeconfig = write_kubeconfig(cluster, tmp_path / "kubeconfig", user, "default")

    async def scenario() -> None:
        async with KubeApi(Credentials.load(str(kubeconfig))) as api:
            assert await whoami(api) == "alice"
            replace(key, bob_key.read_text())
            replace(cert, bob_cert.read_text())
            assert await whoami(api) == "bob"

    run(scenario())


def test_an_agent_held_open_across_expirations_and_a_revocation_keeps_working(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    apply_ready_policy(cluster, policy(namespace))
    plugin = Plugin(cluster, tmp_path, f"{namespace}/{AGENT}", expires_in=2)
    kubeconfig = str(plugin.kubeconfig())

    async def scenario() -> list[Any]:
        tickets = []
        async with Agent(namespace, AGENT, kubeconfig=kubeconfig) as agent:
            while plugin.runs < 4:  # proposals across three expirations of the credential
                tickets.append(await agent.propose("db.query", summary="count orders"))
                assert len(tickets) < 60, f"the plugin ran {plugin.runs} times"
                await asyncio.sleep(0.5)
            before = plugin.runs
            plugin.revoke(before)  # the credential in hand is refused from now on
            tickets.append(await agent.propose("db.query", summary="count orders again"))
            assert plugin.runs == before + 1
            decided: list[str] = []

            async def receive() -> None:
                async for decision in agent.decisions(block=1):
                    decided.append(decision.name)
                    if len(decided) == len(tickets):
                        return

            await asyncio.wait_for(receive(), 60)
            assert sorted(decided) == sorted(t.name for t in tickets)
        return tickets

    tickets = run(scenario())
    assert all(t.approved for t in tickets)
