"""Bridges, snoops and externalMedia channels of the simulator's engine: Stasis bridges
created over ARI and channels entering and leaving any bridge (the basic bridge of a dialed
call too), snoop channels (``ChanSpyStart``/``ChanSpyStop`` on AMI) and ``UnicastRTP``
externalMedia channels, with their AMI and ARI events as in the pjsip captures.
"""

from __future__ import annotations

import uuid

from earpiece.sim.channel_audio import ChannelAudio
from earpiece.sim.model import UP, Bridge, Channel, wall_ts


class Bridging(ChannelAudio):
    """Bridges, snoops and externalMedia channels of an engine."""

    # --- bridges ---------------------------------------------------------------------------
    def create_bridge(self, bridge_id: str | None, name: str, app: str | None) -> Bridge:
        bridge = Bridge(id=bridge_id or str(uuid.uuid4()), bridge_class="stasis",
                        creator="Stasis", name=name, video_mode="talker")
        self._bridges[bridge.id] = bridge
        self.ami("BridgeCreate", "call", bridge.ami_block())
        # BridgeCreated reaches subscribeAll sockets only (as recorded)
        self.ari({"type": "BridgeCreated", "timestamp": wall_ts(),
                  "bridge": bridge.ari_json()}, set())
        if app:
            bridge.ari_apps.add(app)
        return bridge

    def _bridge_enter(self, bridge: Bridge, ch: Channel) -> None:
        if ch.bridge is not None and ch.bridge is not bridge:
            self._bridge_leave(ch.bridge, ch)
        bridge.channels.append(ch)
        ch.bridge = bridge
        if ch.tech == "Snoop" and bridge.bridge_class == "stasis":
            others = [c for c in bridge.channels if c is not ch]
            if others:
                ch.linkedid = others[0].linkedid or others[0].id
        self.ami("BridgeEnter", "call", [*bridge.ami_block(), *ch.ami_block()])
        ev = {"type": "ChannelEnteredBridge", "timestamp": wall_ts(),
              "bridge": bridge.ari_json(), "channel": ch.ari_json()}
        self.ari(ev, bridge.apps() | ch.apps())

    def bridge_add(self, bridge: Bridge, ch: Channel) -> None:
        self._bridge_enter(bridge, ch)
        if bridge.bridge_class == "stasis" and len(bridge.channels) >= 2:
            for member in bridge.channels:
                peer = next((c for c in bridge.channels if c is not member), None)
                if peer is not None and member.variables.get("BRIDGEPEER") != peer.name:
                    self.set_var(member, "BRIDGEPEER", peer.name)

    def _bridge_leave(self, bridge: Bridge, ch: Channel, technology: str | None = None) -> None:
        if ch not in bridge.channels:
            return
        if bridge.bridge_class == "stasis" and ch.variables.get("BRIDGEPEER"):
            self.set_var(ch, "BRIDGEPEER", "")
        bridge.channels.remove(ch)
        ch.bridge = None
        self.ami("BridgeLeave", "call", [*bridge.ami_block(technology), *ch.ami_block()])
        ev = {"type": "ChannelLeftBridge", "timestamp": wall_ts(),
              "bridge": bridge.ari_json(), "channel": ch.ari_json()}
        self.ari(ev, bridge.apps() | ch.apps())

    def bridge_remove(self, bridge: Bridge, ch: Channel) -> None:
        self._bridge_leave(bridge, ch)

    def _bridge_destroy(self, bridge: Bridge, technology: str | None = None) -> None:
        if bridge.destroyed:
            return
        for ch in list(bridge.channels):
            self._bridge_leave(bridge, ch, technology)
        bridge.destroyed = True
        self._bridges.pop(bridge.id, None)
        self.ami("BridgeDestroy", "call", bridge.ami_block(technology))
        self.ari({"type": "BridgeDestroyed", "timestamp": wall_ts(),
                  "bridge": bridge.ari_json()}, bridge.apps())

    def destroy_bridge(self, bridge: Bridge) -> None:
        self._bridge_destroy(bridge)

    # --- snoops ----------------------------------------------------------------------------
    def snoop(self, target: Channel, *, spy: str, whisper: str, app: str, app_args: str,
              snoop_id: str | None) -> Channel:
        sid = snoop_id or self.new_uniqueid()
        ch = Channel(id=sid, name=f"Snoop/{target.id}-{next(self._snoop_seq):08x}",
                     tech="Snoop", state=UP, linkedid=sid, device=f"Snoop/{target.id}",
                     role="snoop", spy=spy, whisper_dir=whisper, snoop_target=target)
        target.snoops.append(ch)
        self._newchannel(ch)
        spy_block = [*ch.ami_block("Spyer"), *target.ami_block("Spyee")]
        self.ami("ChanSpyStart", "call", spy_block)
        args = [app_args] if app_args else []
        self._newexten(ch, "Stasis", ",".join([app, *args]))
        self.enter_stasis(ch, app, args, from_dialplan=False)
        return ch

    def _destroy_snoops_of(self, target: Channel) -> None:
        """Before the target's Hangup: its snoops leave their bridges and Stasis."""
        for snoop in list(target.snoops):
            if snoop.hungup:
                continue
            if snoop.bridge is not None:
                self._bridge_leave(snoop.bridge, snoop)
            self.leave_stasis(snoop)
            self.ami("ChanSpyStop", "call",
                     [*snoop.ami_block("Spyer"), *target.ami_block("Spyee")])

    def _snoops_hungup(self, target: Channel) -> None:
        for snoop in list(target.snoops):
            if snoop.hungup:
                continue
            self._hangup_final(snoop, 16)
            self._device_state(snoop.device, "INVALID")
        target.snoops.clear()

    def _hangup_snoop(self, snoop: Channel, *, by_request: bool) -> None:
        if by_request:
            self._hangup_request(snoop, 32, soft=True, ami_event="SoftHangupRequest")
        if snoop.bridge is not None:
            self._bridge_leave(snoop.bridge, snoop)
        self.leave_stasis(snoop)
        target = snoop.snoop_target
        if target is not None:
            self.ami("ChanSpyStop", "call",
                     [*snoop.ami_block("Spyer"), *target.ami_block("Spyee")])
            if snoop in target.snoops:
                target.snoops.remove(snoop)
        self._hangup_final(snoop, 16)
        self._device_state(snoop.device, "INVALID")

    # --- externalMedia ---------------------------------------------------------------------
    def external_media(self, *, app: str, external_host: str, fmt: str,
                       channel_id: str | None, variables: dict[str, str]) -> Channel:
        cid = channel_id or self.new_uniqueid()
        ch = Channel(id=cid, name=f"UnicastRTP/{external_host}-0x{self.rng.getrandbits(44):x}",
                     tech="UnicastRTP", linkedid=cid, device=f"UnicastRTP/{external_host}",
                     role="media", media_format=fmt, external_host=external_host)
        if self.media is not None:
            ch.local_port = self.media.open_stream(ch, self.media_source(ch),
                                                   self.media_sink(ch))
        else:
            ch.local_port = 30000 + self.rng.randrange(1000) * 2
        self._newchannel(ch)
        self.set_var(ch, "UNICASTRTP_LOCAL_ADDRESS", self.host)
        self.set_var(ch, "UNICASTRTP_LOCAL_PORT", str(ch.local_port))
        for name, value in variables.items():
            self.set_var(ch, name, value)
        self._newexten(ch, "AppDial2", "(Outgoing Line)")
        ch.ari_apps.add(app)  # the app's own events start here (as recorded)
        dialstring = f"{external_host}/c({fmt})"
        self._dial_event("DialBegin", ch, None, None, dialstring)
        return ch

    def external_media_answer(self, ch: Channel, app: str) -> None:
        self._newstate(ch, UP)
        self._dial_event("DialEnd", ch, "ANSWER", None, f"{ch.external_host}/c({ch.media_format})")
        self._device_state(ch.device, "INUSE")
        self.enter_stasis(ch, app, [], from_dialplan=False)
