"""Read-only PostgreSQL login roles for agents, made with an admin connection.

Read-only at the connection level means privileges, not a setting: the role may SELECT in the
listed schemas and nothing else. ``default_transaction_read_only`` is set too, but a client can
turn it off, so nothing relies on it. Every change runs in one transaction, so a failure leaves
nothing half-made.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, LiteralString

if TYPE_CHECKING:
    import psycopg

# psycopg (and libpq) load at the first connection, not with this module: the operator imports it
# at its start (controller/credentials.py), and most operators never hand out a PostgreSQL role.


class DatabaseError(Exception):
    """PostgreSQL said no or could not be reached; the message is safe to show (no secrets)."""


# Large-object functions that create or write: callable by PUBLIC out of the box, so a role
# with no table privileges could still store data through them.
_LARGE_OBJECT_WRITERS: tuple[LiteralString, ...] = (
    "lo_create(oid)", "lo_creat(integer)", "lo_from_bytea(oid, bytea)", "lowrite(integer, bytea)",
    "lo_put(oid, bigint, bytea)", "lo_import(text)", "lo_import(text, oid)",
    "lo_truncate(integer, integer)", "lo_truncate64(integer, bigint)", "lo_unlink(oid)",
)  # fmt: skip


@dataclass(frozen=True)
class AdminConnection:
    host: str
    port: int
    database: str
    username: str
    password: str

    async def _connect(self, database: str | None = None) -> "psycopg.AsyncConnection[Any]":
        import psycopg  # noqa: PLC0415 - see the imports

        try:
            return await psycopg.AsyncConnection.connect(
                host=self.host, port=self.port, dbname=database or self.database,
                user=self.username, password=self.password, connect_timeout=5,
                application_name="handoff-operator",
            )  # fmt: skip
        except psycopg.Error as e:
            raise DatabaseError(
                f"PostgreSQL at {self.host}:{self.port} is unreachable or refused the admin login:"
                f" {_first_line(e)}"
            ) from e

    async def ensure_read_only_role(
        self, role: str, password: str, database: str, schemas: Sequence[str]
    ) -> list[str]:
        """Create or update ``role`` so that it can log in to ``database`` and only read.

        Returns warnings: things the admin could not lock down for lack of ownership.
        """
        import psycopg  # noqa: PLC0415 - see the imports
        from psycopg import sql  # noqa: PLC0415

        warnings: list[str] = []
        ident = sql.Identifier(role)
        connection = await self._connect(database)
        try:
            async with connection.transaction():
                exists = await _role_exists(connection, role)
                verb = sql.SQL("ALTER ROLE") if exists else sql.SQL("CREATE ROLE")
                await connection.execute(
                    sql.SQL(
                        "{} {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
                        " NOREPLICATION NOBYPASSRLS CONNECTION LIMIT 16 PASSWORD {}"
                    ).format(verb, ident, sql.Literal(password))
                )
                await connection.execute(
                    sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident)
                )
                db = sql.Identifier(database)
                await connection.execute(
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, ident)
                )
                await connection.execute(
                    sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, ident)
                )
                # TEMPORARY is PUBLIC's by default, and PUBLIC includes every role.
                await connection.execute(
                    sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM PUBLIC").format(db)
                )
                for schema in schemas:
                    s = sql.Identifier(schema)
                    await connection.execute(
                        sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(s)
                    )
                    await connection.execute(
                        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, ident)
                    )
                    await connection.execute(
                        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(s, ident)
                    )
                    await connection.execute(
                        sql.SQL(
                            "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}"
                        ).format(s, ident)
                    )
            async with connection.transaction():
                for function in _LARGE_OBJECT_WRITERS:
                    try:
                        async with connection.transaction():
                            await connection.execute(
                                sql.SQL(
                                    "REVOKE EXECUTE ON FUNCTION pg_catalog.{} FROM PUBLIC"
                                ).format(sql.SQL(function))
                            )
                    except psycopg.errors.InsufficientPrivilege:
                        warnings.append(
                            f"could not revoke {function.split('(')[0]} from PUBLIC (the admin does"
                            " not own it): the role may still create large objects"
                        )
                        break
        except psycopg.Error as e:
            raise DatabaseError(f"could not set up role {role}: {_first_line(e)}") from e
        finally:
            await connection.close()
        return warnings

    async def drop_role(self, role: str, database: str) -> None:
        """End the role's sessions, take back what it was granted, and drop it. Idempotent."""
        import psycopg  # noqa: PLC0415 - see the imports
        from psycopg import sql  # noqa: PLC0415

        connection = await self._connect(database)
        try:
            async with connection.transaction():
                if not await _role_exists(connection, role):
                    return
                await connection.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
                    (role,),
                )
                ident = sql.Identifier(role)
                await connection.execute(sql.SQL("DROP OWNED BY {}").format(ident))
                await connection.execute(sql.SQL("DROP ROLE {}").format(ident))
        except psycopg.Error as e:
            raise DatabaseError(f"could not drop role {role}: {_first_line(e)}") from e
        finally:
            await connection.close()


async def _role_exists(connection: "psycopg.AsyncConnection[Any]", role: str) -> bool:
    cursor = await connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    return await cursor.fetchone() is not None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
