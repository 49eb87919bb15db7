"""The simulator's ARI and RTP against the captures: REST error bodies, resource shapes, event
routing, snoop/externalMedia media (header facts, decoded audio vs the source WAV, per-party
direction), early media, whisper reach, restart and RTP faults. Plain aiohttp + UDP sockets."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import socket
import struct
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from earpiece.sim.audio import load_sound, ulaw_decode
from earpiece.sim.engine import OriginateRequest
from earpiece.sim.faults import Faults
from earpiece.sim.scenario import Scenario
from earpiece.sim.simulator import Simulator

CAPTURES = Path("/work/shared/asterisk/captures")
if not CAPTURES.exists():
    CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "asterisk" / "captures"
needs_captures = pytest.mark.skipif(not CAPTURES.exists(), reason="captures not available")
AUTH = {"Authorization": "Basic " + base64.b64encode(b"assist:assist").decode()}


def scenario(**cust: Any) -> Scenario:
    customer = {"name": "cust1", "callerid_name": "Customer One", "ring_s": 0.3,
                "hangup_after_s": 2.2, "says": [{"wav": "demo-congrats", "at_s": 0.1}]}
    customer.update(cust)
    return Scenario.from_dict({
        "endpoints": [
            {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.1,
             "says": [{"wav": "demo-echotest", "at_s": 0.05}]},
            customer,
        ],
        "dialplan": {"agents": ["agent1"]},
    })


class Ari:
    """Tiny ARI test client: REST calls + a websocket event recorder."""

    def __init__(self, sim: Simulator, session: aiohttp.ClientSession) -> None:
        self.sim = sim
        self.s = session
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None

    async def req(self, method: str, path: str, **params: str) -> tuple[int, Any]:
        async with self.s.request(method, self.sim.ari_url + path, params=params or None,
                                  headers=AUTH) as r:
            text = await r.text()
            return r.status, (json.loads(text) if text else None)

    async def connect(self, subscribe_all: bool = True) -> None:
        self.ws = await self.s.ws_connect(
            f"{self.sim.ari_url}/ari/events?app=assist&subscribeAll="
            f"{'true' if subscribe_all else 'false'}", headers=AUTH)
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.raw.append(msg.data)
                try:
                    ev = json.loads(msg.data)
                except json.JSONDecodeError:
                    continue
                if isinstance(ev, dict):
                    self.events.append(ev)

    async def wait(self, pred: Any, within: float = 5.0) -> dict[str, Any]:
        for _ in range(int(within / 0.01)):
            for ev in self.events:
                if pred(ev):
                    return ev
            await asyncio.sleep(0.01)
        raise AssertionError("event not received")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


class RtpSink:
    """A UDP listener standing for Earpiece's media receiver."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[float, bytes, tuple[str, int]]] = []
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data, addr = await loop.sock_recvfrom(self.sock, 4096)
            self.packets.append((time.monotonic(), data, addr))

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.sock.close()


def headers_of(packets: list[tuple[float, bytes, Any]]) -> list[tuple[int, ...]]:
    return [struct.unpack("!BBHII", p[1][:12]) for p in packets]


def best_corr(stream: np.ndarray[Any, Any], ref: np.ndarray[Any, Any],
              n: int = 8000) -> float:
    """Max normalised correlation of the first ``n`` samples of ``ref`` within ``stream``."""
    r = ref[:n].astype(np.float64)
    s = stream.astype(np.float64)
    if len(s) < n:
        return 0.0
    c = np.correlate(s, r, mode="valid")
    energy = np.sqrt(np.convolve(s * s, np.ones(n), mode="valid"))
    score = np.abs(c) / (energy * np.linalg.norm(r) + 1e-9)
    return float(score.max())


async def media_call(sim: Simulator, ari: Ari, sink: RtpSink, *, party: str, spy: str,
                     fmt: str = "ulaw") -> dict[str, Any]:
    """Bridge + externalMedia towards ``sink``, originate the call, snoop ``party``."""
    status, _bridge = await ari.req("POST", "/ari/bridges", type="mixing", bridgeId="b1",
                                   name="test")
    assert status == 200
    status, em = await ari.req("POST", "/ari/channels/externalMedia", app="assist",
                               external_host=f"127.0.0.1:{sink.port}", format=fmt,
                               channelId="em1")
    assert status == 200
    await ari.wait(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == "em1")
    assert (await ari.req("POST", "/ari/bridges/b1/addChannel", channel="em1"))[0] == 204
    sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer", exten="agent",
                                   callerid_name="Dialer", callerid_num="5000",
                                   action_id="t-1"))
    prefix = "PJSIP/cust1-" if party == "customer" else "PJSIP/agent1-"
    target = None
    for _ in range(500):  # found like a client would, from AMI or a subscribeAll socket
        target = next((c for c in sim.channels() if c.name.startswith(prefix)), None)
        if target is not None:
            break
        await asyncio.sleep(0.005)
    assert target is not None
    status, _snoop = await ari.req("POST", f"/ari/channels/{target.id}/snoop",
                                  spy=spy, whisper="none", app="assist", appArgs=party,
                                  snoopId="sn1")
    assert status == 200
    assert (await ari.req("POST", "/ari/bridges/b1/addChannel", channel="sn1"))[0] == 204
    return em  # type: ignore[no-any-return]


