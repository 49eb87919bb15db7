"""Call registry: groups Asterisk channels into calls and runs each call's state machine.

Fed by the AMI client (:meth:`Registry.on_ami_event`, :meth:`Registry.reconcile_ami`), the ARI
client (:meth:`Registry.on_ari_event`, :meth:`Registry.reconcile_ari`), the FastAGI tag hook
(:meth:`Registry.tag`), our own originates (:meth:`Registry.expect_originate`) and the audio CPA
(:meth:`Registry.record_audio_verdict`). Publishes :class:`~earpiece.events.CallStarted`,
:class:`~earpiece.events.ChannelJoined`, :class:`~earpiece.events.ChannelLeft`,
:class:`~earpiece.events.CallStateChanged`, :class:`~earpiece.events.CallOutcome` (once),
:class:`~earpiece.events.CallTagged` and :class:`~earpiece.events.CallEnded` (once).

Grouping (facts from ``shared/asterisk/README.md``):

* a channel created with the ``Linkedid`` of a known call joins it (Dial/Queue legs);
* the two halves of ``Local/x@ctx-N;1`` / ``;2`` are one call;
* ``DialBegin`` (AMI) / ``Dial`` (ARI, which has no linkedid) link caller and callee;
* helpers never make calls: ``Snoop/<uniqueid>-N`` joins the call of ``<uniqueid>``;
  ``UnicastRTP``/``AudioSocket``/``WebSocket`` join the call of a channel they share a bridge
  with; a Local pair running ``ChanSpy`` joins the spyee's call at ``ChanSpyStart``.

A new call stays *tentative* (nothing published) until it is known to be a real call: for a
non-Local channel its first dialplan step that is not ``AppDial`` (a dialled leg waits for the
Dial that links it to its caller); for a Local-only call an ``OriginateResponse`` not running a
spy application, a ``Dial`` from it, ``Stasis``/``AGI``, a tag, or its end. That is what keeps a
ChanSpy Local pair (``OriginateResponse Application: ChanSpy`` comes before ``ChanSpyStart``)
from ever being announced as a call.

Outcome: an answer settles it at once; failures are collected as ranked
:class:`~earpiece.agi.calls.outcome.Evidence` and settle when the customer channel is gone or
the call ends (a PJSIP 603 sends ``DialEnd NOANSWER`` *and* cause 21: the cause wins). Every
piece of evidence is kept with its source; those that disagree with the outcome are listed as such.

Roles: the customer is the originated channel (first dialplan step ``AppDial2``, or the
Originate's own ``DialBegin`` that has only ``Dest*`` headers) or, inbound, the first channel;
the agent is the destination of a Dial from the customer (or its Local half).

Resync (:meth:`Registry.reconcile_ami` / :meth:`Registry.reconcile_ari`): known live channels
keep their call, unknown ones make calls (state from the listing: ``Up`` = answered), known
channels missing from the listing leave (``source="resync"``) and their calls end; our own
Originates bound to channels created during the outage keep their reserved ids; ones whose
response was lost and that have no live channel end as failed. Channels that are gone are
remembered (bounded), so replayed or late events never bring a call back.
"""

from __future__ import annotations

import itertools
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from earpiece.agi.ami_message import AmiMessage
from earpiece.agi.calls.call import (
    HELPER_TECHS,
    AudioVerdict,
    Call,
    Channel,
    Transition,
    channel_tech,
    local_base,
    snoop_target,
)
from earpiece.agi.calls.outcome import (
    AUDIO_ANSWER_LABELS,
    DIAL_PROGRESS,
    RANK_ANSWER,
    RANK_FALLBACK,
    RANK_ORIGINATE_GENERIC,
    Evidence,
    audio_evidence,
    best,
    cause_evidence,
    dial_status_evidence,
    originate_evidence,
    parse_int,
)
from earpiece.bus import EventBus
from earpiece.events import (
    CallEnded,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
)

log = logging.getLogger(__name__)

SPY_APPS = frozenset({"chanspy", "extenspy"})
#: Dialplan applications that make a Local-only call a real call as soon as they run.
CONFIRMING_APPS = frozenset({"dial", "queue", "stasis", "agi", "eagi", "amd", "followme"})
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


