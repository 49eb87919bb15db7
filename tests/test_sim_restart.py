"""Whole-PBX restarts of the simulator against ``shared/asterisk/captures/faults``:
``core restart now`` (hangup causes per channel, ``Shutdown`` bytes, no Goodbye, websocket cut
without a close frame, refused -> 404 -> 503 -> 101 while booting, ``FullyBooted`` only once
booted, numbering restarted) and ``core restart gracefully`` (Originate refused while calls are
up, close frame 1000). Timings are scaled down with the restart's parameters."""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from test_sim_ami import AmiTestClient, until

from earpiece.agi.ami_message import AmiMessage
from earpiece.sim.scenario import Scenario
from earpiece.sim.simulator import Simulator

FAULTS = Path("/work/shared/asterisk/captures/faults")
if not FAULTS.exists():
    FAULTS = Path(__file__).resolve().parents[2] / "shared" / "asterisk" / "captures" / "faults"
needs_captures = pytest.mark.skipif(not FAULTS.exists(), reason="captures not available")
AUTH = {"Authorization": "Basic YXNzaXN0OmFzc2lzdA=="}  # assist:assist
SHUTDOWN = b"Event: Shutdown\r\nPrivilege: system,all\r\nShutdown: Cleanly\r\nRestart: True\r\n\r\n"


def scenario() -> Scenario:
    return Scenario.from_dict({
        "endpoints": [
            {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.05},
            {"name": "cust1", "callerid_name": "Customer One", "ring_s": 0.05},
            {"name": "loop", "says": [{"wav": "hello-world", "at_s": 0.0}]},
            {"name": "human", "hangup_after_s": 0.6},
        ],
        "dialplan": {"context": "dialer", "exten": "agent", "agents": ["agent1"]},
    })


def originate(client: AmiTestClient, channel: str, aid: str) -> None:
    client.send(f"Action: Originate\r\nActionID: {aid}\r\nChannel: {channel}\r\n"
                "Context: dialer\r\nExten: agent\r\nPriority: 1\r\nCallerID: Dialer <5000>\r\n"
                "Timeout: 20000\r\nVariable: EARPIECE_CAMPAIGN=faults\r\nAsync: true\r\n\r\n")


def norm(name: str) -> str:
    """``PJSIP/agent1-00000009`` -> ``PJSIP/agent1``; Local halves keep ``;1``/``;2``."""
    return re.sub(r"-[0-9a-f]{8}(;\d)?$", lambda m: m.group(1) or "", name)


HANGUP_EVENTS = ("SoftHangupRequest", "HangupRequest", "Hangup")


