"""CRM store and writer: events published on the bus end up as rows, on SQLite and PostgreSQL.

The ``crm_url`` fixture runs every shared test on both backends. PostgreSQL tests use the
local server (127.0.0.1:5432, database ``test``, user ``postgres`` or ``root``, trust auth;
``$EARPIECE_TEST_POSTGRES_URL`` overrides) in a schema created for the test and dropped after
it; they skip, saying why, only when no server is reachable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from earpiece.bus import EventBus
from earpiece.config import load_settings
from earpiece.crm.backend import CrmBackend, make_store, open_store
from earpiece.crm.postgres import PostgresStore, parse_postgres_url
from earpiece.crm.store import CrmStore, SqliteStore, sqlite_path
from earpiece.crm.writer import CrmWriter, statements_for
from earpiece.errors import ConfigError, CrmConnectionError, CrmError
from earpiece.events import (
    CallEnded,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelRole,
    CpaDecision,
    Transcript,
)
from earpiece.secret import Secret

PG_CANDIDATES = [
    "postgresql://postgres@127.0.0.1:5432/test",
    "postgresql://root@127.0.0.1:5432/test",
]


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """A URL of the local PostgreSQL server. Skips only when nothing listens there; a server
    that listens but lets none of the candidates in is a failure, not a skip."""
    override = os.environ.get("EARPIECE_TEST_POSTGRES_URL")
    candidates = [override] if override else PG_CANDIDATES
    target = parse_postgres_url(candidates[0])
    try:
        socket.create_connection((target.host, target.port), timeout=3).close()
    except OSError as exc:
        pytest.skip(f"no PostgreSQL server reachable at {target.host}:{target.port} for the CRM "
                    f"tests ({exc}); set $EARPIECE_TEST_POSTGRES_URL to use another one")
    errors = []
    for url in candidates:
        try:
            with psycopg.connect(url, connect_timeout=3, autocommit=True):
                return url
        except psycopg.Error as exc:
            errors.append(f"{url}: {str(exc).strip().splitlines()[-1]}")
    pytest.fail("a PostgreSQL server listens but the CRM tests cannot log in: " + "; ".join(errors))


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A ``postgresql://`` URL whose search_path is a fresh schema, dropped afterwards."""
    schema = f"earpiece_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_admin_url}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", "postgresql"])
def crm_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/crm.sqlite3"
    url: str = request.getfixturevalue("pg_url")
    return url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def started(call_id: str, at: float = 10.0, **tags: str) -> CallStarted:
    return CallStarted(call_id=call_id, direction="outbound", channel=f"PJSIP/{call_id}-1",
                       tags=tags, at=at)


async def write(store: CrmBackend, *events: Any) -> None:
    await store.execute_many([s for ev in events for s in statements_for(ev, store.dialect)])


# --------------------------------------------------------------------------------------------
# URLs and the factory (no server needed)
# --------------------------------------------------------------------------------------------


def test_sqlite_url_parsing() -> None:
    assert sqlite_path("sqlite:///var/x.db") == "var/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"
    with pytest.raises(ConfigError, match=r"crm\.url.*postgres"):
        sqlite_path("postgres://db/earpiece")


def test_postgres_url_parsing() -> None:
    t = parse_postgres_url("postgresql://earpiece@postgres:5433/crm?sslmode=disable")
    assert (t.user, t.host, t.port, t.database) == ("earpiece", "postgres", 5433, "crm")
    assert str(t) == "earpiece@postgres:5433/crm"
    assert parse_postgres_url("postgres://u@h/db").port == 5432


@pytest.mark.parametrize(("url", "fragment"), [
    ("postgresql://earpiece:hunter2@db/crm", "EARPIECE_CRM_PASSWORD"),
    ("postgresql://earpiece@db:notaport/crm", "invalid port"),
    ("postgresql://earpiece@db:5432/", "no database name"),
    ("postgresql://earpiece@db:5432", "no database name"),
    ("postgresql://earpiece@db/crm?no_such_param=1", "invalid PostgreSQL URL"),
    ("mysql://earpiece@db/crm", "unsupported database URL scheme 'mysql'"),
    ("sqlite://", "no database path"),
])
def test_bad_urls_are_config_errors_naming_crm_url(url: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_store(url, password=Secret("hunter2"))
    assert info.value.key == "crm.url"
    assert fragment in str(info.value)
    assert "hunter2" not in str(info.value)


def test_factory_picks_the_backend_by_scheme(tmp_path: Path) -> None:
    assert type(make_store(f"sqlite:///{tmp_path}/x.sqlite3")) is SqliteStore
    assert CrmStore is SqliteStore  # the old name still works
    pg = make_store("postgresql://earpiece@db:5432/crm", password=Secret("pw"))
    assert isinstance(pg, PostgresStore) and pg.dialect.name == "postgresql"
    assert make_store("postgres://earpiece@db/crm").dialect.name == "postgresql"


async def test_unreachable_server_is_a_clear_error_without_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens there
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CrmConnectionError) as info:
        await open_store(f"postgresql://earpiece@127.0.0.1:{port}/crm",
                         password=Secret("hunter2-not-logged"))
    message = str(info.value)
    assert f"cannot connect to PostgreSQL earpiece@127.0.0.1:{port}/crm" in message
    assert "refused" in message.lower() or "failed" in message.lower()
    assert "hunter2" not in message and "hunter2" not in caplog.text
    assert info.value.__cause__ is None  # psycopg's exception (and its conninfo) is dropped


