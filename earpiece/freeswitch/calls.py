"""FreeSWITCH channels grouped into calls, published as the same bus events as the Asterisk
registry (``CallStarted``, ``ChannelJoined``, ``CallStateChanged``, ``CallOutcome``,
``ChannelLeft``, ``CallEnded``).

Pure apart from the bus: :class:`FsCalls` is fed every :class:`~earpiece.freeswitch.esl_event.
EslEvent`. A call is one dial attempt Earpiece made (:meth:`FsCalls.expect` with the
``origination_uuid`` it set, and the ``bgapi`` Job-UUID). Grouping, from the captures:

* the customer leg is the channel whose ``Unique-ID`` is the ``origination_uuid``;
* a leg whose ``Other-Leg-Unique-ID`` (``Other-Type: originator``) or ``Channel-Call-UUID`` names a
  channel of the call joins it: the bridged agent (``sofia/internal/1001...`` or
  ``loopback/agent_talk-a``), role *agent*;
* a loopback ``-a`` leg names its ``-b`` half in ``variable_other_loopback_leg_uuid``: role
  *local_peer* (the ``-b`` leg carries nothing pointing back);
* anything else (an eavesdrop whisper source, another dialer's call) is not a call of ours and
  is counted in :attr:`FsCalls.untracked`.

The outcome comes from :class:`~earpiece.freeswitch.outcome.OutcomeTracker`. An offline or unknown
user fails in the ``BACKGROUND_JOB`` with no channel at all: the call starts and ends there.
Inbound calls (the outbound-socket route hook) are not handled here yet.
"""

from __future__ import annotations

import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

from earpiece.bus import EventBus
from earpiece.events import (
    OUTCOME_STATES,
    CallEnded,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
    Direction,
)
from earpiece.freeswitch.esl_event import EslEvent
from earpiece.freeswitch.outcome import OutcomeTracker

_LEFT = frozenset({"CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY"})


@dataclass
class FsCall:
    call_id: str
    customer_uuid: str
    direction: Direction
    tags: dict[str, str]
    tracker: OutcomeTracker
    state: CallState = CallState.DIALING
    started: bool = False
    ended: bool = False
    channels: dict[str, tuple[str, ChannelRole]] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)
    hangup_cause: int | None = None