# --- REST ----------------------------------------------------------------------------------

@needs_captures
async def test_error_responses_match_capture() -> None:
    items = [json.loads(line) for line in
             (CAPTURES / "ari" / "errors_http.jsonl").read_text().splitlines()]
    requests = [i for i in items if i["kind"] == "request"]
    responses = [i for i in items if i["kind"] == "response"]
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        for req, resp in zip(requests, responses, strict=True):
            headers = {k: v for k, v in req["headers"] if k in ("Authorization",)}
            async with s.request(req["method"], sim.ari_url + req["target"],
                                 headers=headers) as r:
                body = await r.text()
                assert (r.status, body) == (resp["status"], resp["body"]), req["case"]
                assert r.reason == resp["reason"], req["case"]
                if r.status == 401:
                    assert r.headers["WWW-Authenticate"] == \
                        'Basic realm="Asterisk REST Interface"'
                assert r.headers["Server"] == "Asterisk/22.10.1"


@needs_captures
async def test_info_ping_and_empty_lists_match_capture_shapes() -> None:
    items = [json.loads(line) for line in
             (CAPTURES / "ari" / "asterisk_info.jsonl").read_text().splitlines()]
    cap = {i["path"]: json.loads(i["body"]) for i in items if i["kind"] == "response"}
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        _, info = await ari.req("GET", "/ari/asterisk/info")
        _, ping = await ari.req("GET", "/ari/asterisk/ping")

        def shape(obj: Any) -> Any:
            if isinstance(obj, dict):
                return {k: shape(v) for k, v in obj.items()}
            return type(obj).__name__

        assert shape(info) == shape(cap["/ari/asterisk/info"])
        assert list(ping) == list(cap["/ari/asterisk/ping"])
        assert (await ari.req("GET", "/ari/applications"))[1] == []
        assert (await ari.req("GET", "/ari/channels"))[1] == []
        async with s.get(sim.ari_url + "/ari/asterisk/ping", headers=AUTH) as r:
            text = await r.text()
            assert ": " not in text and ", " not in text  # pretty = no


async def test_websocket_registers_app_and_sends_nothing_on_connect() -> None:
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        await asyncio.sleep(0.2)
        assert ari.raw == []
        status, apps = await ari.req("GET", "/ari/applications/assist")
        assert status == 200 and apps["name"] == "assist"
        await ari.close()
        await asyncio.sleep(0.05)
        assert (await ari.req("GET", "/ari/applications/assist"))[0] == 404
        async with s.get(sim.ari_url + "/ari/events", headers=AUTH) as r:
            assert r.status == 400 and "missing param: [app]" in await r.text()


# --- media ---------------------------------------------------------------------------------

async def test_customer_snoop_spy_in_rtp_matches_recorded_facts() -> None:
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        em = await media_call(sim, ari, sink, party="customer", spy="in")
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=6)
        await asyncio.sleep(0.3)
        n_after_end = len(sink.packets)
        await asyncio.sleep(0.2)
        assert len(sink.packets) == n_after_end  # the stream stops with the snooped channel
        status, var = await ari.req("GET", "/ari/channels/em1/variable",
                                    variable="UNICASTRTP_LOCAL_PORT")
        assert status == 200 and var == {"value": em["channelvars"]["UNICASTRTP_LOCAL_PORT"]}
        await ari.req("DELETE", "/ari/channels/em1")
        await ari.req("DELETE", "/ari/bridges/b1")
        await sink.close()
        await ari.close()
        assert not sim.channels() and not sim.bridges()
    pkts = sink.packets
    src = {p[2] for p in pkts}
    assert src == {(em["channelvars"]["UNICASTRTP_LOCAL_ADDRESS"],
                    int(em["channelvars"]["UNICASTRTP_LOCAL_PORT"]))}
    hdrs = headers_of(pkts)
    assert all(h[0] == 0x80 for h in hdrs)  # v2, no padding/extension/CSRC
    assert all(h[1] == 0 for h in hdrs)  # PT 0, marker never set
    assert {len(p[1]) for p in pkts} == {172}
    assert hdrs[0][3] == 160
    assert all((b[2] - a[2]) & 0xFFFF == 1 for a, b in itertools.pairwise(hdrs))
    assert all(b[3] - a[3] == 160 for a, b in itertools.pairwise(hdrs))
    assert len({h[4] for h in hdrs}) == 1
    # ~2.5 s of call (0.3 s ringing + 2.2 s answered) at 50 packets/s
    assert 90 <= len(pkts) <= 150
    gaps = np.diff([p[0] for p in pkts])
    assert abs(float(np.median(gaps)) - 0.020) < 0.004
    # silence (0xFF) while ringing, then the customer's own voice: demo-congrats
    assert pkts[0][1][12:] == b"\xff" * 160
    pcm = np.concatenate([ulaw_decode(p[1][12:]) for p in pkts])
    assert best_corr(pcm, load_sound("demo-congrats")) > 0.99
    assert best_corr(pcm, load_sound("demo-echotest")) < 0.5


