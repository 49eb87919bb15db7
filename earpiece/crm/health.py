"""The CRM health check that ``earpiece doctor`` runs (its ``crm`` line).

:func:`check_crm` opens ``crm.url`` with the service's own store (:mod:`earpiece.crm.backend`),
checks that the expected tables and columns are there, proves a write (a probe row inserted and
deleted in one transaction) and counts the stored calls; it reports the backend and where it is
(SQLite path, PostgreSQL user@host:port/database). An SQLite file not created yet is tried as a
scratch database in the directory the service would create it in, removed afterwards. Every
problem comes back as a FAIL :class:`~earpiece.checks.CheckResult` naming the setting to fix;
nothing is raised for database problems, and the PostgreSQL password never appears in it.
psycopg is imported only for a PostgreSQL URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from earpiece.checks import CheckResult
from earpiece.config import Settings
from earpiece.crm.backend import CrmBackend, make_store, url_scheme
from earpiece.crm.dialect import SQLITE
from earpiece.crm.store import sqlite_path
from earpiece.errors import ConfigError, CrmError
from earpiece.secret import Secret

if TYPE_CHECKING:
    from earpiece.crm.postgres import PgTarget

__all__ = ["CRM_CHECK_TIMEOUT_S", "CRM_CONNECT_TIMEOUT_S", "CRM_EXACT_COUNT_MAX", "CrmProbe",
           "CrmSchemaMismatch", "check_crm"]

CRM_CONNECT_TIMEOUT_S = 3.0  # PostgreSQL connect timeout (the service waits 10 s)
CRM_CHECK_TIMEOUT_S = 10.0  # the whole CRM check, whatever hangs
CRM_EXACT_COUNT_MAX = 1_000_000  # above this PostgreSQL's row estimate is reported instead


class CrmSchemaMismatch(CrmError):
    """The CRM tables exist but not with the columns this version of Earpiece writes."""


@dataclass(frozen=True)
class CrmProbe:
    """What the CRM check saw in a database that opened, matched the schema and took a write."""

    tables: int
    calls: int
    calls_estimated: bool  # PostgreSQL's planner estimate (a large table is not counted)
    server: str = ""  # PostgreSQL server version
    schema: str = ""  # PostgreSQL schema (the first of the search_path)

    def summary(self) -> str:
        calls = f"about {self.calls}" if self.calls_estimated else str(self.calls)
        return (f"{self.tables} tables ok, write ok (probe row inserted and deleted), "
                f"{calls} call{'' if self.calls == 1 else 's'} stored")


async def check_crm(settings: Settings, config: str, password_source: str = "", *,
                    connect_timeout_s: float = CRM_CONNECT_TIMEOUT_S,
                    timeout_s: float = CRM_CHECK_TIMEOUT_S) -> CheckResult:
    """Open ``crm.url`` as the service does and prove it can be read and written.

    Never raises for database problems and never takes much longer than ``timeout_s``; the
    PostgreSQL password (``password_source`` says where it comes from) is scrubbed from
    whatever the result says.
    """
    crm = settings.crm
    url_fix = (f"edit {config}: set crm.url to sqlite:///path/to/file.sqlite3 or "
               f"postgresql://user@host:port/database")
    try:
        scheme = url_scheme(crm.url)
    except ConfigError as exc:
        return CheckResult("crm", "FAIL", str(exc), url_fix)
    if scheme == "sqlite":
        result = await _check_sqlite(crm.url, config, timeout_s, url_fix)
    else:
        result = await _check_postgres(crm.url, crm.password, config, password_source,
                                       connect_timeout_s, timeout_s, url_fix)
    if crm.password:  # the stores scrub their messages already; this is the last line
        secret = crm.password.get()
        result = CheckResult(result.name, result.status,
                             result.detail.replace(secret, "********"),
                             result.fix.replace(secret, "********"))
    return result


def _expected_columns() -> dict[str, set[str]]:
    """Table -> columns of the schema this Earpiece creates (same names in every dialect)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SQLITE.schema())
        rows = conn.execute("SELECT m.name, p.name FROM sqlite_master AS m "
                            "JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'")
        out: dict[str, set[str]] = {}
        for table, column in rows:
            out.setdefault(table, set()).add(column)
        return out
    finally:
        conn.close()


