"""The CRM store interface: :class:`CrmBackend`, what every backend implements.

Every backend takes SQL with ``?`` placeholders, runs writes of one batch in one transaction,
returns rows as ``dict``s (JSON columns as JSON text), never blocks the event loop and raises
:class:`~earpiece.errors.CrmError` (:class:`~earpiece.errors.CrmConnectionError` when the
server cannot be reached) for database failures, :class:`~earpiece.errors.ConfigError` naming
``crm.url`` for a bad URL. :mod:`earpiece.crm.backend` picks one from ``crm.url`` and
re-exports every name.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import ParseResult, urlparse

from earpiece.agi.calls.records import OpenCall, OpenLeg
from earpiece.crm.dialect import Dialect
from earpiece.errors import ConfigError
from earpiece.events import CallState, ChannelRole, Direction

Statement = tuple[str, tuple[Any, ...]]


class CrmBackend(abc.ABC):
    """What the CRM writer and the reports need from a database."""

    url: str
    dialect: Dialect

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and create the schema if it is missing (safe to run on every start)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Commit and disconnect; idempotent."""

    @abc.abstractmethod
    async def execute_many(self, statements: Sequence[Statement]) -> None:
        """Run several writes (``?`` placeholders) in one transaction: all or nothing."""

    @abc.abstractmethod
    async def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        """Rows of one ``SELECT`` (``?`` placeholders) as dicts keyed by column name."""

    async def calls(self) -> list[dict[str, Any]]:
        """Every call, oldest first, with ``tags`` decoded."""
        rows = await self.query("SELECT * FROM calls ORDER BY started, id")
        for row in rows:
            row["tags"] = json.loads(row["tags"])
        return rows

    async def open_calls(self, owner: str = "") -> list[OpenCall]:
        """Calls not ended that ``owner`` (the ARI app of the Earpiece that wrote them; rows
        from before owners were recorded count as anyone's) left, with their legs that have
        not left: what a starting Earpiece re-adopts or closes."""
        where = "c.ended IS NULL AND (c.owner = ? OR c.owner IS NULL)"
        rows = await self.query(
            "SELECT c.id, c.direction, c.state, c.outcome, c.tags, c.started, c.answered"
            f" FROM calls c WHERE {where} ORDER BY c.started, c.id", (owner,))
        legs = await self.query(
            "SELECT l.call_id, l.uniqueid, l.channel, l.role FROM legs l"
            f" JOIN calls c ON c.id = l.call_id WHERE {where} AND l.left_at IS NULL"
            " ORDER BY l.joined", (owner,))
        by_call: dict[str, list[OpenLeg]] = {}
        for leg in legs:
            role = leg["role"] if leg["role"] in ChannelRole.__members__.values() else "unknown"
            by_call.setdefault(leg["call_id"], []).append(
                OpenLeg(leg["uniqueid"], leg["channel"], ChannelRole(role)))
        out = []
        for row in rows:
            state = row["state"] if row["state"] in CallState.__members__.values() else "dialing"
            outcome = row["outcome"] if row["outcome"] in CallState.__members__.values() else None
            direction: Direction = "unknown"
            if row["direction"] in ("inbound", "outbound"):
                direction = row["direction"]
            tags = json.loads(row["tags"]) if row["tags"] else {}
            out.append(OpenCall(
                call_id=row["id"], direction=direction, state=CallState(state),
                started=float(row["started"]),
                outcome=CallState(outcome) if outcome else None,
                answered=float(row["answered"]) if row["answered"] is not None else None,
                tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
                legs=tuple(by_call.get(row["id"], ()))))
        return out


def split_url(url: str) -> ParseResult:
    """``urlparse`` with its errors as :class:`ConfigError` naming ``crm.url``."""
    try:
        return urlparse(url)
    except ValueError as exc:
        raise ConfigError(f"invalid database URL: {exc}", key="crm.url") from None
