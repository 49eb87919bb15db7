"""Media fork: bus events -> ARI snoop(spy=in) + bridge + externalMedia per party -> RTP or
AudioSocket -> per-party frames and speech segments; teardown on hangup, on failure and on
shutdown. A fake ARI implements the Protocol and plays each party's prompt over real UDP/TCP;
the end-to-end test at the bottom uses the simulator and the real ARI client."""

from __future__ import annotations

import asyncio
import glob
import socket
import struct
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earpiece.bus import EventBus
from earpiece.errors import PbxConnectionError, PbxError
from earpiece.events import (
    CallEnded,
    CallStarted,
    CallState,
    CallStateChanged,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
    SpeechSegment,
)
from earpiece.media.audiosocket import AudioSocketFrame, AudioSocketServer, Kind
from earpiece.media.fork import MediaFork, expected_source
from earpiece.media.frames import AudioFrame, FrameHub
from earpiece.media.g711 import encode_ulaw
from earpiece.media.receiver import RtpReceiver
from earpiece.media.recorder import Recorder
from earpiece.media.settings import MediaSettings, RecordingSettings
from earpiece.media.xcorr import best_match, read_wav_int16

SOUNDS = Path("/usr/share/asterisk/sounds/en")
pytestmark = pytest.mark.skipif(not (SOUNDS / "demo-congrats.wav").exists(),
                                reason="asterisk-core-sounds-en-wav missing")
X = "demo-congrats"  # what the customer says
Y = "demo-echotest"  # what the agent says


def prompt(name: str) -> np.ndarray:
    return read_wav_int16(str(SOUNDS / f"{name}.wav"))[0]


@dataclass
class Obj:
    id: str
    name: str = ""
    channelvars: dict[str, str] | None = None


