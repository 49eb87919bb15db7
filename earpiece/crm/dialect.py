"""SQL dialects of the CRM store: one schema, the differences between SQLite and PostgreSQL
spelled out in one place.

Every statement the CRM code writes uses ``?`` placeholders (qmark style, the portable form of
the store interface); :meth:`Dialect.native` turns them into what the driver expects. The rest
of the differences are explicit methods:

===================  ==========================  =====================================
                     SQLite                      PostgreSQL
===================  ==========================  =====================================
placeholder          ``?``                       ``%s`` (psycopg; a literal ``%`` -> ``%%``)
insert-if-absent     ``INSERT OR IGNORE``        ``INSERT ... ON CONFLICT DO NOTHING``
JSON column          ``TEXT``                    ``JSONB``
JSON object merge    ``json_patch(col, ?)``      ``col || ?::jsonb``
floating point       ``REAL`` (8-byte)           ``DOUBLE PRECISION`` (``REAL`` is 4-byte)
===================  ==========================  =====================================

JSON columns come back from both backends as JSON *text* (the PostgreSQL store loads ``jsonb``
as text), so callers decode them the same way.

``json_patch`` is RFC 7396 (a ``null`` value deletes the key, nested objects merge) while ``||``
is a shallow merge; call tags are flat ``str -> str`` maps, where the two agree.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

SCHEMA_TEMPLATE = """
CREATE TABLE IF NOT EXISTS calls (
    id TEXT PRIMARY KEY,
    direction TEXT NOT NULL,
    channel TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'dialing',
    outcome TEXT,
    outcome_source TEXT,
    hangup_cause INTEGER,
    tags {json} NOT NULL DEFAULT '{{}}',
    started {real} NOT NULL,
    answered {real},
    ended {real},
    end_reason TEXT,
    owner TEXT
);
CREATE TABLE IF NOT EXISTS legs (
    call_id TEXT NOT NULL REFERENCES calls(id),
    uniqueid TEXT NOT NULL,
    channel TEXT NOT NULL,
    role TEXT NOT NULL,
    joined {real} NOT NULL,
    left_at {real},
    cause INTEGER,
    PRIMARY KEY (call_id, uniqueid)
);
CREATE TABLE IF NOT EXISTS state_changes (
    call_id TEXT NOT NULL REFERENCES calls(id),
    at {real} NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    source TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cpa_verdicts (
    call_id TEXT NOT NULL REFERENCES calls(id),
    at {real} NOT NULL,
    label TEXT NOT NULL,
    confidence {real} NOT NULL,
    decision_s {real} NOT NULL,
    evidence {json} NOT NULL DEFAULT '{{}}'
);
CREATE TABLE IF NOT EXISTS utterances (
    call_id TEXT NOT NULL REFERENCES calls(id),
    party TEXT NOT NULL,
    start_s {real} NOT NULL,
    end_s {real} NOT NULL,
    text TEXT NOT NULL,
    language TEXT NOT NULL,
    at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS utterances_call ON utterances(call_id, start_s);
CREATE TABLE IF NOT EXISTS emotion_utterances (
    call_id TEXT NOT NULL REFERENCES calls(id),
    party TEXT NOT NULL,
    start_s {real} NOT NULL,
    end_s {real} NOT NULL,
    label TEXT NOT NULL,
    valence {real} NOT NULL,
    arousal {real},
    confidence {real} NOT NULL,
    emotion_index {real} NOT NULL,
    text TEXT NOT NULL,
    at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS emotion_calls (
    call_id TEXT NOT NULL REFERENCES calls(id),
    party TEXT NOT NULL,
    state TEXT NOT NULL,
    emotion_index {real} NOT NULL,
    utterances INTEGER NOT NULL DEFAULT 0,
    changes INTEGER NOT NULL DEFAULT 0,
    updated {real} NOT NULL,
    PRIMARY KEY (call_id, party)
);
CREATE TABLE IF NOT EXISTS prompts (
    id TEXT PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls(id),
    at {real} NOT NULL,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    language TEXT NOT NULL,
    slot TEXT NOT NULL,
    product TEXT,
    rule TEXT NOT NULL,
    reason {json} NOT NULL DEFAULT '{{}}',
    delivery {json} NOT NULL DEFAULT '{{}}'
);
CREATE TABLE IF NOT EXISTS qc_flags (
    call_id TEXT NOT NULL REFERENCES calls(id),
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    language TEXT NOT NULL,
    campaign TEXT NOT NULL,
    party TEXT NOT NULL,
    span_start INTEGER,
    span_end INTEGER,
    matched TEXT NOT NULL,
    text TEXT NOT NULL,
    start_s {real},
    end_s {real},
    at {real} NOT NULL
);
CREATE INDEX IF NOT EXISTS qc_flags_call ON qc_flags(call_id);
CREATE TABLE IF NOT EXISTS qc_calls (
    call_id TEXT PRIMARY KEY REFERENCES calls(id),
    campaign TEXT NOT NULL,
    flags INTEGER NOT NULL,
    missing_required INTEGER NOT NULL,
    responses INTEGER NOT NULL,
    response_mean_s {real},
    response_median_s {real},
    response_max_s {real},
    overtalks INTEGER NOT NULL,
    overtalk_s {real} NOT NULL,
    silences INTEGER NOT NULL,
    silence_s {real} NOT NULL,
    longest_silence_s {real} NOT NULL,
    agent_talk_s {real} NOT NULL,
    customer_talk_s {real} NOT NULL,
    at {real} NOT NULL
);
"""

#: Columns added to tables after their first release: (table, column, type). ``CREATE TABLE IF
#: NOT EXISTS`` leaves an older table as it was, so opening a store adds what is missing.
ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("calls", "end_reason", "TEXT"),  # why a call was closed other than by its hangup
    ("calls", "owner", "TEXT"),  # the ARI app of the Earpiece that writes the call
)

# Columns holding JSON objects (TEXT in SQLite, JSONB in PostgreSQL).
JSON_COLUMNS = frozenset({"tags", "evidence", "reason", "delivery"})


@dataclass(frozen=True)
class Dialect:
    name: Literal["sqlite", "postgresql"]
    real: str
    json: str

    def schema(self) -> str:
        """The whole schema as one script (``CREATE ... IF NOT EXISTS``: safe to re-run)."""
        return SCHEMA_TEMPLATE.format(real=self.real, json=self.json)

    def schema_statements(self) -> list[str]:
        return [s.strip() for s in self.schema().split(";") if s.strip()]

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """``INSERT`` that does nothing when the row's key already exists."""
        cols = ", ".join(columns)
        values = ", ".join(self.param(c) for c in columns)
        if self.name == "sqlite":
            return f"INSERT OR IGNORE INTO {table} ({cols}) VALUES ({values})"
        return f"INSERT INTO {table} ({cols}) VALUES ({values}) ON CONFLICT DO NOTHING"

    def insert(self, table: str, columns: Sequence[str]) -> str:
        cols = ", ".join(columns)
        values = ", ".join(self.param(c) for c in columns)
        return f"INSERT INTO {table} ({cols}) VALUES ({values})"

    def param(self, column: str = "") -> str:
        """The placeholder for a value of ``column`` (JSON text is cast to ``jsonb``)."""
        if column in JSON_COLUMNS and self.name == "postgresql":
            return "?::jsonb"
        return "?"

    def json_merge(self, column: str) -> str:
        """Expression: ``column`` with the keys of a JSON object parameter merged in."""
        if self.name == "sqlite":
            return f"json_patch({column}, ?)"
        return f"{column} || ?::jsonb"

    def native(self, sql: str) -> str:
        """``sql`` with ``?`` placeholders in the driver's paramstyle.

        For PostgreSQL (psycopg, ``format`` style) a ``?`` outside a quoted string or
        identifier becomes ``%s`` and every ``%`` becomes ``%%``. Dollar-quoted strings and
        comments are not understood: CRM statements don't use them.
        """
        if self.name == "sqlite":
            return sql
        return _qmark_to_format(sql)


@functools.lru_cache(maxsize=1024)
def _qmark_to_format(sql: str) -> str:
    """See :meth:`Dialect.native` (cached: the CRM's statements are a few dozen templates)."""
    out: list[str] = []
    quote = ""
    for ch in sql:
        if ch == "%":
            out.append("%%")
            continue
        if quote:
            if ch == quote:  # a doubled quote ('') closes and reopens: same result
                quote = ""
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            out.append("%s")
            continue
        out.append(ch)
    return "".join(out)


SQLITE = Dialect(name="sqlite", real="REAL", json="TEXT")
POSTGRESQL = Dialect(name="postgresql", real="DOUBLE PRECISION", json="JSONB")
