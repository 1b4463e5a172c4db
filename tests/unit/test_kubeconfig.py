"""Reading kubeconfigs: the forms Handoff supports, and a sentence for the ones it does not."""

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml
from handoff.adapters import kubeconfig
from handoff.adapters.kubeconfig import KubeconfigError


def write(path: Path, users: dict[str, Any], current: str = "x", **extra: Any) -> Path:
    document = {
        "clusters": [{"name": "c", "cluster": {"server": "https://k:6443/", **extra}}],
        "users": [{"name": n, "user": u} for n, u in users.items()],
        "contexts": [{"name": n, "context": {"cluster": "c", "user": n, "namespace": f"ns-{n}"}}
                     for n in users],
        "current-context": current,
    }  # fmt: skip
    path.write_text(yaml.safe_dump(document))
    return path


def test_each_user_form(tmp_path: Path) -> None:
    pem = base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode()
    path = write(
        tmp_path / "config",
        {
            "x": {"token": "abc", "tokenFile": "ignored"},
            "file": {"tokenFile": "tokens/t"},
            "certs": {"client-certificate": "c.crt", "client-key": "/abs/c.key"},
            "data": {"client-certificate-data": pem, "client-key-data": pem,
                     "client-certificate": "overridden.crt"},
            "plugin": {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1",
                                "command": "./bin/get-token", "args": ["--x", 1],
                                "env": [{"name": "A", "value": "b"}], "provideClusterInfo": True}},
        },
        **{"certificate-authority": "ca.crt", "tls-server-name": "kubernetes"},
    )  # fmt: skip
    cluster, user = kubeconfig.load(str(path))
    assert cluster.server == "https://k:6443"
    assert cluster.ca_file == str(tmp_path / "ca.crt")
    assert cluster.tls_server_name == "kubernetes"
    assert (user.token, user.token_file) == ("abc", None)  # as kubectl: the inline token wins
    _, user = kubeconfig.load(str(path), "file")
    assert user.token_file == str(tmp_path / "tokens/t")
    assert user.description == f"the token in {tmp_path / 'tokens/t'}"
    _, user = kubeconfig.load(str(path), "certs")
    assert (user.cert_file, user.key_file) == (str(tmp_path / "c.crt"), "/abs/c.key")
    _, user = kubeconfig.load(str(path), "data")
    assert user.cert_data == user.key_data == b"-----BEGIN CERTIFICATE-----\n"
    assert user.cert_file is None  # as client-go: the data overrides the file
    _, user = kubeconfig.load(str(path), "plugin")
    assert user.exec is not None
    assert user.exec.command == str(tmp_path / "bin/get-token")  # relative to the file
    assert user.exec.args == ("--x", "1")
    assert user.exec.env == (("A", "b"),)
    assert user.exec.cluster_info == {"server": "https://k:6443", "insecure-skip-tls-verify": False}
    assert kubeconfig.namespace(str(path), "file") == "ns-file"


def test_several_files_in_kubeconfig_the_first_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write(tmp_path / "a", {"x": {"token": "from-a"}})
    second = write(tmp_path / "b", {"x": {"token": "from-b"}, "y": {"token": "only-b"}}, "y")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{tmp_path / 'missing'}:{second}")
    assert kubeconfig.load()[1].token == "from-a"  # noqa: S105 - a test token
    assert kubeconfig.load(context="y")[1].token == "only-b"  # noqa: S105


@pytest.mark.parametrize(
    ("user", "context", "said"),
    [
        ({"auth-provider": {"name": "oidc"}}, None, "auth-provider 'oidc' is gone"),
        ({"username": "u", "password": "p"}, None, "basic authentication"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x"}}, None,
         "asks for apiVersion"),
        ({"exec": {"apiVersion": "client.authentication.k8s.io/v1"}}, None, "names no command"),
        ({"client-key-data": "%%%"}, None, "client-key-data is not base64"),
        ({"token": "t"}, "nope", "context 'nope' is not in the kubeconfig"),
    ],
)  # fmt: skip
def test_what_is_refused_says_why(
    tmp_path: Path, user: dict[str, Any], context: str | None, said: str
) -> None:
    path = write(tmp_path / "config", {"x": user})
    with pytest.raises(KubeconfigError, match=said):
        kubeconfig.load(str(path), context)


def test_no_kubeconfig_and_no_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    with pytest.raises(KubeconfigError, match="no such file"):
        kubeconfig.load()


def test_in_a_pod_the_projected_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "token").write_text("t")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    cluster, user = kubeconfig.in_cluster(tmp_path)
    assert cluster.server == "https://[fd00::1]:443"
    assert user.token_file == str(tmp_path / "token")
    assert user.token is None  # read at each call, as the kubelet rotates it