async def test_spy_out_on_customer_carries_what_the_customer_hears() -> None:
    async with Simulator(scenario(hangup_after_s=1.8)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        await media_call(sim, ari, sink, party="customer", spy="out")
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=6)
        await sink.close()
        await ari.close()
    pcm = np.concatenate([ulaw_decode(p[1][12:]) for p in sink.packets])
    assert best_corr(pcm, load_sound("demo-echotest")) > 0.99  # the agent's voice
    assert best_corr(pcm, load_sound("demo-congrats")) < 0.5


async def test_agent_snoop_slin16_big_endian_16k() -> None:
    async with Simulator(scenario(hangup_after_s=1.8)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        await media_call(sim, ari, sink, party="agent", spy="in", fmt="slin16")
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=6)
        await sink.close()
        await ari.close()
    hdrs = headers_of(sink.packets)
    assert {h[1] for h in hdrs} == {118}
    assert {len(p[1]) for p in sink.packets} == {652}
    assert hdrs[0][3] == 320 and all(b[3] - a[3] == 320 for a, b in itertools.pairwise(hdrs))
    from scipy.signal import resample_poly

    pcm16 = np.concatenate([np.frombuffer(p[1][12:], dtype=">i2") for p in sink.packets])
    pcm8 = resample_poly(pcm16.astype(np.float64), 1, 2)
    assert best_corr(pcm8, load_sound("demo-echotest")) > 0.98
    little = np.concatenate([np.frombuffer(p[1][12:], dtype="<i2") for p in sink.packets])
    assert best_corr(resample_poly(little.astype(np.float64), 1, 2),
                     load_sound("demo-echotest")) < 0.5


async def test_early_media_ringback_reaches_spy_in_snoop_then_busy() -> None:
    sc = scenario(outcome="busy", ring_s=2.0, early_media="ringback", early_media_after_s=0.4,
                  says=[])
    async with Simulator(sc) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        await media_call(sim, ari, sink, party="customer", spy="in")
        await ari.wait(lambda e: e["type"] == "ChannelDestroyed"
                       and e["channel"]["name"].startswith("PJSIP/cust1"), within=6)
        await sink.close()
        dials = [e["dialstatus"] for e in ari.events if e["type"] == "Dial"
                 and e["peer"]["name"].startswith("PJSIP/cust1")]
        states = [e for e in ari.events if e["type"] == "ChannelStateChange"
                  and e["channel"]["name"].startswith("PJSIP/cust1")]
        destroyed = next(e for e in ari.events if e["type"] == "ChannelDestroyed"
                         and e["channel"]["name"].startswith("PJSIP/cust1"))
        await ari.close()
    assert dials == ["", "PROGRESS", "BUSY"]
    assert states == []  # 183 gives no state change: the channel stays Down
    assert (destroyed["cause"], destroyed["tech_cause"], destroyed["channel"]["state"]) == \
        (17, 486, "Down")
    assert sim.originated_outcomes[0].reason == 0
    pcm = np.concatenate([ulaw_decode(p[1][12:]) for p in sink.packets]).astype(np.float64)

    def power(f: float) -> np.ndarray[Any, Any]:  # per 50 ms window
        n = len(pcm) // 400 * 400
        win = pcm[:n].reshape(-1, 400)
        ref = np.exp(-2j * np.pi * f * np.arange(400) / 8000)
        return np.abs(win @ ref) / 400  # type: ignore[no-any-return]

    tone = (power(440) > 500) & (power(480) > 500)
    on = np.flatnonzero(tone)
    # silence until the 183, then 1.6 s of ringback (183 at 0.4 s, 486 at 2.0 s), no gaps
    assert not tone[0] and len(on) > 0
    assert 28 <= len(on) <= 33 and on[-1] - on[0] + 1 == len(on)
    assert not (power(1000) > 50).any()


async def test_whisper_reaches_the_agent_only() -> None:
    async with Simulator(scenario(hangup_after_s=3.0)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        await media_call(sim, ari, sink, party="customer", spy="out")
        agent = await ari.wait(lambda e: e["type"] == "ChannelEnteredBridge"
                               and e["channel"]["name"].startswith("PJSIP/agent1"))
        status, snoop = await ari.req("POST", f"/ari/channels/{agent['channel']['id']}/snoop",
                                      spy="none", whisper="out", app="assist",
                                      appArgs="whisper", snoopId="wh1")
        assert status == 200 and snoop["name"].startswith("Snoop/")
        status, pb = await ari.req("POST", "/ari/channels/wh1/play", media="sound:hello-world",
                                   playbackId="pb1")
        assert status == 201 and pb["state"] == "queued"
        done = await ari.wait(lambda e: e["type"] == "PlaybackFinished", within=4)
        started = next(e for e in ari.events if e["type"] == "PlaybackStarted")
        assert started["playback"]["state"] == "playing" and done["playback"]["state"] == "done"
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=6)
        await sink.close()
        await ari.close()
    assert [(h.role, h.media) for h in sim.heard] == [("agent", "sound:hello-world")]
    # what the customer hears (spy=out on the customer) never carries the whisper
    pcm = np.concatenate([ulaw_decode(p[1][12:]) for p in sink.packets])
    assert best_corr(pcm, load_sound("demo-echotest")) > 0.99
    assert best_corr(pcm, load_sound("hello-world")) < 0.5


