"""SQLite CRM store (the embedded default; :mod:`earpiece.crm.postgres` for production).

All SQL runs on one dedicated worker thread (``sqlite3`` objects stay on the thread that made
them), so the event loop never waits on disk. The schema and the dialect differences live in
:mod:`earpiece.crm.dialect`; the interface in :class:`earpiece.crm.backend.CrmBackend`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from earpiece.crm.base import CrmBackend, Statement, split_url
from earpiece.crm.dialect import ADDED_COLUMNS, SQLITE
from earpiece.errors import ConfigError, CrmConnectionError, CrmError

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA = SQLITE.schema()


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/path``, ``sqlite:////abs/path`` or ``sqlite://:memory:``."""
    parsed = split_url(url)
    if parsed.scheme != "sqlite":
        raise ConfigError(
            f"unsupported database URL scheme {parsed.scheme!r} for SQLite (sqlite:///path;"
            " postgresql://... is the PostgreSQL backend)",
            key="crm.url",
        )
    if url in ("sqlite://:memory:", "sqlite:///:memory:"):
        return ":memory:"
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    if not path:
        raise ConfigError(f"no database path in {url!r}", key="crm.url")
    return path


class SqliteStore(CrmBackend):
    """Async facade over one SQLite connection owned by a worker thread."""

    dialect = SQLITE

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm")
        self._conn: sqlite3.Connection | None = None
        self._closed = False

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path)
        except (OSError, sqlite3.Error) as exc:
            raise CrmConnectionError(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.executescript(SCHEMA)
            for table, column, kind in ADDED_COLUMNS:
                have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                if column not in have:
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            conn.commit()
        except sqlite3.Error as exc:
            conn.close()
            raise CrmError(f"cannot create the CRM schema in {self.path}: {exc}") from exc
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._close)
        self._closed = True
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.commit()
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError("CRM store is not open (closed)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("CRM store is not open")
        return self._conn

    async def execute_many(self, statements: Sequence[Statement]) -> None:
        """Run several writes in one transaction."""

        def work() -> None:
            db = self._db()
            try:
                with db:
                    for sql, params in statements:
                        db.execute(sql, params)
            except sqlite3.Error as exc:
                raise CrmError(f"SQLite {self.path}: {exc}") from exc

        await self._run(work)

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        def work() -> list[dict[str, Any]]:
            try:
                cur = self._db().execute(sql, params)
                cols = [c[0] for c in cur.description or ()]
                return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
            except sqlite3.Error as exc:
                raise CrmError(f"SQLite {self.path}: {exc}") from exc

        return await self._run(work)


# The name the SQLite store had before there was a second backend.
CrmStore = SqliteStore
