"""Where the API server is and how to prove who we are: read from a kubeconfig or a pod.

Nothing runs and no secret is kept here: the result says *how* to obtain credentials (a token,
a file to read, a plugin to run), and :mod:`handoff.adapters.kubeauth` obtains them when a call
needs them, and again when they expire, change on disk or are refused.

``$KUBECONFIG`` may list several files (``:``-separated): as with kubectl, the first file that
names a context, cluster or user wins, and relative paths are relative to the file that holds
them. Without a kubeconfig, a pod's ServiceAccount is used (its projected token file).
"""

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
EXEC_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


class KubeconfigError(ValueError):
    """No usable kubeconfig: the message says what is missing or wrong."""


@dataclass(frozen=True)
class ExecPlugin:
    """A client-go credential plugin (``users[].user.exec``)."""

    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    api_version: str = EXEC_VERSIONS[0]
    interactive: str = "IfAvailable"  # Never | IfAvailable | Always: Handoff never has a terminal
    install_hint: str = ""
    cluster_info: dict[str, Any] | None = None  # sent in KUBERNETES_EXEC_INFO when asked for


@dataclass(frozen=True)
class Cluster:
    server: str
    ca_file: str | None = None
    ca_data: str | None = None  # PEM
    verify: bool = True
    tls_server_name: str | None = None


@dataclass(frozen=True)
class User:
    """One way of proving who we are; a kubeconfig user may combine a token with a client
    certificate (both are sent)."""

    token: str | None = None
    token_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None  # PEM
    key_data: bytes | None = field(default=None, repr=False)
    exec: ExecPlugin | None = None
    description: str = "the token in the kubeconfig"


def load(kubeconfig: str | None = None, context: str | None = None) -> tuple[Cluster, User]:
    """From ``kubeconfig`` (else ``$KUBECONFIG``, else ``~/.kube/config``) or, when none of them
    exists and this is a pod, the ServiceAccount. Raises KubeconfigError."""
    paths = _paths(kubeconfig)
    existing = [p for p in paths if p.is_file()]
    if kubeconfig is None and not existing and "KUBERNETES_SERVICE_HOST" in os.environ:
        return in_cluster()
    if not existing:
        raise KubeconfigError(f"{', '.join(map(str, paths))}: no such file")
    return _from_files(existing, context)


def in_cluster(folder: Path = SERVICE_ACCOUNT) -> tuple[Cluster, User]:
    host, port = (
        os.environ.get("KUBERNETES_SERVICE_HOST"),
        os.environ.get("KUBERNETES_SERVICE_PORT"),
    )
    if not host or not port:
        raise KubeconfigError("KUBERNETES_SERVICE_HOST and _PORT are not set: not in a pod")
    if not (folder / "token").is_file():
        raise KubeconfigError(f"{folder / 'token'}: no ServiceAccount token is mounted")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return Cluster(server, ca_file=str(folder / "ca.crt")), User(
        token_file=str(folder / "token"), description=f"the ServiceAccount token {folder / 'token'}"
    )


def _paths(kubeconfig: str | None) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [Path(p).expanduser() for p in listed] or [Path("~/.kube/config").expanduser()]


