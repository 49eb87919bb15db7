"""PostgreSQL CRM store (``crm.url = "postgresql://user@host:port/database"``).

Driver: psycopg 3 (``psycopg[binary]``), not asyncpg, because

* its ``AsyncConnection`` drives libpq in non-blocking mode on the event loop itself (no
  thread, and host names are resolved with the loop's ``getaddrinfo``), so the loop never
  waits on the network;
* it ships inline type hints (``py.typed``), so ``mypy --strict`` checks every call into it;
  asyncpg has none;
* pipeline mode sends a whole writer batch in one round trip inside one transaction;
* its connection string is libpq's, so every libpq URL parameter (``sslmode``, ``options``,
  ``application_name``, ``target_session_attrs``...) works in ``crm.url`` unchanged, and it
  takes ``%s`` placeholders, a mechanical translation of the ``?`` the CRM code writes
  (asyncpg's ``$1..$n`` would need numbering).

One connection (the CRM has one writer task; reports read rarely), guarded by an
:class:`asyncio.Lock` so one batch's transaction never interleaves with another caller. A lost
connection (server restart, failover, idle kill) is reopened on the next call, and the call
that saw the loss is retried once on the new connection. A transaction whose COMMIT reached
the server but whose reply was lost would then be applied twice: the CRM rows are keyed
(``calls``, ``legs``) or append-only history, so that rare case duplicates a history row at
worst.

The password comes from :class:`~earpiece.secret.Secret` (``$EARPIECE_CRM_PASSWORD`` or
``crm.password_file``), never from the URL (a URL with a password is refused, so it cannot
end up in a config file or a log), and is scrubbed from every error message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

import psycopg
from psycopg import pq
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, dict_row
from psycopg.types.string import TextLoader

from earpiece.crm.base import CrmBackend, Statement, split_url
from earpiece.crm.dialect import ADDED_COLUMNS, POSTGRESQL
from earpiece.errors import ConfigError, CrmConnectionError, CrmError
from earpiece.secret import Secret

log = logging.getLogger(__name__)

T = TypeVar("T")

Connection = psycopg.AsyncConnection[DictRow]

# Serialises schema creation between Earpiece processes sharing one database
# (CREATE TABLE IF NOT EXISTS is not race-free in PostgreSQL).
SCHEMA_LOCK_KEY = 0x45415250  # "EARP"

# Statements queued in a pipeline between two chances for other tasks to run.
YIELD_EVERY = 32


@dataclass(frozen=True)
class PgTarget:
    """Where a ``postgresql://`` URL points (no password: it never is in the URL)."""

    user: str
    host: str
    port: int
    database: str

    def __str__(self) -> str:
        return f"{self.user or '<default user>'}@{self.host or '<local socket>'}:" \
               f"{self.port}/{self.database}"


