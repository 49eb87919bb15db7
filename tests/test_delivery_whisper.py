"""Whisper delivery against the simulator: the prompt reaches the agent's ear and never the
customer's (what each party hears, ``Engine.heard_by``, correlated with the rendered prompt),
nothing is left at the PBX after playback or call end, and failures are reported, not raised."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from earpiece.bus import EventBus
from earpiece.delivery.settings import DeliverySettings
from earpiece.delivery.whisper import Whisper
from earpiece.delivery.whisper_audio import parse_wav, render_speech, to_ulaw_8k
from earpiece.errors import ConfigError
from earpiece.events import (
    CallEnded,
    CallState,
    ChannelJoined,
    ChannelRole,
    PromptDelivered,
    PromptReady,
)
from earpiece.media.fork_leftovers import find_leftovers
from earpiece.media.g711 import decode_ulaw
from earpiece.media.xcorr import best_match

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed")
TEXT = "Acknowledge the customer's concern, apologise, and offer to wrap the call up."


def rendered(text: str = TEXT) -> np.ndarray[Any, Any]:
    pcm, rate = render_speech(text, "en")
    return decode_ulaw(to_ulaw_8k(pcm, rate))


def prompt(call_id: str = "c1", text: str = TEXT, language: str = "en") -> PromptReady:
    return PromptReady(call_id=call_id, prompt_id="p1", kind="soothe", text=text,
                       language=language, slot="weekday-morning", rule="negative->soothe")


async def wait_for(pred: Callable[[], bool], within: float) -> None:
    for _ in range(int(within / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


@dataclass
class Rig:
    sim: Any
    bus: EventBus
    whisper: Whisper
    delivered: list[PromptDelivered]
    agent: Any
    customer: Any

    def helpers(self) -> list[str]:
        """Channels and bridges at the PBX that are not the call's own phones."""
        return ([c.name for c in self.sim.channels() if not c.name.startswith("PJSIP/")]
                + [b.id for b in self.sim.bridges() if b.bridge_class != "basic"])

    def heard(self, ch: Any, start: int, end: int) -> np.ndarray[Any, Any]:
        out = np.zeros(end - start, dtype=np.int32)
        self.sim.engine.heard_by(ch, start, end - start, out)
        return np.clip(out, -32768, 32767).astype(np.int16)


@asynccontextmanager
async def rig(settings: DeliverySettings | None = None, *,
              hangup_after_s: float = 9.0) -> AsyncIterator[Rig]:
    from earpiece.agi.ari_client import AriClient
    from earpiece.agi.settings import AriSettings
    from earpiece.secret import Secret
    from earpiece.sim.engine import OriginateRequest
    from earpiece.sim.scenario import Scenario
    from earpiece.sim.simulator import Simulator

    scenario = Scenario.from_dict({
        "endpoints": [
            {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.1,
             "says": [{"wav": "demo-echotest", "at_s": 0.3}]},
            {"name": "cust1", "callerid_name": "Customer One", "ring_s": 0.2,
             "hangup_after_s": hangup_after_s, "says": [{"wav": "hello-world", "at_s": 0.2}]},
        ],
        "dialplan": {"agents": ["agent1"]},
    })
    bus = EventBus()
    delivered: list[PromptDelivered] = []
    bus.subscribe(PromptDelivered, delivered.append)
    async with Simulator(scenario) as sim:
        ari = AriClient(AriSettings(url=sim.ari_url, password=Secret("assist"), app="assist"))
        await ari.start()
        await ari.wait_connected(5)
        whisper = Whisper(bus, ari, app="assist",
                          settings=settings or DeliverySettings(whisper=True))
        whisper.start()
        try:
            sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer",
                                           exten="agent", callerid_name="Dialer",
                                           callerid_num="5000", action_id="wh-1"))
            chans: dict[str, Any] = {}

            def both() -> bool:
                for c in sim.channels():
                    for prefix, party in (("PJSIP/cust1-", "customer"),
                                          ("PJSIP/agent1-", "agent")):
                        if c.name.startswith(prefix) and c.bridge is not None:
                            chans[party] = c
                return len(chans) == 2

            await wait_for(both, 5)
            yield Rig(sim, bus, whisper, delivered, chans["agent"], chans["customer"])
        finally:
            await whisper.stop()
            await ari.close()


