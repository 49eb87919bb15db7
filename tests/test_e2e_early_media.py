"""End to end: early media and ARI outages, with the Earpiece service attached to the simulator.

Early media (issue 4 item 3): an outbound call's customer is forked as soon as its channel
exists (as in the ``early_media_*`` captures), so call-progress analysis hears ringback, a busy
tone or SIT + an intercept announcement before (or without) any signalling; the registry keeps
the signalling outcome and the audio verdict side by side; nothing is left at the PBX.

ARI outage: a call answered while ARI is down gets its forks once ARI is back (resync and
retries), and its parties' audio then flows.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earpiece.app import Service
from earpiece.asr.settings import AsrSettings
from earpiece.demo import demo_settings
from earpiece.events import CallEnded, CallOutcome, CpaDecision
from earpiece.media.frames import AudioFrame
from earpiece.media.xcorr import best_match, read_wav_int16
from earpiece.sim.scenario import Scenario
from earpiece.sim.simulator import Simulator

SOUNDS = Path("/usr/share/asterisk/sounds/en")
pytestmark = pytest.mark.skipif(not (SOUNDS / "ss-noservice.wav").exists(),
                                reason="asterisk-core-sounds-en-wav missing")
X = "demo-congrats"  # what the customer says
Y = "demo-echotest"  # what the agent says

# endpoint -> (scenario keys, CPA label expected before the outcome, signalling outcome)
EARLY: dict[str, tuple[dict[str, Any], str, str]] = {
    # 183 + SIT tones + "ss-noservice", then 404 (cause 1)
    "c_sit": ({"outcome": "sit", "early_media_after_s": 0.4, "ring_s": 5.0}, "sit", "failed"),
    # 183 + ringback for 6 s, then 486
    "c_rb_busy": ({"outcome": "busy", "early_media": "ringback", "early_media_after_s": 0.4,
                   "ring_s": 6.5}, "ringback", "busy"),
    # 183 + busy tone, then 486
    "c_busytone": ({"outcome": "busy", "early_media": "busy", "early_media_after_s": 0.4,
                    "ring_s": 5.0}, "busy", "busy"),
    # 183 + busy tone and no final response at all: only the originate timeout signals
    "c_busy_nosig": ({"outcome": "noanswer", "early_media": "busy", "early_media_after_s": 0.4,
                      "ring_s": 9.0}, "busy", "no_answer"),
}
TIMEOUT_MS = 9000


def scenario(endpoints: list[dict[str, Any]]) -> Scenario:
    return Scenario.from_dict({
        "name": "e2e-early-media",
        "endpoints": [{"name": "agent1", "role": "agent", "ring_s": 0.1}, *endpoints],
        "dialplan": {"agents": ["agent1"]},
    })


def service_for(sim: Simulator, tmp_path: Path) -> Service:
    settings = demo_settings(sim, db=str(tmp_path / "crm.sqlite3"))
    # ASR is not what is tested here: keep the shared test machine's CPU for the rest
    return Service(dataclasses.replace(settings, asr=AsrSettings(enabled=False)))


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.02)


def leftovers(sim: Simulator) -> list[str]:
    return [c.name for c in sim.channels()] + [b.id for b in sim.bridges()]


def prompt(name: str) -> np.ndarray:
    return read_wav_int16(str(SOUNDS / f"{name}.wav"))[0]


async def test_early_media_is_analysed_before_the_signalling(tmp_path: Path) -> None:
    endpoints = [{"name": name, **keys} for name, (keys, _, _) in EARLY.items()]
    # and one that answers after 3 s of ringback: the early fork goes on after the answer
    endpoints.append({"name": "c_rb_answer", "early_media": "ringback",
                      "early_media_after_s": 0.4, "ring_s": 4.5, "hangup_after_s": 3.0,
                      "says": [{"wav": X, "at_s": 0.3}],
                      "agent_says": [{"wav": Y, "at_s": 0.3}]})
    async with Simulator(scenario(endpoints), seed=11) as sim:
        service = service_for(sim, tmp_path)
        decisions: dict[str, list[CpaDecision]] = {}
        outcomes: dict[str, CallOutcome] = {}
        ended: set[str] = set()
        service.bus.subscribe(CpaDecision,
                              lambda ev: decisions.setdefault(ev.call_id, []).append(ev))
        service.bus.subscribe(CallOutcome, lambda ev: outcomes.setdefault(ev.call_id, ev))
        service.bus.subscribe(CallEnded, lambda ev: ended.add(ev.call_id))
        customer_frames: dict[str, int] = {}

        def count(frame: AudioFrame) -> None:
            customer_frames[frame.call_id] = customer_frames.get(frame.call_id, 0) + 1

        try:
            await service.start()
            service.hub.subscribe(count, party="customer")
            ids: dict[str, str] = {}
            for ep in endpoints:
                ids[ep["name"]] = await service.originate(
                    f"PJSIP/{ep['name']}", context="dialer", exten="agent",
                    timeout_ms=TIMEOUT_MS)
            await wait_until(lambda: ended >= set(ids.values()))
            # torn down on the hangups, while the service still runs
            await wait_until(lambda: not leftovers(sim) and not service.media.legs(), 5.0)
            snapshots = {c["id"]: c for c in service.registry.snapshot()}
            stats = service.media.stats
        finally:
            await service.stop()
        assert leftovers(sim) == []

    assert stats.attach_failed == 0 and stats.teardown_errors == 0
    assert stats.early_attached >= len(endpoints)  # every customer forked before its answer
    for name, (_, label, outcome) in EARLY.items():
        call_id = ids[name]
        snap = snapshots[call_id]
        assert snap["outcome"] == outcome, (name, snap["outcome"], snap["outcome_source"])
        assert snap["answered"] is None
        got = decisions.get(call_id, [])
        matching = [d for d in got if d.label == label]
        assert matching, (name, [(d.label, d.evidence.get("rule")) for d in got])
        first = matching[0]
        assert first.evidence.get("phase") == "pre_answer"
        # heard before the PBX said anything final about the call
        assert first.at < outcomes[call_id].at, (name, first.at, outcomes[call_id].at)
        # both kept: the signalling outcome and what the audio said, with its source
        audio = [a for a in snap["audio"] if a["label"] == label]
        assert audio and audio[0]["source"].startswith("audio:cpa pre_answer")
        assert customer_frames.get(call_id, 0) > 50
        if label in ("busy", "sit"):  # failure labels also count as ranked evidence
            audio_ev = [e for e in snap["evidence"] if e["source"] == audio[0]["source"]]
            assert len(audio_ev) == 1
            disagreeing = {e["source"] for e in snap["disagreements"]}
            assert (audio_ev[0]["state"] != outcome) == (audio[0]["source"] in disagreeing)
    # no final response: the busy tone disagrees with the timeout's no_answer and is kept so
    nosig = snapshots[ids["c_busy_nosig"]]
    assert any(e["source"].startswith("audio:cpa") and e["state"] == "busy"
               for e in nosig["disagreements"])

    answered = snapshots[ids["c_rb_answer"]]
    assert answered["outcome"] == "answered"
    got = decisions.get(ids["c_rb_answer"], [])
    assert got and got[0].label == "ringback" and got[0].at < outcomes[ids["c_rb_answer"]].at
    assert any(a["label"] == "ringback" for a in answered["audio"])


async def test_early_media_off_forks_only_after_the_answer(tmp_path: Path) -> None:
    keys, _, _ = EARLY["c_busytone"]
    async with Simulator(scenario([{"name": "c_busytone", **keys}]), seed=3) as sim:
        settings = demo_settings(sim, db=str(tmp_path / "crm.sqlite3"))
        settings = dataclasses.replace(
            settings, asr=AsrSettings(enabled=False),
            media=dataclasses.replace(settings.media, early_media=False))
        service = Service(settings)
        decisions: list[CpaDecision] = []
        ended: list[str] = []
        service.bus.subscribe(CpaDecision, decisions.append)
        service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
        try:
            await service.start()
            call_id = await service.originate("PJSIP/c_busytone", context="dialer",
                                              exten="agent", timeout_ms=TIMEOUT_MS)
            await wait_until(lambda: call_id in ended)
            stats = service.media.stats
        finally:
            await service.stop()
        assert leftovers(sim) == []
    assert stats.attached == 0 and stats.attach_failed == 0
    assert decisions == []


async def test_call_answered_while_ari_is_down_gets_its_forks(tmp_path: Path) -> None:
    ep = {"name": "c_outage", "ring_s": 0.5, "hangup_after_s": 9.0,
          "says": [{"wav": X, "at_s": 5.0}], "agent_says": [{"wav": Y, "at_s": 4.8}]}
    async with Simulator(scenario([ep]), seed=5) as sim:
        service = service_for(sim, tmp_path)
        ended: list[str] = []
        frames: dict[str, list[np.ndarray]] = {"customer": [], "agent": []}
        service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
        try:
            await service.start()
            assert service.ari is not None and service.media is not None
            ari = service.ari
            media = service.media
            service.hub.subscribe(lambda f: frames[f.party].append(f.pcm))
            await asyncio.sleep(0.3)  # the start-up resync is done
            resyncs = media.stats.resyncs
            outage = asyncio.create_task(sim.restart_ari(delay_s=2.5))
            await wait_until(lambda: not ari.connected)
            call_id = await service.originate("PJSIP/c_outage", context="dialer",
                                              exten="agent", timeout_ms=TIMEOUT_MS)
            # answered (AMI still up) and the agent dialled, all while ARI is unreachable
            await wait_until(lambda: any(
                c["id"] == call_id and c["answered"] is not None
                and any(ch["role"] == "agent" for ch in c["channels"])
                for c in service.registry.snapshot()))
            await wait_until(lambda: media.stats.attach_failed >= 2, 2.0)
            assert media.legs() == [] and not outage.done()
            await outage
            await wait_until(lambda: ari.connected and media.stats.resyncs > resyncs)
            await wait_until(lambda: {leg.party for leg in media.legs()} == {"customer", "agent"},
                             10.0)
            legs = {leg.party: leg for leg in media.legs()}
            snoops = {c.name.split("/")[1].rsplit("-", 1)[0]
                      for c in sim.channels() if c.name.startswith("Snoop/")}
            assert snoops == {legs["customer"].channel_id, legs["agent"].channel_id}
            await wait_until(lambda: call_id in ended, 20.0)
            await wait_until(lambda: not leftovers(sim) and not media.legs(), 5.0)
            stats = media.stats
        finally:
            await service.stop()
        assert leftovers(sim) == []
    assert stats.teardown_errors == 0 and stats.attached == 2
    cust = np.concatenate(frames["customer"])
    agent = np.concatenate(frames["agent"])
    assert best_match(cust, prompt(X)).corr > 0.9
    assert best_match(agent, prompt(Y)).corr > 0.9
    assert best_match(cust, prompt(Y)).corr < 0.5


async def test_call_live_before_earpiece_starts_gets_its_forks(tmp_path: Path) -> None:
    from earpiece.sim.engine import OriginateRequest

    ep = {"name": "c_before", "ring_s": 0.3, "hangup_after_s": 8.0,
          "says": [{"wav": X, "at_s": 3.5}], "agent_says": [{"wav": Y, "at_s": 3.3}]}
    async with Simulator(scenario([ep]), seed=9) as sim:
        sim.originate(OriginateRequest(channel="PJSIP/c_before", context="dialer",
                                       exten="agent", callerid_name="Dialer",
                                       callerid_num="5000", action_id="before-1"))
        await wait_until(lambda: any(c.name.startswith("PJSIP/agent1-")
                                     for c in sim.channels()))
        service = service_for(sim, tmp_path)
        frames: dict[str, list[np.ndarray]] = {"customer": [], "agent": []}
        ended: list[str] = []
        service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
        try:
            await service.start()
            media = service.media
            service.hub.subscribe(lambda f: frames[f.party].append(f.pcm))
            await wait_until(lambda: {leg.party for leg in media.legs()}
                             == {"customer", "agent"}, 10.0)
            await wait_until(lambda: bool(ended), 20.0)
            await wait_until(lambda: not leftovers(sim) and not media.legs(), 5.0)
        finally:
            await service.stop()
        assert leftovers(sim) == []
    assert best_match(np.concatenate(frames["customer"]), prompt(X)).corr > 0.9
    assert best_match(np.concatenate(frames["agent"]), prompt(Y)).corr > 0.9
