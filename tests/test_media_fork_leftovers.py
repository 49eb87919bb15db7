"""Media fork, issue 16: leftovers of a killed Earpiece, clean stops, calls that end before their
fork is complete, and Local-channel originates; against the simulator and the real ARI client.

- A predecessor killed with ``kill -9`` during a call leaves its bridges, snoops and
  externalMedia channels (``captures/faults/ari/crash_leftovers``): the next Earpiece removes
  them at start-up (one INFO line, counted), then forks the live call afresh, so each party is
  snooped once; what another ARI application made is not touched.
- A normal stop (SIGTERM) removes every helper the fork made, while the call goes on.
- A call that ends (or a snoop that answers 404, as on a failing Local originate: its halves
  end within a few ms, ``captures/faults/ari/local_dialer_*``) while the fork is being made
  logs no WARNING and leaves nothing at the PBX.
- A Local originate that rings gets its customer half (``;1``) forked before the answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from earpiece.agi.ari_client import AriClient
from earpiece.agi.settings import AriSettings
from earpiece.app import Service
from earpiece.asr.settings import AsrSettings
from earpiece.bus import EventBus
from earpiece.demo import demo_settings
from earpiece.events import (
    CallEnded,
    CallStarted,
    CallState,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
)
from earpiece.media.fork import MediaFork
from earpiece.media.fork_leftovers import find_leftovers
from earpiece.media.frames import FrameHub
from earpiece.media.receiver import RtpReceiver
from earpiece.media.settings import MediaSettings
from earpiece.media.xcorr import best_match, read_wav_int16
from earpiece.secret import Secret
from earpiece.sim.engine import OriginateRequest
from earpiece.sim.scenario import Scenario
from earpiece.sim.simulator import Simulator

SOUNDS = Path("/usr/share/asterisk/sounds/en")
pytestmark = pytest.mark.skipif(not (SOUNDS / "demo-congrats.wav").exists(),
                                reason="asterisk-core-sounds-en-wav missing")
X = "demo-congrats"  # what the customer says
Y = "demo-echotest"  # what the agent says
APP = "assist"  # demo_settings' ARI application


def scenario(endpoints: list[dict[str, Any]]) -> Scenario:
    return Scenario.from_dict({
        "name": "media-leftovers",
        "endpoints": [{"name": "agent1", "role": "agent", "ring_s": 0.1}, *endpoints],
        "dialplan": {"agents": ["agent1"]},
    })


def service_for(sim: Simulator, tmp_path: Path) -> Service:
    settings = demo_settings(sim, db=str(tmp_path / "crm.sqlite3"))
    return Service(dataclasses.replace(settings, asr=AsrSettings(enabled=False)))


def ari_for(sim: Simulator, app: str = APP) -> AriClient:
    cred = sim.scenario.credentials
    return AriClient(AriSettings(url=sim.ari_url, username=cred.ari_username,
                                 password=Secret(cred.ari_password), app=app,
                                 reconnect_initial_s=0.2, reconnect_max_s=1.0))


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.02)


def helpers(sim: Simulator) -> list[str]:
    """Fork helpers at the PBX: snoop / externalMedia channels and their bridges."""
    return sorted([c.name for c in sim.channels() if c.name.startswith(("Snoop/", "UnicastRTP/"))]
                  + [b.id for b in sim.bridges() if b.id.startswith("ep-")])


def leftovers(sim: Simulator) -> list[str]:
    return [c.name for c in sim.channels()] + [b.id for b in sim.bridges()]


def snooped(sim: Simulator) -> list[str]:
    """The channel id each live snoop spies on (``Snoop/<id>-<seq>``)."""
    return sorted(c.name[len("Snoop/"):].rsplit("-", 1)[0]
                  for c in sim.channels() if c.name.startswith("Snoop/"))


def prompt(name: str) -> np.ndarray:
    return read_wav_int16(str(SOUNDS / f"{name}.wav"))[0]


def media_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("earpiece.media") and r.levelno >= logging.WARNING]


async def call_channels(sim: Simulator, customer: str) -> dict[str, Any]:
    """The customer's and the agent's sim channels once both exist."""
    found: dict[str, Any] = {}

    def both() -> bool:
        for c in sim.channels():
            if c.name.startswith(f"PJSIP/{customer}-"):
                found["customer"] = c
            elif c.name.startswith("PJSIP/agent1-"):
                found["agent"] = c
        return len(found) == 2

    await wait_until(both, 10.0)
    return found


async def crash_fork(ari: AriClient, channel_id: str, party: str, *, app: str = APP,
                     key: str = "ep-crash", snoop: bool = True, port: int = 43999) -> None:
    """What the killed client of ``crash_leftovers`` did (same ids and names)."""
    bridge = f"{key}-{party}-bridge"
    await ari.create_bridge(type="mixing", bridge_id=bridge, name=bridge)
    await ari.external_media(app=app, external_host=f"127.0.0.1:{port}", format="ulaw",
                             channel_id=f"{key}-{party}-em")
    await asyncio.sleep(0.05)  # the externalMedia channel enters Stasis
    await ari.add_channel_to_bridge(bridge, f"{key}-{party}-em")
    if snoop:
        await ari.snoop_channel(channel_id, app=app, spy="in", snoop_id=f"{key}-{party}-snoop")
        await ari.add_channel_to_bridge(bridge, f"{key}-{party}-snoop")


# --- leftovers of a killed Earpiece -----------------------------------------------------------

async def test_leftovers_of_a_killed_instance_are_removed_at_start(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="earpiece.media")
    ep = {"name": "c_long", "ring_s": 0.3, "hangup_after_s": 9.0,
          "says": [{"wav": X, "at_s": 5.0}], "agent_says": [{"wav": Y, "at_s": 4.8}]}
    async with Simulator(scenario([ep]), seed=21) as sim:
        sim.originate(OriginateRequest(channel="PJSIP/c_long", context="dialer", exten="agent",
                                       callerid_name="Dialer", callerid_num="5000",
                                       action_id="crash-1"))
        chans = await call_channels(sim, "c_long")
        # the victim: an Earpiece forking this call, then killed (kill -9: no teardown)
        victim_ari = ari_for(sim)
        await victim_ari.start()
        await victim_ari.wait_connected(5)
        vset = MediaSettings(bind_host="127.0.0.1", rtp_port_min=43000, rtp_port_max=43099)
        vhub = FrameHub(bus=EventBus())
        victim_rx = RtpReceiver(vset, vhub)
        victim = MediaFork(bus=EventBus(), ari=victim_ari, settings=vset, app=APP, hub=vhub,
                           receiver=victim_rx)
        await victim.start()
        assert await victim.attach("victim-call", "customer", chans["customer"].id) is not None
        # and one fork as an older Earpiece named it (the capture's ids and names)
        await crash_fork(victim_ari, chans["agent"].id, "agent")
        await victim_ari.close()
        await victim_rx.close()
        assert snooped(sim) == sorted([chans["customer"].id, chans["agent"].id])
        assert len(helpers(sim)) == 6

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
            stats = media.stats
            assert (stats.leftover_snoops, stats.leftover_media, stats.leftover_bridges) == (
                2, 2, 2)
            # each party is snooped once, by the new forks only
            assert snooped(sim) == sorted([chans["customer"].id, chans["agent"].id])
            mine = {rid for leg in media.legs() for rid in (leg.bridge_id, leg.em_id,
                                                            leg.snoop_id)}
            assert set(helpers(sim)) == {c.name for c in sim.channels() if c.id in mine} | {
                b.id for b in sim.bridges() if b.id in mine}
            await wait_until(lambda: bool(ended), 20.0)
            await wait_until(lambda: not leftovers(sim) and not media.legs(), 5.0)
        finally:
            await service.stop()
        assert leftovers(sim) == []
    lines = [r.getMessage() for r in caplog.records
             if r.levelno == logging.INFO and "leftovers" in r.getMessage()]
    assert lines == [f"media: removed a previous Earpiece's leftovers of ARI app {APP}: 2 snoop "
                     "channels, 2 externalMedia channels, 2 bridges (0 already gone)"]
    assert stats.attach_failed == 0 and stats.teardown_errors == 0
    assert best_match(np.concatenate(frames["customer"]), prompt(X)).corr > 0.9
    assert best_match(np.concatenate(frames["agent"]), prompt(Y)).corr > 0.9


async def test_leftovers_after_the_call_ended_and_other_apps_untouched(tmp_path: Path) -> None:
    ep = {"name": "c_short", "ring_s": 0.3, "hangup_after_s": 1.5}
    async with Simulator(scenario([ep]), seed=22) as sim:
        sim.originate(OriginateRequest(channel="PJSIP/c_short", context="dialer",
                                       exten="agent", callerid_name="Dialer",
                                       callerid_num="5000", action_id="crash-2"))
        chans = await call_channels(sim, "c_short")
        victim_ari, other = ari_for(sim), ari_for(sim, "other")
        for client in (victim_ari, other):
            await client.start()
            await client.wait_connected(5)
        await crash_fork(victim_ari, chans["customer"].id, "customer")
        await victim_ari.close()  # killed
        # another application's fork (a bridge named as the fork names its own) stays
        await other.create_bridge(type="mixing", bridge_id="ep-other-customer-bridge",
                                  name="ep:other call-9 customer")
        await other.external_media(app="other", external_host="127.0.0.1:43998",
                                   format="ulaw", channel_id="ep-other-customer-em")
        await asyncio.sleep(0.05)
        await other.add_channel_to_bridge("ep-other-customer-bridge", "ep-other-customer-em")
        # the call ends: its snoop goes with it, the bridge and externalMedia stay (as captured)
        await wait_until(lambda: not any(c.name.startswith("PJSIP/") for c in sim.channels()))
        assert not snooped(sim)
        assert {b.id for b in sim.bridges()} == {"ep-crash-customer-bridge",
                                                 "ep-other-customer-bridge"}
        service = service_for(sim, tmp_path)
        try:
            await service.start()
            stats = service.media.stats
            assert (stats.leftover_snoops, stats.leftover_media, stats.leftover_bridges) == (
                0, 1, 1)
            assert {b.id for b in sim.bridges()} == {"ep-other-customer-bridge"}
            assert [c.id for c in sim.channels()] == ["ep-other-customer-em"]
        finally:
            await service.stop()
            await other.hangup_channel("ep-other-customer-em")
            await other.destroy_bridge("ep-other-customer-bridge")
            await other.close()
        assert leftovers(sim) == []


def test_find_leftovers_on_the_captured_listings() -> None:
    """The JSON of ``crash_leftovers``: after the call ended, and while it was still up."""
    em = {"id": "ep-crash-customer-em", "name": "UnicastRTP/127.0.0.1:42963-0x7f5a94027b30",
          "dialplan": {"app_name": "Stasis", "app_data": "assist"}}
    snoop = {"id": "ep-crash-customer-snoop", "name": "Snoop/1796471422.30-00000008",
             "dialplan": {"app_name": "Stasis", "app_data": "assist"}}
    local = {"id": "1796471422.30", "name": "Local/loop@customers-00000007;1",
             "dialplan": {"app_name": "Dial", "app_data": "PJSIP/agent1,20"}}
    in_stasis = {"id": "1796471499.1", "name": "PJSIP/cust1-00000009",  # a call, never ours
                 "dialplan": {"app_name": "Stasis", "app_data": "assist,inbound"}}
    bridge = {"id": "ep-crash-customer-bridge", "name": "ep-crash-customer-bridge",
              "bridge_class": "stasis", "channels": ["ep-crash-customer-em"]}
    basic = {"id": "232db963-c4da-400d-b198-f623cd6a1f61", "name": "", "bridge_class": "basic",
             "channels": ["1796471422.30", "1796471422.32"]}
    found = find_leftovers([em], [bridge], app="assist", id_prefix="ep", skip=set())
    assert (found.snoops, found.media, found.bridges) == (
        [], ["ep-crash-customer-em"], ["ep-crash-customer-bridge"])
    up = dict(bridge, channels=["ep-crash-customer-em", "ep-crash-customer-snoop"])
    found = find_leftovers([local, em, snoop, in_stasis], [basic, up], app="assist",
                           id_prefix="ep", skip=set())
    assert (found.snoops, found.media, found.bridges) == (
        ["ep-crash-customer-snoop"], ["ep-crash-customer-em"], ["ep-crash-customer-bridge"])
    # another application's, or our own live ones: left alone
    assert not find_leftovers([em, snoop], [up], app="other", id_prefix="ep", skip=set())
    mixed = dict(bridge, channels=["ep-crash-customer-em", "1796471422.30"])
    assert find_leftovers([em], [mixed], app="assist", id_prefix="ep", skip=set()).bridges == []
    named = {"id": "ep-1-customer-bridge", "name": "ep:assist call-1 customer", "channels": []}
    assert find_leftovers([], [named], app="assist", id_prefix="ep",
                          skip=set()).bridges == ["ep-1-customer-bridge"]
    assert not find_leftovers([em], [named], app="assist", id_prefix="ep",
                              skip={"ep-crash-customer-em", "ep-1-customer-bridge"})


# --- a normal stop ----------------------------------------------------------------------------

async def test_stop_during_a_call_leaves_nothing(tmp_path: Path) -> None:
    ep = {"name": "c_up", "ring_s": 0.3, "hangup_after_s": 30.0}
    async with Simulator(scenario([ep]), seed=23) as sim:
        service = service_for(sim, tmp_path)
        try:
            await service.start()
            await service.originate("PJSIP/c_up", context="dialer", exten="agent",
                                    timeout_ms=9000)
            media = service.media
            await wait_until(lambda: {leg.party for leg in media.legs()}
                             == {"customer", "agent"}, 10.0)
            assert len(helpers(sim)) == 6
        finally:
            await service.stop()  # what SIGTERM does
        assert helpers(sim) == []
        assert any(c.name.startswith("PJSIP/c_up-") for c in sim.channels())  # call goes on
    assert media.stats.teardown_errors == 0 and media.stats.teardown_deferred == 0


# --- calls that end before their fork is complete ---------------------------------------------

def hold(ari: AriClient, method: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Make ``ari.<method>`` wait for ``release`` (``held`` tells it is waiting)."""
    held, release = asyncio.Event(), asyncio.Event()
    real = getattr(ari, method)

    async def held_call(*args: Any, **kwargs: Any) -> Any:
        held.set()
        await release.wait()
        return await real(*args, **kwargs)

    setattr(ari, method, held_call)
    return held, release