def parse_postgres_url(url: str) -> PgTarget:
    """Check a ``postgresql://user@host:port/database[?param=value...]`` URL.

    Raises :class:`ConfigError` naming ``crm.url``; the message never repeats a password.
    """
    parsed = split_url(url)
    if parsed.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL (scheme {parsed.scheme!r})", key="crm.url")
    if parsed.password is not None:
        raise ConfigError(
            "the password must not be in the URL; set $EARPIECE_CRM_PASSWORD or"
            " crm.password_file",
            key="crm.url",
        )
    try:
        port = parsed.port or 5432
    except ValueError:
        raise ConfigError("invalid port in the PostgreSQL URL", key="crm.url") from None
    database = unquote(parsed.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError(
            "no database name in the PostgreSQL URL (postgresql://user@host:port/database)",
            key="crm.url",
        )
    try:
        conninfo_to_dict(url)
    except psycopg.ProgrammingError as exc:
        raise ConfigError(f"invalid PostgreSQL URL: {exc}", key="crm.url") from None
    return PgTarget(user=unquote(parsed.username or ""), host=parsed.hostname or "",
                    port=port, database=database)


class PostgresStore(CrmBackend):
    """CRM store on PostgreSQL through one psycopg async connection, reopened when lost."""

    dialect = POSTGRESQL

    def __init__(
        self,
        url: str,
        *,
        password: Secret | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.url = url
        self.target = parse_postgres_url(url)
        self._password = password if password else None
        self._connect_timeout_s = connect_timeout_s
        self._conn: Connection | None = None
        self._lock = asyncio.Lock()
        self._open = False
        self.reconnects = 0

    # --- connection ----------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        if self._password is not None:
            text = text.replace(self._password.get(), "********")
        return text

    def _describe(self, exc: BaseException) -> str:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        return self._scrub("; ".join(lines) or type(exc).__name__)

    async def dedicated_connection(self, *, application_name: str = "") -> Connection:
        """A connection of its own (not the store's), e.g. to hold a session-level lock; the
        caller closes it. Errors as :meth:`open`'s (:class:`CrmConnectionError`)."""
        return await self._connect(application_name=application_name)

    async def _connect(self, *, application_name: str = "") -> Connection:
        kwargs: dict[str, Any] = {"connect_timeout": max(2, round(self._connect_timeout_s))}
        if application_name:
            kwargs["application_name"] = application_name
        if self._password is not None:
            kwargs["password"] = self._password.get()
        try:
            conn = await psycopg.AsyncConnection.connect(
                self.url, autocommit=True, row_factory=dict_row, **kwargs
            )
        except psycopg.Error as exc:
            raise CrmConnectionError(
                f"cannot connect to PostgreSQL {self.target}: {self._describe(exc)}"
            ) from None
        # JSON columns come back as JSON text, as from SQLite.
        conn.adapters.register_loader("jsonb", TextLoader)
        conn.adapters.register_loader("json", TextLoader)
        return conn

    async def _connection(self) -> Connection:
        if not self._open:
            raise RuntimeError("CRM store is not open")
        conn = self._conn
        if conn is not None and not conn.closed and \
                conn.info.transaction_status == pq.TransactionStatus.IDLE:
            return conn
        if conn is not None:  # lost, or left mid-transaction by a cancelled call
            await self._discard()
            self.reconnects += 1
            log.warning("CRM: reconnecting to PostgreSQL %s", self.target)
        self._conn = await self._connect()
        return self._conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            try:
                await conn.close()
            except psycopg.Error as exc:
                log.debug("CRM: closing a broken connection: %s", self._describe(exc))

    async def _call(self, work: Callable[[Connection], Awaitable[T]], what: str) -> T:
        """Run ``work`` on the connection; once more on a fresh one if the connection died."""
        async with self._lock:
            conn = await self._connection()
            try:
                return await work(conn)
            except psycopg.OperationalError as exc:
                if not (conn.broken or conn.closed):
                    raise CrmError(f"PostgreSQL {self.target}: {what}: "
                                   f"{self._describe(exc)}") from None
                log.warning("CRM: connection to PostgreSQL %s lost during %s (%s); retrying "
                            "on a new connection", self.target, what, self._describe(exc))
            except psycopg.Error as exc:
                raise CrmError(f"PostgreSQL {self.target}: {what}: "
                               f"{self._describe(exc)}") from None
            conn = await self._connection()
            try:
                return await work(conn)
            except psycopg.Error as exc:
                lost = isinstance(exc, psycopg.OperationalError) and (conn.broken or conn.closed)
                error = CrmConnectionError if lost else CrmError
                raise error(f"PostgreSQL {self.target}: {what}: "
                            f"{self._describe(exc)}") from None

    # --- CrmBackend ----------------------------------------------------------------------
    async def open(self) -> None:
        self._open = True
        try:
            await self._call(self._create_schema, "creating the schema")
        except BaseException:
            await self.close()
            raise
        log.info("CRM: PostgreSQL %s", self.target)

    async def _create_schema(self, conn: Connection) -> None:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            for sql in self.dialect.schema_statements():
                await conn.execute(sql)
            for table, column, kind in ADDED_COLUMNS:
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")

    async def close(self) -> None:
        self._open = False
        async with self._lock:
            await self._discard()

    async def execute_many(self, statements: Sequence[Statement]) -> None:
        native = [(self.dialect.native(sql), params) for sql, params in statements]
        if not native:
            return

        async def work(conn: Connection) -> None:
            async with conn.pipeline(), conn.transaction():
                for i, (sql, params) in enumerate(native, 1):
                    await conn.execute(sql, params)
                    if i % YIELD_EVERY == 0:
                        # In pipeline mode execute() queues without waiting for the server,
                        # so a long batch would hold the loop; let other tasks run.
                        await asyncio.sleep(0)

        await self._call(work, f"writing {len(native)} statements")

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        native = self.dialect.native(sql)

        async def work(conn: Connection) -> list[dict[str, Any]]:
            cur = await conn.execute(native, params)
            if cur.description is None:
                return []
            return await cur.fetchall()

        return await self._call(work, "query")
