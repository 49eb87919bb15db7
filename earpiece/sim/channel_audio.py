"""What each channel of the simulator's engine sends and hears, on the engine's 8 kHz sample
clock: scenario speech and early media placed on a channel, ARI playbacks (and whispers
through snoops), the mixes that snoops and externalMedia channels carry, and the RTCP reports
and ``RTPAUDIOQOS`` variables of PJSIP channels with media.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

from earpiece.sim import audio, noise
from earpiece.sim.channel_events import ChannelEvents
from earpiece.sim.model import Channel, HeardEntry, Playback, wall_ts
from earpiece.sim.scenario import Endpoint, Say

log = logging.getLogger(__name__)


class ChannelAudio(ChannelEvents):
    """Audio placement and mixing, playbacks and media reports of an engine."""

    # --- RTCP / QoS ------------------------------------------------------------------------
    def _qos_vars(self, ch: Channel, had_media: bool, bridged: Channel | None = None) -> None:
        """``RTPAUDIOQOS*`` VarSets a PJSIP channel with media reports as it hangs up."""
        if not had_media:
            return
        for name, value in noise.qos_values(self.rng, ch).items():
            self.set_var(ch, name, value)
            if bridged is not None and not bridged.hungup:
                self.set_var(bridged, f"{name}BRIDGED", value)

    def start_rtcp(self, ch: Channel) -> None:
        """PJSIP channels report RTCP on AMI (``RTCPReceived``/``RTCPSent``) once media flows:
        a receiver report at once, then sender reports every 5 s, as in the pjsip captures."""
        if ch.tech == "PJSIP" and not ch.rtcp:
            ch.rtcp = True
            self.spawn(self._rtcp_loop(ch))

    async def _rtcp_loop(self, ch: Channel) -> None:
        stream = noise.RtcpReports(self.rng)
        self.ami("RTCPReceived", "reporting", [*ch.ami_block(),
                                               *stream.headers("RTCPReceived", sr=False)])
        while not ch.hungup:
            await asyncio.sleep(5.0)
            if ch.hungup:
                return
            for event in ("RTCPReceived", "RTCPSent"):
                self.ami(event, "reporting", [*ch.ami_block(), *stream.headers(event, sr=True)])

    # --- audio -----------------------------------------------------------------------------
    def _place_says(self, ch: Channel, says: tuple[Say, ...], t0: float) -> None:
        for say in says:
            try:
                pcm = audio.load_sound(say.wav)
            except (audio.SoundNotFoundError, ValueError) as exc:
                log.warning("scenario prompt skipped: %s", exc)
                continue
            ch.voice.add(self.sample_at(t0 + say.at_s), pcm, say.wav)

    def _start_early_media(self, ch: Channel, kind: str, ep: Endpoint) -> None:
        start = self.sample_now()
        length = max(0.0, ep.ring_s - ep.early_media_after_s) + 1.0
        if kind == "ringback":
            ch.voice.add(start, audio.ringback(length), "ringback")
        elif kind == "busy":
            ch.voice.add(start, audio.busy_tone(length), "busy")
        elif kind == "sit":
            sit = audio.sit_tones()
            ch.voice.add(start, sit, "sit")
            try:
                ann = audio.load_sound("ss-noservice")
                ch.voice.add(start + len(sit), ann, "ss-noservice")
            except audio.SoundNotFoundError:
                log.warning("ss-noservice prompt not installed")

    @staticmethod
    def _local_partner(ch: Channel) -> Channel | None:
        if ch.tech == "Local" and isinstance(ch.call, tuple):
            return next((half for half in ch.call if half is not ch), None)
        return None

    def sent_by(self, ch: Channel, start: int, n: int,
                out: np.ndarray[Any, np.dtype[np.int32]]) -> None:
        """What ``ch`` sends into Asterisk: a phone's party's voice; for a Local half, what
        comes through the Local pair from its other half (``captures/rtp/snoop_direction``:
        ``spy=in`` on ``;1`` carried the prompt ``;2`` played)."""
        partner = self._local_partner(ch)
        if partner is not None:
            partner.voice.read(start, n, out)
            partner.played.read(start, n, out)
            return
        ch.voice.read(start, n, out)

    def heard_by(self, ch: Channel, start: int, n: int,
                 out: np.ndarray[Any, np.dtype[np.int32]]) -> None:
        """What ``ch``'s party hears (what Asterisk sends to ``ch``): bridged peers' voices,
        whispers, playbacks on ``ch``."""
        if ch.bridge is not None and ch.bridge.bridge_class == "basic":
            for peer in ch.bridge.channels:
                if peer is not ch:
                    self.sent_by(peer, start, n, out)
        if ch.tech == "Local":
            ch.voice.read(start, n, out)  # a Local half's own dialplan Playback
        ch.whisper.read(start, n, out)
        ch.played.read(start, n, out)

    def snoop_audio(self, snoop: Channel, start: int, n: int,
                    out: np.ndarray[Any, np.dtype[np.int32]]) -> None:
        target = snoop.snoop_target
        if target is None or target.hungup:
            return
        if snoop.spy in ("in", "both"):
            self.sent_by(target, start, n, out)
        if snoop.spy in ("out", "both"):
            self.heard_by(target, start, n, out)

    def media_source(self, em: Channel) -> Callable[[int, int], Any]:
        """Audio an externalMedia channel sends: the mix of its bridge's other members."""

        def source(start: int, n: int) -> Any:
            bridge = em.bridge
            if em.hungup or bridge is None:
                return None
            members = [c for c in bridge.channels if c is not em]
            if not members:
                return None
            out = np.zeros(n, dtype=np.int32)
            for member in members:
                if member.tech == "Snoop":
                    self.snoop_audio(member, start, n, out)
                else:
                    self.sent_by(member, start, n, out)
            return np.clip(out, -32768, 32767).astype(np.int16)

        return source

    def media_sink(self, em: Channel) -> Callable[[int, Any], None]:
        """Where RTP sent *into* an externalMedia channel goes: to every other member of its
        bridge, as a mixing bridge does. A snoop with ``whisper=out`` (or ``both``) passes it to
        the snooped channel's party only (what that phone hears), ``whisper=in`` as if that
        party said it, ``whisper=none`` drops it; any other channel hears it. Each run of
        audio (a new one after a gap) is one :class:`HeardEntry` per listener, labelled
        ``rtp:<externalMedia channel id>``."""
        label = f"rtp:{em.id}"
        run_end: list[int] = [-1]

        def sink(start: int, pcm: Any) -> None:
            bridge = em.bridge
            if em.hungup or bridge is None:
                return
            new_run = start != run_end[0]
            run_end[0] = start + len(pcm)
            for member in list(bridge.channels):
                if member is em or member.hungup:
                    continue
                listeners: list[Channel] = []
                if member.tech == "Snoop":
                    spied = member.snoop_target
                    if spied is None or spied.hungup:
                        continue
                    if member.whisper_dir in ("out", "both"):
                        spied.whisper.extend(start, pcm, label)
                        listeners.append(spied)
                    if member.whisper_dir in ("in", "both"):
                        spied.voice.extend(start, pcm, label)
                        if spied.bridge is not None:
                            listeners += [p for p in spied.bridge.channels
                                          if p is not spied and p.tech == "PJSIP"]
                else:
                    member.played.extend(start, pcm, label)
                    listeners.append(member)
                if new_run:
                    for ch in listeners:
                        self.heard.append(HeardEntry(ch.name, ch.role, label,
                                                     time.monotonic()))

        return sink

    # --- playback --------------------------------------------------------------------------
    def play(self, target: Channel, media: list[str], playback_id: str | None,
             lang: str = "en") -> Playback:
        pb = Playback(id=playback_id or str(uuid.uuid4()), media=media, target=target,
                      language=lang)
        self._playbacks[pb.id] = pb
        self.spawn(self._run_playback(pb))
        return pb

    def _playback_event(self, type_: str, pb: Playback) -> None:
        self.ari({"type": type_, "timestamp": wall_ts(), "playback": pb.ari_json()},
                 pb.target.apps())

    async def _run_playback(self, pb: Playback) -> None:
        await asyncio.sleep(0)
        try:
            for i, uri in enumerate(pb.media):
                pb.index = i
                pb.state = "playing"
                self._playback_event("PlaybackStarted", pb)
                try:
                    pcm = audio.load_sound(uri.split(":", 1)[1] if ":" in uri else uri)
                except (audio.SoundNotFoundError, ValueError):
                    pb.state = "failed"
                    self._playback_event("PlaybackFinished", pb)
                    return
                self._inject(pb.target, pcm, uri)
                await asyncio.sleep(len(pcm) / audio.SAMPLE_RATE)
                if pb.target.hungup:
                    pb.state = "done"
                    self._playback_event("PlaybackFinished", pb)
                    return
                if i + 1 < len(pb.media):
                    pb.state = "continuing"
                    self._playback_event("PlaybackContinuing", pb)
            pb.state = "done"
            self._playback_event("PlaybackFinished", pb)
        finally:
            self._playbacks.pop(pb.id, None)

    def _inject(self, target: Channel, pcm: audio.Pcm, label: str) -> None:
        now = self.sample_now()
        if target.tech == "Snoop":
            spied = target.snoop_target
            if spied is None or spied.hungup:
                return
            if target.whisper_dir in ("out", "both"):  # to the snooped party only
                spied.whisper.add(now, pcm, label)
                self.heard.append(HeardEntry(spied.name, spied.role, label, time.monotonic()))
            if target.whisper_dir in ("in", "both"):  # as if the snooped party said it
                spied.voice.add(now, pcm, label)
                if spied.bridge is not None:
                    for peer in spied.bridge.channels:
                        if peer is not spied and peer.tech == "PJSIP":
                            self.heard.append(HeardEntry(peer.name, peer.role, label,
                                                         time.monotonic()))
            return
        target.played.add(now, pcm, label)
        self.heard.append(HeardEntry(target.name, target.role, label, time.monotonic()))
