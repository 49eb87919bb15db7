"""A second websocket on our ARI app (issue #16, defect 3; capture
``faults/ari/ari_app_replaced``): the simulator behaves as recorded, a running
:class:`AriClient` reports the loss and takes the app back once it is free (never from a live
holder), and a :class:`Service` refuses to start while another websocket holds its app."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_sim_ari import CAPTURES, Ari, needs_captures, scenario

import earpiece.agi.ari_client as ari_client
from earpiece.agi.ari_client import AriAppInUseError, AriClient
from earpiece.agi.ari_models import AriEvent
from earpiece.agi.settings import AriSettings
from earpiece.app import Service
from earpiece.demo import demo_settings
from earpiece.secret import Secret
from earpiece.sim.engine import OriginateRequest
from earpiece.sim.simulator import Simulator


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.01)


async def live_call(sim: Simulator) -> str:
    """An answered call (customer + agent, held up); the customer's channel id."""
    sim.originate(OriginateRequest(channel="PJSIP/cust1", context="dialer", exten="agent"))
    await wait_until(lambda: any(b.channels and len(b.channels) == 2 for b in sim.bridges()))
    return next(c.id for c in sim.channels() if c.name.startswith("PJSIP/cust1"))


def replaced_shape() -> list[str]:
    """Key order of the recorded ``ApplicationReplaced`` frame."""
    for line in (CAPTURES / "faults" / "ari" / "ari_app_replaced.jsonl").read_text().splitlines():
        item = json.loads(line)
        if item.get("kind") == "event" and item["event"]["type"] == "ApplicationReplaced":
            return list(json.loads(item["raw"]))
    raise AssertionError("no ApplicationReplaced in the capture")


# --- the simulator, as recorded -------------------------------------------------------------

@needs_captures
async def test_simulator_second_websocket_replaces_the_first_as_recorded() -> None:
    async with Simulator(scenario(hangup_after_s=0)) as sim, aiohttp.ClientSession() as s:
        a = Ari(sim, s)
        await a.connect()
        call = await live_call(sim)
        assert (await a.req("POST", "/ari/bridges", bridgeId="br1"))[0] == 200
        assert (await a.req("POST", f"/ari/channels/{call}/snoop", spy="in", app="assist",
                            snoopId="sn1"))[0] == 200
        assert (await a.req("POST", "/ari/bridges/br1/addChannel", channel="sn1"))[0] == 204
        await a.wait(lambda e: e["type"] == "ChannelEnteredBridge"
                     and e["channel"]["id"] == "sn1")
        before = len(a.events)

        b = Ari(sim, s)
        await b.connect()
        replaced = await a.wait(lambda e: e["type"] == "ApplicationReplaced")
        assert list(replaced) == replaced_shape()
        assert replaced["application"] == "assist"
        assert replaced["asterisk_id"] == sim.engine.asterisk_id
        status, apps = await a.req("GET", "/ari/applications")
        assert status == 200 and [x["name"] for x in apps] == ["assist"]

        # While B holds the app, its events go to B only; A stays open and silent.
        assert (await a.req("POST", f"/ari/channels/{call}/snoop", spy="in", app="assist",
                            snoopId="sn-b"))[0] == 200
        await b.wait(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == "sn-b")
        assert (await b.req("DELETE", "/ari/channels/sn-b"))[0] == 204
        await b.wait(lambda e: e["type"] == "ChannelDestroyed" and e["channel"]["id"] == "sn-b")
        assert len(a.events) == before + 1 and a.ws is not None and not a.ws.closed

        await b.close()
        await wait_until(lambda: not sim.ari.owners.apps())
        assert await a.req("GET", "/ari/applications") == (200, [])
        assert await a.req("GET", "/ari/applications/assist") == (
            404, {"message": "Application not found"})

        # A's requests now: 200 with a body, but the channel is gone at once.
        status, snoop = await a.req("POST", f"/ari/channels/{call}/snoop", spy="in",
                                    app="assist", snoopId="sn2")
        assert status == 200 and snoop["id"] == "sn2" and snoop["name"].startswith("Snoop/")
        assert await a.req("POST", "/ari/bridges/br1/addChannel", channel="sn2") == (
            400, {"message": "Channel not found"})
        status, em = await a.req("POST", "/ari/channels/externalMedia", app="assist",
                                 external_host="127.0.0.1:9", format="ulaw", channelId="em2")
        assert status == 200 and em["id"] == "em2"
        assert await a.req("POST", "/ari/bridges/br1/addChannel", channel="em2") == (
            400, {"message": "Channel not found"})
        assert (await a.req("POST", "/ari/bridges", bridgeId="br2"))[0] == 200
        assert (await a.req("GET", "/ari/channels/sn1"))[0] == 200  # made before: kept
        assert (await a.req("DELETE", "/ari/channels/em2"))[0] == 404
        assert (await a.req("DELETE", "/ari/channels/sn2"))[0] == 404
        await asyncio.sleep(0.05)
        assert len(a.events) == before + 1  # still nothing for A
        assert a.ws is not None and not a.ws.closed

        # A closes and reconnects (A2): the app is back, and with it the usual events.
        await a.close()
        a2 = Ari(sim, s)
        await a2.connect()
        await wait_until(lambda: sim.ari.owners.apps() == ["assist"])
        assert (await a2.req("POST", f"/ari/channels/{call}/snoop", spy="in", app="assist",
                             snoopId="sn3"))[0] == 200
        assert (await a2.req("POST", "/ari/bridges/br2/addChannel", channel="sn3"))[0] == 204
        assert (await a2.req("POST", "/ari/channels/externalMedia", app="assist",
                             external_host="127.0.0.1:9", format="ulaw",
                             channelId="em3"))[0] == 200
        await a2.wait(lambda e: e["type"] == "StasisStart" and e["channel"]["id"] == "em3")
        assert (await a2.req("POST", "/ari/bridges/br2/addChannel", channel="em3"))[0] == 204
        await a2.wait(lambda e: e["type"] == "ChannelEnteredBridge"
                      and e["channel"]["id"] == "em3")
        for cid in ("em3", "sn3", "sn1", call):
            await a2.req("DELETE", f"/ari/channels/{cid}")
        await a2.close()


