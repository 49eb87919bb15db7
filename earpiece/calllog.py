"""One INFO log line per call event, with the call id in the log line's ``[call_id]`` slot.

:class:`CallLog` subscribes to the bus and logs, on the ``earpiece.calls`` logger, each call's
start, settled outcome, audio call-progress (AMD) verdict and end. The call id goes into
:data:`earpiece.logs.call_id_var` for the duration of the logging call (so the handler's
:class:`~earpiece.logs.CallIdFilter` stamps it) and into the record as ``call_id`` (so handlers
without that filter, e.g. pytest's caplog, see it too).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable

from earpiece.bus import EventBus
from earpiece.events import CallEnded, CallEvent, CallOutcome, CallStarted, CpaDecision
from earpiece.logs import call_id_var

log = logging.getLogger("earpiece.calls")

#: Start times kept for the duration on the "ended" line (oldest forgotten first).
MAX_STARTED = 10_000


class CallLog:
    """Logs call events from ``bus`` once started; :meth:`stop` unsubscribes."""

    def __init__(self, bus: EventBus, logger: logging.Logger = log) -> None:
        self.bus = bus
        self.logger = logger
        self._started: OrderedDict[str, float] = OrderedDict()
        self._unsubscribe: list[Callable[[], None]] = []

    def start(self) -> None:
        if not self._unsubscribe:
            self._unsubscribe = [self.bus.subscribe(CallEvent, self.on_event)]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    def on_event(self, ev: CallEvent) -> None:
        match ev:
            case CallStarted():
                self._started[ev.call_id] = ev.at
                while len(self._started) > MAX_STARTED:
                    self._started.popitem(last=False)
                tags = " ".join(f"{k}={v}" for k, v in sorted(ev.tags.items()))
                self._log(ev, "call started: %s %s%s", ev.direction, ev.channel,
                          f" tags: {tags}" if tags else "")
            case CallOutcome():
                self._log(ev, "call outcome: %s (%s)", ev.outcome, ev.source)
            case CpaDecision():
                self._log(ev, "call AMD verdict: %s (confidence %.2f after %.2f s)",
                          ev.label, ev.confidence, ev.decision_s)
            case CallEnded():
                started = self._started.pop(ev.call_id, None)
                duration = f" after {ev.at - started:.1f} s" if started is not None else ""
                reason = getattr(ev, "reason", "")  # why closed, when not by its own hangup
                self._log(ev, "call ended: outcome %s, hangup cause %s%s%s",
                          ev.outcome if ev.outcome is not None else "-",
                          ev.hangup_cause if ev.hangup_cause is not None else "-", duration,
                          f" ({reason})" if reason else "")

    def _log(self, ev: CallEvent, msg: str, *args: object) -> None:
        token = call_id_var.set(ev.call_id)
        try:
            self.logger.info(msg, *args, extra={"call_id": ev.call_id})
        finally:
            call_id_var.reset(token)
