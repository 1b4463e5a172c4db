"""Credentials that stay valid on real clusters: obtained when needed, renewed when they expire,
change on disk or are refused.

- An exec credential plugin (EKS, GKE, AKS, OpenShift, OIDC logins) runs on first use, again
  shortly before the ``expirationTimestamp`` it returned, and again after the API server
  refuses what it gave (401).
- A token file (a pod's projected ServiceAccount token, ``tokenFile`` in a kubeconfig), client
  certificate and key files, and the CA file are read again as soon as they change on disk
  (each call compares their size, modification time and inode: a stat, no read), and after
  a refusal.
- A token written in the kubeconfig cannot be renewed: a refusal says so.

:class:`Credentials` is shared by every client of one identity (:class:`~handoff.adapters.kube.
KubeApi` and its views, kopf's login hook): concurrent callers that see the same refusal get
one new credential between them, not one each.
"""

import asyncio
import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from handoff.adapters import kubeconfig
from handoff.adapters.kubeconfig import Cluster, ExecPlugin, KubeconfigError, User

__all__ = ["Credential", "CredentialError", "Credentials", "KubeconfigError"]

PLUGIN_TIMEOUT = 60.0  # seconds a plugin may take (a browser login is not possible here)
EARLY = timedelta(seconds=30)  # renew this long before expiry, or a fifth of a short lifetime
FILE_RECHECK = timedelta(seconds=60)  # how often kopf's watch asks again for file credentials


class CredentialError(Exception):
    """Fresh credentials could not be obtained; the message says from where and why."""