async def test_plain_subscription_gets_no_channel_destroyed_for_snoops() -> None:
    async with Simulator(scenario(hangup_after_s=0.6)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect(subscribe_all=False)
        sink = RtpSink()
        await media_call(sim, ari, sink, party="customer", spy="in")
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=5)
        await ari.req("DELETE", "/ari/channels/em1")
        await ari.wait(lambda e: e["type"] == "ChannelDestroyed"
                       and e["channel"]["id"] == "em1")
        await sink.close()
        await ari.close()
    names = {e["channel"]["name"].split("/")[0] for e in ari.events if "channel" in e}
    assert "PJSIP" not in names  # not subscribed to the call's channels
    assert not any(e["type"] == "ChannelDestroyed" and e["channel"]["id"] == "sn1"
                   for e in ari.events)
    assert all(e["application"] == "assist" and e["asterisk_id"] for e in ari.events)


async def test_every_event_and_response_parses_with_ari_models() -> None:
    models = pytest.importorskip("earpiece.agi.ari_models")
    async with Simulator(scenario(hangup_after_s=0.8)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        em = await media_call(sim, ari, sink, party="customer", spy="in")
        models.Channel.parse(em)
        _, chans = await ari.req("GET", "/ari/channels")
        for ch in chans:
            models.Channel.parse(ch)
        _, bridge = await ari.req("GET", "/ari/bridges/b1")
        models.Bridge.parse(bridge)
        models.AsteriskInfo.parse((await ari.req("GET", "/ari/asterisk/info"))[1])
        models.AsteriskPing.parse((await ari.req("GET", "/ari/asterisk/ping"))[1])
        models.Application.parse((await ari.req("GET", "/ari/applications/assist"))[1])
        _status, pb = await ari.req("POST", "/ari/channels/sn1/play", media="sound:beep")
        models.Playback.parse(pb)
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=5)
        await ari.req("DELETE", "/ari/channels/em1")
        await ari.req("DELETE", "/ari/bridges/b1")
        await asyncio.sleep(0.1)
        await sink.close()
        await ari.close()
    types = set()
    for ev in ari.events:
        parsed = models.parse_event(ev)
        assert type(parsed).__name__ == ev["type"]
        types.add(ev["type"])
    assert {"StasisStart", "StasisEnd", "ChannelCreated", "ChannelDestroyed", "Dial",
            "ChannelVarset", "ChannelEnteredBridge", "ChannelLeftBridge",
            "ChannelHangupRequest", "BridgeCreated", "BridgeDestroyed", "DeviceStateChanged",
            "PlaybackStarted", "PlaybackFinished", "ChannelDialplan",
            "ChannelStateChange"} <= types


@needs_captures
async def test_event_key_sets_match_pjsip_capture() -> None:
    cap_keys: dict[str, set[tuple[str, ...]]] = {}
    for line in (CAPTURES / "pjsip" / "ari" / "sip_spy_in.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item["kind"] == "event":
            cap_keys.setdefault(item["event"]["type"], set()).add(tuple(item["event"]))
    async with Simulator(scenario(hangup_after_s=0.8)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        await media_call(sim, ari, sink, party="customer", spy="in")
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=5)
        await ari.req("DELETE", "/ari/channels/em1")
        await ari.req("DELETE", "/ari/bridges/b1")
        await asyncio.sleep(0.1)
        await sink.close()
        await ari.close()
    ours: dict[str, set[tuple[str, ...]]] = {}
    for ev in ari.events:
        ours.setdefault(ev["type"], set()).add(tuple(ev))
    for type_, shapes in ours.items():
        if type_ in cap_keys:
            assert shapes <= cap_keys[type_], type_
    assert set(cap_keys) - set(ours) <= {"ChannelTalkingStarted", "ChannelTalkingFinished"}


# --- restart and faults --------------------------------------------------------------------

async def test_restart_ari_keeps_live_calls() -> None:
    async with Simulator(scenario(hangup_after_s=0)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer",
                                       exten="agent"))
        await ari.wait(lambda e: e["type"] == "ChannelEnteredBridge"
                       and len(e["bridge"]["channels"]) == 2)
        port = sim.ari_port
        await sim.restart_ari(delay_s=0.2)
        assert sim.ari_port == port
        await asyncio.sleep(0.05)
        assert ari.ws is not None and ari.ws.closed
        _, chans = await ari.req("GET", "/ari/channels")
        assert sorted(c["name"].split("-")[0] for c in chans) == ["PJSIP/agent1",
                                                                  "PJSIP/cust1"]
        again = Ari(sim, s)
        await again.connect()
        cust = next(c for c in chans if c["name"].startswith("PJSIP/cust1"))
        assert (await again.req("DELETE", f"/ari/channels/{cust['id']}"))[0] == 204
        await again.wait(lambda e: e["type"] == "ChannelDestroyed"
                         and e["channel"]["id"] == cust["id"])
        await ari.close()
        await again.close()
        assert not sim.channels()


async def test_malformed_websocket_frames_are_sent() -> None:
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        await sim.inject_malformed_ari(count=3)
        for _ in range(100):
            if len(ari.raw) >= 3:
                break
            await asyncio.sleep(0.01)
        await ari.close()
    from earpiece.agi.ari_models import parse_event
    from earpiece.errors import AriProtocolError

    assert len(ari.raw) == 3
    for raw in ari.raw:  # none of them is a valid ARI event
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError:
            continue
        with pytest.raises(AriProtocolError):
            parse_event(obj)