@dataclass
class FakeAri:
    """Implements AriMediaClient; 'plays' the snooped party's prompt to the externalMedia
    destination once both channels are in the bridge."""

    says: dict[str, str]  # snooped channel id -> prompt
    fail_on: str = ""
    down: bool = False  # ARI unreachable: every request raises PbxConnectionError
    gone: set[str] = field(default_factory=set)  # party channels hung up (not listed)
    seconds: float = 3.0
    channels: dict[str, dict[str, Any]] = field(default_factory=dict)
    bridges: dict[str, list[str]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    senders: list[asyncio.Task[None]] = field(default_factory=list)
    socks: list[socket.socket] = field(default_factory=list)

    def _maybe_fail(self, op: str) -> None:
        self.calls.append(op)
        if self.down:  # what AriClient raises when nothing listens
            raise PbxConnectionError(f"ARI {op}: Connection refused") from (
                ConnectionRefusedError(111, "Connection refused"))
        if op == self.fail_on:
            raise PbxError(f"injected failure in {op}")

    async def create_bridge(self, *, type: str = "mixing", bridge_id: str | None = None,
                            name: str = "") -> Obj:
        self._maybe_fail("create_bridge")
        assert type == "mixing" and bridge_id
        self.bridges[bridge_id] = []
        return Obj(bridge_id)

    async def external_media(self, *, app: str, external_host: str, format: str,
                             channel_id: str | None = None, encapsulation: str = "rtp",
                             transport: str = "udp", connection_type: str | None = None,
                             direction: str = "both", data: str | None = None) -> Obj:
        self._maybe_fail("external_media")
        assert channel_id
        host, port = external_host.rsplit(":", 1)
        info: dict[str, Any] = {"kind": "em", "dest": (host, int(port)), "format": format,
                                "encapsulation": encapsulation, "data": data}
        vars_: dict[str, str] | None = None
        if encapsulation == "rtp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            self.socks.append(s)
            info["sock"] = s
            vars_ = {"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1",
                     "UNICASTRTP_LOCAL_PORT": str(s.getsockname()[1])}
        self.channels[channel_id] = info
        return Obj(channel_id, f"UnicastRTP/{external_host}-0x1", vars_)

    async def snoop_channel(self, channel_id: str, *, app: str, spy: str = "none",
                            whisper: str = "none", app_args: str = "",
                            snoop_id: str | None = None) -> Obj:
        self._maybe_fail("snoop_channel")
        assert spy == "in" and whisper == "none" and snoop_id
        self.channels[snoop_id] = {"kind": "snoop", "target": channel_id}
        return Obj(snoop_id, f"Snoop/{channel_id}-00000001")

    async def add_channel_to_bridge(self, bridge_id: str, channel_id: str) -> None:
        self._maybe_fail("add_channel_to_bridge")
        members = self.bridges[bridge_id]
        members.append(channel_id)
        kinds = {self.channels[m]["kind"]: self.channels[m] for m in members}
        if set(kinds) == {"em", "snoop"}:
            said = self.says[kinds["snoop"]["target"]]
            self.senders.append(asyncio.create_task(self._play(kinds["em"], said)))

    async def hangup_channel(self, channel_id: str, reason: str = "normal") -> None:
        self._maybe_fail("hangup_channel")
        if self.channels.pop(channel_id, None) is None:
            err = PbxError("404 Channel not found")
            err.status = 404  # type: ignore[attr-defined]
            raise err
        for members in self.bridges.values():
            if channel_id in members:
                members.remove(channel_id)

    async def destroy_bridge(self, bridge_id: str) -> None:
        self._maybe_fail("destroy_bridge")
        if self.bridges.pop(bridge_id, None) is None:
            err = PbxError("404 Bridge not found")
            err.status = 404  # type: ignore[attr-defined]
            raise err

    async def list_channels(self) -> list[Obj]:
        self._maybe_fail("list_channels")
        return [Obj(c) for c in [*self.says, *self.channels] if c not in self.gone]

    async def list_bridges(self) -> list[Obj]:
        self._maybe_fail("list_bridges")
        return [Obj(b) for b in self.bridges]

    async def _play(self, em: dict[str, Any], name: str) -> None:
        pcm = prompt(name)[: int(8000 * self.seconds)]
        if em["encapsulation"] == "rtp":
            enc = encode_ulaw(pcm)
            s: socket.socket = em["sock"]
            for k in range(len(enc) // 160):
                hdr = struct.pack("!BBHII", 0x80, 0, (1000 + k) & 0xFFFF, 160 * (k + 1), 0xABC)
                s.sendto(hdr + enc[160 * k : 160 * (k + 1)], em["dest"])
                if k % 10 == 9:
                    await asyncio.sleep(0.01)
        else:
            import uuid

            _, w = await asyncio.open_connection(*em["dest"])
            w.write(bytes(AudioSocketFrame.for_uuid(uuid.UUID(em["data"]))))
            for k in range(len(pcm) // 160):
                w.write(bytes(AudioSocketFrame(Kind.SLIN, pcm[160 * k : 160 * (k + 1)]
                                               .astype("<i2").tobytes())))
                if k % 10 == 9:
                    await w.drain()
                    await asyncio.sleep(0.01)
            w.write(bytes(AudioSocketFrame(Kind.HANGUP)))
            await w.drain()
            w.close()

    def live(self) -> list[str]:
        return list(self.channels) + list(self.bridges)

    def close(self) -> None:
        for t in self.senders:
            t.cancel()
        for s in self.socks:
            s.close()


def call_events(bus: EventBus, call_id: str = "call-1") -> None:
    bus.publish(ChannelJoined(call_id=call_id, channel="PJSIP/cust1-00000001",
                              uniqueid="chan-cust", role=ChannelRole.CUSTOMER))
    bus.publish(ChannelJoined(call_id=call_id, channel="Local/x@y-0001;1", uniqueid="chan-loc",
                              role=ChannelRole.LOCAL_PEER))
    bus.publish(CallStateChanged(call_id=call_id, old=CallState.RINGING,
                                 new=CallState.ANSWERED, source="test"))
    # the agent joins after the answer, as with Dial(PJSIP/agent1)
    bus.publish(ChannelJoined(call_id=call_id, channel="PJSIP/agent1-00000002",
                              uniqueid="chan-agent", role=ChannelRole.AGENT))


async def wait_for(cond: Any, within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if cond():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_rtp_fork_separates_parties_records_and_tears_down(tmp_path: Path) -> None:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0)
    receiver = RtpReceiver(settings, hub)
    recorder = Recorder(RecordingSettings(directory=tmp_path, stereo=True))
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y})
    fork = MediaFork(bus=bus, ari=ari, settings=settings, app="earpiece", hub=hub,
                     receiver=receiver, recorder=recorder)
    got: dict[str, list[AudioFrame]] = {"customer": [], "agent": []}
    hub.subscribe(lambda f: got[f.party].append(f))
    at16: list[AudioFrame] = []
    hub.subscribe(at16.append, rate=16000, party="agent")
    segments: list[SpeechSegment] = []
    bus.subscribe(SpeechSegment, segments.append)
    await fork.start()
    try:
        call_events(bus)
        await wait_for(lambda: len(got["customer"]) >= 150 and len(got["agent"]) >= 150)
        legs = {leg.party: leg for leg in fork.legs()}
        assert set(legs) == {"customer", "agent"}
        assert legs["customer"].channel_id == "chan-cust"
        assert legs["agent"].source == ("127.0.0.1", ari.socks[1].getsockname()[1])
        assert len(ari.live()) == 6  # 2 x (bridge, snoop, externalMedia)
        cust = np.concatenate([f.pcm for f in got["customer"]])
        agent = np.concatenate([f.pcm for f in got["agent"]])
        assert best_match(cust, prompt(X)).corr > 0.95
        assert best_match(cust, prompt(Y)).corr < 0.5
        assert best_match(agent, prompt(Y)).corr > 0.95
        assert best_match(agent, prompt(X)).corr < 0.5
        assert {f.call_id for f in got["customer"]} == {"call-1"}
        assert at16 and all(f.rate == 16000 and len(f.pcm) == 320 for f in at16)
        bus.publish(CallEnded(call_id="call-1", outcome=CallState.ANSWERED, hangup_cause=16))
        await wait_for(lambda: not fork.legs() and not ari.live())
        await wait_for(lambda: {s.party for s in segments} == {"customer", "agent"})
    finally:
        await fork.stop()
        ari.close()
    assert receiver.ports == {} and receiver._tick_task is None  # transports closed too
    assert fork.stats.attached == 2 and fork.stats.teardown_errors == 0
    for seg in segments:
        assert seg.call_id == "call-1" and 0 <= seg.start_s < seg.end_s <= 3.1
    folder = tmp_path / time.strftime("%Y-%m-%d", time.gmtime()) / "call-1"
    with wave.open(str(folder / "stereo.wav")) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        st = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
    assert best_match(st[:, 0], prompt(X)).corr > 0.95  # left = customer
    assert best_match(st[:, 1], prompt(Y)).corr > 0.95  # right = agent
    for party in ("customer", "agent"):
        with wave.open(str(folder / f"{party}.wav")) as w:
            assert w.getnframes() >= 150 * 160


async def test_party_hangup_detaches_only_that_party() -> None:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0)
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, seconds=0.5)
    fork = MediaFork(bus=bus, ari=ari, settings=settings, app="earpiece", hub=hub,
                     receiver=RtpReceiver(settings, hub))
    await fork.start()
    try:
        call_events(bus)
        await wait_for(lambda: len(fork.legs()) == 2)
        bus.publish(ChannelLeft(call_id="call-1", channel="PJSIP/agent1-00000002",
                                uniqueid="chan-agent", cause=16))
        await wait_for(lambda: len(fork.legs()) == 1)
        assert fork.legs()[0].party == "customer" and len(ari.live()) == 3
    finally:
        await fork.stop()  # service shutdown: the rest goes too
        ari.close()
    assert ari.live() == []


