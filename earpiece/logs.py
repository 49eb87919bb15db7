"""Logging helpers: a call-id context variable and a filter that stamps it on records.

Nothing here configures logging at import time; :func:`setup_logging` is called by the CLI.
"""

from __future__ import annotations

import contextvars
import logging
import sys

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("earpiece_call_id", default="-")


class CallIdFilter(logging.Filter):
    """Adds ``record.call_id`` from :data:`call_id_var`."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.call_id = call_id_var.get()
        return True


def setup_logging(level: str = "INFO", *, stream: object = None) -> None:
    """Configure the root logger for the command-line tools (stderr, call id in every line)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(CallIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s [%(call_id)s] %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
