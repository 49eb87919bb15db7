"""AudioSocket: frame format, incremental framing, the TCP server, fuzzing."""

from __future__ import annotations

import asyncio
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earpiece.errors import AudioSocketProtocolError
from earpiece.media.audiosocket import (
    AudioSocketFrame,
    AudioSocketFramer,
    AudioSocketProtocol,
    AudioSocketServer,
    Kind,
)
from earpiece.media.frames import AudioFrame, FrameHub


def test_wire_examples() -> None:
    assert bytes(AudioSocketFrame(Kind.HANGUP)) == b"\x00\x00\x00"
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    f = AudioSocketFrame.for_uuid(u)
    assert bytes(f) == b"\x01\x00\x10" + u.bytes
    assert AudioSocketFrame.parse(bytes(f)).uuid == u
    pcm = np.arange(160, dtype="<i2").tobytes()
    s = AudioSocketFrame(Kind.SLIN, pcm)
    assert bytes(s)[:3] == b"\x10\x01\x40"  # 320 bytes, big-endian length
    assert s.rate == 8000 and AudioSocketFrame(Kind.SLIN_16K, pcm).rate == 16000
    assert AudioSocketFrame.parse(b"\x03\x00\x01#") == AudioSocketFrame(Kind.DTMF, b"#")
    assert AudioSocketFrame.parse(b"\xff\x00\x01\x02").payload == b"\x02"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x10\x00", "too short"),
        (b"\x10\x00\x04ab", "length field says 4"),
        (b"\x42\x00\x00", "unknown AudioSocket kind 0x42"),
        (b"\x01\x00\x02ab", "UUID frame needs 16 bytes"),
        (b"\x03\x00\x00", "DTMF frame needs 1 byte"),
        (b"\x00\x00\x01x", "hangup frame must be empty"),
        (b"\x10\x00\x03abc", "odd length"),
    ],
)
def test_precise_errors(data: bytes, message: str) -> None:
    with pytest.raises(AudioSocketProtocolError, match=message):
        AudioSocketFrame.parse(data)


frames_st = st.one_of(
    st.just(AudioSocketFrame(Kind.HANGUP)),
    st.binary(min_size=16, max_size=16).map(lambda b: AudioSocketFrame(Kind.UUID, b)),
    st.sampled_from(b"0123456789*#").map(lambda c: AudioSocketFrame(Kind.DTMF, bytes([c]))),
    st.tuples(st.sampled_from([Kind.SLIN, Kind.SLIN_16K, Kind.SLIN_48K]),
              st.integers(0, 400)).map(lambda kn: AudioSocketFrame(kn[0], bytes(2 * kn[1]))),
    st.binary(max_size=8).map(lambda b: AudioSocketFrame(Kind.ERROR, b)),
)


@given(st.lists(frames_st, max_size=10), st.lists(st.integers(1, 50), min_size=1))
def test_framer_reassembles_any_split(frames: list[AudioSocketFrame], cuts: list[int]) -> None:
    wire = b"".join(bytes(f) for f in frames)
    framer = AudioSocketFramer()
    got: list[AudioSocketFrame] = []
    pos, i = 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        got += framer.feed(wire[pos : pos + step])
        pos += step
        i += 1
    assert got == frames and framer.buffered == 0
    for f in frames:
        assert AudioSocketFrame.parse(bytes(f)) == f


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.mark.slow
@settings(max_examples=10_000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(st.binary(max_size=64), frames_st.map(bytes)), max_size=6),
       st.booleans())
def test_fuzzed_stream_never_crashes_the_server(chunks: list[bytes], send_uuid: bool) -> None:
    hub = FrameHub()
    out: list[AudioFrame] = []
    hub.subscribe(out.append)
    srv = AudioSocketServer(hub)
    u = uuid.uuid4()
    stream = srv.register(u, "c", "customer")
    proto = AudioSocketProtocol(srv)
    tr = _Transport()
    proto.connection_made(tr)  # type: ignore[arg-type]
    if send_uuid:
        proto.data_received(bytes(AudioSocketFrame.for_uuid(u)))
    for c in chunks:
        if tr.closed:
            break
        proto.data_received(c)
    proto.connection_lost(None)
    stream.close()
    if not send_uuid:
        assert out == []  # audio without the stream's UUID first never reaches a call
    assert all(len(f.pcm) == 160 for f in out)


async def test_server_end_to_end() -> None:
    hub = FrameHub()
    out: list[AudioFrame] = []
    hub.subscribe(out.append)
    srv = AudioSocketServer(hub)
    port = await srv.start()
    u = uuid.uuid4()
    stream = srv.register(u, "call-1", "customer")
    t = np.arange(8000) / 8000
    pcm = (8000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    try:
        # an impostor with an unknown UUID is refused
        r0, w0 = await asyncio.open_connection("127.0.0.1", port)
        w0.write(bytes(AudioSocketFrame.for_uuid(uuid.uuid4())))
        w0.write(bytes(AudioSocketFrame(Kind.SLIN, pcm[:160].tobytes())))
        await w0.drain()
        assert await asyncio.wait_for(r0.read(), 2) == b""  # closed by the server
        w0.close()
        # the real one: 1 s of audio in 20 ms frames, split oddly across writes
        r, w = await asyncio.open_connection("127.0.0.1", port)
        wire = bytes(AudioSocketFrame.for_uuid(u)) + b"".join(
            bytes(AudioSocketFrame(Kind.SLIN, pcm[i : i + 160].tobytes()))
            for i in range(0, 8000, 160)
        ) + bytes(AudioSocketFrame(Kind.DTMF, b"5"))
        for i in range(0, len(wire), 1000):
            w.write(wire[i : i + 1000])
            await w.drain()
        for _ in range(100):
            if len(out) == 50:
                break
            await asyncio.sleep(0.01)
        # a second connection with the same UUID is refused while the first is up
        r2, w2 = await asyncio.open_connection("127.0.0.1", port)
        w2.write(bytes(AudioSocketFrame.for_uuid(u)))
        await w2.drain()
        assert await asyncio.wait_for(r2.read(), 2) == b""
        w2.close()
        w.write(bytes(AudioSocketFrame(Kind.HANGUP)))
        await w.drain()
        assert await asyncio.wait_for(r.read(), 2) == b""
        w.close()
    finally:
        await srv.close()
    assert len(out) == 50 and [f.index for f in out] == list(range(50))
    assert (np.concatenate([f.pcm for f in out]) == pcm).all()
    assert srv.stats.unknown_uuid == 2 and srv.stats.dtmf == 1 and srv.stats.hangups == 1
    assert stream.closed