@dataclass(frozen=True, eq=False)
class Credential:
    """What one request carries. Compared by identity: a refresh that finds nothing new
    returns the very same object."""

    ssl: ssl.SSLContext
    token: str | None = field(default=None, repr=False)
    cert_pem: bytes | None = field(default=None, repr=False)
    key_pem: bytes | None = field(default=None, repr=False)
    expires: datetime | None = None  # when its issuer said it stops working
    renew_at: datetime | None = None  # when it is replaced before use

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class Credentials:
    """One identity on one API server, and how to renew its credentials."""

    def __init__(
        self,
        server: str,
        ca_file: str | None = None,
        token: str | None = None,
        *,
        cert_file: str | None = None,
        key_file: str | None = None,
        verify: bool = True,
        cluster: Cluster | None = None,
        user: User | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.cluster = cluster or Cluster(server, ca_file=ca_file, verify=verify)
        self.user = user or User(token=token, cert_file=cert_file, key_file=key_file)
        self.clock = clock
        self._current: Credential | None = None
        self._stamps: tuple[tuple[int, int, int] | None, ...] = ()
        self._lock = asyncio.Lock()
        self._handed: tuple[Credential, datetime | None] | None = None

    @classmethod
    def load(cls, kubeconfig_path: str | None = None, context: str | None = None) -> "Credentials":
        """From a kubeconfig (``$KUBECONFIG`` by default) or, inside a pod, the ServiceAccount.
        Reads files only: a plugin runs at the first call. Raises KubeconfigError."""
        cluster, user = kubeconfig.load(kubeconfig_path, context)
        return cls(cluster.server, cluster=cluster, user=user)

    def with_token(
        self, token: str, description: str = "the token given at sign-in"
    ) -> "Credentials":
        """Someone else's bearer token (a reviewer's, an agent's at the gateway), on the same
        server: never renewed."""
        return Credentials(
            self.server,
            cluster=self.cluster,
            user=User(token=token, description=description),
            clock=self.clock,
        )

    @property
    def server(self) -> str:
        return self.cluster.server

    @property
    def ca_file(self) -> str | None:
        return self.cluster.ca_file

    @property
    def verify(self) -> bool:
        return self.cluster.verify

    @property
    def renewable(self) -> bool:
        """Whether a refusal can be answered with other credentials (a plugin or files)."""
        return bool(self.user.exec or self.user.token_file or self.user.cert_file)

    # -- what callers use ----------------------------------------------------------------------

    async def current(self) -> Credential:
        """Credentials for the next request: the ones in hand unless they are due for renewal
        or their files changed."""
        held = self._current
        if held is not None and not self._due(held):
            return held
        async with self._lock:
            if self._current is None or self._due(self._current):
                self._current = await self._obtain(self._current)
            return self._current

    async def refresh(self, refused: Credential) -> Credential:
        """After the API server refused ``refused`` (401): new credentials, or ``refused``
        itself when there is nothing new to offer. Callers that saw the same refusal share
        one renewal."""
        async with self._lock:
            held = self._current
            if held is not None and held is not refused and not self._due(held):
                return held  # someone renewed meanwhile
            self._current = await self._obtain(refused)
            return self._current

    async def login(self) -> tuple[Credential, datetime | None, str]:
        """For a login hook (kopf's): credentials, when to ask again, and why they were asked
        for. The hook runs again either at that time or after a refusal; a call that comes
        before the time, for the credentials handed out last, is taken for a refusal."""
        now = self.clock()
        held = await self.current()
        why = "the first login"
        if self._handed is not None:
            handed, until = self._handed
            due = until is not None and now >= until
            if held is not handed:
                why = "the last ones were due" if due else "newer ones were in hand"
            elif due:
                why = "the last ones were due, and are still current"
            else:
                why = "the API server refused the last ones"
                held = await self.refresh(handed)
                if held is handed:
                    raise CredentialError(self.refused())
        files = self.user.token_file or self.user.cert_file
        until = held.renew_at or (now + FILE_RECHECK if files and not self.user.exec else None)
        self._handed = (held, until)
        return held, until, why

    def refused(self) -> str:
        """What to say when the API server refuses the credentials in hand even after a
        renewal."""
        what = self.user.description
        if self.user.exec:
            return (
                f"the API server refused {what}, also when run again: check that its login is"
                " still valid (run it by hand) and that the cluster knows this identity"
            )
        if self.renewable:
            return (
                f"the API server refused {what}, also when read again: it expired or was"
                " revoked, and nothing has written a new one yet"
            )
        return (
            f"the API server refused {what}: it expired or was revoked; use a fresh kubeconfig"
            " (one with an exec credential plugin or a tokenFile is renewed by itself)"
        )

    # -- obtaining -----------------------------------------------------------------------------

    def _files(self) -> tuple[str, ...]:
        user = self.user
        files = (user.token_file, user.cert_file, user.key_file, self.cluster.ca_file)
        return tuple(f for f in files if f) if not user.exec else ()

    def _due(self, held: Credential) -> bool:
        if held.renew_at is not None and self.clock() >= held.renew_at:
            return True
        return bool(self._files()) and _stamps(self._files()) != self._stamps

    async def _obtain(self, previous: Credential | None) -> Credential:
        if self.user.exec is not None:
            return await self._run(self.user.exec, previous)
        stamps = _stamps(self._files())
        token, cert, key = self._read()
        if (
            previous is not None
            and (token, cert, key) == (previous.token, previous.cert_pem, previous.key_pem)
            and stamps == self._stamps
        ):
            return previous
        self._stamps = stamps
        return Credential(self._ssl(cert, key), token, cert, key)

    def _read(self) -> tuple[str | None, bytes | None, bytes | None]:
        user = self.user
        try:
            token = user.token or (
                Path(user.token_file).read_text().strip() if user.token_file else None
            )
            cert = user.cert_data or (Path(user.cert_file).read_bytes() if user.cert_file else None)
            key = user.key_data or (Path(user.key_file).read_bytes() if user.key_file else None)
        except OSError as e:
            raise CredentialError(
                f"cannot read {user.description}: {e.strerror or type(e).__name__} ({e.filename})"
            ) from e
        return token, cert, key

    async def _run(self, plugin: ExecPlugin, previous: Credential | None) -> Credential:
        if plugin.interactive == "Always":
            raise CredentialError(
                f"the exec credential plugin {plugin.command} wants a terminal"
                " (interactiveMode: Always); Handoff runs it without one: log in by hand first"
                " or use a kubeconfig whose plugin runs non-interactively"
            )
        info = {"apiVersion": plugin.api_version, "kind": "ExecCredential",
                "spec": {"interactive": False}}  # fmt: skip
        if plugin.cluster_info is not None:
            info["spec"] = {"interactive": False, "cluster": plugin.cluster_info}
        env = os.environ | dict(plugin.env) | {"KUBERNETES_EXEC_INFO": json.dumps(info)}
        try:
            child = await asyncio.create_subprocess_exec(
                plugin.command, *plugin.args, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as e:
            hint = f"; {plugin.install_hint.strip()}" if plugin.install_hint.strip() else ""
            raise CredentialError(
                f"cannot run the exec credential plugin {plugin.command}:"
                f" {e.strerror or type(e).__name__}{hint}"
            ) from e
        try:
            out, err = await asyncio.wait_for(child.communicate(), PLUGIN_TIMEOUT)
        except TimeoutError as e:
            raise CredentialError(
                f"the exec credential plugin {plugin.command} did not answer within"
                f" {PLUGIN_TIMEOUT:.0f} s"
            ) from e
        finally:  # timed out, or the caller was cancelled: no plugin is left behind
            if child.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
                await child.wait()
        if child.returncode != 0:
            first = next((ln.strip() for ln in err.decode(errors="replace").splitlines()
                          if ln.strip()), "nothing on stderr")  # fmt: skip
            raise CredentialError(
                f"the exec credential plugin {plugin.command} exited with {child.returncode}:"
                f" {first[:300]}"
            )
        return self._parsed(plugin, out, previous)

    def _parsed(self, plugin: ExecPlugin, out: bytes, previous: Credential | None) -> Credential:
        try:
            answer = json.loads(out)
            status = answer["status"]
            if answer.get("kind") != "ExecCredential" or not isinstance(status, dict):
                raise ValueError("not an ExecCredential")
            token = status.get("token") or None
            cert = status.get("clientCertificateData", "").encode() or None
            key = status.get("clientKeyData", "").encode() or None
            stamp = status.get("expirationTimestamp")
            expires = datetime.fromisoformat(stamp) if stamp else None
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CredentialError(
                f"the exec credential plugin {plugin.command} did not print an ExecCredential"
                f" with a status ({type(e).__name__})"
            ) from e
        if not token and not (cert and key):
            raise CredentialError(
                f"the exec credential plugin {plugin.command} gave neither a token nor a client"
                " certificate and key"
            )
        if previous is not None and (token, cert, key) == (
            previous.token, previous.cert_pem, previous.key_pem,
        ) and expires == previous.expires:  # fmt: skip
            return previous  # the plugin's own cache gave the same again: nothing new
        now = self.clock()
        renew_at = None
        if expires is not None:
            expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
            renew_at = expires - min(EARLY, max(expires - now, timedelta(0)) / 5)
        return Credential(self._ssl(cert, key), token, cert, key, expires, renew_at)

    def _ssl(self, cert: bytes | None, key: bytes | None) -> ssl.SSLContext:
        cluster = self.cluster
        try:
            context = ssl.create_default_context(cafile=cluster.ca_file, cadata=cluster.ca_data)
        except (OSError, ssl.SSLError) as e:
            raise CredentialError(f"cannot load the cluster's CA ({cluster.ca_file}): {e}") from e
        if not cluster.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert and key:
            _load_chain(context, cert, key)
        return context


def _load_chain(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """The ssl module loads a client certificate from files only: a private temporary folder
    holds them for the duration of the call."""
    with tempfile.TemporaryDirectory(prefix="handoff-cert-") as folder:
        cert_path, key_path = Path(folder) / "tls.crt", Path(folder) / "tls.key"
        for path, data in ((cert_path, cert), (key_path, key)):
            path.touch(mode=0o600)
            path.write_bytes(data)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as e:
            raise CredentialError(f"the client certificate and key do not load: {e}") from e


def _stamps(files: tuple[str, ...]) -> tuple[tuple[int, int, int] | None, ...]:
    found: list[tuple[int, int, int] | None] = []
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            found.append(None)
        else:
            found.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(found)
