"""Who is calling: the agent's own ServiceAccount token, checked with a TokenReview."""

import hashlib
import time
from dataclasses import dataclass

from handoff.adapters.kube import KubeApi, KubeError

_PREFIX = "system:serviceaccount:"
_TTL = 30.0  # seconds a reviewed token is trusted without asking again
_MAX_CACHED = 4096


class Unauthenticated(Exception):
    """No token, or one the API server does not vouch for as a ServiceAccount's."""


@dataclass(frozen=True)
class Caller:
    namespace: str
    agent: str
    token: str

    @property
    def user(self) -> str:
        return f"{_PREFIX}{self.namespace}:{self.agent}"

    def __repr__(self) -> str:  # the token never reaches a log line
        return f"Caller({self.user})"


class Authenticator:
    def __init__(self, api: KubeApi, ttl: float = _TTL) -> None:
        self.api = api
        self.ttl = ttl
        self._seen: dict[str, tuple[float, Caller]] = {}

    async def caller(self, authorization: str | None) -> Caller:
        scheme, _, token = (authorization or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "send your agent's ServiceAccount token as 'Authorization: Bearer <token>'"
                " (kubectl create token <serviceaccount>)"
            )
        digest = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        if (seen := self._seen.get(digest)) is not None and seen[0] > now:
            return seen[1]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                  "spec": {"token": token}}  # fmt: skip
        try:
            answer = await self.api.create("/apis/authentication.k8s.io/v1/tokenreviews", review)
        except KubeError as e:
            raise Unauthenticated(f"the token could not be checked: {e.message}") from e
        status = answer.get("status") or {}
        user = str((status.get("user") or {}).get("username") or "")
        if not status.get("authenticated"):
            raise Unauthenticated("the API server does not accept this token (expired or unknown)")
        parts = user[len(_PREFIX) :].split(":") if user.startswith(_PREFIX) else []
        if len(parts) != 2 or not all(parts):
            raise Unauthenticated(f"{user} is not a ServiceAccount: only agents call tools here")
        caller = Caller(parts[0], parts[1], token)
        if len(self._seen) >= _MAX_CACHED:
            self._seen.clear()
        self._seen[digest] = (now + self.ttl, caller)
        return caller