@pytest.mark.parametrize("method", ["create_bridge", "external_media", "snoop_channel",
                                    "add_channel_to_bridge"])
async def test_call_ending_during_its_fork_logs_no_warning_and_leaves_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, method: str) -> None:
    caplog.set_level(logging.DEBUG, logger="earpiece.media")
    ep = {"name": "c_brief", "ring_s": 0.3, "hangup_after_s": 0.4}
    async with Simulator(scenario([ep]), seed=24) as sim:
        service = service_for(sim, tmp_path)
        ended: list[str] = []
        service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
        try:
            await service.start()
            assert service.ari is not None
            held, release = hold(service.ari, method)
            call_id = await service.originate("PJSIP/c_brief", context="dialer",
                                              exten="agent", timeout_ms=9000)
            await wait_until(lambda: held.is_set(), 5.0)
            await wait_until(lambda: call_id in ended, 10.0)
            await wait_until(lambda: not any(c.name.startswith("PJSIP/")
                                             for c in sim.channels()), 5.0)
            release.set()
            media = service.media
            await wait_until(lambda: not media.legs() and not media._tasks and not helpers(sim),
                             5.0)
            stats = media.stats
        finally:
            await service.stop()
        assert leftovers(sim) == []
    assert media_warnings(caplog) == []
    assert stats.attach_failed == 0 and stats.attached == 0 and stats.attach_gone >= 1
    assert stats.teardown_errors == 0