def namespace(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The namespace the kubeconfig's context names, if any (None also without a kubeconfig)."""
    try:
        existing = [p for p in _paths(kubeconfig) if p.is_file()]
        return _context(existing, context)[0].get("namespace") or None if existing else None
    except KubeconfigError:
        return None


Named = dict[str, dict[str, tuple[dict[str, Any], Path]]]


def _context(files: list[Path], context: str | None) -> tuple[dict[str, Any], Named]:
    named: Named = {"contexts": {}, "clusters": {}, "users": {}}
    current = None
    for path in files:
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise KubeconfigError(f"{path}: {type(e).__name__}: not a readable kubeconfig") from e
        if not isinstance(document, dict):
            raise KubeconfigError(f"{path}: not a kubeconfig (a YAML mapping)")
        current = current or document.get("current-context")
        for kind, entries in named.items():
            for entry in document.get(kind) or []:
                if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                    entries.setdefault(entry["name"], (entry.get(kind[:-1]) or {}, path.parent))
    name = context or current
    if not name:
        raise KubeconfigError("no context given and no current-context set")
    if name not in named["contexts"]:
        raise KubeconfigError(f"context {name!r} is not in the kubeconfig")
    return named["contexts"][name][0], named


def _from_files(files: list[Path], context: str | None) -> tuple[Cluster, User]:
    chosen, named = _context(files, context)
    name = context or "the current context"
    cluster_name, user_name = chosen.get("cluster"), chosen.get("user")
    if cluster_name not in named["clusters"]:
        raise KubeconfigError(
            f"context {name!r} names cluster {cluster_name!r}, which is not there"
        )
    cluster = _cluster(*named["clusters"][cluster_name])
    if user_name is None:
        return cluster, User(description="no credentials (the context names no user)")
    if user_name not in named["users"]:
        raise KubeconfigError(f"context {name!r} names user {user_name!r}, which is not there")
    return cluster, _user(*named["users"][user_name], cluster=cluster)


def _cluster(entry: dict[str, Any], base: Path) -> Cluster:
    server = entry.get("server")
    if not isinstance(server, str) or not server:
        raise KubeconfigError("the context's cluster has no server")
    data = entry.get("certificate-authority-data")
    return Cluster(
        server=server.rstrip("/"),
        ca_file=None if data else _path(entry.get("certificate-authority"), base),  # data wins
        ca_data=_decoded(data, "certificate-authority-data").decode() if data else None,
        verify=not entry.get("insecure-skip-tls-verify", False),
        tls_server_name=entry.get("tls-server-name"),
    )


def _user(entry: dict[str, Any], base: Path, cluster: Cluster) -> User:
    if "auth-provider" in entry:
        provider = (entry["auth-provider"] or {}).get("name", "?")
        raise KubeconfigError(
            f"the user's auth-provider {provider!r} is gone from Kubernetes clients; use the"
            " provider's exec credential plugin (e.g. kubelogin, gke-gcloud-auth-plugin)"
        )
    if "username" in entry or "password" in entry:
        raise KubeconfigError("basic authentication (username/password) is not supported")
    cert_data, key_data = entry.get("client-certificate-data"), entry.get("client-key-data")
    plugin = _exec(entry["exec"], base, cluster) if entry.get("exec") else None
    token_file = _path(entry.get("tokenFile"), base)
    token = entry.get("token") or None
    certificate = cert_data or entry.get("client-certificate")
    if plugin:
        description = f"the credentials of the exec credential plugin {plugin.command}"
    elif token_file and not token:
        description = f"the token in {token_file}"
    elif certificate and not token:
        description = "the client certificate in the kubeconfig"
    else:
        description = "the token in the kubeconfig"
    return User(
        token=token,
        token_file=None if token else token_file,  # as kubectl: an inline token wins
        cert_file=None if cert_data else _path(entry.get("client-certificate"), base),
        key_file=None if key_data else _path(entry.get("client-key"), base),
        cert_data=_decoded(cert_data, "client-certificate-data") if cert_data else None,
        key_data=_decoded(key_data, "client-key-data") if key_data else None,
        exec=plugin,
        description=description,
    )


def _exec(entry: dict[str, Any], base: Path, cluster: Cluster) -> ExecPlugin:
    command, version = entry.get("command"), entry.get("apiVersion")
    if not isinstance(command, str) or not command:
        raise KubeconfigError("the user's exec credential plugin names no command")
    if version not in EXEC_VERSIONS:
        raise KubeconfigError(
            f"the exec credential plugin {command} asks for apiVersion {version!r}; Handoff"
            f" speaks {' and '.join(EXEC_VERSIONS)}"
        )
    if os.sep in command and not os.path.isabs(command):  # as client-go: relative to the file
        command = str((base / command).resolve())
    info = None
    if entry.get("provideClusterInfo"):
        info = {"server": cluster.server, "insecure-skip-tls-verify": not cluster.verify}
        if cluster.ca_data:
            info["certificate-authority-data"] = base64.b64encode(cluster.ca_data.encode()).decode()
    return ExecPlugin(
        command=command,
        args=tuple(str(a) for a in entry.get("args") or ()),
        env=tuple((str(e["name"]), str(e["value"])) for e in entry.get("env") or ()),
        api_version=version,
        interactive=str(entry.get("interactiveMode") or "IfAvailable"),
        install_hint=str(entry.get("installHint") or ""),
        cluster_info=info,
    )


def _path(value: Any, base: Path) -> str | None:
    if not value:
        return None
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else base / path)


def _decoded(value: Any, key: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except ValueError as e:
        raise KubeconfigError(f"{key} is not base64") from e
