"""Scenario files, simulator audio (G.711, tones, resampling), the ``earpiece sim`` command,
whisper through ChanSpy, and the AMI/ARI delay faults."""

from __future__ import annotations

import argparse
import asyncio
import io
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.errors import ConfigError
from earpiece.sim import audio
from earpiece.sim.faults import Faults
from earpiece.sim.scenario import OUTCOMES, Scenario, load_scenario
from earpiece.sim.simulator import Simulator


def test_packaged_scenarios_load() -> None:
    demo = load_scenario("demo")
    assert len(demo.dialer.calls) == 5 and demo.dialer.enabled
    scripted = {demo.endpoint(c).outcome for c in demo.dialer.calls}  # type: ignore[union-attr]
    assert {"answer", "busy", "sit"} <= scripted
    assert any(ep.answered_by == "machine" for ep in demo.endpoints)
    twenty = load_scenario("twenty")
    assert len(twenty.dialer.calls) == 20
    outcomes = {twenty.endpoint(c).outcome for c in twenty.dialer.calls}  # type: ignore[union-attr]
    assert outcomes == set(OUTCOMES)
    assert twenty.agents == ("agent1", "agent2")
    for scen in (demo, twenty):  # every prompt a scenario names is installed
        for ep in scen.endpoints:
            for say in (*ep.says, *ep.agent_says):
                assert len(audio.load_sound(say.wav)) > 0


@pytest.mark.parametrize(("data", "key"), [
    ({"endpoints": [{"name": "a", "outcome": "maybe"}]}, "endpoints[0].outcome"),
    ({"endpoints": [{"name": "a", "colour": "red"}]}, "endpoints[0].colour"),
    ({"endpoints": [{"role": "agent"}]}, "endpoints[0]"),
    ({"endpoints": [{"name": "a"}, {"name": "a"}]}, "endpoints"),
    ({"dialer": {"calls": ["nobody"]}}, "dialer.calls"),
    ({"dialplan": {"agents": ["nobody"]}}, "dialplan.agents"),
    ({"bogus": 1}, "bogus"),
    ({"endpoints": [{"name": "a", "says": [{"at_s": 1}]}]}, "endpoints[0].says"),
])
def test_invalid_scenarios_name_the_key(data: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        Scenario.from_dict(data, file="x.toml")
    assert err.value.key == key and "x.toml" in str(err.value)


def test_missing_and_broken_files(tmp_path: Any) -> None:
    with pytest.raises(ConfigError):
        load_scenario(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError):
        load_scenario(bad)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=12)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["name", "endpoints", "dialer", "dialplan",
                                        "credentials"]), _json, max_size=4))
def test_scenario_parser_raises_only_config_error(data: dict[str, Any]) -> None:
    try:
        Scenario.from_dict(data)
    except ConfigError:
        pass
    except (TypeError, ValueError, AttributeError) as exc:  # pragma: no cover - a failure
        raise AssertionError(f"leaked {type(exc).__name__}: {exc}") from exc


