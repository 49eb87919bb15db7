"""Acceptance: every recorded Asterisk RTP stream, through the real receiver, decodes to audio
that correlates (> 0.95) with the source named in its sidecar; per-party streams carry their
own party's prompt and not the other's."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earpiece.media.frames import AudioFrame, FrameHub, PartyStream
from earpiece.media.receiver import RtpReceiver
from earpiece.media.settings import MediaSettings
from earpiece.media.xcorr import best_match, read_wav_int16

SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURES = [
    *sorted((SHARED / "asterisk/captures/rtp").glob("*.bin")),
    *sorted((SHARED / "asterisk/captures/pjsip/rtp").glob("*.bin")),
]
SOUNDS = Path("/usr/share/asterisk/sounds")
pytestmark = pytest.mark.skipif(
    not CAPTURES or not (SOUNDS / "en/demo-congrats.wav").exists(),
    reason="captures or asterisk-core-sounds-en-wav missing",
)


def datagrams(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("!I", raw, pos)
        out.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def source_of(meta: dict[str, Any]) -> np.ndarray:
    """The reference signal the sidecar names (a prompt WAV, or the generated tone recipe)."""
    if "prompt" in meta:
        return read_wav_int16(str(SOUNDS / meta["prompt"]["wav"]))[0]
    carries = meta.get("audio_check", {}).get("carries")
    if carries:
        return read_wav_int16(str(SOUNDS / carries))[0]
    segs = meta["early_media_played"]["signal"]["segments"]
    prompts = [s["prompt"] for s in segs if "prompt" in s]
    if prompts:
        return read_wav_int16(str(SOUNDS / prompts[0]))[0]
    parts = []
    for s in segs:  # a generated tone plan, e.g. US ringback
        n = round(s["dur_s"] * 8000)
        t = np.arange(n) / 8000
        x = np.zeros(n)
        amp = s.get("amplitude_per_tone", s.get("amplitude", 0.0))
        for f in s["freqs_hz"]:
            x += amp * 32767 * np.sin(2 * np.pi * f * t)
        parts.append(x)
    return np.concatenate(parts)


def decode_via_protocol(path: Path) -> tuple[np.ndarray, PartyStream, RtpReceiver]:
    """Hand each datagram, with its recorded source address, to a receiver port."""
    meta = json.loads(path.with_suffix(".json").read_text())
    codec = meta["format"]
    hub = FrameHub()
    pcm: list[np.ndarray] = []
    hub.subscribe(lambda f: pcm.append(f.pcm), rate=8000)
    rx = RtpReceiver(MediaSettings(rtp_port_min=0, rtp_port_max=0), hub)
    from earpiece.media.receiver import RtpPortProtocol

    proto = RtpPortProtocol(rx, port=1)
    rx.ports[1] = proto
    times = meta["packets"]
    src_host, src_port = times[0][1].rsplit(":", 1)
    stream = rx.register(1, "c", "customer", codec, source=(src_host, int(src_port)))
    for dg, (_, src, _) in zip(datagrams(path), times, strict=True):
        host, port = src.rsplit(":", 1)
        proto.datagram_received(dg, (host, int(port)))
    stream.close()
    return np.concatenate(pcm), stream, rx


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_capture_correlates_with_its_source(path: Path) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    audio, stream, rx = decode_via_protocol(path)
    assert rx.drops.total() == 0
    assert stream.stats.packets == meta["stats"]["packets"]
    assert stream.stats.concealed == 0
    m = best_match(audio, source_of(meta))
    assert m.corr > 0.95, (path.stem, m)
    assert m.overlap > 8000  # more than a second of it


def test_per_party_streams_carry_their_own_party() -> None:
    d = SHARED / "asterisk/captures/pjsip/rtp"
    congrats = read_wav_int16(str(SOUNDS / "en/demo-congrats.wav"))[0]
    echotest = read_wav_int16(str(SOUNDS / "en/demo-echotest.wav"))[0]
    cust, _, _ = decode_via_protocol(d / "sip_customer_spy_in.bin")
    agent, _, _ = decode_via_protocol(d / "sip_agent_spy_in.bin")
    assert best_match(cust, congrats).corr > 0.95
    assert best_match(cust, echotest).corr < 0.5
    assert best_match(agent, echotest).corr > 0.95
    assert best_match(agent, congrats).corr < 0.5


async def test_slin16_capture_over_real_udp_at_16k_and_8k() -> None:
    """The slin16 capture, sent over UDP at 10x speed: big-endian decode, both rates."""
    path = SHARED / "asterisk/captures/rtp/external_media_slin16.bin"
    hub = FrameHub()
    at16: list[AudioFrame] = []
    at8: list[np.ndarray] = []
    hub.subscribe(at16.append)
    hub.subscribe(lambda f: at8.append(f.pcm), rate=8000)
    rx = RtpReceiver(MediaSettings(rtp_port_min=0, rtp_port_max=0), hub)
    await rx.start()
    port = await rx.allocate_port()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stream = rx.register(port, "c", "customer", "slin16", source=sock.getsockname())
    try:
        for i, dg in enumerate(datagrams(path)):
            sock.sendto(dg, ("127.0.0.1", port))
            if i % 10 == 9:
                await asyncio.sleep(0.02)
        for _ in range(100):
            if stream.stats.packets == 500:
                break
            await asyncio.sleep(0.02)
    finally:
        sock.close()
        await rx.close()
    assert stream.stats.packets == 500
    assert {f.rate for f in at16} == {16000} and len(at16[0].pcm) == 320
    assert [f.index for f in at16] == list(range(500))
    ref = read_wav_int16(str(SOUNDS / "en/demo-congrats.wav"))[0]
    assert best_match(np.concatenate(at8), ref).corr > 0.99
    # the little-endian reading is noise: the byte order matters
    le = np.concatenate([f.pcm for f in at16]).byteswap()
    from earpiece.media.resample import resample

    assert best_match(resample(le, 16000, 8000), ref).corr < 0.3
