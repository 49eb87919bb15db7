"""Local-channel dialer originates and client-crash leftovers against
``shared/asterisk/captures/faults``: ``Originate Local/<exten>@customers`` into ``[dialer]
agent`` (events and hangup causes per channel, OriginateResponse Reason and timing, the agent
dialled after the answer, snoops refused with 404 on failing originates) and
``crash_leftovers`` (``ep-*`` bridge, externalMedia and snoop of a dead client stay, are
listed, and DELETE gives 204 then 404)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from test_sim_ami import AmiTestClient, until
from test_sim_restart import AUTH, FAULTS, needs_captures, norm, originate

from earpiece.agi.ami_message import AmiMessage
from earpiece.sim.scenario import Scenario
from earpiece.sim.simulator import Simulator

SKIP = {"RTCPReceived", "RTCPSent", "ChanSpyStart", "ChanSpyStop", "SuccessfulAuth",
        "FullyBooted", "Newexten", "VarSet"}  # the site user reads no dialplan class


def scenario() -> Scenario:
    return Scenario.from_dict({
        "endpoints": [
            {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.1},
            {"name": "cust1", "callerid_name": "Customer One", "ring_s": 0.05,
             "hangup_after_s": 0.5},
            {"name": "human", "hangup_after_s": 0.4},
            {"name": "busy", "outcome": "busy"},
            {"name": "congestion", "outcome": "congestion"},
            {"name": "noanswer", "outcome": "noanswer"},
        ],
        "dialplan": {"context": "dialer", "exten": "agent", "agents": ["agent1"]},
    })


def keyed(m: AmiMessage) -> str:
    return norm(m.get("Channel") or m.get("DestChannel") or m.get("Device") or "")


def per_channel(msgs: list[AmiMessage]) -> dict[str, list[tuple[str, str]]]:
    """(event, Cause) per channel, snoops left out (the captures snooped, we need not)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for m in msgs:
        key = keyed(m)
        if m.event in SKIP or key.startswith("Snoop") or m.event == "DeviceStateChange":
            continue
        out.setdefault(key, []).append((m.event or "", m.get("Cause") or ""))
    return out


def capture(outcome: str) -> tuple[list[tuple[float, AmiMessage]], float]:
    recs = [json.loads(line) for line in
            (FAULTS / "ami" / f"local_dialer_{outcome}.jsonl").read_text().splitlines()]
    t0 = next(r["t"] for r in recs if r["dir"] == "tx" and "Originate" in r["raw"])
    out = [(r["t"] - t0, AmiMessage.parse(r["raw"].encode())) for r in recs
           if r["dir"] == "rx" and r["t"] > t0 and r["raw"].endswith("\r\n\r\n")]
    return [(t, m) for t, m in out if m.event is not None], t0


@needs_captures
@pytest.mark.parametrize(("outcome", "exten", "reason", "within"), [
    ("answered", "human", "4", 0.05), ("busy", "busy", "5", 0.05),
    ("congestion", "congestion", "8", 0.05), ("noanswer", "noanswer", "3", 0.5),
    ("nosuchexten", "nosuchexten", "0", 0.05)])
async def test_local_dialer_matches_capture(outcome: str, exten: str, reason: str,
                                            within: float) -> None:
    captured, _ = capture(outcome)
    cap_events = [m for _, m in captured if m.event not in SKIP]
    async with Simulator(scenario()) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        timeout = "300" if outcome == "noanswer" else "20000"
        t0 = time.monotonic()
        client.send(f"Action: Originate\r\nActionID: l-1\r\nChannel: Local/{exten}@customers"
                    "\r\nContext: dialer\r\nExten: agent\r\nPriority: 1\r\n"
                    f"CallerID: Dialer <5000>\r\nTimeout: {timeout}\r\nAsync: true\r\n\r\n")
        resp = await client.wait(lambda m: m.event == "OriginateResponse", within=3)
        took = next(t for t, m in client.items if m is resp) - t0
        await client.wait(lambda m: m.event == "Newchannel", within=1)
        await until(lambda: not sim.channels(), 3.0)
        await asyncio.sleep(0.02)
        ours = [m for m in client.events() if m.event not in SKIP]
        await client.close()
    cap_resp = next(m for m in cap_events if m.event == "OriginateResponse")
    assert (resp["Response"], resp["Reason"]) == (cap_resp["Response"], reason)
    assert [k for k, _ in resp.headers] == [k for k, _ in cap_resp.headers]
    assert norm(resp.get("Channel") or "") == norm(cap_resp.get("Channel") or "")
    assert took < within + (0.3 if outcome == "noanswer" else 0.0)
    if outcome == "noanswer":
        assert took >= 0.29
    assert per_channel(ours) == per_channel(cap_events)
    # both halves appear together, within 2 ms of each other (as captured)
    halves = [t for t, m in client.items if isinstance(m, AmiMessage)
              and m.event == "Newchannel" and (m.get("Channel") or "").startswith("Local/")]
    assert len(halves) == 2 and halves[1] - halves[0] < 0.002
    if outcome == "answered":  # the agent is dialled only after the answer
        names = [(m.event, keyed(m)) for m in ours]
        assert names.index(("Newchannel", "PJSIP/agent1")) > names.index(
            ("OriginateResponse", "Local/human@customers;1"))


