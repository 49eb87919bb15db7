"""Open call records of a previous Earpiece, as the CRM hands them to the registry to re-adopt
(see :mod:`earpiece.agi.calls.adoption`): plain data and one pure constructor."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from earpiece.agi.calls.call import Call
from earpiece.events import CallState, ChannelRole, Direction

ENDED_WHILE_DOWN = "ended while Earpiece was down"


@dataclass(frozen=True)
class OpenLeg:
    uniqueid: str
    channel: str
    role: ChannelRole


@dataclass(frozen=True)
class OpenCall:
    """A call record the CRM holds as not ended, with its legs that have not left."""

    call_id: str
    direction: Direction
    state: CallState
    started: float
    outcome: CallState | None = None
    answered: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    legs: tuple[OpenLeg, ...] = ()

    @property
    def linkedid(self) -> str | None:
        """The uniqueid the call's channels share as linkedid: its customer's (first) leg."""
        for leg in self.legs:
            if leg.role is ChannelRole.CUSTOMER:
                return leg.uniqueid
        return self.legs[0].uniqueid if self.legs else None


def restore(rec: OpenCall) -> Call:
    """A live :class:`Call` carrying an open record's identity and progress."""
    call = Call(id=rec.call_id, created=rec.started, direction=rec.direction,
                tags=dict(rec.tags), state=rec.state, outcome=rec.outcome,
                answered=rec.answered, confirmed=True, linkedid=rec.linkedid)
    return call