@pytest.mark.parametrize("fail_on", ["create_bridge", "external_media", "snoop_channel",
                                     "add_channel_to_bridge"])
async def test_failed_attach_leaks_nothing(fail_on: str) -> None:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0)
    receiver = RtpReceiver(settings, hub)
    ari = FakeAri(says={"chan-cust": X}, fail_on=fail_on)
    fork = MediaFork(bus=bus, ari=ari, settings=settings, app="earpiece", hub=hub,
                     receiver=receiver)
    await fork.start()
    try:
        leg = await fork.attach("call-9", "customer", "chan-cust")
        assert leg is None
        assert ari.live() == [] and receiver.ports == {}
        assert fork.stats.attach_failed == 1 and fork.stats.teardown_errors == 0
    finally:
        await fork.stop()
        ari.close()


async def test_audiosocket_transport() -> None:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(transport="audiosocket")
    srv = AudioSocketServer(hub)
    await srv.start()
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, seconds=2.0)
    fork = MediaFork(bus=bus, ari=ari, settings=settings, app="earpiece", hub=hub,
                     audiosocket=srv)
    got: dict[str, list[np.ndarray]] = {"customer": [], "agent": []}
    hub.subscribe(lambda f: got[f.party].append(f.pcm))
    await fork.start()
    try:
        call_events(bus)
        await wait_for(lambda: len(got["customer"]) >= 100 and len(got["agent"]) >= 100)
        ems = [c for c in ari.channels.values() if c["kind"] == "em"]
        assert {(c["encapsulation"], c["format"]) for c in ems} == {("audiosocket", "slin")}
        assert best_match(np.concatenate(got["customer"]), prompt(X)).corr > 0.99
        assert best_match(np.concatenate(got["agent"]), prompt(Y)).corr > 0.99
    finally:
        await fork.stop()
        ari.close()
        await srv.close()
    assert ari.live() == [] and srv._by_uuid == {}


