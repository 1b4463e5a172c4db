"""Server-side sessions: the cookie holds a random id, never the token."""

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from handoff.adapters.kube import KubeApi


@dataclass
class Session:
    id: str
    user: str
    groups: list[str]
    api: KubeApi  # speaks with the reviewer's own token
    csrf: str
    created: datetime
    seen: datetime
    opened: dict[str, datetime] = field(default_factory=dict)  # request uid -> first viewed
    namespaces: dict[str, bool] = field(default_factory=dict)  # may list requests there?


class Sessions:
    def __init__(
        self, lifetime: timedelta = timedelta(hours=8), idle: timedelta = timedelta(minutes=30)
    ) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self._sessions: dict[str, Session] = {}

    def create(self, user: str, groups: list[str], api: KubeApi, now: datetime) -> Session:
        session = Session(
            id=secrets.token_urlsafe(32), user=user, groups=groups, api=api,
            csrf=secrets.token_urlsafe(32), created=now, seen=now,
        )  # fmt: skip
        self._sessions[session.id] = session
        return session

    async def get(self, session_id: str | None, now: datetime) -> Session | None:
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if now - session.created > self.lifetime or now - session.seen > self.idle:
            await self.end(session.id)
            return None
        session.seen = now
        return session

    async def end(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            await session.api.close()

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.end(session_id)
