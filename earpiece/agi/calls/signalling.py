"""Registry layer 3: what channel signalling means for a call, and our own Originates.

Dialplan steps, Dial links, channel states, variables, ``OriginateResponse`` and binding
reserved call ids. Part of :class:`~earpiece.agi.calls.registry.Registry`.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

from earpiece.agi.calls.call import Call, Channel
from earpiece.agi.calls.grouping import (
    CALL_ID_VARIABLE,
    CONFIRMING_APPS,
    DIALLED_APP,
    EARLY_MEDIA_APPS,
    ORIGINATED_APP,
    SPY_APPS,
    UNKNOWN_UNIQUEID,
    _Expected,
    log,
)
from earpiece.agi.calls.lifecycle import Lifecycle
from earpiece.agi.calls.outcome import (
    RANK_ANSWER,
    Evidence,
    dial_status_evidence,
    originate_evidence,
)
from earpiece.events import CallState, ChannelRole


class Signalling(Lifecycle):
    """Signalling evidence and originate bookkeeping shared by the AMI, ARI and resync layers."""

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
            if ch.tech != "Local" or low in CONFIRMING_APPS or (
                    call.ours_local and low in EARLY_MEDIA_APPS):
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
            ours = self._bind_expected_by_channel(call, ch)
            if ch.tech != "Local":
                self._confirm(call)
            else:  # a spy pair until its dialplan says otherwise (see _dialplan)
                call.ours_local = ours

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
            if call.ours_local and not call.confirmed and not call.spy \
                    and ch.role is ChannelRole.CUSTOMER:
                # our Local originate rings (its own DialState RINGING): a call with early
                # media, announced now so that the fork can snoop it (a spy pair never rings)
                self._confirm(call)
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