async def test_sqlite_unopenable_path_is_a_connection_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(CrmConnectionError, match="cannot open SQLite database"):
        await open_store(f"sqlite:///{tmp_path}/file/sub/crm.sqlite3")


# --------------------------------------------------------------------------------------------
# Both backends
# --------------------------------------------------------------------------------------------


async def test_writer_persists_a_call(crm_url: str) -> None:
    bus = EventBus()
    store = await open_store(crm_url)
    writer = CrmWriter(bus, store)
    writer.start()
    bus.publish(CallStarted(call_id="c1", direction="outbound", channel="PJSIP/cust1-1", at=10.0))
    bus.publish(ChannelJoined(call_id="c1", channel="PJSIP/cust1-1", uniqueid="u1",
                              role=ChannelRole.CUSTOMER, at=10.0))
    bus.publish(CallStateChanged(call_id="c1", old=CallState.DIALING, new=CallState.ANSWERED,
                                 source="ami:OriginateResponse Reason=4", at=12.0))
    bus.publish(CallOutcome(call_id="c1", outcome=CallState.ANSWERED,
                            source="ami:OriginateResponse Reason=4", at=12.0))
    bus.publish(CallTagged(call_id="c1", tags={"campaign": "spring"}, at=12.5))
    bus.publish(CpaDecision(call_id="c1", label="human", confidence=0.9, decision_s=1.2,
                            evidence={"bursts": 1}, at=13.2))
    bus.publish(Transcript(call_id="c1", party="customer", text="hello", final=False,
                           start_s=1.0, end_s=1.5, language="en", at=13.0))
    bus.publish(Transcript(call_id="c1", party="customer", text="hello there", final=True,
                           start_s=1.0, end_s=2.0, language="en", at=14.0))
    bus.publish(CallEnded(call_id="c1", outcome=CallState.ANSWERED, hangup_cause=16, at=20.0))
    await writer.close()
    assert writer.written == 9 and writer.failed_batches == 0
    calls = await store.calls()
    assert len(calls) == 1
    call = calls[0]
    assert call["outcome"] == "answered" and call["state"] == "answered"
    assert call["outcome_source"] == "ami:OriginateResponse Reason=4"
    assert call["answered"] == 12.0 and call["ended"] == 20.0 and call["hangup_cause"] == 16
    assert call["tags"] == {"campaign": "spring"}
    legs = await store.query("SELECT role, channel FROM legs")
    assert legs == [{"role": "customer", "channel": "PJSIP/cust1-1"}]
    utts = await store.query("SELECT text FROM utterances")
    assert utts == [{"text": "hello there"}]  # partials are not stored
    cpa = await store.query("SELECT label, decision_s, evidence FROM cpa_verdicts")
    assert len(cpa) == 1 and cpa[0]["label"] == "human" and cpa[0]["decision_s"] == 1.2
    assert isinstance(cpa[0]["evidence"], str)  # JSON columns come back as JSON text
    changes = await store.query("SELECT old, new, at FROM state_changes")
    assert changes == [{"old": "dialing", "new": "answered", "at": 12.0}]
    await store.close()


