"""SQLite CRM store.

All SQL runs on one dedicated worker thread (``sqlite3`` objects stay on the thread that made
them), so the event loop never waits on disk. The schema is plain SQL that PostgreSQL also
accepts, so a PostgreSQL backend only has to swap the connection layer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from earpiece.errors import ConfigError

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'dialing',
    outcome TEXT,
    outcome_source TEXT,
    hangup_cause INTEGER,
    tags TEXT NOT NULL DEFAULT '{}',
    started REAL NOT NULL,
    answered REAL,
    ended REAL
);
CREATE TABLE IF NOT EXISTS legs (
    call_id TEXT NOT NULL REFERENCES calls(id),
    uniqueid TEXT NOT NULL,
    channel TEXT NOT NULL,
    role TEXT NOT NULL,
    joined REAL NOT NULL,
    left_at REAL,
    cause INTEGER,
    PRIMARY KEY (call_id, uniqueid)
);
CREATE TABLE IF NOT EXISTS state_changes (
    call_id TEXT NOT NULL REFERENCES calls(id),
    at REAL NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cpa_verdicts (
    call_id TEXT NOT NULL REFERENCES calls(id),
    at REAL NOT NULL,
    label TEXT NOT NULL,
    confidence REAL NOT NULL,
    decision_s REAL NOT NULL,
    evidence TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS utterances (
    call_id TEXT NOT NULL REFERENCES calls(id),
    party TEXT NOT NULL,
    start_s REAL NOT NULL,
    end_s REAL NOT NULL,
    text TEXT NOT NULL,
    language TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS utterances_call ON utterances(call_id, start_s);
"""


def sqlite_path(url: str) -> str:
    """``sqlite:///relative/path``, ``sqlite:////abs/path`` or ``sqlite://:memory:``."""
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise ConfigError(
            f"unsupported database URL scheme {parsed.scheme!r} (supported: sqlite)", key="crm.url"
        )
    if url in ("sqlite://:memory:", "sqlite:///:memory:"):
        return ":memory:"
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else ""
    if not path:
        raise ConfigError(f"no database path in {url!r}", key="crm.url")
    return path


class CrmStore:
    """Async facade over one SQLite connection owned by a worker thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crm")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        await self._run(self._open)

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        conn.commit()
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            await self._run(self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.commit()
            self._conn.close()
            self._conn = None

    async def _run(self, fn: Callable[[], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("CrmStore is not open")
        return self._conn

    async def execute_many(self, statements: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
        """Run several writes in one transaction."""

        def work() -> None:
            db = self._db()
            with db:
                for sql, params in statements:
                    db.execute(sql, params)

        await self._run(work)

    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        def work() -> list[dict[str, Any]]:
            cur = self._db().execute(sql, params)
            cols = [c[0] for c in cur.description or ()]
            return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]

        return await self._run(work)

    async def calls(self) -> list[dict[str, Any]]:
        rows = await self.query("SELECT * FROM calls ORDER BY started, id")
        for row in rows:
            row["tags"] = json.loads(row["tags"])
        return rows
