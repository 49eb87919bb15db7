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

from earpiece.crm.dialect import Dialect
from earpiece.errors import ConfigError

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


def split_url(url: str) -> ParseResult:
    """``urlparse`` with its errors as :class:`ConfigError` naming ``crm.url``."""
    try:
        return urlparse(url)
    except ValueError as exc:
        raise ConfigError(f"invalid database URL: {exc}", key="crm.url") from None