async def test_insert_ignore_and_tag_merge(crm_url: str) -> None:
    store = await open_store(crm_url)
    await write(store, started("c1", campaign="spring"),
                started("c1", at=99.0, campaign="other"),  # duplicate: the first one stays
                CallTagged(call_id="c1", tags={"queue": "vip"}, at=11.0),
                CallTagged(call_id="c1", tags={"queue": "support", "lang": "zh"}, at=12.0),
                ChannelJoined(call_id="c1", channel="PJSIP/a-1", uniqueid="u1",
                              role=ChannelRole.CUSTOMER, at=10.0),
                ChannelJoined(call_id="c1", channel="PJSIP/b-1", uniqueid="u1",
                              role=ChannelRole.AGENT, at=10.5))
    (call,) = await store.calls()
    assert call["started"] == 10.0
    assert call["tags"] == {"campaign": "spring", "queue": "support", "lang": "zh"}
    assert await store.query("SELECT channel FROM legs") == [{"channel": "PJSIP/a-1"}]
    await store.close()


async def test_floats_keep_double_precision(crm_url: str) -> None:
    at = 1_763_900_000.123456  # epoch seconds with microseconds: needs 8-byte floats
    store = await open_store(crm_url)
    await write(store, started("c1", at=at),
                CpaDecision(call_id="c1", label="machine", confidence=0.123456789,
                            decision_s=2.000001, evidence={}, at=at + 1e-6))
    (call,) = await store.calls()
    assert call["started"] == at
    (row,) = await store.query("SELECT confidence, decision_s, at FROM cpa_verdicts")
    assert row == {"confidence": 0.123456789, "decision_s": 2.000001, "at": at + 1e-6}
    await store.close()


async def test_batch_is_all_or_nothing_and_errors_are_crm_errors(crm_url: str) -> None:
    store = await open_store(crm_url)
    await write(store, started("c1"))
    # The second statement violates the legs -> calls foreign key: the first is rolled back.
    with pytest.raises(CrmError):
        await write(store, started("c2"),
                    ChannelJoined(call_id="nope", channel="PJSIP/x-1", uniqueid="u9",
                                  role=ChannelRole.CUSTOMER, at=1.0))
    assert [c["id"] for c in await store.calls()] == ["c1"]
    with pytest.raises(CrmError):
        await store.query("SELECT no_such_column FROM calls")
    # The store is still usable after both failures.
    await write(store, started("c3"))
    assert [c["id"] for c in await store.calls()] == ["c1", "c3"]
    await store.close()


async def test_writer_counts_a_failed_batch_and_keeps_going(crm_url: str) -> None:
    bus = EventBus()
    store = await open_store(crm_url)
    writer = CrmWriter(bus, store)
    writer.start()
    bus.publish(ChannelJoined(call_id="unknown", channel="PJSIP/x-1", uniqueid="u1",
                              role=ChannelRole.CUSTOMER, at=1.0))
    await writer.flush()
    assert writer.failed_batches == 1
    bus.publish(started("c1"))
    await writer.close()
    assert writer.written == 1
    assert [c["id"] for c in await store.calls()] == ["c1"]
    await store.close()


async def test_query_placeholders_beside_literal_percent_and_question_mark(crm_url: str) -> None:
    store = await open_store(crm_url)
    await write(store, started("c1"), started("c2"),
                Transcript(call_id="c1", party="agent", text="100% sure? yes", final=True,
                           start_s=0.0, end_s=1.0, language="en", at=1.0),
                Transcript(call_id="c2", party="agent", text="50% maybe", final=True,
                           start_s=0.0, end_s=1.0, language="en", at=1.0))
    rows = await store.query(
        "SELECT call_id, text, '?' AS q FROM utterances WHERE text LIKE '%?%' AND party = ?",
        ("agent",))
    assert rows == [{"call_id": "c1", "text": "100% sure? yes", "q": "?"}]
    assert await store.query('SELECT COUNT(*) AS "n?" FROM calls WHERE id <> ?', ("c1",)) \
        == [{"n?": 1}]
    await store.close()


async def test_schema_migration_on_open_is_idempotent_and_keeps_data(crm_url: str) -> None:
    store = await open_store(crm_url)
    await write(store, started("c1"))
    await store.close()
    await store.close()  # closing twice is harmless
    again = await open_store(crm_url)
    assert [c["id"] for c in await again.calls()] == ["c1"]
    await again.close()


async def test_concurrent_writes_and_reads_do_not_interleave(crm_url: str) -> None:
    store = await open_store(crm_url)

    async def one(i: int) -> int:
        await write(store, started(f"c{i:03d}", at=float(i)),
                    CallTagged(call_id=f"c{i:03d}", tags={"n": str(i)}, at=float(i)))
        return len(await store.query("SELECT id FROM calls"))

    counts = await asyncio.gather(*(one(i) for i in range(40)))
    assert max(counts) == 40 and all(c >= 1 for c in counts)
    calls = await store.calls()
    assert [c["tags"] for c in calls] == [{"n": str(i)} for i in range(40)]
    await store.close()


