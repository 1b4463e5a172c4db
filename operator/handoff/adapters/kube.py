"""A small asyncio client for the few Kubernetes calls the operator makes itself.

kopf watches; this client writes. It speaks to the API server with aiohttp, with credentials
from :mod:`handoff.adapters.kubeauth` taken afresh for each request (renewed before they expire
or when their files change); a call the API server refuses (401) is made once more with renewed
credentials. HTTP failures become the errors below, and no response body or token goes into an
exception message beyond the API server's own one-line reason.
"""

import base64
import json
import urllib.parse
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import aiohttp
from multidict import CIMultiDict

from handoff.adapters.kubeauth import Credential, CredentialError, Credentials, KubeconfigError

__all__ = ["Conflict", "Credentials", "KubeApi", "KubeError", "KubeconfigError", "NotFound"]


class KubeError(Exception):
    """A failed API call; ``status`` is the HTTP status (0: could not reach the server)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status
        self.message = message


class Conflict(KubeError):
    """The object changed since it was read (409): read it again and decide again."""


class NotFound(KubeError):
    pass


class KubeApi:
    """The handful of calls Handoff makes: get, list, patch (status), create and delete."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        self._session: aiohttp.ClientSession | None = None
        self.unauthorized = False  # the API server refused these credentials (401) once
        self._parent: KubeApi | None = None
        self._acting: list[tuple[str, str]] = []  # Impersonate-* headers of a view

    def impersonating(self, user: str, groups: Sequence[str] = ()) -> "KubeApi":
        """A view of this client whose calls the API server authorizes as ``user`` (a
        ServiceAccount's ``system:serviceaccount:<ns>:<name>``, whose groups it adds itself; or
        a person with these ``groups``), on the same connections. Taking it needs the verb
        ``impersonate`` on that user (and on each group)."""
        view = KubeApi(self._credentials)
        view._parent = self
        view._acting = [("Impersonate-User", user), *(("Impersonate-Group", g) for g in groups)]
        return view

    async def __aenter__(self) -> "KubeApi":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._parent is not None:
            return self._parent._http()
        if self._session is None:
            self._session = aiohttp.ClientSession(
                base_url=self._credentials.server,
                headers={"Accept": "application/json", "User-Agent": "handoff-operator"},
                connector=aiohttp.TCPConnector(limit=32),
                timeout=aiohttp.ClientTimeout(total=30),
            )
        return self._session

    async def _credential(self) -> Credential:
        try:
            return await self._credentials.current()
        except CredentialError as e:
            raise KubeError(401, f"cannot get credentials: {e}") from e

    async def _renewed(self, refused: Credential, retried: bool) -> Credential:
        """After a 401: renewed credentials to try once more with; a KubeError when this was
        the retry already, or there is nothing new to try."""
        self.unauthorized = True
        if not retried:
            try:
                fresh = await self._credentials.refresh(refused)
            except CredentialError as e:
                raise KubeError(
                    401, f"the API server refused the credentials, and renewing them failed: {e}"
                ) from e
            if fresh is not refused:
                self.unauthorized = False
                return fresh
        raise KubeError(401, self._credentials.refused())

    def _send(
        self, method: str, path: str, credential: Credential, **kwargs: Any
    ) -> Any:  # aiohttp's request context manager
        headers = CIMultiDict(kwargs.pop("headers", {}))
        for key, value in self._acting:  # Impersonate-Group repeats, once per group
            headers.add(key, value)
        headers.update(credential.headers())
        tls_name = self._credentials.cluster.tls_server_name
        if tls_name:
            kwargs["server_hostname"] = tls_name
        return self._http().request(method, path, headers=headers, ssl=credential.ssl, **kwargs)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
    ) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if body is not None else {}
        credential = await self._credential()
        try:
            for retry in (False, True):  # once more after a 401, which was not acted upon
                async with self._send(
                    method, path, credential, data=data, headers=headers, params=params
                ) as response:
                    status, text = response.status, await response.text()
                if status != 401:
                    break
                credential = await self._renewed(credential, retry)
        except aiohttp.ClientError as e:
            raise KubeError(0, f"cannot reach the API server: {type(e).__name__}") from e
        except TimeoutError as e:
            raise KubeError(0, "the API server did not answer in time") from e
        if status >= 400:
            raise _error(status, text)
        return json.loads(text) if text else None

    async def get(self, path: str) -> Any:
        return await self.request("GET", path)

    async def create(self, path: str, body: Any) -> Any:
        return await self.request("POST", path, body)

    async def merge_patch(self, path: str, body: Any, params: dict[str, str] | None = None) -> Any:
        return await self.request("PATCH", path, body, "application/merge-patch+json", params)

    async def json_patch(self, path: str, ops: list[dict[str, Any]]) -> Any:
        return await self.request("PATCH", path, ops, "application/json-patch+json")

    async def delete(self, path: str, params: dict[str, str] | None = None) -> Any:
        return await self.request("DELETE", path, params=params)

    async def apply(self, body: dict[str, Any], manager: str = "handoff-operator") -> Any:
        """Server-side apply of one object; the operator owns the fields it sets."""
        meta = body["metadata"]
        group, _, version = body["apiVersion"].rpartition("/")
        path = resource_path(
            group, version, _plural(body["kind"]), meta.get("namespace"), meta["name"]
        )
        return await self.request(
            "PATCH", path, body, "application/apply-patch+yaml",
            params={"fieldManager": manager, "force": "true"},
        )  # fmt: skip

    async def watch(
        self, path: str, params: dict[str, str], seconds: float
    ) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type", "object"}``) for at most ``seconds``."""
        query = params | {"watch": "true", "timeoutSeconds": str(max(int(seconds), 1))}
        credential = await self._credential()
        try:
            for retry in (False, True):
                async with self._send(
                    "GET", path, credential, params=query,
                    timeout=aiohttp.ClientTimeout(total=seconds + 5),
                ) as response:  # fmt: skip
                    if response.status == 401:
                        await response.read()
                    elif response.status >= 400:
                        raise _error(response.status, await response.text())
                    else:
                        async for line in response.content:
                            if line.strip():
                                yield json.loads(line)
                        return
                credential = await self._renewed(credential, retry)
        except aiohttp.ClientError as e:
            raise KubeError(0, f"cannot reach the API server: {type(e).__name__}") from e
        except TimeoutError:
            return

    async def plural(self, api_version: str, kind: str) -> str:
        """The resource name of ``kind`` in ``api_version``, from the server's discovery."""
        key = f"{api_version}/{kind}"
        cache: dict[str, str] = self.__dict__.setdefault("_plurals", {})
        if key not in cache:
            base = f"/apis/{api_version}" if "/" in api_version else f"/api/{api_version}"
            listing = await self.get(base)
            for resource in listing.get("resources") or []:
                if resource.get("kind") == kind and "/" not in resource.get("name", ""):
                    cache[key] = resource["name"]
                    break
            else:
                raise NotFound(404, f"the server does not serve {kind} in {api_version}")
        return cache[key]

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded; raises NotFound."""
        secret = await self.get(resource_path("", "v1", "secrets", namespace, name))
        return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}

    async def secret_value(self, namespace: str, name: str, key: str) -> str:
        """One key of a Secret; a KubeError (404) says which Secret or key is missing."""
        data = await self.read_secret(namespace, name)
        if key not in data:
            raise NotFound(404, f"Secret {name} has no key {key}")
        return data[key]

    async def delete_if_present(self, path: str) -> bool:
        try:
            await self.delete(path)
        except NotFound:
            return False
        return True


ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"  # create one to ask


def access_review(
    user: str, groups: Sequence[str], attributes: Mapping[str, str]
) -> dict[str, Any]:
    """A SubjectAccessReview (created at ``ACCESS_REVIEWS``; ``status.allowed`` answers): may
    ``user``, with ``groups``, do what ``attributes`` say (``verb``, ``group``, ``resource``,
    ``namespace``, ``name``)?"""
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {"user": user, "groups": list(groups), "resourceAttributes": dict(attributes)},
    }


def service_account_review(
    namespace: str, account: str, attributes: Mapping[str, str]
) -> dict[str, Any]:
    """``access_review`` for ServiceAccount ``namespace/account``, with the groups the API
    server gives every ServiceAccount."""
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
              "system:authenticated"]  # fmt: skip
    return access_review(f"system:serviceaccount:{namespace}:{account}", groups, attributes)


def resource_path(
    group: str, version: str, plural: str, namespace: str | None = None, name: str | None = None
) -> str:
    """The API path of a collection or an object, built from its parts, each one escaped as a
    single path segment: no part can add a segment, a query or a fragment, nor climb out with
    ``..`` (which HTTP clients resolve, also when written ``%2e%2e``)."""
    parts = ["apis", group, version] if group else ["api", version]
    if namespace:
        parts += ["namespaces", namespace]
    parts.append(plural)
    if name:
        parts.append(name)
    return "/" + "/".join(_segment(part) for part in parts)


def _segment(part: str) -> str:
    if part in (".", ".."):  # the API server would refuse such a name anyway
        raise NotFound(404, f"no object can be named {part!r}")
    if not part:
        raise ValueError("an empty part of an API path")
    return urllib.parse.quote(part, safe="")


_PLURALS = {
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "Secret": "secrets",
    "AgentActionPolicy": "agentactionpolicies",
    "ActionRequest": "actionrequests",
    "ServiceAccount": "serviceaccounts",
    "PolicyReport": "policyreports",
}


def _plural(kind: str) -> str:
    return _PLURALS.get(kind) or kind.lower() + "s"


def _error(status: int, text: str) -> KubeError:
    try:
        message = str(json.loads(text).get("message", ""))[:500]
    except (ValueError, AttributeError):
        message = ""
    message = message or f"HTTP {status}"
    if status == 409:
        return Conflict(status, message)
    if status == 404:
        return NotFound(status, message)
    return KubeError(status, message)
