"""The operator's and the console's own credentials renew under them (issue 22): kopf's watches
log in again at the expiry they were given and after a 401, and the operator's writes, which
share the same credentials, keep going.

These tests run their own operators, so they use a control plane of their own: the session's
operator would otherwise decide everything first and hide a stalled one.
"""

import http.client
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from handoff.devenv.manifests import CONSOLE_ACCOUNT, OPERATOR_ACCOUNT, OPERATOR_NAMESPACE
from handoff.testing.cluster import Cluster, ConsoleProcess, OperatorProcess, eventually

from tests.integration.helpers import apply_ready_policy, file, policy, wait_for
from tests.integration.renewing import Plugin, bound_token, replace, revoke, write_kubeconfig

pytestmark = pytest.mark.integration
OPERATOR = f"{OPERATOR_NAMESPACE}/{OPERATOR_ACCOUNT}"
LOGIN = "kopf's watches log in ("  # the operator's login hook, each time kopf runs it


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    control = Cluster(tmp_path_factory.mktemp("creds-controlplane")).start()
    yield control
    control.stop()


@pytest.fixture
def quick_watches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watches that reconnect every 2 s: each reconnection checks kopf's credentials."""
    monkeypatch.setenv("HANDOFF_WATCH_SECONDS", "2")


def _operator(cluster: Cluster, folder: Path, kubeconfig: Path) -> OperatorProcess:
    process = OperatorProcess(cluster, folder)
    process.extra_args = [f"--kubeconfig={kubeconfig}"]  # the last --kubeconfig wins
    return process.start()


def _decides(cluster: Cluster, ns: str) -> None:
    name = file(cluster, ns, "db.query")
    wait_for(cluster, ns, name, "phase", "Approved", timeout=30)


def _relogins(process: OperatorProcess) -> int:
    return process.log.read_text().count(LOGIN) - 1  # after the first login


def test_the_operator_keeps_deciding_when_its_token_file_rotates(
    own_cluster: Cluster, tmp_path: Path, quick_watches: None
) -> None:
    cluster = own_cluster
    token_file = tmp_path / "token"
    first = bound_token(cluster, OPERATOR, "operator-token-1")
    token_file.write_text(first)
    kubeconfig = write_kubeconfig(
        cluster, tmp_path / "operator.kubeconfig", {"tokenFile": str(token_file)}, "default"
    )
    process = _operator(cluster, tmp_path, kubeconfig)
    try:
        ns = cluster.new_namespace()
        apply_ready_policy(cluster, policy(ns))
        _decides(cluster, ns)
        # The kubelet rotates the projected token; the old one is revoked.
        replace(token_file, bound_token(cluster, OPERATOR, "operator-token-2"))
        revoke(cluster, OPERATOR_NAMESPACE, "operator-token-1", first)
        _decides(cluster, ns)  # the writes read the new file
        # kopf's watch met the refusal when it reconnected, and logged in again with the file.
        eventually(lambda: _relogins(process) >= 1, 30, "kopf to log in again")
        _decides(cluster, ns)
        assert "Traceback" not in process.log.read_text()
    finally:
        process.stop()


def test_kopf_logs_in_again_at_the_expiry_the_plugin_gave(
    own_cluster: Cluster, tmp_path: Path, quick_watches: None
) -> None:
    cluster = own_cluster
    plugin = Plugin(cluster, tmp_path / "plugin", OPERATOR, expires_in=3)
    process = _operator(cluster, tmp_path, plugin.kubeconfig())
    try:
        ns = cluster.new_namespace()
        apply_ready_policy(cluster, policy(ns))
        eventually(lambda: _relogins(process) >= 2, 60, "kopf to log in again twice")
        runs = plugin.runs
        assert runs >= 3  # the first login, and one per expiry
        _decides(cluster, ns)
        assert "Traceback" not in process.log.read_text()
    finally:
        process.stop()


def test_a_revoked_operator_credential_runs_the_plugin_once_for_kopf_and_the_writes(
    own_cluster: Cluster, tmp_path: Path, quick_watches: None
) -> None:
    cluster = own_cluster
    plugin = Plugin(cluster, tmp_path / "plugin", OPERATOR)  # no expirationTimestamp: until a 401
    process = _operator(cluster, tmp_path, plugin.kubeconfig())
    try:
        ns = cluster.new_namespace()
        apply_ready_policy(cluster, policy(ns))
        _decides(cluster, ns)
        assert plugin.runs == 1  # kopf's login and the operator's writes share one credential
        plugin.revoke(1)
        _decides(cluster, ns)
        eventually(lambda: _relogins(process) >= 1, 30, "kopf to log in again")
        _decides(cluster, ns)
        assert plugin.runs == 2  # one run for kopf's watch and the writes together
    finally:
        process.stop()


def _sign_in(console: ConsoleProcess, token: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", console.port, timeout=60)
    try:
        connection.request(
            "POST", "/login", body=urllib.parse.urlencode({"token": token}),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )  # fmt: skip
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_console_checks_sign_ins_with_a_renewed_identity(
    own_cluster: Cluster, tmp_path: Path
) -> None:
    cluster = own_cluster
    plugin = Plugin(cluster, tmp_path / "plugin", f"{OPERATOR_NAMESPACE}/{CONSOLE_ACCOUNT}")
    console = ConsoleProcess(cluster, tmp_path, ["default"], None)
    console.extra_args = [f"--kubeconfig={plugin.kubeconfig()}"]
    console.start()
    try:
        alice = cluster.token("alice")
        assert _sign_in(console, alice) == 303  # a TokenReview with the plugin's token
        plugin.revoke(1)
        assert _sign_in(console, alice) == 303  # refused, renewed, reviewed again
        assert plugin.runs == 2
    finally:
        console.stop()


def test_an_operator_whose_plugin_fails_says_why_and_recovers_when_it_works_again(
    own_cluster: Cluster, tmp_path: Path, quick_watches: None
) -> None:
    cluster = own_cluster
    plugin = Plugin(cluster, tmp_path / "plugin", OPERATOR)
    process = _operator(cluster, tmp_path, plugin.kubeconfig())
    try:
        ns = cluster.new_namespace()
        apply_ready_policy(cluster, policy(ns))
        plugin.fail("error: the identity provider is down\n")
        plugin.revoke(1)
        said = "exited with 3: error: the identity provider is down"
        eventually(lambda: said in process.log.read_text(), 30, "the operator to say why")
        (plugin.folder / "fail").unlink()  # the identity provider is back
        _decides(cluster, ns)
        eventually(lambda: _relogins(process) >= 1, 30, "kopf to log in again")
        _decides(cluster, ns)
    finally:
        process.stop()