def per_channel(msgs: list[AmiMessage]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for m in msgs:
        if m.event in HANGUP_EVENTS:
            out.setdefault(m["Channel"] or "", []).append((m.event or "", m["Cause"] or ""))
    return out


def capture_after_command(name: str) -> list[AmiMessage]:
    notes = json.loads((FAULTS / "ami" / f"{name}.json").read_text())
    t_cmd = notes["restart_command_t_on_clocks"]["ami"]
    out = []
    for line in (FAULTS / "ami" / f"{name}.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec["dir"] == "rx" and rec["t"] > t_cmd and rec["raw"].endswith("\r\n\r\n"):
            out.append(AmiMessage.parse(rec["raw"].encode()))
    return out


async def poll_ws(url: str, results: list[Any], stop: asyncio.Event) -> None:
    """A reconnecting ARI client: one websocket handshake attempt every 10 ms."""
    async with aiohttp.ClientSession(headers=AUTH) as s:
        while not stop.is_set():
            try:
                ws = await s.ws_connect(url + "/ari/events?app=assist&subscribeAll=true")
            except aiohttp.WSServerHandshakeError as exc:
                results.append(exc.status)
            except aiohttp.ClientConnectionError:
                results.append("refused")
            else:
                results.append(101)
                await ws.close()
                return
            await asyncio.sleep(0.01)


def collapse(seq: list[Any]) -> list[Any]:
    return [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]


@needs_captures
async def test_core_restart_now_matches_capture() -> None:
    async with Simulator(scenario()) as sim, aiohttp.ClientSession(headers=AUTH) as http:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        ws = await http.ws_connect(sim.ari_url + "/ari/events?app=assist&subscribeAll=true")
        ari_events: list[dict[str, Any]] = []
        ws_end: list[Any] = []

        async def read_ws() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    ari_events.append(json.loads(msg.data))
            ws_end.append((ws.close_code, ws.closed))

        reader = asyncio.get_running_loop().create_task(read_ws())
        originate(client, "PJSIP/cust1", "o-1")
        originate(client, "Local/loop@customers", "o-2")
        await client.wait(lambda m: m.event == "BridgeEnter"
                          and (m["Channel"] or "").startswith("Local/loop"), within=3)
        before = {c.name for c in sim.channels()}
        mark = len(client.messages())
        t_cmd = time.monotonic()
        restart = asyncio.get_running_loop().create_task(sim.faults.pbx_restart(
            shutdown_after_s=0.15, down_s=0.1, not_found_s=0.08, not_booted_s=0.08))
        await until(lambda: not sim.channels(), 1.0)
        assert time.monotonic() - t_cmd < 0.1
        await asyncio.wait_for(reader, 2.0)
        await until(lambda: client.eof, 2.0)
        polled: list[Any] = []
        poller = asyncio.get_running_loop().create_task(
            poll_ws(sim.ari_url, polled, asyncio.Event()))
        await asyncio.wait_for(poller, 3.0)
        await asyncio.wait_for(restart, 3.0)

        ours = client.messages()[mark:]
        captured = capture_after_command("core_restart")
        # every channel: SoftHangupRequest 4, ..., Hangup 16 (per channel, as captured)
        mine = {norm(k): v for k, v in per_channel(ours).items()}
        cap = {norm(k): v for k, v in per_channel(captured).items()}
        assert mine == cap
        assert set(per_channel(ours)) == before
        # then Shutdown, byte-exact, as the last bytes before the TCP close (no Goodbye)
        assert client.raw.endswith(SHUTDOWN) and client.eof
        assert [m.event for m in ours][-1] == "Shutdown"
        # ARI: ChannelHangupRequest cause 4 for all, ChannelDestroyed for all, no StasisEnd;
        # the websocket was cut without a close frame
        hup4 = {e["channel"]["name"] for e in ari_events
                if e["type"] == "ChannelHangupRequest" and e.get("cause") == 4 and e.get("soft")}
        destroyed = {e["channel"]["name"] for e in ari_events if e["type"] == "ChannelDestroyed"}
        assert hup4 == destroyed == before
        assert not [e for e in ari_events if e["type"] == "StasisEnd"]
        assert ws_end and ws_end[0][0] == 1006, ws_end  # no close frame: abnormal closure
        # reconnecting: refused -> 404 (HTML) -> 503 (not booted) -> 101, as captured
        assert collapse(polled) == ["refused", 404, 503, 101]
        assert sim.pbx_state == "up"

        # after the restart: FullyBooted (booted order of headers), numbering from 0
        client2 = await AmiTestClient.connect(sim.ami_port)
        await client2.login()
        originate(client2, "Local/human@customers", "after-1")
        await client2.wait(lambda m: m.event == "Newstate"
                           and (m["Channel"] or "").startswith("PJSIP/agent1"), within=3)
        names = [c.name for c in sim.channels()]
        assert "Local/human@customers-00000000;1" in names
        assert "PJSIP/agent1-00000000" in names
        uids = sorted(c.id for c in sim.channels())
        assert [u.split(".")[1] for u in uids] == ["0", "1", "2"]
        await client2.close()
        await client.close()


@needs_captures
async def test_ami_login_while_booting_gets_fully_booted_when_booted() -> None:
    captured = (FAULTS / "ami" / "core_restart_fast_retry_after.jsonl").read_text()
    booted_raw = next(json.loads(line)["raw"] for line in captured.splitlines()
                      if "FullyBooted" in line)
    ari = [json.loads(line) for line in
           (FAULTS / "ari" / "core_restart_fast_retry.jsonl").read_text().splitlines()]
    cap_404 = next(r for r in ari if r["kind"] == "response" and r.get("status") == 404)
    cap_503 = next(r for r in ari if r["kind"] == "response" and r.get("status") == 503)
    async with Simulator(scenario()) as sim, aiohttp.ClientSession(headers=AUTH) as http:
        restart = asyncio.get_running_loop().create_task(sim.faults.pbx_restart(
            shutdown_after_s=0.05, down_s=0.05, not_found_s=0.3, not_booted_s=0.3))
        await until(lambda: sim.pbx_state == "not_found", 2.0)
        async with http.get(sim.ari_url + "/ari/events?app=assist") as r:
            assert (r.status, r.reason, await r.text()) == (404, "Not Found", cap_404["body"])
            assert [k.lower() for k, _ in cap_404["headers"]] == [k.lower() for k in r.headers]
        await until(lambda: sim.pbx_state == "not_booted", 2.0)
        async with http.get(sim.ari_url + "/ari/asterisk/ping") as r:
            assert (r.status, await r.text()) == (503, cap_503["body"])
            assert [k.lower() for k, _ in cap_503["headers"]] == [k.lower() for k in r.headers]
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        await asyncio.sleep(0.05)
        assert not [m for m in client.events() if m.event == "FullyBooted"]
        await asyncio.wait_for(restart, 3.0)
        booted = await client.wait(lambda m: m.event == "FullyBooted", within=2)
        assert bytes(booted) == booted_raw.encode()
        events = [m.event for m in client.events()]
        assert events.index("ContactStatus") < events.index("FullyBooted")
        await client.close()


async def test_core_restart_gracefully() -> None:
    async with Simulator(scenario()) as sim, aiohttp.ClientSession(headers=AUTH) as http:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        ws = await http.ws_connect(sim.ari_url + "/ari/events?app=assist&subscribeAll=true")
        originate(client, "Local/human@customers", "o-1")
        await until(lambda: len(sim.channels()) >= 3, 2.0)
        restart = asyncio.get_running_loop().create_task(sim.faults.pbx_restart(
            graceful=True, shutdown_after_s=0.1, down_s=0.1))
        await until(lambda: sim.pbx_state == "shutting_down", 1.0)
        resp = await client.action("Originate", "refused-1", Channel="PJSIP/cust1",
                                   Context="dialer", Exten="agent", Async="true")
        assert bytes(resp) == (b"Response: Error\r\nActionID: refused-1\r\n"
                               b"Message: Asterisk is shutting down\r\n\r\n")
        async with http.get(sim.ari_url + "/ari/asterisk/ping") as r:
            assert r.status == 200
        other = await http.ws_connect(sim.ari_url + "/ari/events?app=probe")
        await other.close()
        assert sim.channels()  # the call is still up
        async for _ in ws:
            pass
        assert ws.close_code == 1000 and not sim.channels()  # a close frame 1000
        await until(lambda: client.eof, 2.0)
        assert client.raw.endswith(SHUTDOWN)
        await asyncio.wait_for(restart, 3.0)
        client2 = await AmiTestClient.connect(sim.ami_port)
        await client2.login()
        ok = await client2.action("Originate", "ok-1", Channel="Local/human@customers",
                                  Context="dialer", Exten="agent", Async="true")
        assert ok.response == "Success"
        await client2.close()
        await client.close()
