"""Calls a previous Earpiece left open (a restart, a crash): re-adopted or closed at start-up.

At start-up the service reads its open call records from the CRM (no end time; see
:meth:`earpiece.crm.base.CrmBackend.open_calls`) and hands them to :meth:`Adoption.adopt`
before the first resync. A live channel whose uniqueid is one of a record's legs rejoins that
record: the same call id, direction, tags, state and outcome, the leg's role from the record
(so an agent leg never becomes the customer of a call of its own, whichever resync runs
first), and no second ``CallStarted``. :meth:`Adoption.finish_adoption`, after the first full
resync, closes the records none of whose channels is live (``CallEnded`` with the reason
:data:`ENDED_WHILE_DOWN`) and the legs of adopted calls that are gone (``ChannelLeft``).
Uniqueids carry the PBX's start time, so a channel of a restarted PBX never matches an old leg.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from earpiece.agi.calls.call import HELPER_ROLES
from earpiece.agi.calls.lifecycle import Lifecycle
from earpiece.agi.calls.records import ENDED_WHILE_DOWN, OpenCall, OpenLeg
from earpiece.events import CallEnded, ChannelLeft

log = logging.getLogger("earpiece.agi.calls.registry")

__all__ = ["ENDED_WHILE_DOWN", "Adoption", "OpenCall", "OpenLeg"]

class Adoption(Lifecycle):
    """Re-adopting the calls of a previous Earpiece; see the module docstring."""

    def adopt(self, records: Iterable[OpenCall]) -> int:
        """Remember open records for their live channels to rejoin; returns how many."""
        for rec in records:
            if rec.call_id in self._calls:
                continue
            self._adopt_records[rec.call_id] = rec
            for leg in rec.legs:
                if leg.role not in HELPER_ROLES:
                    self._adoptable[leg.uniqueid] = (rec, leg.role)
        return len(self._adopt_records)

    def finish_adoption(self) -> tuple[int, int]:
        """Close what no live channel rejoined; returns (calls re-adopted, calls closed)."""
        now = self.clock()
        adopted = closed = 0
        for rec in self._adopt_records.values():
            call = self._calls.get(rec.call_id)
            live = call.channels if call is not None else {}
            for leg in rec.legs:
                if leg.uniqueid not in live:
                    self.bus.publish(ChannelLeft(call_id=rec.call_id, at=now, channel=leg.channel,
                                                 uniqueid=leg.uniqueid, cause=None))
            if call is not None:
                adopted += 1
                continue
            closed += 1
            log.info("call %s closed: %s", rec.call_id, ENDED_WHILE_DOWN)
            self.bus.publish(CallEnded(call_id=rec.call_id, at=now, outcome=rec.outcome,
                                       hangup_cause=None, reason=ENDED_WHILE_DOWN))
        self._adoptable.clear()
        self._adopt_records.clear()
        self.stats.calls_adopted += adopted
        self.stats.calls_closed_at_start += closed
        if adopted or closed:
            log.info("start-up: %d open calls of a previous Earpiece re-adopted, %d closed (%s)",
                     adopted, closed, ENDED_WHILE_DOWN)
        return adopted, closed
