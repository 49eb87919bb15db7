"""Registry layer 1: shared state, constants, public lookups and grouping channels into calls.

Holds the registry's state (set up in :meth:`Grouping.__init__`), the read API (``calls``,
``history``, ``get``, ``find_by_channel``, ``snapshot``) and the channel bookkeeping every
upper layer uses: creating/attaching channels, helpers, bridges, tags, merging and forgetting.
Part of :class:`~earpiece.agi.calls.registry.Registry`; see that module's docstring.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from earpiece.agi.calls.call import (
    HELPER_TECHS,
    Call,
    Channel,
    channel_tech,
    local_base,
    snoop_target,
)
from earpiece.agi.calls.records import OpenCall, restore
from earpiece.bus import EventBus
from earpiece.events import CallTagged, ChannelJoined, ChannelRole

#: One logger for every layer of the registry (its name predates the split).
log = logging.getLogger("earpiece.agi.calls.registry")

SPY_APPS = frozenset({"chanspy", "extenspy"})
#: Dialplan applications that make a Local-only call a real call as soon as they run.
CONFIRMING_APPS = frozenset({"dial", "queue", "stasis", "agi", "eagi", "amd", "followme"})
#: Applications that send early media (ringing, progress tones): an Originate of ours to a Local
#: channel that runs one is a call, announced at once so that its early media can be forked.
EARLY_MEDIA_APPS = frozenset({"ringing", "progress", "playtones"})
#: Applications whose channel is the caller of the dialled legs it is connected to.
CALLER_APPS = frozenset({"dial", "queue", "followme"})
ORIGINATED_APP = "AppDial2"  # first Newexten of a channel created by Originate
DIALLED_APP = "AppDial"  # first Newexten of a channel created by Dial()
UNKNOWN_UNIQUEID = "<unknown>"
#: Resync: a channel with an event this recently may be newer than the listing.
RESYNC_GRACE_S = 1.0
#: Originate variable carrying the id :meth:`Registry.expect_originate` reserved.
CALL_ID_VARIABLE = "EARPIECE_CALL_ID"
_WATCHED_VARS = frozenset({"DIALSTATUS", "AMDSTATUS", CALL_ID_VARIABLE})

#: AMI ChannelState / ARI state names.
STATE_NAMES = {
    "0": "Down", "1": "Rsrvd", "2": "OffHook", "3": "Dialing", "4": "Ring", "5": "Ringing",
    "6": "Up", "7": "Busy", "8": "Dialing Offhook", "9": "Pre-ring",
}  # fmt: skip


@dataclass
class _Expected:
    call_id: str
    tags: dict[str, str]
    dial: str | None
    sent: float = 0.0
    bound: Call | None = None


@dataclass
class RegistryStats:
    ami_events: int = 0
    ari_events: int = 0
    dropped: int = 0  # malformed events counted and dropped
    calls_started: int = 0
    calls_ended: int = 0
    resyncs: int = 0
    calls_adopted: int = 0  # open calls of a previous Earpiece whose channels were live
    calls_closed_at_start: int = 0  # ... whose channels were gone (ended while it was down)


@dataclass(frozen=True)
class _Live:
    """One channel of a resync listing."""

    uid: str
    name: str
    linkedid: str | None
    state: str
    bridge: str = ""
    link: str | None = None  # uniqueid of the channel that dialled it (ARI heuristic)


@dataclass
class _Bridge:
    members: set[str] = field(default_factory=set)



class Grouping:
    """Registry state, lookups and channel grouping; see :mod:`earpiece.agi.calls.registry`."""

    def __init__(
        self,
        bus: EventBus,
        *,
        clock: Callable[[], float] = time.time,
        id_factory: Callable[[], str] | None = None,
        history_size: int = 1000,
        memory_size: int = 20_000,
    ) -> None:
        self.bus = bus
        self.clock = clock
        self._new_id = id_factory or (lambda: uuid.uuid4().hex[:16])
        self._calls: dict[str, Call] = {}  # live calls, tentative included
        self._by_uid: dict[str, Call] = {}
        self._by_name: dict[str, str] = {}  # channel name -> uniqueid (live channels)
        self._by_linkedid: dict[str, Call] = {}
        self._orphans: dict[str, Channel] = {}  # helper channels not attached to a call yet
        self._bridges: dict[str, _Bridge] = {}
        self._expected: OrderedDict[str, _Expected] = OrderedDict()
        self._aliases: OrderedDict[str, str] = OrderedDict()
        # ActionIDs whose OriginateResponse was handled (or given up on at a resync): their call
        self._responded: OrderedDict[str, Call | None] = OrderedDict()
        self._pending_tags: OrderedDict[str, dict[str, str]] = OrderedDict()
        # Channels that are gone (uniqueid -> the call they belonged to, or None): late or
        # replayed events about them must not bring them back.
        self._gone: OrderedDict[str, Call | None] = OrderedDict()
        self._gone_names: OrderedDict[str, Call | None] = OrderedDict()
        self._history: deque[Call] = deque(maxlen=history_size)
        self._memory_size = memory_size
        self.stats = RegistryStats()
        self._source = ""  # the ARI event being handled, for evidence sources
        # Open calls of a previous Earpiece (earpiece.agi.calls.adoption): uniqueid of a leg
        # -> (record, the leg's role), and the records by call id, until finish_adoption().
        self._adoptable: dict[str, tuple[OpenCall, ChannelRole]] = {}
        self._adopt_records: dict[str, OpenCall] = {}

    # ===================================================================== public lookups
    @property
    def calls(self) -> dict[str, Call]:
        """Live, announced calls by id."""
        return {cid: c for cid, c in self._calls.items() if c.confirmed}

    @property
    def history(self) -> list[Call]:
        """Ended calls, oldest first (bounded)."""
        return list(self._history)

    def get(self, call_id: str) -> Call | None:
        cid = self._aliases.get(call_id, call_id)
        call = self._calls.get(cid)
        if call is not None:
            return call if call.confirmed else None
        for old in reversed(self._history):
            if old.id == cid:
                return old
        return None

    def find_by_channel(self, name_or_uniqueid: str) -> Call | None:
        """The call of a channel, by name or uniqueid (= ARI channel id); live calls first."""
        key = name_or_uniqueid
        call = self._by_uid.get(key) or self._by_uid.get(self._by_name.get(key, ""))
        if call is not None and call.confirmed:
            return call
        old = self._gone.get(key) or self._gone_names.get(key)
        if old is not None and old.confirmed:
            return old
        return None

    def snapshot(self) -> list[dict[str, Any]]:
        """Ended (history) and live calls as plain dicts, by start time."""
        calls = [*self._history, *self.calls.values()]
        calls.sort(key=lambda c: c.created)
        return [c.snapshot() for c in calls]

    # ===================================================================== core: channels
    def _ensure(
        self,
        uid: str,
        name: str,
        linkedid: str | None,
        state: str,
        *,
        join: Call | None = None,
    ) -> tuple[Call, Channel] | None:
        """The call and channel of ``uid``, creating them for a channel not seen before."""
        call = self._by_uid.get(uid)
        if call is not None:
            ch = call.channels[uid]
            ch.last_seen = self.clock()
            if state:
                ch.state = state
            return call, ch
        if uid in self._orphans:
            orphan = self._orphans[uid]
            orphan.last_seen = self.clock()
            if state:
                orphan.state = state
            return None
        if uid in self._gone:
            return None
        now = self.clock()
        tech = channel_tech(name)
        if tech in HELPER_TECHS:
            ch = Channel(uid, name, HELPER_TECHS[tech], now, state, last_seen=now)
            target_uid = snoop_target(name)
            target = self._by_uid.get(target_uid) if target_uid else None
            if target is None and linkedid and linkedid != uid:  # e.g. Dial(AudioSocket/...)
                target = self._by_linkedid.get(linkedid)
            self._orphans[uid] = ch
            self._by_name[name] = uid
            if target is not None:
                self._attach_orphan(uid, target)
                return target, ch
            return None
        ch = Channel(uid, name, ChannelRole.UNKNOWN, now, state, last_seen=now)
        base = local_base(name)
        peer_call: Call | None = None
        if base is not None:
            peer_uid = self._by_name.get(base + (";2" if name.endswith(";1") else ";1"))
            peer_call = self._by_uid.get(peer_uid) if peer_uid else None
        linked = self._by_linkedid.get(linkedid) if linkedid else None
        adopted = self._adopted(uid)
        if adopted is not None:  # a leg of a call a previous Earpiece left open
            call, ch.role = adopted
        elif peer_call is not None and base is not None:
            call = peer_call
            peer = call.channels[self._by_name[base + (";2" if name.endswith(";1") else ";1")]]
            if name.endswith(";2"):
                ch.role = ChannelRole.LOCAL_PEER
            else:  # ;1 seen after ;2 (ARI: ;2's events may come first): ;1 takes the role
                if peer.role is not ChannelRole.UNKNOWN:
                    ch.role = peer.role
                elif call.customer is None:
                    ch.role = ChannelRole.CUSTOMER
                peer.role = ChannelRole.LOCAL_PEER
        elif join is not None:
            call = join
            ch.role = ChannelRole.AGENT
            ch.dialled = True
        elif linked is not None and linkedid != uid:
            call = linked
        else:
            call = Call(id=self._new_id(), created=now)
            ch.role = ChannelRole.CUSTOMER
            call.linkedid = linkedid or uid
            self._calls[call.id] = call
            self._by_linkedid[call.linkedid] = call
        call.channels[uid] = ch
        self._by_uid[uid] = call
        self._by_name[name] = uid
        self._take_pending_tags(call, uid, name)
        if call.confirmed and ch.role is not ChannelRole.UNKNOWN:
            self._announce(call, ch)
        return call, ch

    def _adopted(self, uid: str) -> tuple[Call, ChannelRole] | None:
        """The re-adopted call ``uid`` was a leg of, made live on its first channel."""
        found = self._adoptable.pop(uid, None)
        if found is None:
            return None
        rec, role = found
        call = self._calls.get(rec.call_id)
        if call is None:
            call = restore(rec)
            self._calls[call.id] = call
            if call.linkedid:
                self._by_linkedid[call.linkedid] = call
        return call, role

    def _announce(self, call: Call, ch: Channel) -> None:
        if ch.announced or not call.confirmed:
            return
        ch.announced = True
        self.bus.publish(
            ChannelJoined(
                call_id=call.id, at=ch.created, channel=ch.name, uniqueid=ch.uniqueid, role=ch.role
            )
        )

    def _attach_orphan(self, uid: str, call: Call) -> None:
        ch = self._orphans.pop(uid, None)
        if ch is None:
            return
        call.channels[uid] = ch
        self._by_uid[uid] = call
        self._announce(call, ch)

    def _attach_bridge(self, bridge_id: str) -> None:
        bridge = self._bridges.get(bridge_id)
        if bridge is None:
            return
        owner: Call | None = None
        for uid in bridge.members:
            call = self._by_uid.get(uid)
            if call is not None:
                owner = call
                break
        if owner is None:
            return
        for uid in list(bridge.members):
            if uid in self._orphans:
                self._attach_orphan(uid, owner)

    def _take_pending_tags(self, call: Call, uid: str, name: str) -> None:
        for key in (uid, name):
            tags = self._pending_tags.pop(key, None)
            if tags:
                self._apply_tags(call, tags)

    def _apply_tags(self, call: Call, tags: dict[str, str]) -> None:
        new = {k: v for k, v in tags.items() if call.tags.get(k) != v}
        if not new:
            return
        call.tags.update(new)
        if call.confirmed:
            self.bus.publish(CallTagged(call_id=call.id, at=self.clock(), tags=new))

    def _merge(self, source: Call, target: Call, role: ChannelRole) -> None:
        """Fold a tentative call (a dialled leg seen before its Dial) into ``target``."""
        for uid, ch in source.channels.items():
            if not ch.is_helper:
                ch.role = ChannelRole.LOCAL_PEER if ch.name.endswith(";2") else role
            target.channels[uid] = ch
            self._by_uid[uid] = target
        target.tags.update(source.tags)
        self._drop(source)
        for ch in source.channels.values():
            self._announce(target, ch)

    def _drop(self, call: Call) -> None:
        self._calls.pop(call.id, None)
        if call.linkedid and self._by_linkedid.get(call.linkedid) is call:
            del self._by_linkedid[call.linkedid]

    # ===================================================================== core: forgetting
    def _forget(self, uid: str, name: Any, call: Call | None) -> None:
        self._by_uid.pop(uid, None)
        if isinstance(name, str) and self._by_name.get(name) == uid:
            del self._by_name[name]
        self._gone[uid] = call
        if isinstance(name, str):
            self._gone_names[name] = call
        for memo in (self._gone, self._gone_names):
            while len(memo) > self._memory_size:
                memo.popitem(last=False)