# --- Local-channel originates -----------------------------------------------------------------

async def test_local_originate_ringing_gets_an_early_fork_and_failing_one_a_quiet_404(
        caplog: pytest.LogCaptureFixture) -> None:
    """The fork on its own: the bus events are those the call registry publishes once it
    announces a Local originate (``;1`` = the customer, ``;2`` its Local peer)."""
    caplog.set_level(logging.DEBUG, logger="earpiece.media")
    ep = {"name": "c_noans", "outcome": "noanswer", "ring_s": 30.0}
    async with Simulator(scenario([ep]), seed=25) as sim:
        ari = ari_for(sim)
        await ari.start()
        await ari.wait_connected(5)
        bus = EventBus()
        hub = FrameHub(bus=bus)
        settings = MediaSettings(bind_host="127.0.0.1", rtp_port_min=43100,
                                 rtp_port_max=43199)
        fork = MediaFork(bus=bus, ari=ari, settings=settings, app=APP, hub=hub,
                         receiver=RtpReceiver(settings, hub))
        await fork.start()
        try:
            sim.originate(OriginateRequest(channel="Local/c_noans@customers", context="dialer",
                                           exten="agent", callerid_name="Dialer",
                                           callerid_num="5000", action_id="local-1",
                                           timeout_ms=2500))
            halves: dict[str, Any] = {}

            def both() -> bool:
                for c in sim.channels():
                    if c.name.startswith("Local/c_noans@customers-"):
                        halves[c.name[-2:]] = c
                return len(halves) == 2

            await wait_until(both, 5.0)
            one, two = halves[";1"], halves[";2"]
            bus.publish(CallStarted(call_id="loc-1", direction="outbound", channel=one.name))
            bus.publish(ChannelJoined(call_id="loc-1", channel=one.name, uniqueid=one.id,
                                      role=ChannelRole.CUSTOMER))
            bus.publish(ChannelJoined(call_id="loc-1", channel=two.name, uniqueid=two.id,
                                      role=ChannelRole.LOCAL_PEER))
            await wait_until(lambda: len(fork.legs()) == 1, 5.0)
            assert fork.stats.early_attached == 1 and fork.legs()[0].channel_id == one.id
            assert snooped(sim) == [one.id]  # the half that carries the customer's audio
            # a failing Local originate: its ;1 is gone before the snoop (404 at once)
            bus.publish(CallStarted(call_id="loc-2", direction="outbound",
                                    channel="Local/c_busy@customers-00000009;1"))
            bus.publish(ChannelJoined(call_id="loc-2", channel="Local/c_busy@customers-"
                                      "00000009;1", uniqueid="1796499999.99",
                                      role=ChannelRole.CUSTOMER))
            await wait_until(lambda: fork.stats.attach_gone == 1, 5.0)
            assert [leg.call_id for leg in fork.legs()] == ["loc-1"]
            assert len(helpers(sim)) == 3  # loc-2 left nothing
            bus.publish(ChannelLeft(call_id="loc-2", channel="Local/c_busy@customers-"
                                    "00000009;1", uniqueid="1796499999.99", cause=17))
            bus.publish(CallEnded(call_id="loc-2", outcome=CallState.BUSY, hangup_cause=17))
            # the ringing one times out
            await wait_until(lambda: not any(c.name.startswith("Local/")
                                             for c in sim.channels()), 10.0)
            for half in (one, two):
                bus.publish(ChannelLeft(call_id="loc-1", channel=half.name, uniqueid=half.id,
                                        cause=19))
            bus.publish(CallEnded(call_id="loc-1", outcome=CallState.NO_ANSWER,
                                  hangup_cause=19))
            await wait_until(lambda: not fork.legs() and not helpers(sim), 5.0)
        finally:
            await fork.stop()
            await ari.close()
        assert leftovers(sim) == []
    assert media_warnings(caplog) == []
    assert fork.stats.attach_failed == 0 and fork.stats.teardown_errors == 0
    assert any("snoop: 404" in r.getMessage() and r.levelno == logging.DEBUG
               for r in caplog.records)


