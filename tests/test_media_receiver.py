"""RTP receiver: port range, per-port demultiplexing, source/SSRC validation, malformed input,
Hypothesis fuzzing (the slow one: >= 10^4 cases), spoofed packets never reach the audio."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earpiece.media.frames import AudioFrame, FrameHub
from earpiece.media.g711 import encode_ulaw
from earpiece.media.receiver import RtpPortProtocol, RtpReceiver
from earpiece.media.rtp import build_packet
from earpiece.media.settings import MediaSettings

EPHEMERAL = MediaSettings(rtp_port_min=0, rtp_port_max=0)
LEGIT = ("127.0.0.1", 40000)


def pkt(seq: int, payload: bytes, ssrc: int = 0x1234, pt: int = 0) -> bytes:
    return build_packet(payload, payload_type=pt, sequence_number=seq, timestamp=seq * 160,
                        ssrc=ssrc)


def tone_ulaw(k: int) -> bytes:
    t = np.arange(k * 160, (k + 1) * 160) / 8000
    return encode_ulaw((8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16))


def make(codec: str = "ulaw", source: tuple[str, int] | None = LEGIT, ssrc: int | None = None
         ) -> tuple[RtpReceiver, RtpPortProtocol, list[AudioFrame]]:
    hub = FrameHub()
    out: list[AudioFrame] = []
    hub.subscribe(out.append)
    rx = RtpReceiver(EPHEMERAL, hub)
    proto = RtpPortProtocol(rx, port=7)
    rx.ports[7] = proto
    rx.register(7, "call", "agent", codec, source=source, ssrc=ssrc)  # type: ignore[arg-type]
    return rx, proto, out


def test_validation_reasons_are_counted() -> None:
    rx, p, out = make()
    p.datagram_received(pkt(1, tone_ulaw(0)), LEGIT)
    p.datagram_received(pkt(2, tone_ulaw(1)), ("127.0.0.1", 40001))  # other port
    p.datagram_received(pkt(2, tone_ulaw(1)), ("10.0.0.9", 40000))  # other host
    p.datagram_received(pkt(2, tone_ulaw(1), ssrc=0x9999), LEGIT)  # other SSRC
    p.datagram_received(pkt(2, tone_ulaw(1), pt=8), LEGIT)  # A-law on a u-law stream
    p.datagram_received(b"\x80\xc8" + bytes(26), LEGIT)  # RTCP sender report
    p.datagram_received(b"\x80\x00", LEGIT)  # truncated
    p.datagram_received(b"\x00" * 20, LEGIT)  # version 0
    p.datagram_received(b"\x8f" + bytes(15), LEGIT)  # CSRCs beyond the end
    p.datagram_received(pkt(2, b""), LEGIT)  # no payload
    p.datagram_received(pkt(2, tone_ulaw(1)), LEGIT)
    d = rx.drops
    assert (d.bad_source, d.bad_ssrc, d.bad_payload_type, d.rtcp, d.malformed) == (2, 1, 1, 1, 4)
    assert [f.index for f in out] == [0, 1]
    assert p.binding is not None and p.binding.ssrc == 0x1234  # learnt from the first packet


def test_unregistered_port_counts_no_stream() -> None:
    rx, p, _ = make()
    rx.unregister(7)
    p.datagram_received(pkt(1, tone_ulaw(0)), LEGIT)
    assert rx.drops.no_stream == 1


def test_source_latching_when_not_announced() -> None:
    rx, p, out = make(source=None)
    p.datagram_received(pkt(1, tone_ulaw(0)), ("127.0.0.1", 5555))
    p.datagram_received(pkt(2, tone_ulaw(1)), ("127.0.0.1", 5556))
    assert rx.drops.bad_source == 1 and len(out) == 1


def test_wildcard_announced_host_checks_the_port_and_latches_the_host() -> None:
    rx, p, out = make(source=("0.0.0.0", 40000))
    p.datagram_received(pkt(1, tone_ulaw(0)), ("127.0.0.1", 40001))  # wrong port
    p.datagram_received(pkt(1, tone_ulaw(0)), ("192.0.2.7", 40000))  # latched
    p.datagram_received(pkt(2, tone_ulaw(1)), ("192.0.2.8", 40000))  # other host now
    p.datagram_received(pkt(2, tone_ulaw(1)), ("192.0.2.7", 40000))
    assert rx.drops.bad_source == 2 and [f.index for f in out] == [0, 1]


def test_padding_and_extension_take_the_slow_path() -> None:
    from earpiece.media.rtp import RtpPacket

    _rx, p, out = make()
    data = bytes(RtpPacket(payload_type=0, sequence_number=1, ssrc=0x1234, csrc=[5],
                           extension_profile=0xBEDE, extension=b"\x00" * 4,
                           payload=tone_ulaw(0), padding_size=4))
    p.datagram_received(data, LEGIT)
    assert len(out) == 1 and len(out[0].pcm) == 160


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=300),
            st.builds(lambda s, pt, ssrc, body: pkt(s, body, ssrc=ssrc, pt=pt),
                      st.integers(0, 0xFFFF), st.sampled_from([0, 8, 118, 72, 200 & 0x7F]),
                      st.sampled_from([0x1234, 0x1235, 0]), st.binary(max_size=400)),
            st.binary(min_size=12, max_size=200).map(lambda b: bytes([0x80 | (b[0] & 0x3F)])
                                                      + b[1:]),
        ),
        max_size=8,
    ),
    st.sampled_from([LEGIT, ("127.0.0.1", 1), ("::1", 40000)]),
)
def test_fuzzed_datagrams_never_crash_and_spoofs_never_reach_audio(
    datagrams: list[bytes], addr: tuple[str, int]
) -> None:
    rx, p, out = make(ssrc=0x1234)
    for d in datagrams:
        p.datagram_received(d, addr)
    stream = rx.ports[7].binding.stream  # type: ignore[union-attr]
    stream.close()
    if addr != LEGIT:
        assert out == [] and rx.drops.bad_source == len(datagrams)
    # every datagram is either accepted by the stream or dropped for a counted reason
    assert stream.stats.packets + rx.drops.total() == len(datagrams)
    assert all(f.pcm.dtype == np.int16 and len(f.pcm) == 160 for f in out)


async def test_real_udp_two_calls_spoofer_and_teardown() -> None:
    """Two ports, two senders and a spoofer on real sockets: each stream gets only its own
    audio; the spoofer's packets (wrong source; right source with wrong SSRC) are dropped."""
    settings_ = MediaSettings(rtp_port_min=0, rtp_port_max=0)
    hub = FrameHub()
    got: dict[str, list[AudioFrame]] = {"a": [], "b": []}
    hub.subscribe(lambda f: got[f.call_id].append(f))
    rx = RtpReceiver(settings_, hub)
    await rx.start()
    pa, pb = await rx.allocate_port(), await rx.allocate_port()
    assert pa != pb
    sa, sb, spoof = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3))
    for s in (sa, sb, spoof):
        s.bind(("127.0.0.1", 0))
    rx.register(pa, "a", "customer", "ulaw", source=sa.getsockname())
    rx.register(pb, "b", "agent", "ulaw", source=sb.getsockname())
    loud = encode_ulaw(np.full(160, 20000, np.int16))
    quiet_a = encode_ulaw(np.full(160, 100, np.int16))
    quiet_b = encode_ulaw(np.full(160, -100, np.int16))
    try:
        for k in range(30):
            sa.sendto(pkt(k, quiet_a, ssrc=1), ("127.0.0.1", pa))
            sb.sendto(pkt(1000 + k, quiet_b, ssrc=2), ("127.0.0.1", pb))
            spoof.sendto(pkt(k + 1, loud, ssrc=1), ("127.0.0.1", pa))
            sa.sendto(pkt(k + 1, loud, ssrc=99), ("127.0.0.1", pa))
            await asyncio.sleep(0.002)
        for _ in range(100):
            if len(got["a"]) >= 30 and len(got["b"]) >= 30:
                break
            await asyncio.sleep(0.01)
    finally:
        for s in (sa, sb, spoof):
            s.close()
    assert [f.index for f in got["a"]] == list(range(30))
    assert [f.index for f in got["b"]] == list(range(30))
    assert all(int(f.pcm.max()) < 200 for f in got["a"] + got["b"])  # nothing loud got in
    assert rx.drops.bad_source == 30 and rx.drops.bad_ssrc == 30
    assert all(f.party == "agent" for f in got["b"])
    rx.release_port(pa)
    assert pa not in rx.ports and len(rx.streams()) == 1
    await rx.close()
    assert rx.ports == {}