async def _probe_store(store: CrmBackend) -> CrmProbe:
    """Schema check, a write that leaves nothing behind, and the number of calls."""
    postgres = store.dialect.name == "postgresql"
    server = schema = ""
    if postgres:
        rows = await store.query(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema = current_schema()")
        info = await store.query("SELECT current_setting('server_version') AS v, "
                                 "current_schema() AS s")
        server, schema = str(info[0]["v"]), str(info[0]["s"])
    else:
        rows = await store.query("SELECT m.name AS t, p.name AS c FROM sqlite_master AS m "
                                 "JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'")
    actual: dict[str, set[str]] = {}
    for row in rows:
        actual.setdefault(str(row["t"]), set()).add(str(row["c"]))
    expected = _expected_columns()
    problems = []
    for table, columns in sorted(expected.items()):
        if table not in actual:
            problems.append(f"table {table} is missing")
        elif missing := sorted(columns - actual[table]):
            problems.append(f"table {table} lacks column{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)}")
    if problems:
        raise CrmSchemaMismatch("schema mismatch: " + "; ".join(problems))

    probe_id = f"earpiece-doctor-{uuid.uuid4().hex}"
    probe_columns = ("id", "direction", "channel", "started")
    await store.execute_many([
        (store.dialect.insert("calls", probe_columns), (probe_id, "outbound", "doctor/probe",
                                                  time.time())),
        ("DELETE FROM calls WHERE id = ?", (probe_id,)),
    ])

    estimated = False
    count = -1
    if postgres:
        est = await store.query("SELECT reltuples::bigint AS n FROM pg_class "
                                "WHERE oid = to_regclass('calls')")
        count = int(est[0]["n"]) if est and est[0]["n"] is not None else -1
        estimated = count > CRM_EXACT_COUNT_MAX
    if not estimated:
        count = int((await store.query("SELECT COUNT(*) AS n FROM calls"))[0]["n"])
    return CrmProbe(tables=len(expected), calls=count, calls_estimated=estimated,
                    server=server, schema=schema)


def _schema_fix(config: str) -> str:
    return (f"this database was made by another version of Earpiece (or holds other tables "
            f"with these names): migrate it, or point crm.url in {config} at a new database")


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat``, None when the path does not exist (or a parent is not a directory)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _sqlite_access_problem(db: Path) -> tuple[str, str] | None:
    """(detail, fix) when ``db`` certainly cannot be opened read-write by this user."""
    who = f"the user that runs earpiece (here uid {os.geteuid()})"
    if (st := _stat(db)) is not None:
        if not stat.S_ISREG(st.st_mode):
            return f"{db} is not a regular file", "set crm.url to an SQLite file's path"
        if not os.access(db, os.R_OK | os.W_OK):
            return (f"permission denied: {db} is not readable and writable",
                    f"chown/chmod {db} for {who}")
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        if not os.access(db.parent, os.W_OK | os.X_OK) and not (wal.exists() and shm.exists()):
            return (f"permission denied: directory {db.parent} is not writable (SQLite's WAL "
                    f"mode creates {wal.name} and {shm.name} there)",
                    f"make {db.parent} writable for {who}")
        return None
    anchor = db.parent
    while _stat(anchor) is None:
        anchor = anchor.parent
    if not anchor.is_dir():
        return (f"cannot create {db}: {anchor} is not a directory",
                f"set crm.url to a path under a directory (not under the file {anchor})")
    if not os.access(anchor, os.W_OK | os.X_OK):
        return (f"permission denied: cannot create {db}: directory {anchor} is not writable",
                f"make {anchor} writable for {who}, or set crm.url to a writable place")
    return None


@dataclass(frozen=True)
class _SqliteTarget:
    where: str  # "SQLite /abs/path"
    open_url: str  # crm.url, or a scratch database's URL when the file does not exist yet
    note: str  # said after ``where`` in a PASS
    scratch: Path | None = None


def _sqlite_target(path: str, config: str) -> _SqliteTarget | CheckResult:
    """Where the SQLite database is and what to open to test it, or why it cannot work."""
    if path == ":memory:":
        return _SqliteTarget("SQLite :memory:", "sqlite://:memory:",
                             " (nothing is kept when the service stops):")
    db = Path(path).absolute()
    where = f"SQLite {db}"
    note = "" if Path(path).is_absolute() else " (crm.url is relative to the working directory)"
    try:
        problem = _sqlite_access_problem(db)
        exists = _stat(db) is not None
    except OSError as exc:  # e.g. a parent directory that may not be searched
        return CheckResult("crm", "FAIL", f"{where}: {exc.strerror or exc}: {exc.filename}",
                           f"make the directories of {db} searchable for the user that runs "
                           f"earpiece, or set crm.url in {config}")
    if problem is not None:
        return CheckResult("crm", "FAIL", f"{where}: {problem[0]}", problem[1])
    if exists:
        return _SqliteTarget(where, f"sqlite:///{db}", note + ":")
    # Not created yet: do what the service would do in a scratch database where it would
    # create its directories and file, and leave nothing there.
    anchor = db.parent
    while _stat(anchor) is None:
        anchor = anchor.parent
    scratch = anchor / f".earpiece-doctor-{uuid.uuid4().hex[:12]}.sqlite3"
    return _SqliteTarget(where, f"sqlite:///{scratch}",
                         f"{note} does not exist yet, the service will create it; in a scratch "
                         f"database in {anchor}:", scratch)


def _remove_scratch(scratch: Path) -> None:
    for leftover in (scratch, *(Path(f"{scratch}{s}") for s in ("-wal", "-shm", "-journal"))):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


async def _check_sqlite(url: str, config: str, timeout_s: float, url_fix: str) -> CheckResult:
    try:
        target = _sqlite_target(sqlite_path(url), config)
    except ConfigError as exc:
        return CheckResult("crm", "FAIL", str(exc), url_fix)
    if isinstance(target, CheckResult):
        return target
    where = target.where
    store = make_store(target.open_url)
    try:
        async with asyncio.timeout(timeout_s):
            await store.open()
            probe = await _probe_store(store)
    except TimeoutError:
        return CheckResult("crm", "FAIL", f"{where}: no answer within {timeout_s:g} s",
                           "another process holds a lock on the database, or its file system "
                           "hangs (network mount?)")
    except CrmSchemaMismatch as exc:
        return CheckResult("crm", "FAIL", f"{where}: {exc}", _schema_fix(config))
    except CrmError as exc:
        reason = _sqlite_reason(exc, sqlite_path(target.open_url))
        return CheckResult("crm", "FAIL", f"{where}: {reason}",
                           _sqlite_fix(str(exc), where, config))
    finally:
        await store.close()
        if target.scratch is not None:
            _remove_scratch(target.scratch)
    return CheckResult("crm", "PASS", f"{where}{target.note} {probe.summary()}")


def _sqlite_reason(exc: CrmError, path: str) -> str:
    """The store's message without the path (the check's detail starts with it)."""
    text = str(exc)
    for prefix in (f"cannot open SQLite database {path}: ", f"SQLite {path}: "):
        if text.startswith(prefix):
            return text.removeprefix(prefix)
    return text.replace(f" in {path}:", ":")


def _sqlite_fix(message: str, where: str, config: str) -> str:
    low = message.lower()
    if "readonly" in low or "read-only" in low:
        return (f"{where} is read-only for this user: make the file, its -wal/-shm files and "
                f"its directory writable for the user that runs earpiece")
    if "not a database" in low:
        return f"that file is not an SQLite database: point crm.url in {config} at a new file"
    if "locked" in low or "busy" in low:
        return "another process holds a write lock on the database (for more than 5 s)"
    return f"check crm.url in {config} and the permissions of the file and its directory"


async def _check_postgres(url: str, password: Secret, config: str, password_source: str,
                          connect_timeout_s: float, timeout_s: float,
                          url_fix: str) -> CheckResult:
    from earpiece.crm.postgres import PostgresStore  # psycopg: only for a PostgreSQL URL

    try:
        store = PostgresStore(url, password=password or None,
                              connect_timeout_s=connect_timeout_s)
    except ConfigError as exc:
        return CheckResult("crm", "FAIL", str(exc), url_fix)
    target = store.target
    where = f"PostgreSQL {target}"
    try:
        async with asyncio.timeout(timeout_s):
            await store.open()
            probe = await _probe_store(store)
    except TimeoutError:
        return CheckResult("crm", "FAIL", f"{where}: no answer within {timeout_s:g} s",
                           _pg_fix("timeout", target, config, password_source))
    except CrmSchemaMismatch as exc:
        return CheckResult("crm", "FAIL", f"{where}: {exc}", _schema_fix(config))
    except CrmError as exc:
        message = str(exc)
        for prefix in (f"cannot connect to PostgreSQL {target}: ", f"PostgreSQL {target}: "):
            message = message.removeprefix(prefix)
        low = message.lower()
        if "connection refused" in low:
            message = "connection refused"
        elif "timeout expired" in low:
            message = f"no answer within {connect_timeout_s:g} s (connect timeout)"
        return CheckResult("crm", "FAIL", f"{where}: {message}",
                           _pg_fix(low, target, config, password_source))
    finally:
        await store.close()
    version = f"PostgreSQL {probe.server}" if probe.server else "PostgreSQL"
    return CheckResult("crm", "PASS",
                       f"{version} at {target} (schema {probe.schema}): {probe.summary()}")


def _pg_fix(low: str, target: PgTarget, config: str, password_source: str) -> str:
    host, port, user = target.host or "localhost", target.port, target.user or "<default user>"
    if "connection refused" in low:
        return (f"is PostgreSQL running and listening on {host}:{port}? (postgresql.conf "
                f"listen_addresses and port; `pg_isready -h {host} -p {port}`); or fix crm.url "
                f"in {config}")
    if "timeout" in low:
        return (f"check crm.url's host and port in {config} and any firewall between here and "
                f"the server (TCP {port})")
    if "translate host name" in low or "name or service not known" in low:
        return f"set crm.url in {config} to a resolvable host name or an IP address"
    if "password" in low:
        return (f"the password for '{user}' comes from {password_source or 'nothing'}; check "
                f"it, and the pg_hba.conf rule for this host")
    if "database" in low and "does not exist" in low:
        return (f"create it (`createdb -h {host} -p {port} -U {user} {target.database}`) or "
                f"fix the database name in crm.url in {config}")
    if "role" in low and "does not exist" in low:
        return f"create the role '{user}' or fix the user in crm.url in {config}"
    if "read-only" in low:
        return ("crm.url points at a read-only server (a standby?): use the primary, or add "
                "?target_session_attrs=read-write to crm.url")
    if "permission denied" in low:
        return (f"grant '{user}' CREATE on the schema and SELECT, INSERT, UPDATE, DELETE on the "
                f"CRM tables")
    return f"check crm.url in {config} and the PostgreSQL server log"