class Registry:
    """Live calls keyed by Earpiece call id; see the module docstring."""

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

    # ===================================================================== other entry points
    def expect_originate(
        self, action_id: str, *, tags: dict[str, str] | None = None, channel: str | None = None
    ) -> str:
        """Reserve a call id for an Originate we are about to send with ``ActionID: action_id``.

        ``channel`` (the Originate's ``Channel``, e.g. ``PJSIP/cust1``) lets the call carry this
        id from its first event; without it the id is bound when the ``OriginateResponse``
        arrives (an alias if the call was already announced under another id).
        """
        cid = self._new_id()
        self._expected[action_id] = _Expected(cid, dict(tags or {}), channel, self.clock())
        while len(self._expected) > self._memory_size:
            self._expected.popitem(last=False)
        return cid

    def tag(self, uniqueid_or_channel: str, tags: Mapping[str, str]) -> str | None:
        """Attach tags (FastAGI hook) to the call of a channel; returns its call id.

        Tags for a channel not seen yet are kept and applied when it appears.
        """
        call = self._by_uid.get(uniqueid_or_channel) or self._by_uid.get(
            self._by_name.get(uniqueid_or_channel, "")
        )
        if call is None:
            old = self._gone.get(uniqueid_or_channel) or self._gone_names.get(uniqueid_or_channel)
            if old is not None:
                old.tags.update(tags)
                return old.id
            pending = self._pending_tags.setdefault(uniqueid_or_channel, {})
            pending.update(tags)
            while len(self._pending_tags) > self._memory_size:
                self._pending_tags.popitem(last=False)
            return None
        self._apply_tags(call, dict(tags))
        if not call.confirmed and not call.spy and not call.awaiting_link:
            self._confirm(call)  # a channel running our tag hook is a real call
        return call.id

    def record_audio_verdict(self, call_id: str, label: str, source: str) -> bool:
        """Record what the audio (CPA/AMD) says; both it and the signalling are kept.

        ``busy``/``congestion``/``sit`` before the signalling settles count as evidence
        (ranked below specific signalling); ``human``/``machine``/``fax`` are kept beside an
        answered outcome. Returns ``False`` for an unknown call.
        """
        call = self.get(call_id) or self._calls.get(call_id)
        if call is None:
            return False
        now = self.clock()
        label = label.lower()
        if any(a.label == label and a.source == source for a in call.audio):
            return True
        call.audio.append(AudioVerdict(label, source, now))
        ev = audio_evidence(label, source, now)
        if ev is not None and call.ended is None:
            self._evidence(call, ev)
        elif label in AUDIO_ANSWER_LABELS and call.outcome is not None:
            if call.outcome is not CallState.ANSWERED:
                call.add_evidence(Evidence(CallState.ANSWERED, RANK_ANSWER, source, now))
        return True

    # ===================================================================== AMI
    def on_ami_event(self, msg: AmiMessage) -> None:
        """Feed one AMI event (responses and unrelated events are ignored)."""
        name = msg.event
        if name is None:
            return
        self.stats.ami_events += 1
        handler = self._AMI_HANDLERS.get(name)
        try:
            if handler is not None:
                handler(self, msg)
            elif "Uniqueid" in msg and "Linkedid" in msg and "Channel" in msg:
                self._ami_channel(msg)
        except (KeyError, ValueError, TypeError) as exc:
            self.stats.dropped += 1
            log.warning("dropped malformed AMI %s event: %s", name, exc)

    def _ami_channel(self, msg: AmiMessage, prefix: str = "") -> tuple[Call, Channel] | None:
        uid = msg.get(prefix + "Uniqueid")
        chan = msg.get(prefix + "Channel")
        if not uid or not chan or uid == UNKNOWN_UNIQUEID:
            return None
        state = msg.get(prefix + "ChannelStateDesc") or STATE_NAMES.get(
            msg.get(prefix + "ChannelState") or "", ""
        )
        return self._seen(uid, chan, msg.get(prefix + "Linkedid"), state, f"ami:{msg.event}")

    def _ami_newchannel(self, msg: AmiMessage) -> None:
        self._ami_channel(msg)

    def _ami_newexten(self, msg: AmiMessage) -> None:
        found = self._ami_channel(msg)
        if found is not None:
            self._dialplan(found[0], found[1], msg.get("Application") or "", "ami")

    def _ami_newstate(self, msg: AmiMessage) -> None:
        self._ami_channel(msg)  # the state change itself is handled in _seen()

    def _ami_dialbegin(self, msg: AmiMessage) -> None:
        dest = self._ami_channel(msg, "Dest")
        if "Channel" not in msg:
            if dest is not None:  # the Originate's own dial: only Dest* headers
                self._originated(dest[0], dest[1])
            return
        caller = self._ami_channel(msg)
        if caller is not None and dest is not None:
            self._link_dial(caller[0], caller[1], dest[1])

    def _ami_dialstate(self, msg: AmiMessage) -> None:
        status = (msg.get("DialStatus") or "").upper()
        target = self._ami_channel(msg) or self._ami_channel(msg, "Dest")
        if target is not None and status in DIAL_PROGRESS:
            self._progress(target[0], f"ami:DialState {status}")

    def _ami_dialend(self, msg: AmiMessage) -> None:
        status = (msg.get("DialStatus") or "").upper()
        dest = self._ami_channel(msg, "Dest")
        caller = self._ami_channel(msg) if "Channel" in msg else None
        target = caller or dest
        if target is None:
            return
        ev = dial_status_evidence(status, f"ami:DialEnd DialStatus={status}", self.clock())
        if ev is not None:
            name = dest[1].name if dest else target[1].name
            self._dial_evidence(target[0], ev, name, own="Channel" not in msg)

    def _ami_varset(self, msg: AmiMessage) -> None:
        var = (msg.get("Variable") or "").upper()
        if var not in _WATCHED_VARS:
            return
        found = self._ami_channel(msg)
        if found is None:
            return
        self._variable(found[0], found[1], var, msg.get("Value") or "", "ami:VarSet")

    def _ami_hanguprequest(self, msg: AmiMessage) -> None:
        found = self._ami_channel(msg)
        if found is None:
            return
        call, ch = found
        ch.hangup_requested = True
        cause = parse_int(msg.get("Cause"))
        if cause is not None:
            self._cause(call, ch, cause, f"ami:HangupRequest Cause={cause}")

    def _ami_softhanguprequest(self, msg: AmiMessage) -> None:
        # ``Cause`` here is a soft-hangup flag (0x10 app unload, 0x20 explicit), not Q.850.
        found = self._ami_channel(msg)
        if found is not None:
            found[1].hangup_requested = True

    def _ami_hangup(self, msg: AmiMessage) -> None:
        uid = msg.get("Uniqueid") or ""
        cause = parse_int(msg.get("Cause"))
        self._hangup(uid, cause, f"ami:Hangup Cause={cause}")

    def _ami_originateresponse(self, msg: AmiMessage) -> None:
        self._originate_response(
            action_id=msg.get("ActionID") or "",
            success=(msg.get("Response") or "").lower() == "success",
            reason=parse_int(msg.get("Reason")) or 0,
            channel=msg.get("Channel") or "",
            uniqueid=msg.get("Uniqueid") or UNKNOWN_UNIQUEID,
            application=msg.get("Application") or "",
        )

    def _ami_bridgeenter(self, msg: AmiMessage) -> None:
        bid = msg.get("BridgeUniqueid")
        uid = msg.get("Uniqueid")
        if not bid or not uid:
            return
        self._ami_channel(msg)
        self._bridges.setdefault(bid, _Bridge()).members.add(uid)
        self._attach_bridge(bid)

    def _ami_bridgeleave(self, msg: AmiMessage) -> None:
        bridge = self._bridges.get(msg.get("BridgeUniqueid") or "")
        if bridge is not None:
            bridge.members.discard(msg.get("Uniqueid") or "")

    def _ami_bridgedestroy(self, msg: AmiMessage) -> None:
        self._bridges.pop(msg.get("BridgeUniqueid") or "", None)

    def _ami_chanspystart(self, msg: AmiMessage) -> None:
        spyer = self._ami_channel(msg, "Spyer")
        spyee = self._ami_channel(msg, "Spyee")
        spyer_uid = msg.get("SpyerUniqueid") or ""
        target = spyee[0] if spyee is not None else None
        if target is None:
            return
        if spyer is not None:
            self._spy_started(spyer[0], target)
        elif spyer_uid in self._orphans:
            self._attach_orphan(spyer_uid, target)

    def _spy_started(self, call: Call, target: Call) -> None:
        """A Local pair running ChanSpy started spying: it serves ``target``, it is no call."""
        if call is target or call.confirmed or not call.is_local_only:
            return
        self._drop(call)
        for uid, ch in call.channels.items():
            ch.role = ChannelRole.HELPER
            if ch.alive:
                target.channels[uid] = ch
                self._by_uid[uid] = target
                self._announce(target, ch)
            else:
                self._gone[uid] = target

    def _ami_rename(self, msg: AmiMessage) -> None:
        uid = msg.get("Uniqueid") or ""
        new = msg.get("Newname")
        call = self._by_uid.get(uid)
        if call is None or not new:
            return
        ch = call.channels[uid]
        self._by_name.pop(ch.name, None)
        ch.name = new
        self._by_name[new] = uid

    _AMI_HANDLERS: ClassVar[dict[str, Callable[[Registry, AmiMessage], None]]] = {
        "Newchannel": _ami_newchannel,
        "Newexten": _ami_newexten,
        "Newstate": _ami_newstate,
        "DialBegin": _ami_dialbegin,
        "DialState": _ami_dialstate,
        "DialEnd": _ami_dialend,
        "VarSet": _ami_varset,
        "HangupRequest": _ami_hanguprequest,
        "SoftHangupRequest": _ami_softhanguprequest,
        "Hangup": _ami_hangup,
        "OriginateResponse": _ami_originateresponse,
        "BridgeEnter": _ami_bridgeenter,
        "BridgeLeave": _ami_bridgeleave,
        "BridgeDestroy": _ami_bridgedestroy,
        "ChanSpyStart": _ami_chanspystart,
        "Rename": _ami_rename,
        # Answers to CoreShowChannels go to reconcile_ami(), not here.
        "CoreShowChannel": lambda self, msg: None,
        "CoreShowChannelsComplete": lambda self, msg: None,
    }

    # ===================================================================== ARI
    def on_ari_event(self, event: Mapping[str, Any]) -> None:
        """Feed one ARI websocket event (the parsed JSON object)."""
        kind = event.get("type")
        if not isinstance(kind, str):
            self.stats.dropped += 1
            return
        self.stats.ari_events += 1
        self._source = f"ari:{kind}"
        handler = self._ARI_HANDLERS.get(kind)
        try:
            if handler is not None:
                handler(self, event)
            elif isinstance(event.get("channel"), Mapping):
                self._ari_channel(event["channel"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            self.stats.dropped += 1
            log.warning("dropped malformed ARI %s event: %s", kind, exc)

    def _ari_channel(self, chan: Any) -> tuple[Call, Channel] | None:
        if not isinstance(chan, Mapping):
            return None
        uid, name = chan.get("id"), chan.get("name")
        if not isinstance(uid, str) or not isinstance(name, str) or not uid:
            return None
        state = chan.get("state")
        return self._seen(uid, name, None, state if isinstance(state, str) else "", self._source)

    def _ari_dialplan(self, event: Mapping[str, Any]) -> None:
        found = self._ari_channel(event.get("channel"))
        if found is not None:
            app = event.get("dialplan_app")
            self._dialplan(found[0], found[1], app if isinstance(app, str) else "", "ari")

    def _ari_state(self, event: Mapping[str, Any]) -> None:
        self._ari_channel(event.get("channel"))  # the state change itself: _seen()

    def _ari_dial(self, event: Mapping[str, Any]) -> None:
        peer = self._ari_channel(event.get("peer"))
        if peer is None:
            return
        caller = self._ari_channel(event.get("caller")) if event.get("caller") else None
        status = str(event.get("dialstatus") or "").upper()
        if caller is None:
            self._originated(peer[0], peer[1])
        else:
            self._link_dial(caller[0], caller[1], peer[1])
        call = (caller or peer)[0]
        if status in DIAL_PROGRESS:
            self._progress(call, f"ari:Dial dialstatus={status}")
        else:
            ev = dial_status_evidence(status, f"ari:Dial dialstatus={status}", self.clock())
            if ev is not None:
                self._dial_evidence(call, ev, peer[1].name, own=caller is None)

    def _ari_varset(self, event: Mapping[str, Any]) -> None:
        found = self._ari_channel(event.get("channel"))
        var = str(event.get("variable") or "").upper()
        if found is not None and var in _WATCHED_VARS:
            value = event.get("value")
            self._variable(found[0], found[1], var, str(value or ""), "ari:ChannelVarset")

    def _ari_hanguprequest(self, event: Mapping[str, Any]) -> None:
        found = self._ari_channel(event.get("channel"))
        if found is None:
            return
        call, ch = found
        ch.hangup_requested = True
        cause = event.get("cause")
        if isinstance(cause, int) and not event.get("soft"):
            self._cause(call, ch, cause, f"ari:ChannelHangupRequest cause={cause}")

    def _ari_destroyed(self, event: Mapping[str, Any]) -> None:
        chan = event.get("channel")
        if not isinstance(chan, Mapping) or not isinstance(chan.get("id"), str):
            return
        cause = event.get("cause")
        cause_i = cause if isinstance(cause, int) else None
        self._hangup(chan["id"], cause_i, f"ari:ChannelDestroyed cause={cause_i}")

    def _ari_stasis_start(self, event: Mapping[str, Any]) -> None:
        found = self._ari_channel(event.get("channel"))
        if found is not None and not found[1].is_helper and not found[0].confirmed:
            self._confirm(found[0])

    def _ari_stasis_end(self, event: Mapping[str, Any]) -> None:
        chan = event.get("channel")
        if not isinstance(chan, Mapping):
            return
        uid = chan.get("id")
        if not isinstance(uid, str):
            return
        if uid in self._orphans:
            del self._orphans[uid]
            self._forget(uid, chan.get("name"), None)
            return
        call = self._by_uid.get(uid)
        if call is None:
            return
        ch = call.channels[uid]
        # Snoops and dialplan-entered channels get no ChannelDestroyed: leaving Stasis after a
        # hangup request (or any helper leaving) is their end.
        if ch.is_helper or ch.hangup_requested:
            self._hangup(uid, None, "ari:StasisEnd")

    def _ari_bridge(self, event: Mapping[str, Any]) -> None:
        self._ari_channel(event.get("channel"))
        bridge = event.get("bridge")
        if not isinstance(bridge, Mapping) or not isinstance(bridge.get("id"), str):
            return
        members = bridge.get("channels")
        b = self._bridges.setdefault(bridge["id"], _Bridge())
        if isinstance(members, list):
            b.members = {m for m in members if isinstance(m, str)}
        self._attach_bridge(bridge["id"])

    def _ari_bridge_destroyed(self, event: Mapping[str, Any]) -> None:
        bridge = event.get("bridge")
        if isinstance(bridge, Mapping) and isinstance(bridge.get("id"), str):
            self._bridges.pop(bridge["id"], None)

    _ARI_HANDLERS: ClassVar[dict[str, Callable[[Registry, Mapping[str, Any]], None]]] = {
        "ChannelDialplan": _ari_dialplan,
        "ChannelStateChange": _ari_state,
        "Dial": _ari_dial,
        "ChannelVarset": _ari_varset,
        "ChannelHangupRequest": _ari_hanguprequest,
        "ChannelDestroyed": _ari_destroyed,
        "StasisStart": _ari_stasis_start,
        "StasisEnd": _ari_stasis_end,
        "ChannelEnteredBridge": _ari_bridge,
        "ChannelLeftBridge": _ari_bridge,
        "BridgeDestroyed": _ari_bridge_destroyed,
    }

    # ===================================================================== resync
    def reconcile_ami(self, channels: list[AmiMessage], *, since: float | None = None) -> None:
        """Resynchronise from a ``CoreShowChannels`` answer (its ``CoreShowChannel`` events).

        Known channels missing from the listing are ended (``source="resync"``) unless an event
        about them arrived at or after ``since`` (when the listing was asked for; default: the
        last :data:`RESYNC_GRACE_S` seconds), since the listing may predate them.
        """
        live: list[_Live] = []
        for msg in channels:
            if msg.event is not None and msg.event != "CoreShowChannel":
                continue
            uid, name = msg.get("Uniqueid"), msg.get("Channel")
            if not uid or not name:
                self.stats.dropped += 1
                continue
            state = msg.get("ChannelStateDesc") or STATE_NAMES.get(
                msg.get("ChannelState") or "", ""
            )
            live.append(_Live(uid, name, msg.get("Linkedid"), state, msg.get("BridgeId") or ""))
        self._reconcile(live, "ami", since)

    def reconcile_ari(
        self, channels: list[Mapping[str, Any]], *, since: float | None = None
    ) -> None:
        """Resynchronise from ``GET /ari/channels`` (a list of Channel objects); see
        :meth:`reconcile_ami` for ``since``.

        ARI has no linkedid: a dialled leg (dialplan ``AppDial``) is put in the call of the
        channel running ``Dial``/``Queue`` whose caller/connected ids mirror its own.
        """
        valid = [
            c for c in channels if isinstance(c.get("id"), str) and isinstance(c.get("name"), str)
        ]
        self.stats.dropped += len(channels) - len(valid)

        def app(c: Mapping[str, Any]) -> str:
            dp = c.get("dialplan")
            name = dp.get("app_name") if isinstance(dp, Mapping) else None
            return name if isinstance(name, str) else ""

        def party(c: Mapping[str, Any], key: str) -> tuple[Any, Any] | None:
            p = c.get(key)
            return (p.get("name"), p.get("number")) if isinstance(p, Mapping) else None

        live: list[_Live] = []
        for c in valid:
            link: str | None = None
            if app(c) == DIALLED_APP:
                for other in valid:
                    if (
                        other is not c
                        and app(other).lower() in CALLER_APPS
                        and party(other, "connected") == party(c, "caller")
                        and party(c, "connected") == party(other, "caller")
                    ):
                        link = other["id"]
                        break
            state = c.get("state")
            live.append(
                _Live(c["id"], c["name"], None, state if isinstance(state, str) else "", "", link)
            )
        self._reconcile(live, "ari", since)

    def _reconcile(self, live: list[_Live], proto: str, since: float | None) -> None:
        self.stats.resyncs += 1
        live_uids = {lc.uid for lc in live}
        # 1. channels that vanished during the outage. A channel with an event after the
        # listing was asked for may be missing from it only because it is newer: kept.
        cutoff = since if since is not None else self.clock() - RESYNC_GRACE_S
        for call in list(self._calls.values()):
            for ch in list(call.channels.values()):
                if ch.alive and ch.uniqueid not in live_uids and ch.last_seen < cutoff:
                    self._hangup(ch.uniqueid, None, "resync")
        for uid in [u for u, o in self._orphans.items() if u not in live_uids]:
            if self._orphans[uid].last_seen < cutoff:
                orphan = self._orphans.pop(uid)
                self._forget(uid, orphan.name, None)

        # 2. live channels: parties first (a call's first channel has uniqueid == linkedid),
        # then dialled legs, helpers last
        def order(lc: _Live) -> tuple[int, int, str]:
            helper = channel_tech(lc.name) in HELPER_TECHS
            first = lc.linkedid in (None, lc.uid) and lc.link is None
            return (2 if helper else 0 if first else 1, 1 if lc.name.endswith(";2") else 0, lc.name)

        bridges: dict[str, set[str]] = {}
        for lc in sorted(live, key=order):
            known = lc.uid in self._by_uid or lc.uid in self._orphans
            join = self._by_uid.get(lc.link) if lc.link else None
            found = self._ensure(lc.uid, lc.name, lc.linkedid, lc.state, join=join)
            if lc.bridge:
                bridges.setdefault(lc.bridge, set()).add(lc.uid)
            if found is None:
                continue
            call, ch = found
            if ch.role is ChannelRole.UNKNOWN:  # another party of a linked call: an agent leg
                ch.role = ChannelRole.AGENT
            if not known and not call.confirmed:
                if ch.role is ChannelRole.CUSTOMER and self._bind_expected_by_channel(call, ch):
                    ch.originated = True  # ours, created while we were away
                    call.direction = "outbound"
                self._confirm(call)
            self._announce(call, ch)
            self._channel_state(call, ch, lc.state, f"resync:{proto} state={lc.state}")
        for bridge in self._bridges.values():  # BridgeLeave/Destroy missed in the outage
            bridge.members &= live_uids
        self._bridges = {bid: b for bid, b in self._bridges.items() if b.members or bid in bridges}
        for bid, members in bridges.items():
            self._bridges.setdefault(bid, _Bridge()).members |= members
            self._attach_bridge(bid)
        self._lost_originates(live, cutoff)
        log.info("resync (%s): %d live channels, %d live calls", proto, len(live), len(self.calls))

    # ===================================================================== core: channels
    def _seen(
        self, uid: str, name: str, linkedid: str | None, state: str, source: str
    ) -> tuple[Call, Channel] | None:
        """:meth:`_ensure`, then act on the channel state the event's snapshot carries."""
        known = self._by_uid.get(uid)
        before = known.channels[uid].state if known is not None else None
        found = self._ensure(uid, name, linkedid, state)
        if found is not None and state and state != before:
            self._channel_state(found[0], found[1], state, f"{source} {state}")
        return found

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
        if peer_call is not None and base is not None:
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

    # ===================================================================== core: signalling
    def _dialplan(self, call: Call, ch: Channel, app: str, proto: str) -> None:
        if ch.is_helper:
            return
        low = app.lower()
        if app == ORIGINATED_APP:
            if not ch.originated and ch.role in (ChannelRole.CUSTOMER, ChannelRole.UNKNOWN):
                self._originated(call, ch)
        elif app == DIALLED_APP:
            ch.dialled = True
            if ch.role is ChannelRole.UNKNOWN:
                ch.role = ChannelRole.AGENT
            elif ch.role is ChannelRole.CUSTOMER and not call.confirmed:
                # ARI (no linkedid): a Dial leg seen before the Dial event naming its caller
                call.awaiting_link = True
        elif low in SPY_APPS:
            if not call.confirmed and call.is_local_only:
                call.spy = True
        elif not call.confirmed and not call.spy and not call.awaiting_link:
            if ch.tech != "Local" or low in CONFIRMING_APPS:
                if call.direction == "unknown":
                    call.direction = "inbound"
                self._confirm(call)
        if call.confirmed and not ch.announced:
            self._announce(call, ch)

    def _originated(self, call: Call, ch: Channel) -> None:
        """``ch`` was created by an Originate (AppDial2 / the originate's own DialBegin)."""
        if ch.is_helper or call.awaiting_link:
            return
        ch.originated = True
        if ch.role is ChannelRole.UNKNOWN and call.customer is None:
            ch.role = ChannelRole.CUSTOMER
        if ch.role is not ChannelRole.CUSTOMER:
            return
        if call.direction != "outbound":
            call.direction = "outbound"
        if not call.confirmed:
            self._bind_expected_by_channel(call, ch)
            if ch.tech != "Local":
                self._confirm(call)

    def _link_dial(self, call: Call, caller: Channel, dest: Channel) -> None:
        """A Dial from ``caller`` (in ``call``) to ``dest``."""
        if caller.is_helper or dest.is_helper:
            return
        dest_call = self._by_uid.get(dest.uniqueid)
        role = ChannelRole.AGENT
        if caller.role not in (ChannelRole.CUSTOMER, ChannelRole.LOCAL_PEER, ChannelRole.UNKNOWN):
            role = ChannelRole.UNKNOWN if dest.role is ChannelRole.UNKNOWN else dest.role
        if dest_call is not None and dest_call is not call:
            if dest_call.confirmed:
                log.debug("Dial %s -> %s: both announced calls; kept apart", caller.name, dest.name)
                return
            self._merge(dest_call, call, role)
        elif dest.role in (ChannelRole.UNKNOWN, ChannelRole.CUSTOMER) and dest is not call.customer:
            dest.role = role
        call.dials[dest.uniqueid] = caller.uniqueid
        if not call.confirmed and not call.spy:
            if call.direction == "unknown":
                call.direction = "inbound"
            self._confirm(call)
        self._announce(call, dest)
        self._announce(call, caller)

    def _channel_state(self, call: Call, ch: Channel, state: str, source: str) -> None:
        if ch.is_helper or call.ended is not None:
            return
        if state == "Ringing" or (state == "Ring" and source.startswith("resync")):
            self._progress(call, source)
        elif state == "Up" and ch.role is ChannelRole.CUSTOMER:
            ev = Evidence(CallState.ANSWERED, RANK_ANSWER, source, self.clock(), ch.name)
            self._evidence(call, ev)

    def _progress(self, call: Call, source: str) -> None:
        if call.outcome is None:
            self._transition(call, call.advance(CallState.RINGING, source, self.clock()))

    def _dial_evidence(self, call: Call, ev: Evidence, channel: str, *, own: bool = False) -> None:
        """``own``: the Originate's own dial (about the call itself, always kept); a Dial()
        from the call made after its outcome settled reaches an agent: not about the outcome."""
        if call.ended is None and (own or call.outcome is None):
            self._evidence(call, replace(ev, channel=channel))

    def _variable(self, call: Call, ch: Channel, var: str, value: str, proto: str) -> None:
        value = value.strip()
        if not value:
            return
        if var == "DIALSTATUS":
            ev = dial_status_evidence(value, f"{proto} DIALSTATUS={value.upper()}", self.clock())
            if ev is not None:
                self._dial_evidence(call, ev, ch.name)
        elif var == CALL_ID_VARIABLE:
            for exp in self._expected.values():
                if exp.call_id == value and exp.bound is None:
                    self._bind(call, exp)
                    break
        elif var == "AMDSTATUS" and call.ended is None:
            label = {"NOTSURE": "unknown", "HANGUP": "unknown"}.get(value.upper(), value.lower())
            self.record_audio_verdict(call.id, label, f"{proto} AMDSTATUS={value.upper()}")

    def _cause(self, call: Call, ch: Channel, cause: int, source: str) -> None:
        # After an answer, causes are about the teardown; after a failure they corroborate.
        if ch.is_helper or call.ended is not None or call.outcome is CallState.ANSWERED:
            return
        if ch.cause is None:
            ch.cause = cause
        ev = cause_evidence(cause, source, self.clock())
        if ev is not None:
            self._evidence(call, replace(ev, channel=ch.name))

    def _evidence(self, call: Call, ev: Evidence) -> None:
        added = call.add_evidence(ev)
        if call.outcome is not None:
            if added and ev.state is not call.outcome:
                log.info(
                    "call %s: %s says %s, outcome stays %s (%s)",
                    call.id, ev.source, ev.state.value, call.outcome.value, call.outcome_source,
                )  # fmt: skip
            return
        if ev.state is CallState.ANSWERED:
            self._settle(call, ev)

    def _settle(self, call: Call, ev: Evidence | None = None) -> None:
        if call.outcome is not None:
            return
        if ev is None:
            ev = best(call.evidence)
        if ev is None:
            state = CallState.NO_ANSWER if call.state is CallState.RINGING else CallState.FAILED
            causes = sorted({ch.cause for ch in call.members() if ch.cause is not None})
            ev = Evidence(
                state,
                RANK_FALLBACK,
                f"fallback:ended before answer ({call.state.value}, causes {causes})",
                self.clock(),
            )
            call.add_evidence(ev)
        t = call.advance(ev.state, ev.source, ev.at)
        self._transition(call, t)
        if t is not None and call.confirmed:
            self._publish_outcome(call)

    def _publish_outcome(self, call: Call) -> None:
        assert call.outcome is not None and call.outcome_source is not None
        t = next(t for t in call.transitions if t.new is call.outcome)
        self.bus.publish(
            CallOutcome(
                call_id=call.id,
                at=t.at,
                outcome=call.outcome,
                source=call.outcome_source,
                detail={
                    "evidence": [e.as_dict() for e in call.evidence],
                    "disagreements": [e.as_dict() for e in call.disagreements()],
                    "audio": [{"label": a.label, "source": a.source} for a in call.audio],
                },
            )
        )

    def _transition(self, call: Call, t: Transition | None) -> None:
        if t is not None and call.confirmed:
            self.bus.publish(
                CallStateChanged(call_id=call.id, at=t.at, old=t.old, new=t.new, source=t.source)
            )

    # ===================================================================== core: lifecycle
    def _confirm(self, call: Call) -> None:
        """Announce a tentative call: CallStarted, its channels, what happened so far."""
        if call.confirmed or call.ended is not None:
            return
        call.confirmed = True
        self.stats.calls_started += 1
        customer = call.customer
        if call.direction == "inbound" and customer is not None and call.outcome is None:
            if customer.state in ("Ring", "Ringing"):  # a caller waiting to be answered
                call.advance(CallState.RINGING, f"inbound:{customer.state}", self.clock())
        first = customer or next(iter(call.channels.values()), None)
        self.bus.publish(
            CallStarted(
                call_id=call.id,
                at=call.created,
                direction=call.direction,
                channel=first.name if first else (call.dial_string or ""),
                tags=dict(call.tags),
            )
        )
        for ch in list(call.channels.values()):
            if ch.role is not ChannelRole.UNKNOWN or not ch.alive:
                self._announce(call, ch)
        for t in list(call.transitions):
            self._transition(call, t)
            if t.new is call.outcome:
                self._publish_outcome(call)
        for ch in list(call.channels.values()):
            if not ch.alive and ch.left is not None:
                self.bus.publish(
                    ChannelLeft(
                        call_id=call.id,
                        at=ch.left,
                        channel=ch.name,
                        uniqueid=ch.uniqueid,
                        cause=ch.cause,
                    )
                )

    def _hangup(self, uid: str, cause: int | None, source: str) -> None:
        if uid in self._orphans:
            orphan = self._orphans.pop(uid)
            self._forget(uid, orphan.name, None)
            return
        call = self._by_uid.get(uid)
        if call is None:
            return
        ch = call.channels[uid]
        if not ch.alive:
            return
        if cause is not None:
            self._cause(call, ch, cause, source)
            ch.cause = cause
        now = self.clock()
        ch.alive = False
        ch.left = now
        if ch.role is ChannelRole.CUSTOMER and call.outcome is None and not call.spy:
            self._settle(call)  # no answer can come any more
        if call.confirmed:
            if not ch.announced:
                self._announce(call, ch)
            self.bus.publish(
                ChannelLeft(call_id=call.id, at=now, channel=ch.name, uniqueid=uid, cause=cause)
            )
        self._forget(uid, ch.name, call)
        if ch.is_helper:
            return
        if not call.live_members():
            self._end(call, source)

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

    def _end(self, call: Call, source: str) -> None:
        if call.ended is not None:
            return
        now = self.clock()
        if call.spy:  # a ChanSpy pair that never attached: never a call of its own
            self._drop(call)
            for ch in call.channels.values():
                self._forget(ch.uniqueid, ch.name, None)
            return
        if call.outcome is None:
            self._settle(call)
        if not call.confirmed:
            self._confirm(call)
        cust = call.customer
        causes = [ch.cause for ch in call.members() if ch.cause is not None]
        call.hangup_cause = cust.cause if cust is not None and cust.cause is not None else (
            causes[-1] if causes else None
        )
        self._transition(call, call.advance(CallState.ENDED, source, now))
        self.bus.publish(
            CallEnded(call_id=call.id, at=now, outcome=call.outcome, hangup_cause=call.hangup_cause)
        )
        self.stats.calls_ended += 1
        for ch in call.channels.values():  # helpers still up: their later events are ignored
            if ch.alive:
                self._forget(ch.uniqueid, ch.name, call)
        self._drop(call)
        self._history.append(call)

    # ===================================================================== originate
    def _bind_expected_by_channel(self, call: Call, ch: Channel) -> bool:
        for exp in self._expected.values():
            if exp.bound is None and exp.dial and ch.name.startswith(exp.dial + "-"):
                self._bind(call, exp)
                return True
        return False

    def _alias(self, call: Call, alias: str) -> None:
        call.aliases.add(alias)
        self._aliases[alias] = call.id
        while len(self._aliases) > self._memory_size:
            self._aliases.popitem(last=False)

    def _bind(self, call: Call, exp: _Expected) -> None:
        exp.bound = call
        if call.id != exp.call_id:
            if not call.confirmed:
                self._calls.pop(call.id, None)
                call.id = exp.call_id
                self._calls[call.id] = call
            else:
                self._alias(call, exp.call_id)
        self._apply_tags(call, exp.tags)

    def _originate_response(
        self,
        *,
        action_id: str,
        success: bool,
        reason: int,
        channel: str,
        uniqueid: str,
        application: str,
    ) -> None:
        now = self.clock()
        ev = replace(originate_evidence(reason, now), channel=channel)
        if action_id and action_id in self._responded:
            late = self._responded[action_id]  # replayed, or after a resync gave up on it
            if late is not None:
                late.add_evidence(ev)
            return
        exp = self._expected.pop(action_id, None)
        spy = application.lower() in SPY_APPS
        call: Call | None = exp.bound if exp is not None else None
        if call is None and uniqueid != UNKNOWN_UNIQUEID:
            call = self._by_uid.get(uniqueid) or self._gone.get(uniqueid)
        if call is None:
            call = self._match_dial_string(channel)
        self._remember_response(action_id, None if spy else call)
        if spy:
            if call is not None and not call.confirmed:
                call.spy = True
                if not call.live_members():
                    self._end(call, "ami:OriginateResponse")
            return
        if call is None:
            if success and uniqueid != UNKNOWN_UNIQUEID and channel:
                found = self._ensure(uniqueid, channel, None, "")
                call = found[0] if found is not None else None
            if call is None:
                # No channel ever existed (e.g. an endpoint with no contact): the attempt is a
                # call of its own that failed at once.
                call = self._channel_less(action_id, exp, channel, ev, settle=not success)
                self._remember_response(action_id, call)
                return
        call.originate_seen = True
        call.originate_action_id = action_id or None
        call.dial_string = call.dial_string or channel
        if exp is not None and exp.bound is None:
            if call.ended is None:
                self._bind(call, exp)
            else:  # too late to announce: keep the id as an alias and the tags
                exp.bound = call
                call.tags.update(exp.tags)
                self._alias(call, exp.call_id)
        if call.ended is None:
            call.direction = "outbound"
            if not call.confirmed and call.live_members():
                self._confirm(call)
        if call.ended is None:
            self._evidence(call, ev)
        else:
            call.add_evidence(ev)

    def _remember_response(self, action_id: str, call: Call | None) -> None:
        if action_id:
            self._responded[action_id] = call
            while len(self._responded) > self._memory_size:
                self._responded.popitem(last=False)

    def _channel_less(
        self, action_id: str, exp: _Expected | None, dial: str, ev: Evidence, *, settle: bool
    ) -> Call:
        """An originate attempt that never had a channel: started, settled and ended at once."""
        call = Call(id=exp.call_id if exp else self._new_id(), created=ev.at)
        call.direction = "outbound"
        call.dial_string = dial
        call.originate_seen = True
        call.originate_action_id = action_id or None
        if exp is not None:
            call.tags.update(exp.tags)
            exp.bound = call
        self._calls[call.id] = call
        call.add_evidence(ev)
        self._confirm(call)
        self._settle(call, ev if settle else None)
        self._end(call, ev.source)
        return call

    def _lost_originates(self, live: list[_Live], cutoff: float) -> None:
        """Resync: our Originates whose response was lost in the outage and that have no live
        channel are over; they end as ``failed`` (source says why) rather than vanish."""
        for action_id, exp in list(self._expected.items()):
            if exp.bound is not None or exp.dial is None or exp.sent >= cutoff:
                continue
            prefix = exp.dial + "-"
            if any(lc.name.startswith(prefix) for lc in live):
                continue
            del self._expected[action_id]
            ev = Evidence(
                CallState.FAILED,
                RANK_ORIGINATE_GENERIC,
                "resync:no OriginateResponse and no live channel",
                self.clock(),
                exp.dial,
            )
            call = self._channel_less(action_id, exp, exp.dial, ev, settle=True)
            call.originate_seen = False
            self._remember_response(action_id, call)

    def _match_dial_string(self, dial: str) -> Call | None:
        """The oldest outbound call from the Originate ``Channel`` ``dial`` with no response yet."""
        if not dial:
            return None
        prefix = dial + "-"
        for call in itertools.chain(self._calls.values(), self._history):
            if call.originate_seen:
                continue
            cust = call.customer
            if cust is not None and cust.originated and cust.name.startswith(prefix):
                return call
        return None

