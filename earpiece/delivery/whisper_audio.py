"""The audio side of whisper delivery: text-to-speech and Earpiece's own RTP sender.

* :func:`render_speech`: ``espeak-ng -v <voice> -s <wpm> --stdout TEXT`` (a subprocess; call it
  off the event loop, e.g. with ``asyncio.to_thread``) -> 16-bit mono PCM and its rate (espeak-ng
  renders 22050 Hz);
* :func:`to_ulaw_8k`: resampled to 8 kHz and encoded as G.711 u-law
  (:mod:`earpiece.media.resample`, :mod:`earpiece.media.g711`);
* :class:`RtpPlayer`: one UDP socket; its address is the externalMedia channel's
  ``external_host`` and it sends the prompt as RTP (PT 0, 20 ms frames, random SSRC and first
  sequence number) to the address Asterisk gives in ``UNICASTRTP_LOCAL_ADDRESS``/``PORT``, at
  real-time pace (deadlines from the loop's clock, no drift). Sending from the socket Asterisk
  sends to keeps the RTP symmetric, which Asterisk's strict RTP accepts. Datagrams Asterisk
  sends to it (the bridge's mix: silence here) are read and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
import subprocess
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from earpiece.errors import EarpieceError
from earpiece.media.g711 import encode_ulaw
from earpiece.media.resample import resample
from earpiece.media.rtp import build_packet

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms of u-law at 8 kHz
FRAME_S = FRAME_SAMPLES / RATE
ULAW_SILENCE = b"\xff"


class SpeechError(EarpieceError):
    """Text-to-speech failed (no espeak-ng, unknown voice, empty output)."""


def parse_wav(data: bytes) -> tuple[npt.NDArray[np.int16], int]:
    """PCM and rate of a 16-bit mono WAV as espeak-ng writes it to stdout (its RIFF and
    ``data`` sizes may be placeholders: the samples run to the end of the output)."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SpeechError("the speech output is not a WAV file")
    pos = 12
    rate = 0
    channels = bits = 0
    while pos + 8 <= len(data):
        cid, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            _fmt, channels, rate = struct.unpack_from("<HHI", data, body)
            bits = struct.unpack_from("<H", data, body + 14)[0]
        elif cid == b"data":
            if channels != 1 or bits != 16 or rate <= 0:
                raise SpeechError(f"unexpected WAV format: {channels} ch, {bits} bit, {rate} Hz")
            raw = data[body:]
            raw = raw[: len(raw) // 2 * 2]
            return np.frombuffer(raw, dtype="<i2").astype(np.int16), rate
        pos = body + size + (size & 1)
    raise SpeechError("the speech output has no audio")


def render_speech(text: str, voice: str, *, command: str = "espeak-ng", wpm: int = 175,
                  timeout_s: float = 10.0) -> tuple[npt.NDArray[np.int16], int]:
    """``text`` spoken by espeak-ng (blocking: run it in a thread)."""
    if not text.strip():
        raise SpeechError("nothing to say")
    try:
        proc = subprocess.run(  # fixed argv, no shell
            [command, "-v", voice, "-s", str(wpm), "--stdout", "--", text],
            capture_output=True, timeout=timeout_s, check=False)
    except FileNotFoundError as exc:
        raise SpeechError(f"{command} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise SpeechError(f"{command} took over {timeout_s:g} s") from exc
    if proc.returncode != 0:
        why = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise SpeechError(f"{command} -v {voice}: {why}")
    pcm, rate = parse_wav(proc.stdout)
    if not pcm.any():
        raise SpeechError(f"{command} -v {voice} rendered silence")
    return pcm, rate


def to_ulaw_8k(pcm: npt.NDArray[np.int16], rate: int, *, max_s: float | None = None) -> bytes:
    """8 kHz G.711 u-law, padded with silence to whole 20 ms frames (cut at ``max_s``)."""
    pcm8 = resample(pcm, rate, RATE)
    if max_s is not None:
        pcm8 = pcm8[: int(max_s * RATE)]
    payload = encode_ulaw(pcm8)
    pad = (-len(payload)) % FRAME_SAMPLES
    return payload + ULAW_SILENCE * pad


class _Drop(asyncio.DatagramProtocol):
    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        return  # the bridge's mix sent back to us: not needed


class RtpPlayer:
    """One prompt's RTP sender (see the module docstring); :meth:`open` binds the socket."""

    def __init__(self, bind_host: str, *, rng: random.Random | None = None) -> None:
        self.bind_host = bind_host
        self._rng = rng or random.Random()
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.packets = 0

    async def open(self) -> int:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            _Drop, local_addr=(self.bind_host, 0))
        self._transport = transport
        self.port = int(transport.get_extra_info("sockname")[1])
        return self.port

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    async def play(self, ulaw: bytes, dest: tuple[str, int], *,
                   stop: Callable[[], bool] = lambda: False) -> float:
        """Send ``ulaw`` to ``dest`` frame by frame in real time; returns the seconds sent
        (less than the whole when ``stop()`` turned true or the socket closed)."""
        loop = asyncio.get_running_loop()
        ssrc = self._rng.getrandbits(32)
        seq = self._rng.getrandbits(16)
        ts = self._rng.getrandbits(32)
        frames = len(ulaw) // FRAME_SAMPLES
        t0 = loop.time()
        sent = 0
        for k in range(frames):
            if stop() or self._transport is None:
                break
            delay = t0 + k * FRAME_S - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
                if stop() or self._transport is None:
                    break
            payload = ulaw[k * FRAME_SAMPLES:(k + 1) * FRAME_SAMPLES]
            packet = build_packet(payload, payload_type=0, sequence_number=seq + k,
                                  timestamp=ts + k * FRAME_SAMPLES, ssrc=ssrc, marker=k == 0)
            with contextlib.suppress(OSError):
                self._transport.sendto(packet, dest)
                self.packets += 1
            sent += 1
        return sent * FRAME_S


__all__ = ["RtpPlayer", "SpeechError", "parse_wav", "render_speech", "to_ulaw_8k"]