@needs_espeak
async def test_whisper_reaches_the_agent_only_and_leaves_nothing() -> None:
    ref = rendered()
    async with rig() as r:
        r.bus.publish(ChannelJoined(call_id="c1", channel=r.agent.name, uniqueid=r.agent.id,
                                    role=ChannelRole.AGENT))
        start = r.sim.engine.sample_now()
        r.bus.publish(prompt())
        await wait_for(lambda: bool(r.whisper.active) and any(
            c.name.startswith("Snoop/") and c.bridge is not None for c in r.sim.channels()), 5)
        # while it plays, a restarted Earpiece's start-up cleanup would see all three as ours
        ari: Any = r.whisper.ari
        found = find_leftovers(await ari.list_channels(), await ari.list_bridges(),
                               app="assist", id_prefix="ep", skip=set())
        assert (len(found.snoops), len(found.media), len(found.bridges)) == (1, 1, 1)
        bridge = next(b for b in r.sim.bridges() if b.id in found.bridges)
        assert bridge.name == "ep:assist c1 whisper"
        await wait_for(lambda: bool(r.delivered), 15)
        end = r.sim.engine.sample_now()
        assert r.helpers() == []  # torn down right after playback, the call still on
        assert not r.agent.hungup and not r.customer.hungup
        agent_heard = r.heard(r.agent, start, end)
        customer_heard = r.heard(r.customer, start, end)
        roles = {h.role for h in r.sim.heard if h.media.startswith("rtp:")}
    (d,) = r.delivered
    assert (d.channel, d.status, d.target, d.detail) == ("whisper", "sent", r.agent.name, "")
    assert roles == {"agent"}
    # both parties hear each other's speech meanwhile; only the agent hears the prompt
    assert customer_heard.any()
    agent_corr = best_match(agent_heard, ref, min_overlap=len(ref) // 2).corr
    customer_corr = best_match(customer_heard, ref, min_overlap=len(ref) // 2).corr
    assert agent_corr >= 0.6, agent_corr
    assert customer_corr <= 0.25, customer_corr
    assert r.whisper.stats.sent == 1 and r.whisper.stats.teardown_errors == 0


@needs_espeak
async def test_call_end_mid_prompt_is_reported_and_removes_everything() -> None:
    async with rig() as r:
        r.bus.publish(ChannelJoined(call_id="c1", channel=r.agent.name, uniqueid=r.agent.id,
                                    role=ChannelRole.AGENT))
        r.bus.publish(prompt())
        await wait_for(lambda: bool(r.whisper.active) and any(
            c.name.startswith("UnicastRTP/") and c.bridge is not None
            for c in r.sim.channels()), 5)
        await asyncio.sleep(0.5)
        ari: Any = r.whisper.ari
        await ari.hangup_channel(r.customer.id)
        r.bus.publish(CallEnded(call_id="c1", outcome=CallState.ANSWERED, hangup_cause=16))
        await wait_for(lambda: bool(r.delivered), 5)
        await wait_for(lambda: not any(c.name.startswith("PJSIP/") for c in r.sim.channels()),
                       5)
        assert r.helpers() == []
    (d,) = r.delivered
    assert d.status == "failed" and "the call ended" in d.detail


@needs_espeak
async def test_agent_channel_gone_is_reported_not_raised() -> None:
    async with rig() as r:
        r.bus.publish(ChannelJoined(call_id="c1", channel="PJSIP/agent1-0000ffff",
                                    uniqueid="no-such-channel", role=ChannelRole.AGENT))
        out = await r.whisper.send(prompt())
        assert r.helpers() == []  # the bridge and externalMedia channel made first: removed
    assert (out.status, out.detail) == ("failed", "the agent channel is gone (snoop: 404)")
    assert r.delivered == [out]


async def test_no_agent_leg_is_skipped_and_tts_failure_is_failed() -> None:
    bus = EventBus()
    w = Whisper(bus, None, app="assist", settings=DeliverySettings(
        whisper=True, whisper_command="/nonexistent/espeak-ng"))
    w.start()
    out = await w.send(prompt())
    assert (out.channel, out.status, out.detail) == ("whisper", "skipped",
                                                     "no agent channel on the call")
    bus.publish(ChannelJoined(call_id="c1", channel="PJSIP/agent1-00000001", uniqueid="u1",
                              role=ChannelRole.AGENT))
    out = await w.send(prompt())
    assert out.status == "failed" and out.detail.startswith("text-to-speech:")
    assert "not installed" in out.detail
    await w.stop()


def test_voice_by_language_wav_parsing_and_frames() -> None:
    w = Whisper(EventBus(), None, app="assist")
    assert (w.voice_for("en"), w.voice_for("zh"), w.voice_for("zh-CN")) == ("en", "cmn", "cmn")
    pcm = (np.sin(np.arange(22050) / 5) * 8000).astype(np.int16)
    header = (b"RIFF\xff\xff\xff\xffWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
              + (22050).to_bytes(4, "little") + (44100).to_bytes(4, "little")
              + b"\x02\x00\x10\x00data\xff\xff\xff\xff")
    got, rate = parse_wav(header + pcm.tobytes())  # placeholder sizes, as espeak-ng writes
    assert rate == 22050 and np.array_equal(got, pcm)
    ulaw = to_ulaw_8k(got, rate, max_s=0.5)
    assert len(ulaw) == 4000 and len(ulaw) % 160 == 0
    with pytest.raises(ConfigError):
        DeliverySettings(whisper_wpm=10)
