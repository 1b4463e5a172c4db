"""Who may sign in to the console, and how often.

- The console is for people. A ServiceAccount token (an agent's, the console's own) is valid for
  the cluster, but signing it in would let an agent read the queue and keep sessions; it is
  refused unless the console runs with ``--allow-service-accounts`` (for a bot that reviews).
- Sign-in attempts are counted per client address over a sliding minute, before the token is
  sent to the cluster: past the limit the answer is 429 with the seconds to wait, so the console
  is neither a way to hammer the API server with TokenReviews nor to pile up sessions.
- The number of addresses remembered is capped too, so the counter cannot grow without bound.
Pure: the clock is passed in.
"""

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"


def is_service_account(user: str, groups: list[str]) -> bool:
    return user.startswith(SERVICE_ACCOUNT_PREFIX) or SERVICE_ACCOUNTS_GROUP in groups


@dataclass
class SignInGate:
    allow_service_accounts: bool = False
    attempts: int = 10  # per address, per window
    window: timedelta = timedelta(minutes=1)
    addresses: int = 10_000  # remembered at most; the least recently seen are forgotten first
    _seen: "OrderedDict[str, deque[datetime]]" = field(default_factory=OrderedDict, repr=False)

    def wait(self, address: str, now: datetime) -> int:
        """Count an attempt from ``address``: 0 when it may go on, else the seconds to wait
        (the attempt is not counted then)."""
        times = self._seen.pop(address, None) or deque()
        while times and now - times[0] >= self.window:
            times.popleft()
        self._seen[address] = times  # most recently seen last
        if len(times) >= self.attempts:
            return max(1, int((times[0] + self.window - now).total_seconds() + 0.999))
        times.append(now)
        while len(self._seen) > self.addresses:
            self._seen.popitem(last=False)
        return 0

    def refusal(self, user: str, groups: list[str]) -> str | None:
        """Why this identity may not sign in, in a sentence; None when it may."""
        if is_service_account(user, groups) and not self.allow_service_accounts:
            return (
                f"{user} is a ServiceAccount, and this console is for people: agents file and"
                " read their requests through the API. Sign in with your own token. (An"
                " administrator can let ServiceAccounts in with handoff console"
                " --allow-service-accounts.)"
            )
        return None