# --- AriClient ------------------------------------------------------------------------------

def client_for(sim: Simulator, **kw: Any) -> AriClient:
    settings = AriSettings(url=sim.ari_url, password=Secret("assist"), app="assist",
                           reconnect_initial_s=0.05, reconnect_max_s=0.2)
    return AriClient(settings, **kw)


async def test_client_reports_a_takeover_and_takes_the_app_back_once_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="earpiece.agi.ari_client")
    events: list[AriEvent] = []
    resyncs = 0

    async def on_connected() -> None:
        nonlocal resyncs
        resyncs += 1

    async with Simulator(scenario(hangup_after_s=0)) as sim, aiohttp.ClientSession() as s:
        client = client_for(sim, on_event=events.append, on_connected=on_connected,
                            app_poll_s=0.05)
        try:
            await client.start(refuse_if_taken=True)
            await client.wait_connected(5)
            await wait_until(lambda: resyncs == 1)
            assert client.app_owned and await client.app_taken()

            b = Ari(sim, s)
            await b.connect()
            await wait_until(lambda: client.stats.app_lost == 1)
            assert not client.app_owned and client.connected  # open but silent
            errors = [r for r in caplog.records if r.levelno == logging.ERROR]
            assert any("taken over by another websocket" in r.getMessage() for r in errors)
            assert "taken over" in client.stats.last_error

            # It never fights a live holder: several polls later B still has the app.
            polls = client.stats.connects
            await live_call(sim)
            await b.wait(lambda e: e["type"] == "ChannelEnteredBridge")
            await asyncio.sleep(0.3)
            assert client.stats.connects == polls and resyncs == 1
            assert not any(e["type"] == "ApplicationReplaced" for e in b.events)
            assert sim.ari.owners.apps() == ["assist"] and not client.app_owned

            await b.close()  # B leaves: the app is free, the client takes it back
            await wait_until(lambda: client.app_owned)
            assert client.stats.app_regained == 1 and client.stats.app_lost == 1
            assert client.stats.connects == 2
            await wait_until(lambda: resyncs == 2)
            assert any("regained" in r.getMessage() for r in caplog.records)

            # Events flow again.
            n = len(events)
            await client.request("POST", "/bridges", body={"bridgeId": "after"})
            await wait_until(lambda: any(e.type == "BridgeCreated" for e in events[n:]))
        finally:
            await client.close()
        assert not client.app_owned