def test_ulaw_alaw_encoders_match_reference_decoding() -> None:
    x = np.arange(-32000, 32000, 7, dtype=np.int16)  # inside mu-law's +-32124 range
    round_trip = audio.ulaw_decode(audio.ulaw_encode(x)).astype(np.int32)
    # G.711 mu-law: error below half a quantisation step (step doubles per segment)
    assert np.all(np.abs(round_trip - x) <= np.maximum(12, np.abs(x.astype(np.int32)) // 16))
    assert audio.ulaw_encode(np.zeros(4, np.int16)) == b"\xff" * 4
    assert audio.alaw_encode(np.zeros(4, np.int16)) == b"\xd5" * 4
    # the code is monotonic in the input (per sign), reaching all 128 positive codes
    codes = np.frombuffer(audio.ulaw_encode(np.arange(0, 32768, dtype=np.int16)), np.uint8)
    assert np.all(np.diff(codes.astype(np.int32)) <= 0) and len(set(codes.tolist())) == 128


def test_tones_have_the_recipe_frequencies() -> None:
    def peak(pcm: np.ndarray[Any, Any]) -> set[int]:
        spec = np.abs(np.fft.rfft(pcm.astype(np.float64)))
        freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
        top = np.argsort(spec)[-2:]
        return {round(freqs[i]) for i in top}

    ring = audio.ringback(6.0)
    assert len(ring) == 48000 and not ring[16000:].any()  # 2 s on, 4 s off
    assert peak(ring[:16000]) == {440, 480}
    busy = audio.busy_tone(1.0)
    assert peak(busy[:4000]) == {480, 620} and not busy[4000:8000].any()
    sit = audio.sit_tones()
    assert len(sit) == round((0.274 + 0.274 + 0.380 + 0.1) * 8000)
    assert abs(peak(sit[:2192]).pop() - 913.8) < 5


def test_resample_to_16k_keeps_the_signal() -> None:
    from scipy.signal import resample_poly

    pcm = audio.load_sound("hello-world")
    up = audio.resample(pcm, 8000, 16000)
    assert len(up) == 2 * len(pcm)
    back = resample_poly(up.astype(np.float64), 1, 2)
    corr = np.dot(back, pcm) / (np.linalg.norm(back) * np.linalg.norm(pcm))
    assert corr > 0.99


def test_sound_lookup() -> None:
    assert audio.resolve_sound("sound:hello-world").name == "hello-world.wav"
    assert audio.resolve_sound("en/hello-world.wav").name == "hello-world.wav"
    with pytest.raises(audio.SoundNotFoundError):
        audio.resolve_sound("no-such-prompt")


async def test_sim_command_prints_ports_and_outcomes() -> None:
    from earpiece.sim.cmd import configure, run

    parser = argparse.ArgumentParser()
    configure(parser)
    args = parser.parse_args(["--scenario", "demo", "--ami-port", "0", "--ari-port", "0",
                              "--duration", "1.5", "--username", "u1", "--secret", "s1",
                              "--rtp-loss", "0.1", "--restart-every", "0.6"])
    out = io.StringIO()
    assert await run(args, out) == 0
    text = out.getvalue()
    assert "AMI 127.0.0.1:" in text and "user u1" in text and "/ari" in text
    assert "sim-dialer-1 PJSIP/alice: scripted answer (human)" in text
    assert "restarting the AMI listener" in text


async def test_chanspy_whisper_reaches_the_agent_only() -> None:
    sc = Scenario.from_dict({
        "endpoints": [
            {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.05},
            {"name": "cust1", "ring_s": 0.05, "hangup_after_s": 0},
        ],
        "dialplan": {"agents": ["agent1"]},
    })
    from earpiece.agi.ami_message import AmiFramer, AmiMessage

    async with Simulator(sc) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami_port)
        framer = AmiFramer()
        got: list[AmiMessage] = []

        async def pump(pred: Any, within: float = 5.0) -> AmiMessage:
            deadline = time.monotonic() + within
            while True:
                for m in got:
                    if pred(m):
                        return m
                data = await asyncio.wait_for(reader.read(65536),
                                              max(0.01, deadline - time.monotonic()))
                got.extend(m for m in framer.feed(data) if isinstance(m, AmiMessage))

        writer.write(b"Action: Login\r\nUsername: assist\r\nSecret: assist\r\n\r\n"
                     b"Action: Originate\r\nChannel: PJSIP/cust1\r\nContext: dialer\r\n"
                     b"Exten: agent\r\nPriority: 1\r\nAsync: true\r\n\r\n")
        await pump(lambda m: m.event == "BridgeEnter" and m["BridgeNumChannels"] == "2")
        writer.write(b"Action: Originate\r\nActionID: w-1\r\n"
                     b"Channel: Local/whisper_src@dialer\r\nApplication: ChanSpy\r\n"
                     b"Data: PJSIP/agent1,qwE\r\nCallerID: Whisper <9000>\r\nAsync: true\r\n\r\n")
        resp = await pump(lambda m: m.event == "OriginateResponse" and m.action_id == "w-1")
        start = await pump(lambda m: m.event == "ChanSpyStart")
        stop = await pump(lambda m: m.event == "ChanSpyStop", within=5)
        writer.close()
    assert [k for k, _ in resp.headers] == [
        "Event", "Privilege", "ActionID", "Response", "Channel", "Application", "Data",
        "Reason", "Uniqueid", "CallerIDNum", "CallerIDName"]
    assert resp["Channel"] == "Local/whisper_src@dialer-00000001;1" and resp["Reason"] == "4"
    assert start["SpyerChannel"] == resp["Channel"]
    assert start["SpyeeChannel"].startswith("PJSIP/agent1-")
    assert stop["SpyeeChannel"] == start["SpyeeChannel"]
    assert [(h.role, h.media) for h in sim.heard] == [("agent", "hello-world")]


async def test_ami_event_delay_and_ari_response_delay() -> None:
    sc = Scenario.from_dict({"endpoints": [{"name": "busy1", "outcome": "busy",
                                            "ring_s": 0.05}]})
    faults = Faults(ami_response_delay_s=0.25, ari_response_delay_s=0.25)
    async with Simulator(sc, faults=faults) as sim:
        reader, writer = await asyncio.open_connection("127.0.0.1", sim.ami_port)
        await reader.readline()
        t0 = time.monotonic()
        writer.write(b"Action: Login\r\nUsername: assist\r\nSecret: assist\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        assert time.monotonic() - t0 >= 0.25
        writer.close()
        import aiohttp

        async with aiohttp.ClientSession() as s:
            t0 = time.monotonic()
            async with s.get(sim.ari_url + "/ari/asterisk/ping",
                             headers={"Authorization": "Basic YXNzaXN0OmFzc2lzdA=="}) as r:
                assert r.status == 200
            assert time.monotonic() - t0 >= 0.25


def test_faults_validate() -> None:
    with pytest.raises(ValueError):
        Faults(rtp_loss=1.5)
    with pytest.raises(ValueError):
        Faults(rogue_rtp="somewhere")
    assert not Faults().rtp_active and Faults(rtp_jitter_ms=5).rtp_active
