"""Admission control and overload reporting of the ASR service (:mod:`earpiece.asr.service`).

:class:`Admission` keeps whole calls rather than random finals of every call: a call is admitted
when its first audio arrives if the admitted calls leave room for its two streams within
``max_streams``; otherwise it is refused and stays refused (it is never transcribed, so the
admitted calls keep the capacity they were measured against). A call that ends frees its slot.

:class:`OverloadReport` turns drops and refusals into at most one WARNING per ``every_s``
("ASR overloaded: dropped N finals of M calls, refused K new calls in the last 10 s"), the
first one at once; the per-event detail goes to DEBUG (drops) or one INFO line per refused
call (logged by the service with the call id).
"""

from __future__ import annotations

import logging
from typing import Literal

from earpiece.asr.settings import STREAMS_PER_CALL

REPORT_EVERY_S = 10.0

Decision = Literal["admitted", "refused", "refused_now"]


class Admission:
    """Which calls are transcribed under a capacity of ``max_streams`` (0 = unlimited)."""

    def __init__(self, max_streams: int = 0, *, remember: int = 10_000) -> None:
        self.max_streams = max(0, max_streams)
        self.remember = remember
        self._admitted: dict[str, None] = {}
        self._refused: dict[str, None] = {}  # bounded: late audio of a refused call stays out
        self.refused_total = 0

    @property
    def max_calls(self) -> int:
        """Calls admitted at once at most (0 = unlimited)."""
        if not self.max_streams:
            return 0
        return max(1, self.max_streams // STREAMS_PER_CALL)

    @property
    def admitted(self) -> int:
        return len(self._admitted)

    def decide(self, call_id: str) -> Decision:
        """Admit ``call_id`` if it is admitted already or there is room; ``"refused_now"`` the
        first time it is turned away, ``"refused"`` afterwards."""
        if call_id in self._admitted:
            return "admitted"
        if call_id in self._refused:
            return "refused"
        limit = self.max_calls
        if not limit or len(self._admitted) < limit:
            self._admitted[call_id] = None
            return "admitted"
        self._refused[call_id] = None
        while len(self._refused) > self.remember:
            self._refused.pop(next(iter(self._refused)))
        self.refused_total += 1
        return "refused_now"

    def force(self, call_id: str) -> None:
        """Admit ``call_id`` whatever the load (an explicit ``open_stream``)."""
        self._refused.pop(call_id, None)
        self._admitted[call_id] = None

    def release(self, call_id: str) -> None:
        """The call ended (or has no stream left): its slot is free for a new call."""
        self._admitted.pop(call_id, None)


class OverloadReport:
    """Rate-limited WARNING summaries of dropped finals and refused calls."""

    def __init__(self, logger: logging.Logger, every_s: float = REPORT_EVERY_S) -> None:
        self.log = logger
        self.every_s = every_s
        self._drops = 0
        self._drop_calls: set[str] = set()
        self._refusals = 0
        self._reported_at: float | None = None
        self.reports = 0

    def dropped(self, call_id: str) -> None:
        self._drops += 1
        self._drop_calls.add(call_id)

    def refused(self, call_id: str) -> None:
        self._refusals += 1

    def due(self, now: float) -> bool:
        """Something to report, and the last report is ``every_s`` old (or none was made)."""
        return bool(self._drops or self._refusals) and (
            self._reported_at is None or now - self._reported_at >= self.every_s)

    def report(self, now: float, *, capacity: int, waiting: int) -> None:
        """Log what happened since the last report (nothing if nothing happened)."""
        if not (self._drops or self._refusals):
            return
        span = self.every_s if self._reported_at is None else now - self._reported_at
        parts = []
        if self._drops:
            calls = len(self._drop_calls)
            parts.append(f"dropped {self._drops} final{'s' * (self._drops != 1)} of {calls} "
                         f"call{'s' * (calls != 1)}")
        if self._refusals:
            parts.append(f"refused {self._refusals} new call{'s' * (self._refusals != 1)} "
                         f"(not transcribed)")
        self.log.warning("ASR overloaded: %s in the last %.0f s (capacity %s streams, %d "
                         "finals waiting)", ", ".join(parts), span,
                         capacity or "unlimited", waiting)
        self.reports += 1
        self._reported_at = now
        self._drops = self._refusals = 0
        self._drop_calls.clear()