async def test_client_waits_while_the_app_is_held_even_after_its_socket_drops() -> None:
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        client = client_for(sim, app_poll_s=0.05)
        try:
            await client.start()
            await client.wait_connected(5)
            b = Ari(sim, s)
            await b.connect()
            await wait_until(lambda: client.stats.app_lost == 1)
            # Our silent socket is cut (e.g. a proxy): reconnecting now would steal the app.
            assert client._ws is not None
            await client._ws.close()
            await wait_until(lambda: not client.connected)
            await asyncio.sleep(0.3)
            assert client.stats.connects == 1 and not client.app_owned
            await b.close()
            await wait_until(lambda: client.app_owned)
            assert client.stats.app_regained == 1
        finally:
            await client.close()


async def test_start_refuses_an_app_held_by_a_live_websocket() -> None:
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        holder = Ari(sim, s)
        await holder.connect()
        client = client_for(sim, app_free_wait_s=0.3)
        try:
            with pytest.raises(AriAppInUseError, match="in use by another websocket"):
                await client.start(refuse_if_taken=True)
            assert not client.connected and client.stats.connects == 0
        finally:
            await client.close()
        assert not any(e["type"] == "ApplicationReplaced" for e in holder.events)

        # A predecessor that goes within the wait is no reason to refuse.
        client = client_for(sim, app_free_wait_s=5.0)
        try:
            loop = asyncio.get_running_loop()
            loop.call_later(0.3, lambda: loop.create_task(holder.close()))
            await client.start(refuse_if_taken=True)
            await client.wait_connected(5)
            assert client.app_owned
        finally:
            await client.close()


# --- Service --------------------------------------------------------------------------------

async def test_service_refuses_to_start_while_another_websocket_holds_its_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ari_client, "APP_FREE_WAIT_S", 0.3)
    async with Simulator(scenario()) as sim, aiohttp.ClientSession() as s:
        holder = Ari(sim, s)
        await holder.connect()
        service = Service(demo_settings(sim, db=str(tmp_path / "crm.sqlite3")), media=False,
                          agi=False)
        with pytest.raises(AriAppInUseError) as info:
            await service.start()
        assert str(info.value) == ("ARI app 'assist' is in use by another websocket "
                                   "(another Earpiece?); stop it or set ari.app")
        assert not any(e["type"] == "ApplicationReplaced" for e in holder.events)
        assert sim.ari.owners.apps() == ["assist"]
        await holder.close()


async def test_service_gets_forks_again_after_a_second_instance_came_and_went(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ari_client, "APP_POLL_S", 0.1)
    async with Simulator(scenario(hangup_after_s=0)) as sim, aiohttp.ClientSession() as s:
        settings = demo_settings(sim, db=str(tmp_path / "crm.sqlite3"))
        settings = dataclasses.replace(
            settings, asr=dataclasses.replace(settings.asr, enabled=False),
            cpa=dataclasses.replace(settings.cpa, enabled=False))
        async with Service(settings, agi=False) as service:
            assert service.ari is not None and service.media is not None
            await wait_until(lambda: service.ari is not None and service.ari.app_owned)
            resyncs = service.resyncs["ari"]
            # A second `earpiece run` connects and exits at once (bad AMI secret).
            second = Ari(sim, s)
            await second.connect()
            await wait_until(lambda: service.ari is not None
                             and service.ari.stats.app_lost == 1)
            await second.close()
            await wait_until(lambda: service.ari is not None and service.ari.app_owned)
            assert service.ari.stats.app_regained == 1
            await wait_until(lambda: service.resyncs["ari"] == resyncs + 1)

            frames: list[Any] = []
            service.hub.subscribe(frames.append, rate=8000, party="customer")
            attached = service.media.stats.attached
            await live_call(sim)
            await wait_until(lambda: service.media.stats.attached >= attached + 2)
            await wait_until(lambda: len(frames) >= 10)
            call_ids = {f.call_id for f in frames}
            assert len(call_ids) == 1 and call_ids <= set(service.registry.calls)
            for ch in list(sim.channels()):
                if ch.name.startswith("PJSIP/cust1"):
                    await Ari(sim, s).req("DELETE", f"/ari/channels/{ch.id}")
            await wait_until(lambda: not any(c.tech == "Snoop" for c in sim.channels()))