@pytest.mark.parametrize("knob", ["loss", "duplicate", "reorder", "rogue_address",
                                  "rogue_ssrc"])
async def test_rtp_faults(knob: str) -> None:
    faults = Faults(seed=7)
    async with Simulator(scenario(hangup_after_s=1.5), faults=faults) as sim, \
            aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        em = await media_call(sim, ari, sink, party="customer", spy="in")
        if knob == "loss":
            faults.rtp_loss = 0.3
        elif knob == "duplicate":
            faults.rtp_duplicate = 0.3
        elif knob == "reorder":
            faults.rtp_reorder = 0.3
        elif knob == "rogue_address":
            faults.rogue_rtp = "address"
        else:
            faults.rogue_rtp = "ssrc"
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "sn1",
                       within=5)
        await asyncio.sleep(0.05)
        await sink.close()
        await ari.close()
    legit = (em["channelvars"]["UNICASTRTP_LOCAL_ADDRESS"],
             int(em["channelvars"]["UNICASTRTP_LOCAL_PORT"]))
    good = [p for p in sink.packets if p[2] == legit]
    seqs = [struct.unpack("!H", p[1][2:4])[0] for p in good]
    ssrcs = {struct.unpack("!I", p[1][8:12])[0] for p in good}
    if knob == "loss":
        span = (seqs[-1] - seqs[0]) & 0xFFFF
        assert len(seqs) < 0.9 * (span + 1) and len(set(seqs)) == len(seqs)
    elif knob == "duplicate":
        assert len(seqs) - len(set(seqs)) > 5
    elif knob == "reorder":
        assert any(((b - a) & 0xFFFF) > 0x8000 for a, b in itertools.pairwise(seqs))
    elif knob == "rogue_address":
        rogue = [p for p in sink.packets if p[2] != legit]
        assert len(rogue) > 20 and {p[2][1] for p in rogue} != {legit[1]}
        assert len(ssrcs) == 1
    else:
        assert len(ssrcs) == 2 and {p[2] for p in sink.packets} == {legit}


@needs_captures
async def test_ari_originate_local_matches_capture() -> None:
    items = [json.loads(line) for line in
             (CAPTURES / "ari" / "originate_via_ari.jsonl").read_text().splitlines()]
    cap_events = [i["event"] for i in items if i["kind"] == "event"]
    cap_resp = json.loads(next(i for i in items if i["kind"] == "response"
                               and i["method"] == "POST")["body"])
    sc = Scenario.from_dict({"endpoints": [
        {"name": "answer", "hangup_after_s": 2.0, "says": [{"wav": "hello-world",
                                                             "at_s": 0.5}]}]})
    async with Simulator(sc) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect(subscribe_all=False)
        async with s.post(sim.ari_url + "/ari/channels", headers=AUTH, params={
                "endpoint": "Local/answer@test", "app": "assist", "appArgs": "dialed,by-ari",
                "callerId": "Assist Fixture <1000>", "timeout": "30", "channelId": "fx-ova-1",
                "otherChannelId": "fx-ova-2"},
                json={"variables": {"FX_TAG": "originate_via_ari"}}) as r:
            assert r.status == 200
            resp = await r.json()
        await ari.wait(lambda e: e["type"] == "ChannelDestroyed"
                       and e["channel"]["id"] == "fx-ova-1", within=4)
        await ari.close()
        assert not sim.channels()
    assert {k: v for k, v in resp.items() if k not in ("name", "creationtime")} == \
        {k: v for k, v in cap_resp.items() if k not in ("name", "creationtime")}
    ours = [(e["type"], e.get("channel", e.get("peer", {})).get("id")) for e in ari.events
            if e["channel" if "channel" in e else "peer"]["id"] in ("fx-ova-1", "fx-ova-2")]
    theirs = [(e["type"], e.get("channel", e.get("peer", {})).get("id")) for e in cap_events]
    # up to StasisEnd the capture's events are a subsequence of ours (we also report ;1's
    # own varsets); the teardown after it is the same set of events
    cut_o = ours.index(("StasisEnd", "fx-ova-1")) + 1
    cut_t = theirs.index(("StasisEnd", "fx-ova-1")) + 1
    it = iter(ours[:cut_o])
    assert all(ev in it for ev in theirs[:cut_t]), f"\ncapture: {theirs}\nsim:     {ours}"
    assert sorted(ours[cut_o:]) == sorted(theirs[cut_t:])
    start = next(e for e in ari.events if e["type"] == "StasisStart")
    assert start["args"] == ["dialed", "by-ari"]


async def test_drop_connections_closes_event_sockets_and_keeps_calls() -> None:
    async with Simulator(scenario(hangup_after_s=0)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer",
                                       exten="agent"))
        await ari.wait(lambda e: e["type"] == "ChannelEnteredBridge"
                       and len(e["bridge"]["channels"]) == 2)
        assert sim.drop_connections() == 1
        for _ in range(100):
            if ari.ws is not None and ari.ws.closed:
                break
            await asyncio.sleep(0.01)
        assert ari.ws is not None and ari.ws.closed
        assert len(sim.channels()) == 2
        again = Ari(sim, s)
        await again.connect()
        agent = next(c for c in sim.channels() if c.name.startswith("PJSIP/agent1"))
        status, _ = await again.req("POST", f"/ari/channels/{agent.id}/snoop",
                                    whisper="in", app="assist", snoopId="wi1")
        assert status == 200
        await again.req("POST", "/ari/channels/wi1/play", media="sound:beep")
        await again.wait(lambda e: e["type"] == "PlaybackFinished")
        assert [(h.role, h.media) for h in sim.heard] == [("customer", "sound:beep")]
        await ari.close()
        await again.close()


