"""End to end on the PBX simulator: the customer turns negative -> the soothe prompt reaches the
agent's desk phone (AMI MessageSend) within 2 s, the CRM's prompt row says sent, and the live
feed websocket carries it; with the agent's phone offline the PBX's reason is kept."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from earpiece.app import Service
from earpiece.asr.settings import AsrSettings
from earpiece.demo import demo_settings
from earpiece.events import (
    CallEnded,
    ChannelJoined,
    ChannelRole,
    EmotionChanged,
    PromptDelivered,
)
from earpiece.secret import Secret
from earpiece.sim.scenario import load_scenario
from earpiece.sim.simulator import Simulator
from earpiece.strategy.settings import StrategySettings

CAMPAIGN = Path(__file__).resolve().parent.parent / "config" / "campaigns" / "example.toml"
TOKEN = "feed-token-for-tests"


def scenario_file(tmp_path: Path) -> Path:
    lines = [
        'name = "strategy-e2e"',
        "[dialplan]", 'agents = ["agent1"]', "dial_timeout_s = 10",
        "[[endpoints]]", 'name = "agent1"', 'role = "agent"',
        "[[endpoints]]", 'name = "cust1"', 'outcome = "answer"', "ring_s = 0.3",
        "hangup_after_s = 6.0",
        'says = [{wav = "demo-congrats", at_s = 0.2}]',
        'agent_says = [{wav = "demo-echotest", at_s = 0.3}]',
        "[dialer]", "enabled = true", "start_after_s = 0.3", "spacing_s = 0.2",
        "timeout_ms = 5000", 'calls = ["cust1"]',
    ]
    path = tmp_path / "strategy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.02)


async def test_negative_customer_soothe_prompt_reaches_phone_crm_and_feed(
        tmp_path: Path) -> None:
    sim = Simulator(load_scenario(scenario_file(tmp_path)), seed=3)
    await sim.start()
    base = demo_settings(sim, db=str(tmp_path / "crm.sqlite3"))
    settings = dataclasses.replace(
        base, asr=AsrSettings(enabled=False),
        strategy=StrategySettings(campaign=CAMPAIGN),
        http=dataclasses.replace(base.http, feed_token=Secret(TOKEN)))
    service = Service(settings, media=False)
    agent_calls: list[str] = []
    reports: list[PromptDelivered] = []
    ended: list[str] = []
    service.bus.subscribe(ChannelJoined, lambda ev: agent_calls.append(ev.call_id)
                          if ev.role == ChannelRole.AGENT else None)
    service.bus.subscribe(PromptDelivered, reports.append)
    service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
    try:
        await service.start()
        assert service.strategy is not None and service.ops is not None
        await wait_until(lambda: bool(agent_calls))
        call_id = agent_calls[0]
        await wait_until(lambda: any(c["id"] == call_id and c["state"] == "answered"
                                     for c in service.registry.snapshot()))
        url = f"http://127.0.0.1:{service.ops.port}/api/feed?call_id={call_id}"
        async with aiohttp.ClientSession() as session, \
                session.ws_connect(url, headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
            hello = await ws.receive_json(timeout=2)
            assert [c["id"] for c in hello["calls"]] == [call_id]

            # the customer turns negative (a scripted emotion stage)
            t0 = time.time()
            service.bus.publish(EmotionChanged(call_id=call_id, at=t0, party="customer",
                                               old="neutral", new="negative", index=-0.6,
                                               utterance=3))
            await wait_until(lambda: bool(sim.messages), timeout_s=2.0)
            delay = time.time() - t0
            (msg,) = sim.messages
            assert msg["to"] == "pjsip:agent1" and msg["endpoint"] == "agent1"
            assert msg["body"].startswith("[soothe] Acknowledge the problem"), msg
            assert delay < 2.0

            seen: list[dict[str, Any]] = []
            while not any(m["type"] == "PromptReady" for m in seen):
                seen.append(await ws.receive_json(timeout=2))
            prompt = next(m for m in seen if m["type"] == "PromptReady")
            assert prompt["kind"] == "soothe" and prompt["call_id"] == call_id
            await wait_until(lambda: any(r.channel == "phone" for r in reports), 2.0)
            assert service.crm is not None and service.store is not None
            await service.crm.flush()
            (row,) = await service.store.query(
                "SELECT id, kind, rule, delivery FROM prompts WHERE call_id = ?", (call_id,))
            assert (row["id"], row["kind"], row["rule"]) == (
                prompt["prompt_id"], "soothe", "negative_soothe")
            delivery = json.loads(row["delivery"])
            assert delivery["phone"]["status"] == "sent"
            assert delivery["phone"]["target"] == "pjsip:agent1"
            assert delivery["feed"]["status"] == "sent"

            # the agent's phone goes offline: MessageSend fails, the PBX's reason is kept
            sim.set_registered("agent1", False)
            service.bus.publish(EmotionChanged(call_id=call_id, at=t0 + 3, party="customer",
                                               old="negative", new="positive", index=0.4,
                                               utterance=5))
            await wait_until(lambda: any(r.status == "failed" for r in reports), 2.0)
            await service.crm.flush()
            rows = await service.store.query(
                "SELECT kind, delivery FROM prompts WHERE call_id = ? ORDER BY at", (call_id,))
            assert [r["kind"] for r in rows] == ["soothe", "discover"]
            failed = json.loads(rows[1]["delivery"])["phone"]
            assert failed == {**failed, "status": "failed", "target": "pjsip:agent1",
                              "detail": "Message failed to send."}
            assert len(sim.messages) == 1
        await wait_until(lambda: call_id in ended, 15.0)
    finally:
        await service.stop()
        await sim.stop()
