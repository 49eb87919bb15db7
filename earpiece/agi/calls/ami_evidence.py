"""Registry AMI layer: :meth:`AmiEvidence.on_ami_event` and its ``_ami_*`` handlers.

Part of :class:`~earpiece.agi.calls.registry.Registry`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from earpiece.agi.ami_message import AmiMessage
from earpiece.agi.calls.call import Call, Channel
from earpiece.agi.calls.grouping import _WATCHED_VARS, STATE_NAMES, UNKNOWN_UNIQUEID, _Bridge, log
from earpiece.agi.calls.outcome import DIAL_PROGRESS, dial_status_evidence, parse_int
from earpiece.agi.calls.signalling import Signalling
from earpiece.events import ChannelRole


class AmiEvidence(Signalling):
    """Feeds AMI events into the registry."""

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

    _AMI_HANDLERS: ClassVar[dict[str, Callable[[AmiEvidence, AmiMessage], None]]] = {
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
