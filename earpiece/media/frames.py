"""Per-party media pipeline: jitter buffer -> decode -> 20 ms frames -> VAD -> fan-out.

:class:`PartyStream` is fed by a transport (RTP receiver or AudioSocket server) and delivers
:class:`AudioFrame` objects to the subscribers of a :class:`FrameHub`, each at the sample rate it
asked for (resampled per stream with a stateful FIR), and publishes
:class:`~earpiece.events.SpeechSegment` events on the bus. Everything here is synchronous and
cheap per frame (LUT decode, one webrtcvad call); it runs inside the transport's callback, so
no task is created per packet.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from earpiece.bus import EventBus
from earpiece.events import Party, SpeechSegment
from earpiece.media.g711 import alaw_decode_table, ulaw_decode_table
from earpiece.media.jitter import JitterBuffer
from earpiece.media.resample import Resampler
from earpiece.media.settings import VadSettings
from earpiece.media.vad import FRAME_MS, Segment, VadSegmenter

log = logging.getLogger(__name__)

#: ``slin16`` is externalMedia RTP's big-endian 16 kHz (see shared/asterisk/README.md);
#: ``slin``/``slin16le`` are AudioSocket's little-endian 8/16 kHz signed linear.
Codec = Literal["ulaw", "alaw", "slin16", "slin", "slin16le"]

NATIVE_RATE: dict[str, int] = {
    "ulaw": 8000, "alaw": 8000, "slin16": 16000, "slin": 8000, "slin16le": 16000,
}
_BE16 = np.dtype(">i2")
_LE16 = np.dtype("<i2")


@dataclass(frozen=True, slots=True)
class AudioFrame:
    call_id: str
    party: Party
    index: int  # frame number in the party's stream (0 = first packet)
    pcm: npt.NDArray[np.int16]
    rate: int
    timestamp: float  # seconds since the start of the party's stream (index * 0.02)
    speech: bool  # VAD verdict (inside a segment, hangover included)
    concealed: bool  # True for a frame synthesised for a lost packet
    delivered_at: float  # monotonic clock when it was handed to subscribers


FrameCallback = Callable[[AudioFrame], None]
SegmentCallback = Callable[[str, Party, Segment], None]


@dataclass
class _Subscriber:
    callback: FrameCallback
    rate: int | None
    party: Party | None


@dataclass
class FrameHub:
    """Fan-out of frames and segments to subscribers; callbacks must be fast."""

    bus: EventBus | None = None
    _subs: list[_Subscriber] = field(default_factory=list)
    _segment_subs: list[SegmentCallback] = field(default_factory=list)
    subscriber_errors: int = 0

    def subscribe(
        self, callback: FrameCallback, *, rate: int | None = None, party: Party | None = None
    ) -> Callable[[], None]:
        """Call ``callback(frame)`` for every frame (at ``rate`` Hz; ``None`` = native)."""
        sub = _Subscriber(callback, rate, party)
        self._subs.append(sub)
        return lambda: self._subs.remove(sub) if sub in self._subs else None

    def subscribe_segments(self, callback: SegmentCallback) -> Callable[[], None]:
        self._segment_subs.append(callback)
        return lambda: (
            self._segment_subs.remove(callback) if callback in self._segment_subs else None
        )

    def stream(
        self, *, rate: int | None = None, party: Party | None = None, maxsize: int = 2000
    ) -> FrameStream:
        """An async iterator of frames; drops the oldest (and counts) when the reader lags."""
        fs = FrameStream(maxsize)
        fs.unsubscribe = self.subscribe(fs.put, rate=rate, party=party)
        return fs


class FrameStream:
    def __init__(self, maxsize: int) -> None:
        self.queue: asyncio.Queue[AudioFrame] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.unsubscribe: Callable[[], None] = lambda: None

    def put(self, frame: AudioFrame) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(frame)

    def __aiter__(self) -> AsyncIterator[AudioFrame]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[AudioFrame]:
        while True:
            yield await self.queue.get()


@dataclass
class StreamStats:
    packets: int = 0
    frames: int = 0
    concealed: int = 0
    speech_frames: int = 0
    segments: int = 0


class PartyStream:
    """One party's audio of one call."""

    def __init__(
        self,
        call_id: str,
        party: Party,
        codec: Codec,
        hub: FrameHub,
        *,
        vad: VadSettings | None = None,
        jitter_depth: int = 3,
        jitter_wait_s: float = 0.06,
        clock: Callable[[], float],
    ) -> None:
        self.call_id = call_id
        self.party = party
        self.codec = codec
        self.rate = NATIVE_RATE[codec]
        self.frame_len = self.rate * FRAME_MS // 1000
        self.hub = hub
        self.clock = clock
        self.jitter: JitterBuffer[bytes] = JitterBuffer(
            depth=jitter_depth, max_wait_s=jitter_wait_s
        )
        self.vad = VadSegmenter(vad or VadSettings(), self.rate)
        self.stats = StreamStats()
        self.segments: list[Segment] = []
        self.started_at: float | None = None  # monotonic time of the first packet
        self.closed = False
        self._index = 0
        self._lut = (
            ulaw_decode_table() if codec == "ulaw" else alaw_decode_table() if codec == "alaw"
            else None
        )
        self._dtype = _BE16 if codec == "slin16" else _LE16
        self._rest: npt.NDArray[np.int16] | None = None
        self._last: npt.NDArray[np.int16] | None = None
        self._conceal_run = 0
        self._resamplers: dict[int, Resampler] = {}

    # -- input -------------------------------------------------------------------------------

    def on_rtp(self, seq: int, payload: bytes, now: float) -> None:
        """One RTP packet's payload, already validated by the transport."""
        if self.closed:
            return
        self.stats.packets += 1
        if self.started_at is None:
            self.started_at = now
        if self.jitter.in_order(seq):  # the common case: no list, no dict
            lut = self._lut
            if lut is not None and self._rest is None and len(payload) == self.frame_len:
                self._conceal_run = 0
                self._frame(lut.take(np.frombuffer(payload, dtype=np.uint8)), False)
            else:
                self._decoded(self._decode(payload), False)
            return
        for _, p in self.jitter.push(seq, payload, now):
            if p is None:
                self._conceal()
            else:
                self._decoded(self._decode(p), False)

    def on_pcm(self, payload: bytes, now: float) -> None:
        """Ordered PCM (AudioSocket): no jitter buffer."""
        if self.closed:
            return
        self.stats.packets += 1
        if self.started_at is None:
            self.started_at = now
        self._decoded(self._decode(payload), False)

    def tick(self, now: float) -> None:
        if self.jitter.pending:
            for _, p in self.jitter.flush_due(now):
                if p is None:
                    self._conceal()
                else:
                    self._decoded(self._decode(p), False)

    def close(self) -> Segment | None:
        """End of stream: drain the jitter buffer, close any open speech segment."""
        if self.closed:
            return None
        for _, p in self.jitter.drain():
            if p is None:
                self._conceal()
            else:
                self._decoded(self._decode(p), False)
        self.closed = True
        seg = self.vad.finish()
        if seg is not None:
            self._segment(seg)
        return seg

    # -- pipeline ----------------------------------------------------------------------------

    def _decode(self, payload: bytes) -> npt.NDArray[np.int16]:
        if self._lut is not None:
            return self._lut.take(np.frombuffer(payload, dtype=np.uint8))
        n = len(payload) & ~1
        return np.frombuffer(payload[:n], dtype=self._dtype).astype(np.int16)

    def _conceal(self) -> None:
        """Packet loss: repeat the last frame at half then quarter level, then silence."""
        self._conceal_run += 1
        last = self._last
        if last is not None and self._conceal_run <= 2:
            pcm = (last >> self._conceal_run).astype(np.int16)
        else:
            pcm = np.zeros(self.frame_len if last is None else len(last), dtype=np.int16)
        self.stats.concealed += 1
        self._decoded(pcm, True)

    def _decoded(self, pcm: npt.NDArray[np.int16], concealed: bool) -> None:
        if not concealed:
            self._conceal_run = 0
        n = self.frame_len
        if self._rest is None and len(pcm) == n:
            self._frame(pcm, concealed)
            return
        if self._rest is not None:
            pcm = np.concatenate((self._rest, pcm))
            self._rest = None
        i = 0
        while len(pcm) - i >= n:
            self._frame(pcm[i : i + n], concealed)
            i += n
        if i < len(pcm):
            self._rest = pcm[i:].copy()

    def _frame(self, pcm: npt.NDArray[np.int16], concealed: bool) -> None:
        index = self._index
        self._index += 1
        if not concealed:
            self._last = pcm
        _voiced, closed = self.vad.process(pcm, index)
        st = self.stats
        st.frames += 1
        speech = self.vad.in_speech
        if speech:
            st.speech_frames += 1
        if closed is not None:
            self._segment(closed)
        subs = self.hub._subs
        if not subs:
            return
        ts = index * FRAME_MS / 1000.0
        now = self.clock()
        if len(subs) == 1 and subs[0].rate in (None, self.rate) and subs[0].party in (
            None, self.party
        ):  # one native-rate consumer: no bookkeeping
            try:
                subs[0].callback(
                    AudioFrame(self.call_id, self.party, index, pcm, self.rate, ts, speech,
                               concealed, now)
                )
            except Exception:
                self.hub.subscriber_errors += 1
                log.exception("frame subscriber failed")
            return
        made: dict[int, AudioFrame] = {}
        for sub in subs:
            if sub.party is not None and sub.party != self.party:
                continue
            rate = self.rate if sub.rate is None else sub.rate
            frame = made.get(rate)
            if frame is None:
                out = pcm
                if rate != self.rate:
                    rs = self._resamplers.get(rate)
                    if rs is None:
                        rs = self._resamplers[rate] = Resampler(self.rate, rate)
                    out = rs.process(pcm)
                frame = made[rate] = AudioFrame(
                    self.call_id, self.party, index, out, rate, ts, speech, concealed, now
                )
            try:
                sub.callback(frame)
            except Exception:
                self.hub.subscriber_errors += 1
                log.exception("frame subscriber failed")

    def _segment(self, seg: Segment) -> None:
        self.segments.append(seg)
        self.stats.segments += 1
        hub = self.hub
        for cb in list(hub._segment_subs):
            try:
                cb(self.call_id, self.party, seg)
            except Exception:
                hub.subscriber_errors += 1
                log.exception("segment subscriber failed")
        if hub.bus is not None:
            hub.bus.publish(
                SpeechSegment(
                    call_id=self.call_id, party=self.party, start_s=seg.start_s, end_s=seg.end_s
                )
            )