async def test_port_range_is_honoured_and_exhaustion_reported() -> None:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    base = probe.getsockname()[1]
    probe.close()
    lo, hi = base, base + 2
    rx = RtpReceiver(MediaSettings(rtp_port_min=lo, rtp_port_max=hi), FrameHub())
    ports = []
    try:
        for _ in range(3):
            ports.append(await rx.allocate_port())
        assert all(lo <= p <= hi for p in ports) and len(set(ports)) == 3
        with pytest.raises(OSError, match="no free UDP port"):
            await rx.allocate_port()
        rx.release_port(ports[0])
        assert await rx.allocate_port() == ports[0]
    except OSError as exc:  # another process took a port of the range meanwhile
        if "no free" not in str(exc) or len(ports) == 3:
            raise
        pytest.skip(f"port range busy: {exc}")
    finally:
        await rx.close()


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.sampled_from([("slin16", 118), ("alaw", 8)]),
    st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=1300)), max_size=12),
)
def test_any_payload_size_on_slin16_and_alaw_streams(
    codec_pt: tuple[str, int], packets: list[tuple[int, bytes]]
) -> None:
    codec, pt = codec_pt
    rx, p, out = make(codec=codec, ssrc=0x1234)
    for seq, body in packets:
        p.datagram_received(pkt(seq, body, pt=pt), LEGIT)
    stream = rx.ports[7].binding.stream  # type: ignore[union-attr]
    stream.close()
    size = 320 if codec == "slin16" else 160
    assert all(f.pcm.dtype == np.int16 and len(f.pcm) == size for f in out)
    assert [f.index for f in out] == list(range(len(out)))
    assert stream.stats.packets + rx.drops.total() == len(packets)