async def test_failing_local_originates_log_no_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Through the service: busy, congestion, an unknown extension (all end within a few ms)
    and no answer leave no WARNING and nothing at the PBX."""
    caplog.set_level(logging.INFO, logger="earpiece.media")
    endpoints = [{"name": "c_busy", "outcome": "busy"},
                 {"name": "c_cong", "outcome": "congestion"},
                 {"name": "c_noans", "outcome": "noanswer", "ring_s": 30.0}]
    async with Simulator(scenario(endpoints), seed=26) as sim:
        service = service_for(sim, tmp_path)
        ended: set[str] = set()
        service.bus.subscribe(CallEnded, lambda ev: ended.add(ev.call_id))
        try:
            await service.start()
            ids = [await service.originate(f"Local/{name}@customers", context="dialer",
                                           exten="agent", timeout_ms=1500)
                   for name in ("c_busy", "c_cong", "c_nosuch", "c_noans")]
            await wait_until(lambda: ended >= set(ids), 10.0)
            media = service.media
            await wait_until(lambda: not media.legs() and not media._tasks and not helpers(sim),
                             5.0)
            stats = media.stats
        finally:
            await service.stop()
        assert leftovers(sim) == []
    assert media_warnings(caplog) == []
    assert stats.attach_failed == 0 and stats.teardown_errors == 0


@pytest.mark.xfail(reason="the registry now announces our ringing Local originate at the ring "
                   "(tests/test_registry_captures.py, on the real capture), but through the "
                   "simulator the fork still finds the call ended: not investigated yet",
                   strict=False)
async def test_local_originate_ringing_is_forked_early_through_the_service(
        tmp_path: Path) -> None:
    async with Simulator(scenario([{"name": "c_ring", "outcome": "noanswer", "ring_s": 30.0}]),
                         seed=27) as sim:
        service = service_for(sim, tmp_path)
        ended: list[str] = []
        service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
        try:
            await service.start()
            call_id = await service.originate("Local/c_ring@customers", context="dialer",
                                              exten="agent", timeout_ms=2500)
            media = service.media
            await wait_until(lambda: media.stats.early_attached == 1 or call_id in ended, 10.0)
            assert media.stats.early_attached == 1 and call_id not in ended
        finally:
            await service.stop()
        assert leftovers(sim) == []
