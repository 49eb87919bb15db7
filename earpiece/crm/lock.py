"""One active Earpiece per ARI application: the instance lock taken before attaching to a PBX.

Two instances on one ARI app take the app from each other (Asterisk gives the websocket to the
newest) and write the same calls twice into the CRM, so the second one must refuse to start.

- SQLite (one host): an exclusive ``flock`` on ``<database>.<app>.lock`` beside the database;
  the file holds the holder's host, pid and start time for the error message.
- PostgreSQL (any host): a session-level advisory lock (``pg_try_advisory_lock``) on a
  connection of its own, keyed by the app name; the connection's ``application_name`` names
  the holder. A watchdog re-takes the lock when that connection is lost (a database restart)
  and reports loudly when another instance got it meanwhile.

Both are released by the operating system or the database server when the holder dies
(``kill -9`` included), so a restarted Earpiece is never refused by a dead one. An in-memory
SQLite database is private to its process: nothing to lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import socket
import time
from typing import IO, Any

from earpiece.crm.backend import CrmBackend
from earpiece.errors import CrmError, EarpieceError

log = logging.getLogger(__name__)

#: How often the PostgreSQL lock's connection is checked (and the lock re-taken if lost).
WATCH_INTERVAL_S = 5.0


class InstanceLockedError(EarpieceError):
    """Another live Earpiece holds the instance lock of this ARI application."""


def holder_label(app: str) -> str:
    return f"earpiece app={app} host={socket.gethostname()} pid={os.getpid()}"


def advisory_key(app: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_lock`` from the app name."""
    digest = hashlib.sha256(f"earpiece-instance:{app}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class InstanceLock:
    """Held from :meth:`acquire` to :meth:`release`; see the module docstring."""

    def __init__(self, store: CrmBackend, app: str) -> None:
        self.store = store
        self.app = app
        self.held = False
        self.lost = False  # PostgreSQL: the lock went to another instance after a reconnect
        self.retakes = 0
        self._file: IO[str] | None = None
        self._conn: Any = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def path(self) -> str | None:
        """The lock file of a SQLite database, or ``None``."""
        db = getattr(self.store, "path", None)
        if self.store.dialect.name != "sqlite" or not isinstance(db, str) or db == ":memory:":
            return None
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.app)
        return f"{db}.{safe}.lock"

    async def acquire(self) -> None:
        """Take the lock or raise :class:`InstanceLockedError` naming the live holder."""
        if self.store.dialect.name == "sqlite":
            if self.path is not None:
                await asyncio.to_thread(self._lock_file, self.path)
        else:
            await self._lock_postgres()
            self._watch = asyncio.create_task(self._watchdog(), name="crm-instance-lock")
        self.held = True
        log.info("instance lock for ARI app %r taken (%s)", self.app,
                 self.path or self.store.dialect.name)

    async def release(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._file is not None:
            await asyncio.to_thread(self._unlock_file)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):  # the lock goes with the connection anyway
                await conn.close()
        self.held = False

    # --- SQLite: a lock file ---------------------------------------------------------------
    def _lock_file(self, path: str) -> None:
        f = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise InstanceLockedError(
                f"another Earpiece is active on ARI app {self.app!r} with this CRM database "
                f"({holder}; lock file {path}); stop it first, or give this instance another "
                "ari.app and crm.url") from None
        except OSError as exc:
            f.close()
            raise CrmError(f"cannot lock {path}: {exc}") from None
        f.seek(0)
        f.truncate()
        f.write(f"{holder_label(self.app)} since={time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        f.flush()
        self._file = f

    def _unlock_file(self) -> None:
        f, self._file = self._file, None
        if f is None:
            return
        with contextlib.suppress(OSError):
            f.seek(0)
            f.truncate()
        f.close()  # closing the descriptor drops the flock

    # --- PostgreSQL: an advisory lock on a connection of its own ---------------------------
    async def _lock_postgres(self) -> None:
        connect = getattr(self.store, "dedicated_connection", None)
        if connect is None:
            raise CrmError(f"{type(self.store).__name__} cannot hold an instance lock")
        conn = await connect(application_name=holder_label(self.app)[:63])
        try:
            cur = await conn.execute("SELECT pg_try_advisory_lock(%s) AS ok",
                                     (advisory_key(self.app),))
            row = await cur.fetchone()
            if not row or not row["ok"]:
                holder = await self._pg_holder(conn)
                raise InstanceLockedError(
                    f"another Earpiece is active on ARI app {self.app!r} with this CRM database "
                    f"({holder}); stop it first, or give this instance another ari.app")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        self._conn = conn

    async def _pg_holder(self, conn: Any) -> str:
        cur = await conn.execute(
            "SELECT a.application_name, a.client_addr::text AS addr, a.backend_start::text AS s"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND l.objid::bigint = (%s::bigint & 4294967295) LIMIT 1", (advisory_key(self.app),))
        row = await cur.fetchone()
        if not row:
            return "holder unknown"
        return f"{row['application_name'] or 'unnamed'} from {row['addr'] or 'local'} " \
               f"since {row['s']}"

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            if self._conn is not None:
                try:
                    await self._conn.execute("SELECT 1")
                    continue
                except Exception as exc:  # noqa: BLE001 - any failure: the session is gone
                    log.warning("instance lock: its PostgreSQL session was lost (%s); "
                                "re-taking it", exc)
                conn, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    await conn.close()
            try:
                await self._lock_postgres()
            except InstanceLockedError as exc:
                self.lost = True
                log.error("instance lock LOST: %s", exc)
                return
            except EarpieceError as exc:
                log.warning("instance lock: cannot re-take it yet (%s)", exc)
                continue
            self.retakes += 1
            log.info("instance lock for ARI app %r re-taken", self.app)