def test_expected_source_from_channelvars() -> None:
    assert expected_source({"UNICASTRTP_LOCAL_ADDRESS": "127.0.0.1",
                            "UNICASTRTP_LOCAL_PORT": "16570"}) == ("127.0.0.1", 16570)
    assert expected_source(None) is None
    assert expected_source({"UNICASTRTP_LOCAL_PORT": "x"}) is None


# --- end to end: the simulator and the real ARI client --------------------------------------

async def test_end_to_end_with_simulator_and_ari_client() -> None:
    sim_mod = pytest.importorskip("earpiece.sim.simulator")
    from earpiece.agi.ari_client import AriClient
    from earpiece.agi.settings import AriSettings
    from earpiece.secret import Secret
    from earpiece.sim.engine import OriginateRequest
    from earpiece.sim.scenario import Scenario

    scenario = Scenario.from_dict({
        "endpoints": [
            {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.1,
             "says": [{"wav": Y, "at_s": 0.3}]},
            {"name": "cust1", "callerid_name": "Customer One", "ring_s": 0.3,
             "hangup_after_s": 4.5, "says": [{"wav": X, "at_s": 0.2}]},
        ],
        "dialplan": {"agents": ["agent1"]},
    })
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0)
    got: dict[str, list[np.ndarray]] = {"customer": [], "agent": []}
    hub.subscribe(lambda f: got[f.party].append(f.pcm))
    async with sim_mod.Simulator(scenario) as sim:
        ari = AriClient(AriSettings(url=sim.ari_url, password=Secret("assist"), app="assist"))
        await ari.start()
        await ari.wait_connected(5)
        fork = MediaFork(bus=bus, ari=ari, settings=settings, app="assist", hub=hub,
                         receiver=RtpReceiver(settings, hub))
        await fork.start()
        try:
            sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer",
                                           exten="agent", callerid_name="Dialer",
                                           callerid_num="5000", action_id="e2e-1"))
            chans: dict[str, Any] = {}
            for _ in range(500):
                for c in sim.channels():
                    for prefix, party in (("PJSIP/cust1-", "customer"),
                                          ("PJSIP/agent1-", "agent")):
                        if c.name.startswith(prefix):
                            chans[party] = c
                if len(chans) == 2:
                    break
                await asyncio.sleep(0.01)
            assert set(chans) == {"customer", "agent"}
            # what the call registry would publish
            for party, c in chans.items():
                bus.publish(ChannelJoined(call_id="e2e", channel=c.name, uniqueid=c.id,
                                          role=ChannelRole(party)))
            bus.publish(CallStateChanged(call_id="e2e", old=CallState.RINGING,
                                         new=CallState.ANSWERED, source="test"))
            await wait_for(lambda: len(fork.legs()) == 2, 5)
            await wait_for(lambda: not any(c.name.startswith("PJSIP/") for c in sim.channels()),
                           15)
            bus.publish(CallEnded(call_id="e2e", outcome=CallState.ANSWERED, hangup_cause=16))
            await wait_for(lambda: not fork.legs(), 5)
        finally:
            await fork.stop()
            await ari.close()
        leftovers = [c.name for c in sim.channels()] + [b.id for b in sim.bridges()]
    assert leftovers == []  # no leaked snoop, externalMedia channel or bridge
    cust = np.concatenate(got["customer"])
    agent = np.concatenate(got["agent"])
    assert best_match(cust, prompt(X)).corr > 0.95
    assert best_match(cust, prompt(Y)).corr < 0.5
    assert best_match(agent, prompt(Y)).corr > 0.95
    assert best_match(agent, prompt(X)).corr < 0.5


