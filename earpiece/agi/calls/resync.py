"""Registry resync layer: ``reconcile_ami``/``reconcile_ari`` after an AMI or ARI outage.

Part of :class:`~earpiece.agi.calls.registry.Registry`; see that module's docstring.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from earpiece.agi.ami_message import AmiMessage
from earpiece.agi.calls.call import HELPER_TECHS, channel_tech
from earpiece.agi.calls.grouping import (
    CALLER_APPS,
    DIALLED_APP,
    RESYNC_GRACE_S,
    STATE_NAMES,
    _Bridge,
    _Live,
    log,
)
from earpiece.agi.calls.outcome import RANK_ORIGINATE_GENERIC, Evidence
from earpiece.agi.calls.signalling import Signalling
from earpiece.events import CallState, ChannelRole


class Resync(Signalling):
    """Resynchronises the registry from a listing of live channels."""

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
