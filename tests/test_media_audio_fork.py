"""mod_audio_fork websocket server: every captured stream replayed through a real websocket
client into the server, stereo split, tokens, peers, malformed input, fuzzing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest
from fork_captures import BINARY, CLOSE, NAMES, TEXT, WsFrame, frames, sidecar
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earpiece.media.audio_fork import (
    SUBPROTOCOL,
    AudioForkServer,
    AudioForkSession,
    AudioForkStats,
    AudioForkTokens,
    ForkRoute,
)
from earpiece.media.frames import AudioFrame, FrameHub

CALL = "620edc2a-2d8e-4233-b08e-3852255f7b33"
#: capture -> (parties of the fork, rate): README's channel table (customer leg stereo:
#: customer left, agent right; mono on a leg: that leg's party).
ROUTES: dict[str, tuple[tuple[str, ...], int]] = {
    "audio_fork_customer_stereo_8k": (("customer", "agent"), 8000),
    "audio_fork_customer_mono_8k": (("customer",), 8000),
    "audio_fork_agent_mono_16k": (("agent",), 16000),
}


def test_every_capture_is_known() -> None:
    assert sorted(ROUTES) == NAMES
    for name, (parties, rate) in ROUTES.items():
        api = sidecar(name)["api_command"]
        mix = "stereo" if len(parties) == 2 else "mono"
        assert f" {mix} {rate // 1000}k " in api
        meta = json.loads(frames(name)[0].payload)
        assert meta["leg"] == ("customer" if "customer" in name else "agent")
        assert meta["mix"] == mix


@pytest.fixture
async def server() -> AsyncIterator[AudioForkServer]:
    srv = AudioForkServer(FrameHub())
    await srv.start()
    yield srv
    await srv.close()


async def _settle(srv: AudioForkServer, closed: int = 1) -> None:
    for _ in range(400):
        if srv.stats.closed >= closed:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"server saw {srv.stats.closed} closes, wanted {closed}")


async def _replay(url: str, seq: list[WsFrame], *, metadata: bytes | None = None) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(
        url, protocols=(SUBPROTOCOL,)
    ) as ws:
        assert ws.protocol == SUBPROTOCOL
        first = True
        for f in seq:
            if f.opcode == TEXT:
                await ws.send_str((metadata if first and metadata else f.payload).decode())
                first = False
            elif f.opcode == BINARY:
                await ws.send_bytes(f.payload)
            elif f.opcode == CLOSE:
                code = int.from_bytes(f.payload[:2], "big")
                await ws.close(code=code, message=f.payload[2:])


def _channels(name: str) -> list[np.ndarray]:
    parties, _ = ROUTES[name]
    pcm = np.frombuffer(
        b"".join(f.payload for f in frames(name) if f.opcode == BINARY), dtype="<i2"
    )
    return [pcm[i :: len(parties)] for i in range(len(parties))]


@pytest.mark.parametrize("name", sorted(ROUTES))
@pytest.mark.parametrize("token_in", ["path", "query", "metadata"])
async def test_replay_capture(server: AudioForkServer, name: str, token_in: str) -> None:
    parties, rate = ROUTES[name]
    got: list[AudioFrame] = []
    at8k: list[AudioFrame] = []
    server.hub.subscribe(got.append)
    server.hub.subscribe(at8k.append, rate=8000)
    token = server.tokens.issue(CALL, parties, rate)  # type: ignore[arg-type]
    seq = frames(name)
    metadata = None
    url = server.url(token)
    if token_in == "query":
        url = f"{server.url()}?token={token}"
    elif token_in == "metadata":
        url = server.url()
        meta = json.loads(seq[0].payload)
        metadata = json.dumps({**meta, "token": token}).encode()
    await _replay(url, seq, metadata=metadata)
    await _settle(server)

    st = server.stats
    side = sidecar(name)["stats"]
    assert st.connections == st.authenticated == 1 and st.malformed == 0
    assert st.refused_token == st.refused_peer == st.duplicate == 0
    assert st.binary_frames == side["binary_frames"]
    assert st.audio_bytes == side["binary_bytes"]
    assert st.text_frames == side["text_frames"] - 1  # all but the metadata
    frame_len = rate // 50
    for party, channel in zip(parties, _channels(name), strict=True):
        mine = [f for f in got if f.party == party]
        assert {f.call_id for f in mine} == {CALL}
        assert {f.rate for f in mine} == {rate}
        assert all(len(f.pcm) == frame_len for f in mine)
        assert [f.index for f in mine] == list(range(len(mine)))
        assert len(mine) * 0.02 == pytest.approx(side["audio_seconds"])
        assert len(channel) == len(mine) * frame_len
        np.testing.assert_array_equal(np.concatenate([f.pcm for f in mine]), channel)
        assert not any(f.concealed for f in mine)
        low = [f for f in at8k if f.party == party]
        assert len(low) == len(mine) and all(len(f.pcm) == 160 for f in low)
    assert {f.party for f in got} == set(parties)
    assert server.sessions() == []  # closed with the websocket


async def test_stereo_split_is_customer_left_agent_right(server: AudioForkServer) -> None:
    """The README's channel check, redone on what the hub received: the left channel is the
    customer's demo-congrats, the right the agent's demo-echotest (they differ)."""
    got: list[AudioFrame] = []
    server.hub.subscribe(got.append)
    token = server.tokens.issue(CALL, ("customer", "agent"))
    name = "audio_fork_customer_stereo_8k"
    await _replay(server.url(token), frames(name))
    await _settle(server)
    cust = np.concatenate([f.pcm for f in got if f.party == "customer"]).astype(float)
    agent = np.concatenate([f.pcm for f in got if f.party == "agent"]).astype(float)
    stereo = np.frombuffer(frames(name)[1].payload, dtype="<i2")
    assert got[0].party == "customer" and np.array_equal(got[0].pcm, stereo[0::2])
    assert got[1].party == "agent" and np.array_equal(got[1].pcm, stereo[1::2])
    assert abs(np.corrcoef(cust, agent)[0, 1]) < 0.5
    mono = _channels("audio_fork_customer_mono_8k")[0].astype(float)
    n = 8000  # the mono fork of the same leg carries the left channel's voice
    best = max(
        abs(np.corrcoef(mono[:n], cust[k : k + n])[0, 1]) for k in range(0, 800, 8)
    )
    assert best > 0.9


async def test_unknown_token_and_peer_are_refused(server: AudioForkServer) -> None:
    got: list[AudioFrame] = []
    server.hub.subscribe(got.append)
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(server.url("nope"), protocols=(SUBPROTOCOL,))
        assert exc.value.status == 403
        assert server.stats.refused_token == 1
        token = server.tokens.issue(CALL, ("customer",))
        server.allowed_peers = frozenset({"192.0.2.7"})
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await http.ws_connect(server.url(token))
        assert exc.value.status == 403 and server.stats.refused_peer == 1
        server.allowed_peers = None
        async with http.ws_connect(server.url(token)) as ws:
            await ws.send_bytes(bytes(320))
            with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
                await http.ws_connect(server.url(token))
            assert exc.value.status == 409 and server.stats.duplicate == 1
    await _settle(server)
    assert server.stats.connections == 1 and len(got) == 1


@pytest.mark.parametrize(
    ("first", "counter"),
    [
        ('{"leg":"customer"}', "refused_token"),  # metadata without a token
        ('{"token":"forged"}', "refused_token"),
        ("not json", "malformed"),
        (b"\x00" * 320, "refused_token"),  # audio before any token
    ],
)
async def test_metadata_token_refusals(
    server: AudioForkServer, first: str | bytes, counter: str
) -> None:
    got: list[AudioFrame] = []
    server.hub.subscribe(got.append)
    server.tokens.issue(CALL, ("customer",))
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url()) as ws:
        if isinstance(first, bytes):
            await ws.send_bytes(first)
        else:
            await ws.send_str(first)
        await ws.send_bytes(bytes(320))
        msg = await ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
    await _settle(server)
    assert getattr(server.stats, counter) == 1 and server.stats.authenticated == 0
    assert got == []


async def test_no_metadata_in_time_is_refused() -> None:
    srv = AudioForkServer(FrameHub(), auth_timeout_s=0.05)
    await srv.start()
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(srv.url()) as ws:
            msg = await ws.receive(timeout=2)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1008
        await _settle(srv)
        assert srv.stats.refused_token == 1
    finally:
        await srv.close()


async def test_malformed_frames_are_counted_and_dropped(server: AudioForkServer) -> None:
    got: list[AudioFrame] = []
    server.hub.subscribe(got.append)
    token = server.tokens.issue(CALL, ("customer", "agent"))
    stereo = frames("audio_fork_customer_stereo_8k")[1].payload
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url(token)) as ws:
        await ws.send_str('{"leg":"customer"}')
        await ws.send_bytes(b"")  # empty
        await ws.send_bytes(b"\x01\x02\x03")  # odd
        await ws.send_bytes(b"\x01\x02")  # half a stereo sample pair
        await ws.send_str("{not json")
        await ws.send_str("[1, 2]")  # JSON, not an object
        await ws.send_bytes(stereo)  # still accepted after all that
        await ws.send_str('{"final":true}')
        await ws.send_bytes(bytes(70_000))  # over the message limit: the server closes
        msg = await ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE
    await _settle(server)
    st = server.stats
    assert st.malformed == 6 and st.binary_frames == 1 and st.text_frames == 1
    assert [f.party for f in got] == ["customer", "agent"]


async def test_release_closes_the_fork(server: AudioForkServer) -> None:
    token = server.tokens.issue(CALL, ("agent",), 16000)
    async with aiohttp.ClientSession() as http, http.ws_connect(server.url(token)) as ws:
        await ws.send_bytes(bytes(640))
        for _ in range(100):
            if server.stats.binary_frames:
                break
            await asyncio.sleep(0.005)
        assert await server.release(token) == ForkRoute(CALL, ("agent",), 16000)
        msg = await ws.receive(timeout=2)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
    await _settle(server)
    assert token not in server.tokens


def test_routes_and_tokens() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ForkRoute("c", ("customer", "customer"))
    with pytest.raises(ValueError, match="rate"):
        ForkRoute("c", ("customer",), 44100)
    assert ForkRoute("c", ("customer", "agent")).mix == "stereo"
    tokens = AudioForkTokens()
    a = tokens.issue("c1", ("customer",))
    b = tokens.issue("c1", ("agent",), 16000)
    tokens.add("fixed", ForkRoute("c2", ("customer",)))
    with pytest.raises(ValueError):
        tokens.add("fixed", ForkRoute("c2", ("agent",)))
    assert a != b and len(a) >= 20 and len(tokens) == 3
    assert sorted(tokens.revoke_call("c1")) == sorted([a, b]) and len(tokens) == 1


messages = st.lists(
    st.one_of(
        st.binary(max_size=700).map(lambda b: ("b", b)),
        st.text(max_size=40).map(lambda t: ("t", t)),
        st.sampled_from([("t", '{"token":"T"}'), ("t", '{"final":true}'), ("b", bytes(640))]),
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages, st.sampled_from([None, "T", "bad"]), st.sampled_from(list(ROUTES.values())))
def test_session_never_raises(
    msgs: list[tuple[str, bytes | str]], url_token: str | None,
    route: tuple[tuple[str, ...], int],
) -> None:
    """Any frames in any order: each is used, counted as malformed, or refuses the connection;
    nothing raises and no audio reaches the hub without the token."""
    hub = FrameHub()
    got: list[AudioFrame] = []
    hub.subscribe(got.append)
    tokens = AudioForkTokens()
    tokens.add("T", ForkRoute("c", route[0], route[1]))  # type: ignore[arg-type]
    stats = AudioForkStats()
    sess = AudioForkSession(tokens, hub, stats, url_token=url_token)
    accepted = 0
    for kind, data in msgs:
        before = stats.binary_frames
        if kind == "b":
            assert isinstance(data, bytes)
            ok = sess.on_binary(data)
        else:
            assert isinstance(data, str)
            ok = sess.on_text(data)
        accepted += len(data) if stats.binary_frames > before else 0
        if not ok:
            break
    sess.close()
    if not sess.authenticated:
        assert got == [] and stats.binary_frames == 0
    frame_bytes = 2 * len(route[0]) * route[1] // 50
    assert len(got) == len(route[0]) * (accepted // frame_bytes)
    assert stats.audio_bytes == accepted