@needs_captures
async def test_early_media_sit_matches_capture_on_ami_and_rtp() -> None:
    sc = scenario(outcome="sit", early_media="sit", early_media_after_s=0.3, ring_s=2.6,
                  says=[])
    cap_ami = []
    for line in (CAPTURES / "pjsip" / "ami" / "early_media_sit.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item["dir"] == "rx" and item["raw"].startswith("Event:"):
            fields = dict(h.split(": ", 1) for h in item["raw"].strip().split("\r\n")
                          if ": " in h)
            chan = fields.get("Channel", fields.get("DestChannel", ""))
            if chan.startswith("PJSIP/") or fields["Event"] == "OriginateResponse":
                if fields["Event"] not in ("RTCPReceived", "RTCPSent", "VarSet"):
                    cap_ami.append((fields["Event"], fields.get("DialStatus", ""),
                                    fields.get("Cause", "")))
    async with Simulator(sc) as sim, aiohttp.ClientSession() as s:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami_port)
        writer.write(b"Action: Login\r\nUsername: assist\r\nSecret: assist\r\n\r\n")
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        await media_call(sim, ari, sink, party="customer", spy="in")
        await ari.wait(lambda e: e["type"] == "ChannelDestroyed"
                       and e["channel"]["name"].startswith("PJSIP/cust1"), within=6)
        raw = b""
        while True:
            try:
                raw += await asyncio.wait_for(reader.read(1 << 20), 0.3)
            except TimeoutError:
                break
        writer.close()
        await sink.close()
        await ari.close()
    ours = []
    for block in raw.decode().split("\r\n\r\n"):
        fields = dict(h.split(": ", 1) for h in block.split("\r\n") if ": " in h)
        chan = fields.get("Channel", fields.get("DestChannel", ""))
        if "Event" in fields and (chan.startswith("PJSIP/")
                                  or fields["Event"] == "OriginateResponse"):
            if fields["Event"] not in ("RTCPReceived", "RTCPSent", "VarSet"):
                ours.append((fields["Event"], fields.get("DialStatus", ""),
                             fields.get("Cause", "")))
    assert ours == cap_ami
    pcm = np.concatenate([ulaw_decode(p[1][12:]) for p in sink.packets])
    ann = load_sound("ss-noservice")
    assert best_corr(pcm, ann) > 0.99
    t = np.arange(len(pcm)) / 8000.0
    for f in (913.8, 1370.6, 1776.7):
        assert np.abs(np.dot(pcm.astype(np.float64), np.exp(-2j * np.pi * f * t))) > 1e6


