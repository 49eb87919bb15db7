"""Delivery: the desk phone (AMI MessageSend), the live feed websocket and the CRM prompts row."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from earpiece.agi.ami_actions import AmiActionError
from earpiece.agi.ami_message import AmiMessage
from earpiece.bus import EventBus
from earpiece.crm.dialect import SQLITE
from earpiece.crm.writer import statements_for
from earpiece.delivery.feed import FeedHub
from earpiece.delivery.phone import DeskPhone, endpoint_of, phone_text
from earpiece.delivery.settings import DeliverySettings
from earpiece.events import (
    CallStarted,
    ChannelJoined,
    ChannelRole,
    PromptDelivered,
    PromptReady,
    Transcript,
)
from earpiece.secret import Secret
from earpiece.web.feed import add_feed

PROMPT = PromptReady(call_id="c1", at=100.0, kind="soothe", prompt_id="p1",
                     text="Acknowledge the problem and apologise once. Then wrap up politely.",
                     language="en", slot="weekday-afternoon", rule="negative_soothe",
                     reason={"emotion": "negative", "index": -0.6})


class FakeSender:
    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.sent: list[tuple[str, str, str | None, dict[str, str] | None]] = []

    async def message_send(self, to: str, body: str, from_: str | None = None,
                           variables: Mapping[str, str] | None = None) -> None:
        if self.fail is not None:
            response = AmiMessage.parse(
                f"Response: Error\r\nActionID: 1\r\nMessage: {self.fail}\r\n\r\n".encode())
            raise AmiActionError("MessageSend", response)
        self.sent.append((to, body, from_, dict(variables) if variables else None))


def test_endpoint_of_channel_names() -> None:
    assert endpoint_of("PJSIP/agent1-0000002a") == "agent1"
    assert endpoint_of("PJSIP/desk-12-00000001") == "desk-12"
    assert endpoint_of("SIP/agent7-00000003") == "agent7"
    assert endpoint_of("Local/agent@ctx-00000001;1") is None
    assert endpoint_of("weird") is None


def test_phone_text_fits_the_screen() -> None:
    assert phone_text("soothe", "Say  sorry.\nThen close.", 40) == "[soothe] Say sorry. Then close."
    short = phone_text("soothe", PROMPT.text, 40)
    assert len(short) <= 40 and short.endswith("…") and " apolo" not in short[-3:]


async def joined(bus: EventBus, channel: str = "PJSIP/agent1-00000002") -> None:
    bus.publish(ChannelJoined(call_id="c1", channel=channel, uniqueid="u2",
                              role=ChannelRole.AGENT))


async def test_desk_phone_sends_to_the_agent_endpoint() -> None:
    bus, sender = EventBus(), FakeSender()
    phone = DeskPhone(bus, sender, DeliverySettings(phone_from='"Earpiece" <sip:e@pbx>'),
                      clock=lambda: 100.25)
    phone.start()
    reports: list[PromptDelivered] = []
    bus.subscribe(PromptDelivered, reports.append)
    await joined(bus)
    bus.publish(PROMPT)
    await phone.stop()
    ((to, body, from_, variables),) = sender.sent
    assert (to, from_, variables) == ("pjsip:agent1", '"Earpiece" <sip:e@pbx>', None)
    assert body == "[soothe] " + PROMPT.text
    (r,) = reports
    assert (r.channel, r.status, r.target, r.prompt_id, r.latency_s) == (
        "phone", "sent", "pjsip:agent1", "p1", 0.25)


async def test_desk_phone_json_body() -> None:
    bus, sender = EventBus(), FakeSender()
    phone = DeskPhone(bus, sender, DeliverySettings(phone_json=True, phone_max_chars=30))
    await joined(bus)  # before start: not seen
    phone.start()
    await joined(bus)
    report = await phone.send(PROMPT)
    assert report.status == "sent"
    ((_, body, _, variables),) = sender.sent
    assert variables == {"Content-Type": "application/json"} and "\n" not in body
    data = json.loads(body)
    assert data["kind"] == "soothe" and data["text"] == PROMPT.text and len(data["short"]) <= 30


async def test_desk_phone_failure_keeps_the_pbx_reason_and_no_agent_is_skipped() -> None:
    bus, sender = EventBus(), FakeSender(fail="Message failed to send.")
    phone = DeskPhone(bus, sender)
    phone.start()
    skipped = await phone.send(PROMPT)
    assert (skipped.status, skipped.detail) == ("skipped", "no agent desk phone on the call")
    await joined(bus, "PJSIP/agent9-00000007")
    failed = await phone.send(PROMPT)
    assert (failed.status, failed.target, failed.detail) == (
        "failed", "pjsip:agent9", "Message failed to send.")
    assert (phone.sent, phone.failed, phone.skipped) == (0, 1, 1)
    await phone.stop()


def test_crm_prompts_row_keeps_delivery_per_channel() -> None:
    db = sqlite3.connect(":memory:")
    db.executescript(SQLITE.schema())
    events: list[Any] = [
        CallStarted(call_id="c1", at=90.0, direction="outbound", channel="PJSIP/cust1-1"),
        PROMPT,
        PromptDelivered(call_id="c1", at=100.2, prompt_id="p1", channel="phone",
                        status="failed", target="pjsip:agent1",
                        detail="Message failed to send."),
        PromptDelivered(call_id="c1", at=100.3, prompt_id="p1", channel="feed", status="sent"),
    ]
    for ev in events:
        for sql, params in statements_for(ev):
            db.execute(sql, params)
    row = db.execute("SELECT kind, rule, slot, reason, delivery FROM prompts WHERE id = 'p1'"
                     ).fetchone()
    assert row[:3] == ("soothe", "negative_soothe", "weekday-afternoon")
    assert json.loads(row[3])["emotion"] == "negative"
    delivery = json.loads(row[4])
    assert delivery["phone"]["status"] == "failed"
    assert delivery["phone"]["detail"] == "Message failed to send."
    assert delivery["feed"]["status"] == "sent"


async def feed_app(hub: FeedHub, token: str) -> tuple[web.AppRunner, int]:
    app = web.Application()
    service = SimpleNamespace(registry=SimpleNamespace(snapshot=lambda: [{"id": "c1"}]))
    add_feed(app, service, hub, Secret(token))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def test_feed_websocket_needs_the_token_and_streams_call_events() -> None:
    bus = EventBus()
    hub = FeedHub(bus)
    hub.start()
    runner, port = await feed_app(hub, "s3cret")
    url = f"http://127.0.0.1:{port}/api/feed"
    reports: list[PromptDelivered] = []
    bus.subscribe(PromptDelivered, reports.append)
    try:
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                async with session.get(url, headers=headers) as resp:
                    assert resp.status == 401
            async with session.ws_connect(url, headers={"Authorization": "Bearer s3cret"}) as ws, \
                    session.ws_connect(f"{url}?call_id=other&access_token=s3cret") as other:
                hello = await ws.receive_json(timeout=2)
                assert hello == {"type": "hello", "call_id": None, "calls": [{"id": "c1"}]}
                assert (await other.receive_json(timeout=2))["calls"] == []
                bus.publish(Transcript(call_id="c1", at=99.0, party="customer", text="no!",
                                       final=True, start_s=1, end_s=2, language="en"))
                bus.publish(PROMPT)
                got = [await ws.receive_json(timeout=2) for _ in range(3)]
                assert [m["type"] for m in got] == ["Transcript", "PromptReady",
                                                    "PromptDelivered"]
                assert got[1]["text"] == PROMPT.text and got[1]["prompt_id"] == "p1"
                assert got[2]["channel"] == "feed" and got[2]["status"] == "sent"
                with pytest.raises(asyncio.TimeoutError):
                    await other.receive_json(timeout=0.2)  # another call's feed: nothing
        assert [r.status for r in reports] == ["sent"]
        await asyncio.sleep(0.05)
        assert not hub.subscribers  # closed clients are unsubscribed
    finally:
        await runner.cleanup()
        hub.stop()


async def test_feed_without_a_configured_token_is_refused() -> None:
    hub = FeedHub(EventBus())
    runner, port = await feed_app(hub, "")
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/api/feed",
                            headers={"Authorization": "Bearer x"}) as resp:
            assert resp.status == 403
    finally:
        await runner.cleanup()