async def test_events_after_call_end_attach_nothing() -> None:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0)
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, seconds=0.2)
    fork = MediaFork(bus=bus, ari=ari, settings=settings, app="earpiece", hub=hub,
                     receiver=RtpReceiver(settings, hub))
    await fork.start()
    try:
        bus.publish(CallEnded(call_id="late", outcome=CallState.ANSWERED))
        call_events(bus, "late")  # stale events arriving after the end
        assert await fork.attach("late", "customer", "chan-cust") is None
        await asyncio.sleep(0.05)
        assert fork.legs() == [] and ari.live() == [] and ari.calls == []
        assert fork._calls == {}  # stale events leave no state behind
    finally:
        await fork.stop()
        ari.close()


async def test_agent_transfer_follows_the_new_channel() -> None:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0)
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y, "chan-agent2": X}, seconds=0.3)
    fork = MediaFork(bus=bus, ari=ari, settings=settings, app="earpiece", hub=hub,
                     receiver=RtpReceiver(settings, hub))
    await fork.start()
    try:
        call_events(bus)
        await wait_for(lambda: len(fork.legs()) == 2)
        bus.publish(ChannelJoined(call_id="call-1", channel="PJSIP/agent2-00000003",
                                  uniqueid="chan-agent2", role=ChannelRole.AGENT))
        await wait_for(lambda: any(leg.channel_id == "chan-agent2" for leg in fork.legs()))
        # the old agent channel's ChannelLeft must not tear down the new leg
        bus.publish(ChannelLeft(call_id="call-1", channel="PJSIP/agent1-00000002",
                                uniqueid="chan-agent", cause=16))
        await asyncio.sleep(0.1)
        assert sorted(leg.channel_id for leg in fork.legs()) == ["chan-agent2", "chan-cust"]
        assert len(ari.live()) == 6
        assert fork._calls.keys() == {"call-1"}
    finally:
        await fork.stop()
        ari.close()
    assert ari.live() == [] and fork._calls == {}


# --- early media, ARI outages ----------------------------------------------------------------

def make_fork(ari: FakeAri, **kw: Any) -> tuple[EventBus, FrameHub, MediaFork]:
    bus = EventBus()
    hub = FrameHub(bus=bus)
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0,
                             early_media=kw.pop("early_media", True))
    fork = MediaFork(bus=bus, ari=ari, settings=settings, app="earpiece", hub=hub,
                     receiver=RtpReceiver(settings, hub), **kw)
    return bus, hub, fork


def outbound_start(bus: EventBus, call_id: str = "call-1", direction: str = "outbound") -> None:
    bus.publish(CallStarted(call_id=call_id, direction=direction,  # type: ignore[arg-type]
                            channel="PJSIP/cust1-00000001"))
    bus.publish(ChannelJoined(call_id=call_id, channel="PJSIP/cust1-00000001",
                              uniqueid="chan-cust", role=ChannelRole.CUSTOMER))


async def test_outbound_customer_is_forked_before_the_answer(tmp_path: Path) -> None:
    """Early media: the customer's snoop exists from the channel's creation; a call that is
    never answered is torn down on its hangup (and not recorded)."""
    ari = FakeAri(says={"chan-cust": X}, seconds=1.0)
    bus, hub, fork = make_fork(ari, recorder=Recorder(RecordingSettings(directory=tmp_path)))
    frames: list[AudioFrame] = []
    hub.subscribe(frames.append, rate=8000, party="customer")
    await fork.start()
    try:
        outbound_start(bus)
        await wait_for(lambda: len(frames) >= 40)  # audio flows with no answer at all
        assert [leg.party for leg in fork.legs()] == ["customer"]
        assert fork.stats.early_attached == 1 and len(ari.live()) == 3
        bus.publish(ChannelLeft(call_id="call-1", channel="PJSIP/cust1-00000001",
                                uniqueid="chan-cust", cause=17))
        bus.publish(CallEnded(call_id="call-1", outcome=CallState.BUSY, hangup_cause=17))
        await wait_for(lambda: not fork.legs() and not ari.live() and not fork._calls)
    finally:
        await fork.stop()
        ari.close()
    assert best_match(np.concatenate([f.pcm for f in frames]), prompt(X)).corr > 0.95
    assert fork.stats.teardown_errors == 0 and fork.receiver is not None
    assert fork.receiver.ports == {}
    assert glob.glob(f"{tmp_path}/**/*.wav", recursive=True) == []  # unanswered: no recording


