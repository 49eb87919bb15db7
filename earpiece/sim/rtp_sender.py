"""RTP output of the simulator's externalMedia channels: one timer-driven loop for all streams.

Each externalMedia channel gets its own UDP socket bound to ``host:0``; its port is the
channel's ``UNICASTRTP_LOCAL_PORT`` and every packet leaves from it, as Asterisk does. Every
20 ms tick (deadlines computed from the loop's monotonic clock, so there is no drift) each
active stream reads 160 samples from its source (the engine's mix of the bridge), encodes them
and sends one datagram:

* RTP v2, no CSRC/extension/padding, marker never set, random SSRC and initial sequence,
  timestamp starting at one frame (160 for 8 kHz codecs, 320 for slin16), step one frame;
* PT 0 ``ulaw`` (160 B), PT 8 ``alaw`` (160 B), PT 118 ``slin16`` (640 B, big-endian, 16 kHz,
  upsampled with a streaming anti-imaging FIR whose state carries across frames);
* silence (0xFF in ulaw) while nobody speaks, nothing while the channel has no bridge peer.

RTP sent *to* a stream's port (Earpiece's whisper sender) is read on every tick, decoded in the
channel's format and handed to the stream's ``sink`` at the engine sample its RTP timestamp
maps to (anchored at the first packet of each SSRC; a jump of over a second re-anchors), so the
engine can pass it to the bridge's other members (:meth:`ChannelAudio.media_sink`).

Fault knobs (:class:`earpiece.sim.faults.Faults`) add loss, reordering, jitter, duplicates and a
rogue sender (another source port, or another SSRC) towards the same destination.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from earpiece.sim import audio
from earpiece.sim.engine import MediaHub
from earpiece.sim.faults import Faults
from earpiece.sim.model import Channel

log = logging.getLogger(__name__)

FRAME_S = 0.020
MAX_BURST = 5  # frames sent back to back when the loop was late; beyond that, skip
FORMATS: dict[str, tuple[int, int]] = {  # format -> (payload type, clock rate)
    "ulaw": (0, 8000),
    "alaw": (8, 8000),
    "slin16": (118, 16000),
}
_ULAW_SILENCE = bytes([audio.ULAW_SILENCE]) * audio.FRAME_SAMPLES
_ALAW_SILENCE = bytes([audio.ALAW_SILENCE]) * audio.FRAME_SAMPLES


class Upsampler2:
    """Streaming 8 kHz -> 16 kHz: zero-stuffing plus a 65-tap windowed-sinc low-pass, run as
    two polyphase branches over the frame and the previous frame's tail (no clicks at frame
    edges; group delay 32 samples at 16 kHz = 16 whole samples at 8 kHz)."""

    def __init__(self) -> None:
        from scipy.signal import firwin

        taps = firwin(65, 0.5) * 2.0
        self.even = np.asarray(taps[0::2], dtype=np.float64)  # 33 taps
        self.odd = np.asarray(taps[1::2], dtype=np.float64)  # 32 taps
        self.history = np.zeros(len(self.even) - 1, dtype=np.float64)

    def process(self, pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        xx = np.concatenate([self.history, pcm.astype(np.float64)])
        self.history = xx[len(pcm):]
        out = np.empty(2 * len(pcm), dtype=np.float64)
        out[0::2] = np.convolve(xx, self.even, mode="valid")
        out[1::2] = np.convolve(xx, self.odd, mode="valid")[1:]
        result: npt.NDArray[np.int16] = np.clip(np.round(out), -32768, 32767).astype(np.int16)
        return result


@dataclass(eq=False)
class RtpStream:
    channel: Channel
    sock: socket.socket
    local_port: int
    dest: tuple[str, int]
    fmt: str
    pt: int
    ssrc: int
    seq: int
    source: Callable[[int, int], Any]
    samples_per_frame: int
    ts: int = 0
    position: int | None = None
    packets: int = 0
    octets: int = 0
    errors: int = 0
    held: bytes | None = None
    upsampler: Upsampler2 | None = None
    rogue_sock: socket.socket | None = None
    rogue_ssrc: int = 0
    rogue_seq: int = 0
    rogue_packets: int = 0
    closed: bool = False
    sent_log: list[bytes] | None = field(default=None, repr=False)
    sink: Callable[[int, Any], None] | None = None
    rx_ssrc: int | None = None
    rx_anchor: int = 0  # engine sample of the RTP timestamp rx_ts0
    rx_ts0: int = 0
    rx_packets: int = 0


def _parse_rtp(data: bytes) -> tuple[int, int, bytes] | None:
    """(SSRC, timestamp, payload) of an RTP v2 packet (CSRCs, extension, padding skipped)."""
    if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 76:  # v2, not RTCP
        return None
    ts, ssrc = struct.unpack_from("!II", data, 4)
    start = 12 + 4 * (data[0] & 0x0F)
    if data[0] & 0x10:
        if len(data) < start + 4:
            return None
        start += 4 + 4 * struct.unpack_from("!H", data, start + 2)[0]
    end = len(data) - (data[-1] if data[0] & 0x20 else 0)
    if end < start:
        return None
    return ssrc, ts, data[start:end]


def parse_host_port(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"external_host must be host:port, got {value!r}")
    return host.strip("[]"), int(port)


class RtpSender(MediaHub):
    def __init__(self, *, host: str = "127.0.0.1", faults: Faults | None = None,
                 rng: random.Random | None = None) -> None:
        self.host = host
        self.faults = faults or Faults()
        self.rng = rng or random.Random()
        self.streams: dict[str, RtpStream] = {}
        self.clock: Callable[[], int] = lambda: 0
        self._task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.late_ticks = 0
        self.skipped_frames = 0
        self.keep_log = False  # tests: keep every datagram sent

    # --- MediaHub --------------------------------------------------------------------------
    def open_stream(self, channel: Channel, source: Callable[[int, int], Any],
                    sink: Callable[[int, Any], None] | None = None) -> int:
        fmt = channel.media_format
        pt, rate = FORMATS[fmt]
        dest = parse_host_port(channel.external_host)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind((self.host, 0))
        port = int(sock.getsockname()[1])
        spf = rate // 50
        stream = RtpStream(
            channel=channel, sock=sock, local_port=port, dest=dest, fmt=fmt, pt=pt,
            ssrc=self.rng.getrandbits(32), seq=self.rng.getrandbits(16), source=source,
            samples_per_frame=spf, upsampler=Upsampler2() if rate == 16000 else None,
            sent_log=[] if self.keep_log else None, sink=sink)
        self.streams[channel.id] = stream
        return port

    def close_stream(self, channel: Channel) -> None:
        stream = self.streams.pop(channel.id, None)
        if stream is None:
            return
        stream.closed = True
        stream.sock.close()
        if stream.rogue_sock is not None:
            stream.rogue_sock.close()

    # --- loop ------------------------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for stream in list(self.streams.values()):
            self.close_stream(stream.channel)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        k = 0
        while True:
            k += 1
            deadline = t0 + k * FRAME_S
            delay = deadline - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                frames = 1
            else:
                behind = int(-delay / FRAME_S) + 1
                self.late_ticks += 1
                frames = min(behind, MAX_BURST)
                if behind > MAX_BURST:
                    self.skipped_frames += behind - MAX_BURST
                k += behind - 1
            self.ticks += 1
            for stream in list(self.streams.values()):
                if stream.sink is not None and not stream.closed:
                    self._receive(stream)
                for _ in range(frames):
                    if stream.closed:
                        break
                    try:
                        self._tick(stream)
                    except Exception:
                        log.exception("RTP stream %s failed; closing it", stream.channel.name)
                        self.close_stream(stream.channel)
                        break
            if frames > 1:
                await asyncio.sleep(0)

    def _tick(self, stream: RtpStream) -> None:
        if stream.position is None:
            stream.position = self.clock() - audio.FRAME_SAMPLES
        pcm = stream.source(stream.position, audio.FRAME_SAMPLES)
        stream.position += audio.FRAME_SAMPLES
        if pcm is None:
            return
        payload = self._encode(stream, pcm)
        stream.ts = (stream.ts + stream.samples_per_frame) & 0xFFFFFFFF
        header = struct.pack("!BBHII", 0x80, stream.pt, stream.seq, stream.ts, stream.ssrc)
        stream.seq = (stream.seq + 1) & 0xFFFF
        self._emit(stream, header + payload)

    # --- receiving -------------------------------------------------------------------------
    def _receive(self, stream: RtpStream) -> None:
        """Drain the stream's socket; each RTP packet's audio goes to ``stream.sink``."""
        assert stream.sink is not None
        for _ in range(256):
            try:
                data = stream.sock.recv(2048)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                stream.errors += 1
                return
            parsed = _parse_rtp(data)
            if parsed is None:
                continue
            ssrc, ts, payload = parsed
            pcm = self._decode(stream, payload)
            if pcm is None or not len(pcm):
                continue
            stream.rx_packets += 1
            rate = FORMATS[stream.fmt][1]
            now = self.clock()
            if stream.rx_ssrc != ssrc:
                stream.rx_ssrc, stream.rx_anchor, stream.rx_ts0 = ssrc, now, ts
            delta = ((ts - stream.rx_ts0 + 0x80000000) & 0xFFFFFFFF) - 0x80000000
            at = stream.rx_anchor + delta * audio.SAMPLE_RATE // rate
            if abs(at - now) > audio.SAMPLE_RATE:  # paused / jumped: start again from now
                stream.rx_anchor, stream.rx_ts0, at = now, ts, now
            stream.sink(at, pcm)

    @staticmethod
    def _decode(stream: RtpStream, payload: bytes) -> npt.NDArray[np.int16] | None:
        if stream.fmt == "ulaw":
            return audio.ulaw_decode(payload)
        if stream.fmt == "alaw":
            return audio.alaw_decode(payload)
        if len(payload) % 2:
            return None
        pcm16 = np.frombuffer(payload, dtype=">i2").astype(np.int16)
        return audio.resample(pcm16, 16000, audio.SAMPLE_RATE)

    def _encode(self, stream: RtpStream, pcm: npt.NDArray[np.int16]) -> bytes:
        silent = not pcm.any()
        if stream.fmt == "ulaw":
            return _ULAW_SILENCE if silent else audio.ulaw_encode(pcm)
        if stream.fmt == "alaw":
            return _ALAW_SILENCE if silent else audio.alaw_encode(pcm)
        assert stream.upsampler is not None
        return stream.upsampler.process(pcm).astype(">i2").tobytes()

    # --- sending with faults ---------------------------------------------------------------
    def _emit(self, stream: RtpStream, packet: bytes) -> None:
        f = self.faults
        if not f.rtp_active:
            self._send(stream, packet)
            return
        if f.rogue_rtp:
            self._rogue(stream, packet)
        if f.chance(f.rtp_loss):
            return
        copies = 2 if f.chance(f.rtp_duplicate) else 1
        if stream.held is not None:
            held, stream.held = stream.held, None
            for _ in range(copies):
                self._send_later(stream, packet)
            self._send_later(stream, held)
            return
        if f.chance(f.rtp_reorder):
            stream.held = packet
            return
        for _ in range(copies):
            self._send_later(stream, packet)

    def _send_later(self, stream: RtpStream, packet: bytes) -> None:
        jitter = self.faults.rtp_jitter_ms
        if jitter > 0:
            delay = self.faults.rng.uniform(0.0, jitter) / 1000.0
            asyncio.get_running_loop().call_later(delay, self._send, stream, packet)
        else:
            self._send(stream, packet)

    def _send(self, stream: RtpStream, packet: bytes) -> None:
        if stream.closed:
            return
        try:
            stream.sock.sendto(packet, stream.dest)
        except OSError:
            stream.errors += 1
            return
        stream.packets += 1
        stream.octets += len(packet) - 12
        if stream.sent_log is not None:
            stream.sent_log.append(packet)

    def _rogue(self, stream: RtpStream, packet: bytes) -> None:
        f = self.faults
        if not f.chance(min(1.0, f.rogue_rate)):
            return
        if f.rogue_rtp == "address":
            if stream.rogue_sock is None:
                stream.rogue_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                stream.rogue_sock.setblocking(False)
                stream.rogue_sock.bind((self.host, 0))
            sock = stream.rogue_sock
            data = packet
        else:
            if not stream.rogue_ssrc:
                stream.rogue_ssrc = (stream.ssrc ^ 0x5A5A5A5A) or 1
                stream.rogue_seq = self.rng.getrandbits(16)
            sock = stream.sock
            header = struct.pack("!BBHII", 0x80, stream.pt, stream.rogue_seq, stream.ts,
                                 stream.rogue_ssrc)
            stream.rogue_seq = (stream.rogue_seq + 1) & 0xFFFF
            data = header + packet[12:]
        try:
            sock.sendto(data, stream.dest)
            stream.rogue_packets += 1
        except OSError:
            stream.errors += 1
