"""Per-party pipeline: 20 ms framing of any packet size, loss concealment, per-consumer rates,
the async frame stream, subscriber isolation, segments on the bus."""

from __future__ import annotations

import asyncio

import numpy as np

from earpiece.bus import EventBus
from earpiece.events import SpeechSegment
from earpiece.media.frames import AudioFrame, FrameHub, PartyStream
from earpiece.media.g711 import encode_alaw, encode_ulaw


def stream(codec: str = "ulaw", hub: FrameHub | None = None) -> PartyStream:
    return PartyStream("c1", "customer", codec, hub or FrameHub(),  # type: ignore[arg-type]
                       clock=lambda: 0.0)


def sine(n: int, rate: int = 8000, f: float = 440, amp: float = 8000) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f * np.arange(n) / rate)).astype(np.int16)


def test_odd_packet_sizes_are_cut_into_20ms_frames() -> None:
    hub = FrameHub()
    out: list[AudioFrame] = []
    hub.subscribe(out.append)
    s = stream("alaw", hub)
    x = sine(8000)
    enc = encode_alaw(x)
    pos, seq = 0, 0
    for size in [80, 240, 400, 160, 120] * 100:  # 10..50 ms packets
        if pos >= len(enc):
            break
        s.on_rtp(seq, enc[pos : pos + size], 0.0)
        pos += size
        seq += 1
    assert all(len(f.pcm) == 160 for f in out)
    assert [f.index for f in out] == list(range(len(out))) and len(out) == 50
    y = np.concatenate([f.pcm for f in out]).astype(float)
    assert np.corrcoef(y, x[: len(y)])[0, 1] > 0.999
    assert out[7].timestamp == 0.14


def test_loss_is_concealed_with_decay_then_silence() -> None:
    hub = FrameHub()
    out: list[AudioFrame] = []
    hub.subscribe(out.append)
    s = stream("ulaw", hub)
    x = sine(160 * 20)
    enc = encode_ulaw(x)
    for k in [0, 1, 2, *range(7, 20)]:  # packets 3..6 lost
        s.on_rtp(100 + k, enc[160 * k : 160 * (k + 1)], 0.0)
    s.close()
    assert [f.index for f in out] == list(range(20))
    lost = [f for f in out if f.concealed]
    assert [f.index for f in lost] == [3, 4, 5, 6]
    last = out[2].pcm.astype(int)
    assert (lost[0].pcm == (last >> 1)).all() and (lost[1].pcm == (last >> 2)).all()
    assert not lost[2].pcm.any() and not lost[3].pcm.any()
    assert s.stats.concealed == 4 and s.jitter.stats.lost == 4


def test_each_consumer_gets_its_rate_and_party() -> None:
    hub = FrameHub()
    native: list[AudioFrame] = []
    wide: list[AudioFrame] = []
    wide2: list[AudioFrame] = []
    agent_only: list[AudioFrame] = []
    hub.subscribe(native.append)
    hub.subscribe(wide.append, rate=16000)
    hub.subscribe(wide2.append, rate=16000)
    hub.subscribe(agent_only.append, party="agent")
    s = stream("slin16", hub)
    x = sine(16000, rate=16000, f=500)
    be = x.astype(">i2").tobytes()
    for k in range(50):
        s.on_rtp(k, be[640 * k : 640 * (k + 1)], 0.0)
    assert len(native) == 50 and {len(f.pcm) for f in native} == {320}
    assert (np.concatenate([f.pcm for f in native]) == x).all()  # big-endian decoded
    assert wide[0] is wide2[0]  # one resampling per rate, shared
    assert agent_only == []
    down: list[AudioFrame] = []
    hub.subscribe(down.append, rate=8000)
    for k in range(50, 100):
        s.on_rtp(k, be[640 * (k - 50) : 640 * (k - 49)], 0.0)
    assert {len(f.pcm) for f in down} == {160} and down[0].rate == 8000


def test_failing_subscriber_is_counted_and_isolated() -> None:
    hub = FrameHub()
    good: list[AudioFrame] = []

    def bad(_f: AudioFrame) -> None:
        raise RuntimeError("boom")

    hub.subscribe(bad)
    hub.subscribe(good.append)
    s = stream("ulaw", hub)
    s.on_rtp(1, encode_ulaw(sine(160)), 0.0)
    assert len(good) == 1 and hub.subscriber_errors == 1
    unsub = hub.subscribe(bad)
    unsub()
    unsub()  # idempotent


async def test_async_stream_and_overflow() -> None:
    hub = FrameHub()
    fs = hub.stream(maxsize=5)
    s = stream("ulaw", hub)
    for k in range(8):
        s.on_rtp(k, encode_ulaw(sine(160)), 0.0)
    assert fs.dropped == 3
    got = []
    async for f in fs:
        got.append(f.index)
        if len(got) == 5:
            break
    assert got == [3, 4, 5, 6, 7]
    fs.unsubscribe()
    s.on_rtp(8, encode_ulaw(sine(160)), 0.0)
    assert fs.queue.empty()
    await asyncio.sleep(0)


def test_segments_reach_the_bus_and_segment_subscribers() -> None:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    events: list[SpeechSegment] = []
    bus.subscribe(SpeechSegment, events.append)
    segs: list[tuple[str, str]] = []
    hub.subscribe_segments(lambda c, p, _seg: segs.append((c, p)))
    s = stream("ulaw", hub)
    rng = np.random.default_rng(0)
    speechy = np.concatenate([rng.normal(0, 20, 8000), sine(8000, f=300, amp=12000)
                              * (1 + 0.5 * np.sin(np.arange(8000) / 300)),
                              rng.normal(0, 20, 8000)])
    enc = encode_ulaw(np.clip(speechy, -32768, 32767).astype(np.int16))
    for k in range(len(enc) // 160):
        s.on_rtp(k, enc[160 * k : 160 * (k + 1)], 0.0)
    s.close()
    assert s.closed and s.close() is None
    assert events and segs and segs[0] == ("c1", "customer")
    ev = events[0]
    assert ev.call_id == "c1" and ev.party == "customer" and 0.6 <= ev.start_s <= 1.1