@needs_captures
@pytest.mark.parametrize("exten", ["busy", "congestion", "nosuchexten"])
async def test_snoop_on_failing_local_originate_is_refused(exten: str) -> None:
    notes = json.loads((FAULTS / "ari" / f"local_dialer_{exten}.json").read_text())
    assert notes  # the capture's facts: 404 {"message":"Provided channel was not found"}
    async with Simulator(scenario()) as sim, aiohttp.ClientSession(headers=AUTH) as http:
        ws = await http.ws_connect(sim.ari_url + "/ari/events?app=assist&subscribeAll=true")
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        originate(client, f"Local/{exten}@customers", "s-1")
        answers: list[tuple[int, str]] = []
        destroyed_before: list[bool] = []
        async for msg in ws:
            event = json.loads(msg.data)
            if event["type"] == "ChannelCreated":
                cid = event["channel"]["id"]
                async with http.post(f"{sim.ari_url}/ari/channels/{cid}/snoop",
                                     params={"app": "assist", "spy": "both"}) as r:
                    answers.append((r.status, await r.text()))
                    destroyed_before.append(sim.engine.channel(cid) is None)
            if event["type"] == "ChannelDestroyed" and len(answers) == 2:
                break
        await ws.close()
        await client.close()
        await until(lambda: not sim.channels(), 2.0)
    assert answers == [(404, '{"message":"Provided channel was not found"}')] * 2
    assert destroyed_before[0] is False  # refused while the channel still existed


@needs_captures
async def test_crash_leftovers_stay_until_deleted() -> None:
    notes = json.loads((FAULTS / "ari" / "crash_leftovers.json").read_text())
    assert notes
    async with Simulator(scenario()) as sim, aiohttp.ClientSession(headers=AUTH) as http:
        base = sim.ari_url + "/ari"

        async def call(method: str, path: str, **params: str) -> tuple[int, Any]:
            async with http.request(method, base + path, params=params) as r:
                text = await r.text()
                return r.status, json.loads(text) if text else None

        victim = await http.ws_connect(base + "/events?app=assist")
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        originate(client, "PJSIP/cust1", "c-1")
        await until(lambda: any(c.name.startswith("PJSIP/agent1") and c.bridge is not None
                                for c in sim.channels()), 3.0)
        cust = next(c for c in sim.channels() if c.name.startswith("PJSIP/cust1"))
        assert (await call("POST", "/bridges", bridgeId="ep-crash-customer-bridge"))[0] == 200
        st, em = await call("POST", "/channels/externalMedia", app="assist",
                            channelId="ep-crash-customer-em", external_host="127.0.0.1:40000",
                            format="ulaw")
        assert st == 200 and em["name"].startswith("UnicastRTP/127.0.0.1")
        await until(lambda: (sim.engine.channel("ep-crash-customer-em") or cust).stasis_app
                    is not None, 2.0)
        assert (await call("POST", "/bridges/ep-crash-customer-bridge/addChannel",
                           channel="ep-crash-customer-em"))[0] == 204
        st, snoop = await call("POST", f"/channels/{cust.id}/snoop", app="assist", spy="in")
        assert st == 200
        # the client dies: its TCP connection is cut, no close frame
        transport = victim._response.connection.transport  # type: ignore[union-attr]
        assert transport is not None
        transport.abort()
        await until(lambda: not sim.ari.sockets, 2.0)
        assert (await call("GET", "/applications")) == (200, [])
        await until(lambda: sim.engine.channel(cust.id) is None, 3.0)  # the call ends
        st, chans = await call("GET", "/channels")
        assert [c["id"] for c in chans] == ["ep-crash-customer-em"]  # the snoop went with it
        assert chans[0]["state"] == "Up" and snoop["id"] not in [c["id"] for c in chans]
        st, bridges = await call("GET", "/bridges")
        assert [(b["id"], b["bridge_class"], b["channels"]) for b in bridges] == [
            ("ep-crash-customer-bridge", "stasis", ["ep-crash-customer-em"])]
        await asyncio.sleep(0.2)
        assert sim.engine.channel("ep-crash-customer-em") is not None  # nothing removes them
        assert await call("DELETE", "/channels/ep-crash-customer-em") == (204, None)
        assert await call("DELETE", "/bridges/ep-crash-customer-bridge") == (204, None)
        assert await call("DELETE", "/channels/ep-crash-customer-em") == (
            404, {"message": "Channel not found"})
        assert await call("DELETE", "/bridges/ep-crash-customer-bridge") == (
            404, {"message": "Bridge not found"})
        assert await call("GET", "/bridges") == (200, [])
        assert await call("GET", "/channels") == (200, [])
        await client.close()
