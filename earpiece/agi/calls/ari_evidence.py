"""Registry ARI layer: :meth:`AriEvidence.on_ari_event` and its ``_ari_*`` handlers.

Part of :class:`~earpiece.agi.calls.registry.Registry`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from earpiece.agi.calls.call import Call, Channel
from earpiece.agi.calls.grouping import _WATCHED_VARS, _Bridge, log
from earpiece.agi.calls.outcome import DIAL_PROGRESS, dial_status_evidence
from earpiece.agi.calls.signalling import Signalling


class AriEvidence(Signalling):
    """Feeds ARI websocket events into the registry."""

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

    _ARI_HANDLERS: ClassVar[dict[str, Callable[[AriEvidence, Mapping[str, Any]], None]]] = {
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