async def test_closed_store_refuses_work(crm_url: str) -> None:
    store = await open_store(crm_url)
    await store.close()
    with pytest.raises(RuntimeError, match="not open"):
        await store.query("SELECT 1")


# --------------------------------------------------------------------------------------------
# PostgreSQL only
# --------------------------------------------------------------------------------------------


async def test_postgres_column_types(pg_url: str) -> None:
    store = await open_store(pg_url)
    rows = await store.query(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema() AND column_name IN (?, ?, ?, ?)",
        ("tags", "evidence", "started", "confidence"))
    types = {(r["table_name"], r["column_name"]): r["data_type"] for r in rows}
    assert types == {("calls", "tags"): "jsonb", ("cpa_verdicts", "evidence"): "jsonb",
                     ("calls", "started"): "double precision",
                     ("cpa_verdicts", "confidence"): "double precision",
                     ("emotion_utterances", "confidence"): "double precision"}
    await store.close()


async def test_postgres_schema_created_by_several_processes_at_once(pg_url: str) -> None:
    stores = await asyncio.gather(*(open_store(pg_url) for _ in range(4)))
    await write(stores[0], started("c1"))
    assert [c["id"] for c in await stores[3].calls()] == ["c1"]
    for store in stores:
        await store.close()


async def test_postgres_reconnects_when_the_connection_is_killed(
    pg_url: str, pg_admin_url: str
) -> None:
    store = await open_store(pg_url)
    assert isinstance(store, PostgresStore)
    await write(store, started("c1"))
    for expected_reconnects in (1, 2):
        (row,) = await store.query("SELECT pg_backend_pid() AS pid")
        with psycopg.connect(pg_admin_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (row["pid"],))
        # The write that finds the connection dead is retried on a new one.
        await write(store, started(f"c{expected_reconnects + 1}"))
        assert store.reconnects == expected_reconnects
    assert [c["id"] for c in await store.calls()] == ["c1", "c2", "c3"]
    await store.close()


async def test_postgres_password_from_settings_reaches_the_store(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / "pw").write_text("s3cret-from-file\n")
    (tmp_path / "e.toml").write_text(f'[crm]\nurl = "{pg_url}"\npassword_file = "pw"\n')
    settings = load_settings(tmp_path / "e.toml", {})
    assert settings.crm.password.get() == "s3cret-from-file"
    env = load_settings(tmp_path / "e.toml", {"EARPIECE_CRM_PASSWORD": "from-env"})
    assert env.crm.password.get() == "from-env"
    # The local test server trusts 127.0.0.1, so the password is sent but not needed.
    store = await open_store(settings.crm.url, password=settings.crm.password)
    await write(store, started("c1"))
    await store.close()
    assert "s3cret" not in caplog.text and "s3cret" not in repr(settings)


class TcpProxy:
    """Forwards a local ephemeral port to the PostgreSQL server; ``down()`` is an outage
    (listener closed, every connection cut), ``up()`` the server back on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        await self._server.wait_closed()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


async def test_postgres_outage_the_writer_retries_and_loses_nothing(pg_url: str) -> None:
    parsed = parse_postgres_url(pg_url)
    proxy = TcpProxy(parsed.host, parsed.port)
    await proxy.up()
    url = pg_url.replace(f"@{parsed.host}:{parsed.port}/", f"@127.0.0.1:{proxy.port}/")
    bus = EventBus()
    store = await open_store(url)
    writer = CrmWriter(bus, store, retry_initial_s=0.05, retry_max_s=0.2)
    writer.start()
    bus.publish(started("c1"))
    await writer.flush()
    await proxy.down()
    for i in range(2, 6):  # published during the outage
        bus.publish(started(f"c{i}", at=10.0 + i))
    await wait_for(lambda: writer.retries >= 3)
    await proxy.up()
    await writer.flush()
    assert writer.failed_batches == 0 and writer.written == 5
    assert [c["id"] for c in await store.calls()] == ["c1", "c2", "c3", "c4", "c5"]
    await writer.close()
    # An outage at shutdown: what is queued is dropped at once, not retried for minutes.
    writer = CrmWriter(bus, store, retry_initial_s=5.0, retry_for_s=600.0)
    writer.start()
    await proxy.down()
    bus.publish(started("c6"))
    async with asyncio.timeout(15):
        await writer.close()
    assert writer.failed_batches == 1 and writer.written == 0
    await store.close()


async def wait_for(predicate: Any, timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling the writer's counters
            await asyncio.sleep(0.02)
