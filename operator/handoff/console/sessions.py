"""Server-side sessions: the cookie holds a random id, never the token.

Each person holds at most ``per_user`` sessions: signing in once more ends their oldest one. With
ServiceAccounts refused (see signin.py) and sign-ins rate limited per address, the sessions a
console keeps are bounded by the people who may sign in. Expired sessions are dropped at the next
sign-in, not only when their cookie comes back.
"""

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
        self,
        lifetime: timedelta = timedelta(hours=8),
        idle: timedelta = timedelta(minutes=30),
        per_user: int = 5,
    ) -> None:
        self.lifetime = lifetime
        self.idle = idle
        self.per_user = max(per_user, 1)
        self._sessions: dict[str, Session] = {}
        self._retired: list[KubeApi] = []  # ended by create(), closed by the next async call

    def __len__(self) -> int:
        return len(self._sessions)

    def of(self, user: str) -> list[Session]:
        """This person's sessions, oldest first."""
        return sorted((s for s in self._sessions.values() if s.user == user), key=_created)

    def create(self, user: str, groups: list[str], api: KubeApi, now: datetime) -> Session:
        for stale in [s for s in self._sessions.values() if self._expired(s, now)]:
            self._retire(stale)
        for oldest in self.of(user)[: max(0, len(self.of(user)) - self.per_user + 1)]:
            self._retire(oldest)
        session = Session(
            id=secrets.token_urlsafe(32), user=user, groups=groups, api=api,
            csrf=secrets.token_urlsafe(32), created=now, seen=now,
        )  # fmt: skip
        self._sessions[session.id] = session
        return session

    async def get(self, session_id: str | None, now: datetime) -> Session | None:
        await self._close_retired()
        session = self._sessions.get(session_id or "")
        if session is None:
            return None
        if self._expired(session, now):
            await self.end(session.id)
            return None
        session.seen = now
        return session

    async def end(self, session_id: str) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            await session.api.close()
        await self._close_retired()

    async def close(self) -> None:
        for session_id in list(self._sessions):
            await self.end(session_id)
        await self._close_retired()

    def _expired(self, session: Session, now: datetime) -> bool:
        return now - session.created > self.lifetime or now - session.seen > self.idle

    def _retire(self, session: Session) -> None:
        del self._sessions[session.id]
        self._retired.append(session.api)

    async def _close_retired(self) -> None:
        while self._retired:
            await self._retired.pop().close()


def _created(session: Session) -> datetime:
    return session.created