async def test_early_fork_goes_on_after_the_answer_and_the_agent_joins(tmp_path: Path) -> None:
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, seconds=0.5)
    bus, hub, fork = make_fork(ari, recorder=Recorder(RecordingSettings(directory=tmp_path)))
    early_frames: list[AudioFrame] = []
    unsubscribe = hub.subscribe(early_frames.append, party="customer")
    await fork.start()
    try:
        outbound_start(bus)
        await wait_for(lambda: len(fork.legs()) == 1)
        early = fork.legs()[0]
        await wait_for(lambda: len(early_frames) >= 10)
        unsubscribe()
        call_events(bus)  # the same joins again, the answer, then the agent
        await wait_for(lambda: len(fork.legs()) == 2)
        await asyncio.sleep(0.05)
        legs = {leg.party: leg for leg in fork.legs()}
        assert legs["customer"] is early  # not forked twice
        assert fork.stats.attached == 2 and fork.stats.early_attached == 1
        assert len(ari.live()) == 6
        await asyncio.sleep(0.6)
        bus.publish(CallEnded(call_id="call-1", outcome=CallState.ANSWERED))
        await wait_for(lambda: not fork.legs())
    finally:
        await fork.stop()
        ari.close()
    assert ari.live() == []
    # recorded from the answer on; the early media before it is silence on the same timeline
    folder = tmp_path / time.strftime("%Y-%m-%d", time.gmtime()) / "call-1"
    with wave.open(str(folder / "customer.wav")) as w:
        cust = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    assert len(cust) >= 160 * 25
    assert not cust[: 160 * 10].any()  # the early frames were not recorded
    assert (folder / "stereo.wav").exists()


@pytest.mark.parametrize(("early_media", "direction"), [(False, "outbound"), (True, "inbound")])
async def test_no_fork_before_the_answer(early_media: bool, direction: str) -> None:
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, seconds=0.2)
    bus, _, fork = make_fork(ari, early_media=early_media)
    await fork.start()
    try:
        outbound_start(bus, direction=direction)
        await asyncio.sleep(0.1)
        assert fork.legs() == [] and ari.calls == []
        bus.publish(CallStateChanged(call_id="call-1", old=CallState.RINGING,
                                     new=CallState.ANSWERED, source="test"))
        await wait_for(lambda: len(fork.legs()) == 1)
        assert fork.stats.early_attached == 0
    finally:
        await fork.stop()
        ari.close()


async def test_attach_is_retried_while_ari_is_down() -> None:
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, seconds=0.5, down=True)
    bus, hub, fork = make_fork(ari, retry_initial_s=0.05, retry_max_s=0.2)
    got: dict[str, int] = {"customer": 0, "agent": 0}
    hub.subscribe(lambda f: got.__setitem__(f.party, got[f.party] + 1))
    await fork.start()
    try:
        call_events(bus)
        await wait_for(lambda: fork.stats.attach_failed >= 4)  # first tries and retries
        assert fork.legs() == [] and ari.live() == []
        ari.down = False
        await wait_for(lambda: len(fork.legs()) == 2)
        await wait_for(lambda: got["customer"] >= 20 and got["agent"] >= 20)
        assert fork.stats.retries >= 2 and not fork._retrying
        assert fork._leftovers == []  # nothing had been created: nothing to remove later
    finally:
        await fork.stop()
        ari.close()
    assert ari.live() == []


async def test_retries_stop_with_the_call_and_other_failures_are_not_retried() -> None:
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, down=True)
    bus, _, fork = make_fork(ari, retry_initial_s=0.05, retry_max_s=0.05)
    await fork.start()
    try:
        call_events(bus)
        await wait_for(lambda: fork.stats.retries >= 2)
        bus.publish(CallEnded(call_id="call-1", outcome=CallState.ANSWERED))
        await wait_for(lambda: not fork._retrying)
        retries = fork.stats.retries
        ari.down = False
        await asyncio.sleep(0.2)
        assert fork.stats.retries == retries and ari.live() == []
        # a refusal by the PBX (the channel is gone, say) is final
        ari.fail_on = "snoop_channel"
        assert await fork.attach("call-2", "customer", "chan-cust") is None
        await asyncio.sleep(0.2)
        assert fork.stats.retries == retries and not fork._retrying
    finally:
        await fork.stop()
        ari.close()
    assert ari.live() == []