async def test_bridge_resources_and_misc_channel_operations() -> None:
    async with Simulator(scenario(hangup_after_s=0)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect()
        sink = RtpSink()
        await media_call(sim, ari, sink, party="customer", spy="in")
        status, bridges = await ari.req("GET", "/ari/bridges")
        assert status == 200 and [b["id"] for b in bridges if b["id"] == "b1"] == ["b1"]
        _, b1 = await ari.req("GET", "/ari/bridges/b1")
        assert sorted(b1["channels"]) == ["em1", "sn1"]
        cust = next(c for c in sim.channels() if c.name.startswith("PJSIP/cust1"))
        # a channel outside Stasis cannot be bridged by the app
        assert (await ari.req("POST", "/ari/bridges/b1/addChannel", channel=cust.id))[0] == 422
        assert (await ari.req("POST", "/ari/bridges/b1/removeChannel",
                              channel=cust.id))[0] == 422
        assert (await ari.req("POST", "/ari/bridges/b1/removeChannel", channel="sn1"))[0] == 204
        await ari.wait(lambda e: e["type"] == "ChannelLeftBridge" and e["channel"]["id"] == "sn1")
        n = len(sink.packets)
        await asyncio.sleep(0.2)
        assert len(sink.packets) - n <= 1  # no bridge peer any more: the stream pauses
        assert (await ari.req("POST", f"/ari/channels/{cust.id}/dtmf", dtmf="12#"))[0] == 204
        assert (await ari.req("POST", f"/ari/channels/{cust.id}/answer"))[0] == 204
        status, _ = await ari.req("POST", "/ari/channels/sn1/play", media="sound:demo-thanks",
                                  playbackId="pb-x")
        assert status == 201
        await ari.wait(lambda e: e["type"] == "PlaybackStarted")
        status, live = await ari.req("GET", "/ari/playbacks/pb-x")
        assert status == 200 and live["state"] == "playing"
        assert (await ari.req("DELETE", "/ari/bridges/b1"))[0] == 204
        assert (await ari.req("GET", "/ari/bridges/b1"))[0] == 404
        await ari.wait(lambda e: e["type"] == "BridgeDestroyed")
        assert (await ari.req("DELETE", f"/ari/channels/{cust.id}"))[0] == 204
        await ari.wait(lambda e: e["type"] == "ChannelDestroyed"
                       and e["channel"]["id"] == cust.id)
        # the snoop is gone with its target: DELETE gives 404 as recorded
        assert (await ari.req("DELETE", "/ari/channels/sn1"))[0] == 404
        assert (await ari.req("DELETE", "/ari/channels/em1"))[0] == 204
        await sink.close()
        await ari.close()
        assert not sim.channels() and not sim.bridges()


@needs_captures
async def test_plain_subscription_event_sets_match_captures() -> None:
    def load(name: str) -> list[dict[str, Any]]:
        return [json.loads(line)["event"] for line in
                (CAPTURES / "ari" / f"{name}.jsonl").read_text().splitlines()
                if json.loads(line)["kind"] == "event"]

    cap_em = [(e["type"], e.get("dialstatus", e.get("variable", ""))) for e in
              load("external_media_ulaw")
              if e.get("channel", e.get("peer", {})).get("id") == "fx-ulaw-em"]
    cap_snoop = [e["type"] for e in load("snoop_spy_in")
                 if e.get("channel", {}).get("id") == "fx-snoop_spy_in-snoop"]
    async with Simulator(scenario(hangup_after_s=0)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect(subscribe_all=False)
        sink = RtpSink()
        await ari.req("POST", "/ari/bridges", type="mixing", bridgeId="fx-b")
        await ari.req("POST", "/ari/channels/externalMedia", app="assist",
                      external_host=f"127.0.0.1:{sink.port}", format="ulaw",
                      channelId="fx-ulaw-em")
        await ari.wait(lambda e: e["type"] == "StasisStart")
        assert (await ari.req("POST", "/ari/bridges/fx-b/addChannel",
                              channel="fx-ulaw-em"))[0] == 204
        sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer",
                                       exten="agent"))
        await until_channel(sim, "PJSIP/cust1-")
        cust = next(c for c in sim.channels() if c.name.startswith("PJSIP/cust1-"))
        await ari.req("POST", f"/ari/channels/{cust.id}/snoop", spy="in", app="assist",
                      appArgs="x", snoopId="fx-sn")
        await ari.wait(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == "fx-sn")
        await ari.req("DELETE", "/ari/channels/fx-sn")
        await ari.wait(lambda e: e["type"] == "StasisEnd" and e["channel"]["id"] == "fx-sn")
        await ari.req("DELETE", "/ari/channels/fx-ulaw-em")
        await ari.wait(lambda e: e["type"] == "ChannelDestroyed")
        await ari.req("DELETE", f"/ari/channels/{cust.id}")
        await asyncio.sleep(0.1)
        await sink.close()
        await ari.close()
    types = [e["type"] for e in ari.events]
    assert "BridgeCreated" not in types and "DeviceStateChanged" not in types
    ours_em = [(e["type"], e.get("dialstatus", e.get("variable", ""))) for e in ari.events
               if e.get("channel", e.get("peer", {})).get("id") == "fx-ulaw-em"]
    # up to StasisStart exactly as recorded; then the teardown (the capture also had a
    # second bridge member, hence its BRIDGEPEER VarSets)
    cut = cap_em.index(("StasisStart", ""))
    assert ours_em[:cut + 1] == cap_em[:cut + 1]
    assert [t for t, _ in ours_em if t != "ChannelVarset"][-4:] == \
        [t for t, _ in cap_em if t != "ChannelVarset"][-4:]
    ours_snoop = [e["type"] for e in ari.events if e.get("channel", {}).get("id") == "fx-sn"]
    assert ours_snoop == cap_snoop == ["StasisStart", "ChannelHangupRequest", "StasisEnd"]
    assert not any(e.get("channel", {}).get("name", "").startswith("PJSIP/")
                   for e in ari.events)


async def until_channel(sim: Simulator, prefix: str) -> None:
    for _ in range(500):
        if any(c.name.startswith(prefix) for c in sim.channels()):
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"no channel {prefix}")


async def test_ari_originate_pjsip_enters_stasis_on_answer() -> None:
    async with Simulator(scenario(hangup_after_s=0.3)) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect(subscribe_all=False)
        status, ch = await ari.req("POST", "/ari/channels", endpoint="PJSIP/cust1",
                                   app="assist", appArgs="outbound,42", channelId="fx-out",
                                   callerId="Dialer <5000>")
        assert status == 200 and (ch["id"], ch["state"]) == ("fx-out", "Down")
        assert ch["name"].startswith("PJSIP/cust1-")
        start = await ari.wait(lambda e: e["type"] == "StasisStart")
        assert start["args"] == ["outbound", "42"] and start["channel"]["state"] == "Up"
        await ari.wait(lambda e: e["type"] == "ChannelDestroyed"
                       and e["channel"]["id"] == "fx-out")
        status, _ = await ari.req("POST", "/ari/channels", endpoint="PJSIP/nobody",
                                  app="assist")
        assert status >= 400
        await ari.close()
    types = [e["type"] for e in ari.events]
    assert "ChannelCreated" not in types
    assert types.index("StasisStart") < types.index("StasisEnd") < \
        types.index("ChannelDestroyed")
    dials = [e["dialstatus"] for e in ari.events if e["type"] == "Dial"]
    assert dials == ["", "RINGING", "ANSWER"]  # as for the recorded Local originate
    assert not sim.channels()


