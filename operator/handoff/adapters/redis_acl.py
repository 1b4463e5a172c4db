"""Redis ACL users for agents: each may keep its own working state and read its own decisions.

An agent's user can SETEX/GET/DEL/EXPIRE keys under ``handoff:state:{ns}:{agent}:*`` and, through
a second selector, read and acknowledge its decision stream ``handoff:decisions:{ns}:{agent}``
with its consumer group; through a third, append (only) to ``handoff:outcomes:{ns}:{agent}``
what happened when it acted. It can neither append to its decision stream nor reach any other
key, the audit stream, pub/sub, scripting, admin commands or another database.

Bounds Redis can enforce, and how: every key the agent creates expires (it may write state only
with SETEX, never SET, GETEX or PERSIST, so no key of its outlives the TTL it gave), it stays in
database 0 (``SELECT 0`` only; our servers have one database), and a single value is at most the
server's ``proto-max-bulk-len`` (1 MiB on the servers Handoff starts). What Redis cannot bound
per user: how many keys it writes, how long the TTLs are, and how long its outcome stream grows
(ACL rules cannot require XADD's MAXLEN). The server's ``maxmemory`` with ``noeviction`` bounds
the total without ever evicting Handoff's own keys; see docs/security.md.
"""

from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import redis.asyncio as redis_asyncio
from redis.exceptions import RedisError as _LibraryRedisError

from handoff.domain.keys import decisions_key, outcomes_key, state_pattern

# No +set, +getex or +persist: each can leave a key without a TTL, to stay until deleted.
STATE_COMMANDS = (
    "+setex", "+psetex", "+get", "+getdel", "+del", "+unlink", "+exists", "+expire", "+pexpire",
    "+ttl", "+pttl", "+strlen",
)  # fmt: skip
STREAM_READ_COMMANDS = (
    "+xreadgroup", "+xack", "+xpending", "+xautoclaim", "+xclaim", "+xinfo|stream",
    "+xinfo|groups", "+xinfo|consumers", "+xlen", "+xrange", "+xrevrange",
)  # fmt: skip
# SELECT of database 0 only (clients that select it explicitly still work); redis-py tolerates
# a refused CLIENT SETINFO.
CONNECTION_COMMANDS = ("+ping", "+hello", "+select|0")
CONSUMER_GROUP = "agent"
# The MCP gateway's user: its own keys (call generations, kept results, the names' salt) and the
# commands its store uses (EVAL for the generation's compare-and-advance, whose calls the ACL
# checks too); no other key, no admin command. The chart's start.sh sets the same (a test checks).
GATEWAY_USER = "handoff-gateway"
GATEWAY_RULES = ("resetchannels", "~handoff:gateway:*", "+get", "+set", "+eval",
                 *CONNECTION_COMMANDS)  # fmt: skip


class RedisError(Exception):
    """Redis said no or could not be reached; the message holds no secrets."""


def user_name(namespace: str, agent: str) -> str:
    return f"handoff:{namespace}:{agent}"


@dataclass
class RedisAdmin:
    url: str  # an admin URL: the operator's own connection

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 6379

    def url_for(self, user: str, password: str) -> str:
        return (
            f"redis://{quote(user, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/0"
        )

    async def ensure_agent(self, namespace: str, agent: str, password: str) -> tuple[str, bool]:
        """Create or reset the agent's ACL user and its decision stream's consumer group.

        Returns the user name and whether the user survives a Redis restart (``ACL SAVE`` to the
        server's aclfile); when it does not, the caller comes back to set it again."""
        user = user_name(namespace, agent)
        stream = decisions_key(namespace, agent)
        rules = [
            "reset", "on", f">{password}", "resetchannels",
            f"~{state_pattern(namespace, agent)}", *STATE_COMMANDS, *CONNECTION_COMMANDS,
            f"(~{stream} {' '.join(STREAM_READ_COMMANDS)})",
            f"(~{outcomes_key(namespace, agent)} +xadd)",
        ]  # fmt: skip
        client = redis_asyncio.from_url(self.url)
        try:
            # redis-py leaves execute_command untyped; ACL has no typed helper for selectors.
            await client.execute_command("ACL", "SETUSER", user, *rules)  # type: ignore[no-untyped-call]
            try:
                await client.xgroup_create(stream, CONSUMER_GROUP, id="0", mkstream=True)
            except _LibraryRedisError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            saved = await _save(client)
        except _LibraryRedisError as e:
            raise RedisError(f"Redis at {self.host}:{self.port}: {type(e).__name__}: {e}") from e
        finally:
            await client.aclose()
        return user, saved

    async def remove_agent(self, namespace: str, agent: str) -> None:
        client = redis_asyncio.from_url(self.url)
        try:
            await client.execute_command("ACL", "DELUSER", user_name(namespace, agent))  # type: ignore[no-untyped-call]
            await _save(client)
        except _LibraryRedisError as e:
            raise RedisError(f"Redis at {self.host}:{self.port}: {type(e).__name__}: {e}") from e
        finally:
            await client.aclose()


async def _save(client: "redis_asyncio.Redis") -> bool:
    """ACL SAVE; False when the server has no aclfile (its users vanish when it restarts)."""
    try:
        await client.execute_command("ACL", "SAVE")  # type: ignore[no-untyped-call]
    except _LibraryRedisError as e:
        if "ACL file" in str(e) or "aclfile" in str(e).lower():
            return False
        raise
    return True


async def ensure_reader(url: str, user: str, password: str, keys: list[str]) -> None:
    """A user that may only read these streams (the console's, for the audit feed)."""
    rules = ["resetchannels", *(f"%R~{k}" for k in keys),
             "+xread", "+xrange", "+xrevrange", "+xlen", *CONNECTION_COMMANDS]  # fmt: skip
    await _set_user(url, user, password, rules)


async def ensure_gateway(url: str, password: str) -> str:
    """The MCP gateway's Redis user (GATEWAY_RULES), set with the admin ``url``; its URL."""
    await _set_user(url, GATEWAY_USER, password, list(GATEWAY_RULES))
    return RedisAdmin(url).url_for(GATEWAY_USER, password)


async def _set_user(url: str, user: str, password: str, rules: list[str]) -> None:
    """``user`` reset to exactly ``rules`` with ``password``, through the admin ``url``; saved."""
    client = redis_asyncio.from_url(url)
    try:
        setuser = ["reset", "on", f">{password}", *rules]
        await client.execute_command("ACL", "SETUSER", user, *setuser)  # type: ignore[no-untyped-call]
        await _save(client)
    except _LibraryRedisError as e:
        raise RedisError(f"Redis: {type(e).__name__}: {e}") from e
    finally:
        await client.aclose()
