"""CRM SQL dialects: one schema in both, placeholders translated, statements per event."""

from __future__ import annotations

import re
import sqlite3

from hypothesis import given
from hypothesis import strategies as st

from earpiece.crm.backend import make_store
from earpiece.crm.dialect import POSTGRESQL, SQLITE
from earpiece.crm.postgres import PostgresStore
from earpiece.crm.writer import statements_for
from earpiece.errors import ConfigError
from earpiece.events import (
    CallEnded,
    CallEvent,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
    CpaDecision,
    Transcript,
)
from earpiece.secret import Secret

EVENTS: list[CallEvent] = [
    CallStarted(call_id="c1", direction="outbound", channel="PJSIP/a-1", tags={"k": "v"}, at=1.0),
    ChannelJoined(call_id="c1", channel="PJSIP/a-1", uniqueid="u1", role=ChannelRole.CUSTOMER,
                  at=1.0),
    ChannelLeft(call_id="c1", channel="PJSIP/a-1", uniqueid="u1", cause=16, at=9.0),
    CallStateChanged(call_id="c1", old=CallState.DIALING, new=CallState.ANSWERED, source="x",
                     at=2.0),
    CallOutcome(call_id="c1", outcome=CallState.ANSWERED, source="x", at=2.0),
    CallTagged(call_id="c1", tags={"a": "b"}, at=3.0),
    CallEnded(call_id="c1", outcome=None, hangup_cause=16, at=9.0),
    CpaDecision(call_id="c1", label="human", confidence=0.9, decision_s=1.0, evidence={"e": 1},
                at=3.0),
    Transcript(call_id="c1", party="agent", text="hi", final=True, start_s=0.0, end_s=1.0,
               language="en", at=4.0),
]


def columns(schema: str) -> dict[str, list[str]]:
    """table -> column names of a CREATE TABLE script."""
    out: dict[str, list[str]] = {}
    for table, body in re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", schema, re.S):
        out[table] = [line.split()[0] for line in body.strip().splitlines()
                      if not line.strip().startswith("PRIMARY KEY")]
    return out


def test_one_schema_in_both_dialects() -> None:
    lite, pg = SQLITE.schema(), POSTGRESQL.schema()
    assert columns(lite) == columns(pg)
    assert set(columns(lite)) >= {"calls", "legs", "state_changes", "cpa_verdicts", "utterances",
                                     "emotion_utterances", "emotion_calls", "prompts"}
    assert " REAL" not in pg and "DOUBLE PRECISION" in pg and "tags JSONB" in pg
    assert "DOUBLE" not in lite and "tags TEXT" in lite
    # one statement per table and per index
    assert len(POSTGRESQL.schema_statements()) == pg.count("CREATE TABLE") + pg.count(
        "CREATE INDEX")
    sqlite3.connect(":memory:").executescript(lite)  # valid SQLite


def test_sqlite_statements_are_the_sqlite_dialect() -> None:
    (sql, params), = statements_for(EVENTS[0])
    assert sql == ("INSERT OR IGNORE INTO calls (id, direction, channel, tags, started, owner)"
                   " VALUES (?, ?, ?, ?, ?, ?)")
    assert params == ("c1", "outbound", "PJSIP/a-1", '{"k": "v"}', 1.0, None)
    (_, params), = statements_for(EVENTS[0], owner="assist")
    assert params[-1] == "assist"
    (sql, _), = statements_for(EVENTS[5], SQLITE)
    assert sql == "UPDATE calls SET tags = json_patch(tags, ?) WHERE id = ?"


def test_postgres_statements_are_the_postgres_dialect() -> None:
    sqls = [POSTGRESQL.native(sql) for ev in EVENTS for sql, _ in statements_for(ev, POSTGRESQL)]
    assert sqls[0] == ("INSERT INTO calls (id, direction, channel, tags, started, owner)"
                       " VALUES (%s, %s, %s, %s::jsonb, %s, %s) ON CONFLICT DO NOTHING")
    assert "UPDATE calls SET tags = tags || %s::jsonb WHERE id = %s" in sqls
    assert not any("OR IGNORE" in s or "json_patch" in s or "?" in s for s in sqls)


def test_every_statement_has_one_placeholder_per_parameter() -> None:
    for dialect in (SQLITE, POSTGRESQL):
        for ev in EVENTS:
            stmts = statements_for(ev, dialect)
            assert stmts, ev
            for sql, params in stmts:
                native = dialect.native(sql)
                count = native.count("%s") if dialect is POSTGRESQL else native.count("?")
                assert count == len(params), (dialect.name, sql)


def test_partial_transcripts_write_nothing() -> None:
    partial = Transcript(call_id="c1", party="agent", text="h", final=False, start_s=0.0,
                         end_s=0.5, language="en", at=4.0)
    assert statements_for(partial, POSTGRESQL) == []


def test_native_translation_examples() -> None:
    n = POSTGRESQL.native
    assert n("SELECT * FROM t WHERE a = ? AND b = ?") == "SELECT * FROM t WHERE a = %s AND b = %s"
    assert n("SELECT '?', \"a?\" FROM t WHERE x LIKE '%?%' AND y = ?") == \
        "SELECT '?', \"a?\" FROM t WHERE x LIKE '%%?%%' AND y = %s"
    assert n("SELECT 'it''s ?' WHERE z = ?") == "SELECT 'it''s ?' WHERE z = %s"
    assert SQLITE.native("SELECT ? WHERE '%'") == "SELECT ? WHERE '%'"


def unescape(native: str) -> str:
    """Inverse of POSTGRESQL.native: ``%%`` -> ``%``, ``%s`` -> ``?``."""
    return re.sub(r"%(.)", lambda m: "%" if m.group(1) == "%" else "?", native)


@given(st.text(alphabet="ab ?%'\"s:", max_size=60))
def test_native_round_trips_and_leaves_no_bare_percent(sql: str) -> None:
    native = POSTGRESQL.native(sql)
    assert unescape(native) == sql
    # Every % in the output is an escape or a placeholder, which is all psycopg accepts.
    assert re.fullmatch(r"(?:[^%]|%%|%s)*", native, re.S)
    # A ? outside quotes becomes a placeholder; one inside a quoted string or name stays.
    tokens = re.findall(r"'[^']*(?:'|$)|\"[^\"]*(?:\"|$)|[^'\"]+", sql)
    assert "".join(tokens) == sql
    quoted = sum(t.count("?") for t in tokens if t[0] in "'\"")
    assert native.count("?") == quoted
    assert native.count("%s") == sql.count("?") - quoted + sql.count("%s")


@given(st.one_of(
    st.text(max_size=80),
    st.builds(lambda user, host, port, db, q: f"postgresql://{user}@{host}:{port}/{db}{q}",
              st.text(max_size=8), st.text(max_size=8), st.text(max_size=6), st.text(max_size=8),
              st.sampled_from(["", "?sslmode=disable", "?x=1", "?options=-c%20a%3Db", "?"])),
))
def test_any_crm_url_is_accepted_or_a_config_error(url: str) -> None:
    try:
        store = make_store(url, password=Secret("Zq9-crm-password"))
    except ConfigError as exc:
        assert exc.key == "crm.url"
        assert "Zq9-crm-password" not in str(exc)
    else:
        assert store.dialect.name in ("sqlite", "postgresql")
        if isinstance(store, PostgresStore):
            assert store.target.database and 0 < store.target.port < 65536
