"""Credentials that change under a running client, for the tests of renewal: an exec
credential plugin (exec_plugin.py) and bound ServiceAccount tokens the tests revoke."""

import datetime
import ssl
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from handoff.adapters.kube import KubeApi
from handoff.testing.cluster import Cluster, eventually

SCRIPT = Path(__file__).with_name("exec_plugin.py")


class Plugin:
    """The exec plugin of one kubeconfig: how often it ran, and the Secrets its tokens are
    bound to (``revoke(n)`` deletes the one of run ``n``)."""

    def __init__(
        self, cluster: Cluster, folder: Path, account: str, expires_in: float | None = None
    ) -> None:
        self.cluster = cluster
        self.folder = folder
        self.account = account  # namespace/name
        self.prefix = f"cred-{uuid.uuid4().hex[:8]}"
        self.expires_in = expires_in
        folder.mkdir(parents=True, exist_ok=True)

    @property
    def runs(self) -> int:
        path = self.folder / "runs"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def revoke(self, run: int) -> None:
        """Revoke the token of run ``run``; return once the API server refuses it."""
        token = (self.folder / f"token-{run}").read_text()
        revoke(self.cluster, self.account.split("/")[0], f"{self.prefix}-{run}", token)

    def fail(self, stderr: str) -> None:
        (self.folder / "fail").write_text(stderr)

    def kubeconfig(self, name: str = "plugin.kubeconfig") -> Path:
        control = self.cluster.control_plane
        env = {
            "PLUGIN_STATE": str(self.folder),
            "PLUGIN_SERVER": control.server,
            "PLUGIN_CA": str(control.ca_file),
            "PLUGIN_ADMIN_TOKEN": control.tokens["admin"],
            "PLUGIN_ACCOUNT": self.account,
            "PLUGIN_PREFIX": self.prefix,
        }
        if self.expires_in is not None:
            env["PLUGIN_EXPIRES_IN"] = str(self.expires_in)
        user = {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1",
                "command": sys.executable,
                "args": [str(SCRIPT)],
                "env": [{"name": k, "value": v} for k, v in env.items()],
                "interactiveMode": "Never",
            }
        }
        return write_kubeconfig(self.cluster, self.folder / name, user, self.account.split("/")[0])


def write_kubeconfig(cluster: Cluster, path: Path, user: dict[str, Any], namespace: str) -> Path:
    control = cluster.control_plane
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": control.server,
                                               "certificate-authority": str(control.ca_file)}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": namespace}}],
        "current-context": "x",
    }  # fmt: skip
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(document))
    return path


def revoke(cluster: Cluster, namespace: str, secret: str, token: str) -> None:
    """Delete the Secret ``token`` is bound to, and wait until the API server refuses it (it
    keeps accepted tokens in a cache for up to 10 s)."""
    cluster.kubectl("delete", "secret", secret, "-n", namespace)
    eventually(lambda: not accepted(cluster, token), 30, f"the token bound to {secret} refused")


def accepted(cluster: Cluster, token: str) -> bool:
    control = cluster.control_plane
    request = urllib.request.Request(  # noqa: S310 - the test's own https API server
        f"{control.server}/api", headers={"Authorization": f"Bearer {token}"}
    )
    context = ssl.create_default_context(cafile=str(control.ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=5):  # noqa: S310
            return True
    except urllib.error.HTTPError as e:
        if e.code == 401:
            return False
        raise


def bound_token(cluster: Cluster, account: str, secret: str) -> str:
    """A token of ``namespace/name`` bound to a new Secret ``secret``: deleting it revokes it."""
    namespace, name = account.split("/")
    cluster.kubectl("create", "secret", "generic", secret, "-n", namespace)
    return cluster.kubectl(
        "create", "token", name, "-n", namespace, "--duration=1h",
        "--bound-object-kind=Secret", f"--bound-object-name={secret}",
    ).stdout.strip()  # fmt: skip


def client_certificate(cluster: Cluster, user: str, folder: Path) -> tuple[Path, Path]:
    """A client certificate for ``user`` signed by the control plane's CA."""
    pki = cluster.control_plane.pki
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
    ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_path, key_path = folder / f"{user}.crt", folder / f"{user}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def whoami(api: KubeApi) -> str:
    """The user name the API server sees (a SelfSubjectReview: every identity may ask)."""
    answer = await api.create(
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(answer["status"]["userInfo"]["username"])


def replace(path: Path, text: str) -> None:
    """Rewrite ``path`` as the kubelet does: a new file renamed over the old one."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_text(text)
    fresh.replace(path)