async def test_resync_attaches_missing_replaces_vanished_and_removes_leftovers() -> None:
    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y}, seconds=1.0, fail_on="snoop_channel")
    # retries far off: only resync() can repair anything here
    bus, hub, fork = make_fork(ari, retry_initial_s=60.0)
    got: dict[str, list[AudioFrame]] = {"customer": [], "agent": []}
    hub.subscribe(lambda f: got[f.party].append(f))
    await fork.start()
    try:
        call_events(bus)
        await wait_for(lambda: fork.stats.attach_failed == 2)
        assert fork.legs() == [] and ari.live() == []
        ari.fail_on = ""
        await fork.resync()  # 1. answered parties with no fork get one
        assert {leg.party for leg in fork.legs()} == {"customer", "agent"}
        await wait_for(lambda: len(got["customer"]) >= 40 and len(got["agent"]) >= 40)
        legs = {leg.party: leg for leg in fork.legs()}
        # 2. the customer's snoop vanished at the PBX (e.g. a restart): fork made again
        ari.channels.pop(legs["customer"].snoop_id)
        before = len(got["customer"])
        await fork.resync()
        now = {leg.party: leg for leg in fork.legs()}
        assert now["agent"] is legs["agent"] and now["customer"] is not legs["customer"]
        assert now["customer"].snoop_id in ari.channels and fork.stats.replaced == 1
        assert legs["customer"].em_id not in ari.channels  # the broken one is gone
        assert legs["customer"].bridge_id not in ari.bridges
        await wait_for(lambda: len(got["customer"]) >= before + 40)
        assert len(ari.live()) == 6
        # 3. the agent hung up while nobody listened: its fork goes
        ari.gone.add("chan-agent")
        await fork.resync()
        assert [leg.party for leg in fork.legs()] == ["customer"] and len(ari.live()) == 3
        # 4. the call ends while ARI is down: the removals wait for the next resync
        ari.down = True
        bus.publish(CallEnded(call_id="call-1", outcome=CallState.ANSWERED))
        await wait_for(lambda: not fork.legs())
        assert len(ari.live()) == 3 and fork.stats.teardown_deferred == 3
        assert fork.stats.teardown_errors == 0
        await fork.resync()  # still down: nothing lost
        assert len(fork._leftovers) == 3
        ari.down = False
        await fork.resync()
        assert ari.live() == [] and fork._leftovers == []
        assert fork.stats.resyncs == 4
    finally:
        await fork.stop()
        ari.close()


async def test_adopt_forks_calls_that_were_live_before_the_fork_started() -> None:
    from earpiece.agi.calls.call import Call, Channel

    ari = FakeAri(says={"chan-cust": X, "chan-agent": Y, "chan-old-agent": X}, seconds=0.3)
    _, _, fork = make_fork(ari, retry_initial_s=60.0)
    now = time.time()
    answered = Call(id="call-1", created=now - 9, direction="outbound", answered=now - 5)
    for uid, role, created, alive in (("chan-cust", ChannelRole.CUSTOMER, now - 9, True),
                                      ("chan-old-agent", ChannelRole.AGENT, now - 6, False),
                                      ("chan-agent", ChannelRole.AGENT, now - 4, True),
                                      ("chan-loc", ChannelRole.LOCAL_PEER, now - 9, True)):
        answered.channels[uid] = Channel(uid, f"PJSIP/{uid}", role, created, alive=alive)
    ringing = Call(id="call-2", created=now - 1, direction="outbound")
    ringing.channels["chan-cust2"] = Channel("chan-cust2", "PJSIP/c2", ChannelRole.CUSTOMER,
                                             now - 1)
    inbound = Call(id="call-3", created=now - 1, direction="inbound")
    inbound.channels["chan-in"] = Channel("chan-in", "PJSIP/c3", ChannelRole.CUSTOMER, now - 1)
    ari.says.update({"chan-cust2": X, "chan-in": X})
    await fork.start()
    try:
        fork.schedule_resync([answered, ringing, inbound])
        await wait_for(lambda: len(fork.legs()) == 3)
        await asyncio.sleep(0.05)
        got = sorted((leg.call_id, leg.party, leg.channel_id) for leg in fork.legs())
        assert got == [("call-1", "agent", "chan-agent"), ("call-1", "customer", "chan-cust"),
                       ("call-2", "customer", "chan-cust2")]  # early media; inbound waits
    finally:
        await fork.stop()
        ari.close()
    assert ari.live() == []
