"""The factory that picks a CRM backend from ``crm.url``.

``sqlite:///path`` (embedded default) -> :class:`earpiece.crm.store.SqliteStore`;
``postgresql://user@host:port/db`` (production) -> :class:`earpiece.crm.postgres.PostgresStore`.

The interface every backend implements, :class:`~earpiece.crm.base.CrmBackend` (with
``Statement`` and ``split_url``), lives in :mod:`earpiece.crm.base` and is re-exported here.
"""

from __future__ import annotations

from earpiece.crm.base import CrmBackend, Statement, split_url
from earpiece.errors import ConfigError
from earpiece.secret import Secret

SCHEMES = ("sqlite", "postgresql", "postgres")


def url_scheme(url: str) -> str:
    scheme = split_url(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r} (supported: sqlite:///path,"
            " postgresql://user@host:port/database)",
            key="crm.url",
        )
    return scheme


def make_store(url: str, *, password: Secret | None = None) -> CrmBackend:
    """The backend for ``url``, not yet open (``password`` is used by PostgreSQL only)."""
    if url_scheme(url) == "sqlite":
        from earpiece.crm.store import SqliteStore

        return SqliteStore(url)
    from earpiece.crm.postgres import PostgresStore

    return PostgresStore(url, password=password)


async def open_store(url: str, *, password: Secret | None = None) -> CrmBackend:
    """:func:`make_store` then :meth:`CrmBackend.open`."""
    store = make_store(url, password=password)
    await store.open()
    return store


__all__ = [
    "SCHEMES",
    "CrmBackend",
    "Statement",
    "make_store",
    "open_store",
    "split_url",
    "url_scheme",
]