@dataclass
class FsCalls:
    bus: EventBus
    clock: Callable[[], float] = time.time
    calls: dict[str, FsCall] = field(default_factory=dict)  # call id -> call
    untracked: int = 0
    _by_channel: dict[str, FsCall] = field(default_factory=dict)
    _by_job: dict[str, FsCall] = field(default_factory=dict)

    def expect(self, customer_uuid: str, *, job_uuid: str | None = None,
               call_id: str | None = None, direction: Direction = "outbound",
               tags: dict[str, str] | None = None) -> FsCall:
        """A dial attempt Earpiece made with ``origination_uuid=<customer_uuid>``."""
        call = FsCall(call_id or str(uuidlib.uuid4()), customer_uuid, direction,
                      dict(tags or {}), OutcomeTracker(customer_uuid, job_uuid))
        self.calls[call.call_id] = call
        self._by_channel[customer_uuid] = call
        if job_uuid is not None:
            self._by_job[job_uuid] = call
        return call

    def feed(self, event: EslEvent) -> None:
        if event.name == "BACKGROUND_JOB":
            job = event.job_uuid
            call = self._by_job.get(job) if job else None
            if call is None:
                call = next((c for c in self.calls.values()
                             if not c.ended and c.tracker.job_uuid is None
                             and c.tracker._is_our_job(event)), None)
            if call is not None and not call.ended:
                self._start(call, "")
                self._outcome(call, event)
                if call.tracker.settled and call.state in OUTCOME_STATES and not call.channels \
                        and call.state is not CallState.ANSWERED:
                    self._end(call)  # failed before any channel existed (offline user)
            return
        uid = event.unique_id
        if uid is None or not event.name.startswith("CHANNEL_"):
            return
        call = self._by_channel.get(uid) or self._join(event, uid)
        if call is None or call.ended:
            return
        if uid not in call.channels:
            self._joined(call, event, uid)
        peer = event.variable("other_loopback_leg_uuid")
        if peer and peer not in self._by_channel and event.variable("loopback_leg") == "A":
            self._by_channel[peer] = call
            name = call.channels[uid][0]
            self._joined(call, None, peer, role=ChannelRole.LOCAL_PEER,
                         name=name[:-2] + "-b" if name.endswith("-a") else name)
        self._outcome(call, event)
        if event.name in _LEFT and uid not in call.left:
            call.left.add(uid)
            cause = _int(event.variable("hangup_cause_q850"))
            if uid == call.customer_uuid:
                call.hangup_cause = cause
            self.bus.publish(ChannelLeft(call_id=call.call_id, channel=call.channels[uid][0],
                                         uniqueid=uid, cause=cause, at=self.clock()))
            if call.left >= set(call.channels) and call.customer_uuid in call.left:
                self._end(call)

    # -- internals ----------------------------------------------------------------------
    def _join(self, event: EslEvent, uid: str) -> FsCall | None:
        for key in (event.get("Other-Leg-Unique-ID"), event.get("Channel-Call-UUID")):
            if key and key != uid and key in self._by_channel:
                call = self._by_channel[key]
                self._by_channel[uid] = call
                return call
        self.untracked += 1
        return None

    def _joined(self, call: FsCall, event: EslEvent | None, uid: str, *,
                role: ChannelRole | None = None, name: str | None = None) -> None:
        if name is None:
            name = (event.get("Channel-Name") if event is not None else None) or uid
        if role is None:
            if uid == call.customer_uuid:
                role = ChannelRole.CUSTOMER
            elif event is not None and event.get("Other-Type") == "originator":
                role = ChannelRole.AGENT
            else:
                role = ChannelRole.UNKNOWN
        if uid == call.customer_uuid:
            self._start(call, name)
        call.channels[uid] = (name, role)
        self.bus.publish(ChannelJoined(call_id=call.call_id, channel=name, uniqueid=uid,
                                       role=role, at=self.clock()))

    def _start(self, call: FsCall, channel: str) -> None:
        if call.started:
            return
        call.started = True
        self.bus.publish(CallStarted(call_id=call.call_id, direction=call.direction,
                                     channel=channel, tags=dict(call.tags), at=self.clock()))

    def _set_state(self, call: FsCall, new: CallState, source: str) -> None:
        if new is call.state:
            return
        old, call.state = call.state, new
        self.bus.publish(CallStateChanged(call_id=call.call_id, old=old, new=new, source=source,
                                          at=self.clock()))

    def _outcome(self, call: FsCall, event: EslEvent) -> None:
        settled = call.tracker.feed(event, self.clock())
        if settled is None:
            if call.tracker.state is CallState.RINGING and call.state is CallState.DIALING:
                self._set_state(call, CallState.RINGING, f"esl:{event.name}")
            return
        self._set_state(call, settled.state, settled.source)
        self.bus.publish(CallOutcome(call_id=call.call_id, outcome=settled.state,
                                     source=settled.source, detail=call.tracker.detail(),
                                     at=self.clock()))

    def _end(self, call: FsCall) -> None:
        if call.ended:
            return
        call.ended = True
        outcome = call.tracker.outcome.state if call.tracker.outcome is not None else None
        self.bus.publish(CallEnded(call_id=call.call_id, outcome=outcome,
                                   hangup_cause=call.hangup_cause, at=self.clock()))
        for uid in call.channels:
            self._by_channel.pop(uid, None)
        self._by_channel.pop(call.customer_uuid, None)
        if call.tracker.job_uuid is not None:
            self._by_job.pop(call.tracker.job_uuid, None)
        del self.calls[call.call_id]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None