@needs_captures
async def test_websocket_upgrade_head_is_as_recorded() -> None:
    import hashlib

    items = [json.loads(line) for line in
             (CAPTURES / "ari" / "errors_websocket.jsonl").read_text().splitlines()]
    recorded = next(i["raw"] for i in items if i["kind"] == "response" and i["status"] == 101)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    accept = base64.b64encode(hashlib.sha1(
        (key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    async with Simulator(scenario()) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.ari_port)
        writer.write(("GET /ari/events?app=assist HTTP/1.1\r\nHost: x\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                      f"Authorization: {AUTH['Authorization']}\r\n\r\n").encode())
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)).decode()
        writer.close()

    def without_accept(text: str) -> str:
        return "\r\n".join(line for line in text.split("\r\n")
                           if not line.startswith("Sec-WebSocket-Accept"))

    assert f"Sec-WebSocket-Accept: {accept}\r\n" in head
    assert without_accept(head) == without_accept(recorded)


@needs_captures
async def test_websocket_handshake_errors_as_recorded() -> None:
    items = [json.loads(line) for line in
             (CAPTURES / "ari" / "errors_websocket.jsonl").read_text().splitlines()]
    pairs = [(q["raw"], r["raw"]) for q, r in zip(
        [i for i in items if i["kind"] == "request"],
        [i for i in items if i["kind"] == "response"], strict=True) if q.get("raw")]

    def normal(raw: str) -> list[tuple[str, list[str], str]]:
        """Each response: status line, header lines (no Date/Accept, any order), body."""
        import re

        out = []
        for part in re.split(r"(?=HTTP/1\.1 \d{3} )", raw):
            if not part:
                continue
            head, _, body = part.partition("\r\n\r\n")
            status, *headers = head.split("\r\n")
            keep = sorted(h.lower() for h in headers
                          if not h.lower().startswith(("date:", "sec-websocket-accept:")))
            out.append((status, keep, body))
        return out

    async with Simulator(scenario()) as sim:
        for request, recorded in pairs:
            reader, writer = await asyncio.open_connection("127.0.0.1", sim.ari_port)
            writer.write(request.replace("127.0.0.1:8088", f"127.0.0.1:{sim.ari_port}")
                         .encode())
            got = b""
            for _ in range(10):
                try:
                    got += await asyncio.wait_for(reader.read(4096), 0.1)
                except TimeoutError:
                    continue
            assert not reader.at_eof()  # the connection is left open, as recorded
            writer.close()
            ours = got.decode("latin-1")
            if recorded.startswith("HTTP/1.1 101"):
                ours = ours.split("\r\n\r\n")[0] + "\r\n\r\n"
            assert normal(ours) == normal(recorded)


async def test_snoop_direction_on_a_local_pair_as_recorded() -> None:
    """captures/rtp/snoop_direction: A = ;1 plays demo-congrats on itself, B = ;2 plays
    demo-echotest; spy=in on A carries B's prompt, spy=out on A carries A's own."""
    sc = Scenario.from_dict({"endpoints": [
        {"name": "pair", "hangup_after_s": 0,
         "says": [{"wav": "demo-echotest", "at_s": 0.3}]}]})
    async with Simulator(sc) as sim, aiohttp.ClientSession() as s:
        ari = Ari(sim, s)
        await ari.connect(subscribe_all=False)
        await ari.req("POST", "/ari/channels", endpoint="Local/pair@test", app="assist",
                      channelId="A", otherChannelId="B")
        await ari.wait(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == "A")
        sinks = {}
        for spy in ("in", "out"):
            sinks[spy] = RtpSink()
            await ari.req("POST", "/ari/bridges", type="mixing", bridgeId=f"b-{spy}")
            await ari.req("POST", "/ari/channels/externalMedia", app="assist",
                          external_host=f"127.0.0.1:{sinks[spy].port}", format="ulaw",
                          channelId=f"em-{spy}")
            await ari.wait(lambda e, i=f"em-{spy}": e["type"] == "StasisStart"
                           and e["channel"]["id"] == i)
            await ari.req("POST", "/ari/channels/A/snoop", spy=spy, app="assist",
                          snoopId=f"sn-{spy}")
            await ari.req("POST", f"/ari/bridges/b-{spy}/addChannel",
                          channel=f"em-{spy},sn-{spy}")
        await ari.req("POST", "/ari/channels/A/play", media="sound:demo-congrats")
        await asyncio.sleep(2.0)
        await ari.req("DELETE", "/ari/channels/A")
        for spy in ("in", "out"):
            await ari.req("DELETE", f"/ari/channels/em-{spy}")
            await ari.req("DELETE", f"/ari/bridges/b-{spy}")
            await sinks[spy].close()
        await ari.close()
        assert not sim.channels() and not sim.bridges()
    pcm = {spy: np.concatenate([ulaw_decode(p[1][12:]) for p in sink.packets])
           for spy, sink in sinks.items()}
    congrats, echotest = load_sound("demo-congrats"), load_sound("demo-echotest")
    assert best_corr(pcm["in"], echotest) > 0.99 and best_corr(pcm["in"], congrats) < 0.5
    assert best_corr(pcm["out"], congrats) > 0.99 and best_corr(pcm["out"], echotest) < 0.5
