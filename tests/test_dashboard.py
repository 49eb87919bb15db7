"""The dashboard's server side (issue #17): password hashes, login with CSRF, cookies, roles on
pages / JSON / websocket, the live board built from bus events, the history from the CRM and
the path prefix, with aiohttp's test client against a bus and a SQLite store."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request

from earpiece.bus import EventBus
from earpiece.config import DashboardUser, HttpSettings
from earpiece.crm.backend import open_store
from earpiece.crm.writer import CrmWriter
from earpiece.errors import ConfigError
from earpiece.events import (
    CallEnded,
    CallStarted,
    CallState,
    CallStateChanged,
    ChannelJoined,
    ChannelRole,
    EmotionChanged,
    EmotionScored,
    PromptReady,
    QcFlag,
    Transcript,
)
from earpiece.web.auth import hash_password, prefix, verify_password
from earpiece.web.dashboard import Dashboard
from earpiece.web.live import LiveBoard

FAST = 1000  # PBKDF2 iterations in tests


def users() -> list[DashboardUser]:
    return [
        DashboardUser(name="ann", role="agent", endpoint="agent1",
                      password_hash=hash_password("ann-pw", iterations=FAST)),
        DashboardUser(name="ben", role="agent", endpoint="agent2",
                      password_hash=hash_password("ben-pw", scheme="scrypt")),
        DashboardUser(name="sue", role="supervisor",
                      password_hash=hash_password("sue-pw", iterations=FAST)),
    ]


def call_events(call_id: str, agent: str, t: float) -> list[Any]:
    return [
        CallStarted(call_id=call_id, direction="outbound", channel="PJSIP/cust-1", at=t),
        ChannelJoined(call_id=call_id, channel="PJSIP/cust-1", uniqueid=f"{call_id}.1",
                      role=ChannelRole.CUSTOMER, at=t),
        CallStateChanged(call_id=call_id, old=CallState.DIALING, new=CallState.ANSWERED,
                         source="test", at=t + 1),
        ChannelJoined(call_id=call_id, channel=f"PJSIP/{agent}-0000000{t:.0f}",
                      uniqueid=f"{call_id}.2", role=ChannelRole.AGENT, at=t + 1),
        Transcript(call_id=call_id, party="customer", text="this is wrong", final=False,
                   start_s=1.0, end_s=1.5, language="en", at=t + 2),
        Transcript(call_id=call_id, party="customer", text="this is wrong again", final=True,
                   start_s=1.0, end_s=2.0, language="en", at=t + 2.1),
        EmotionScored(call_id=call_id, party="customer", label="negative", valence=-0.7,
                      arousal=None, confidence=0.8, start_s=1.0, end_s=2.0,
                      text="this is wrong again", index=-0.5, state="negative", at=t + 2.2),
        EmotionChanged(call_id=call_id, party="customer", old="neutral", new="negative",
                       index=-0.5, utterance=1, at=t + 2.2),
        PromptReady(call_id=call_id, kind="soothe", text="Acknowledge the problem",
                    language="en", slot="morning", rule="negative_soothe",
                    reason={"emotion": "negative"}, prompt_id=f"p-{call_id}", at=t + 2.3),
        QcFlag(call_id=call_id, kind="forbidden", rule="guarantee", language="en",
               campaign="c", party="agent", matched="guaranteed", text="guaranteed",
               at=t + 3),
    ]


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[SimpleNamespace]:
    bus = EventBus()
    store = await open_store(f"sqlite:///{tmp_path / 'crm.sqlite3'}")
    crm = CrmWriter(bus, store)
    crm.start()
    service = SimpleNamespace(bus=bus, store=store, registry=None)
    board = LiveBoard(bus)
    board.start()
    settings = HttpSettings(users=users())
    app = web.Application()
    Dashboard(service, settings, board).add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield SimpleNamespace(bus=bus, store=store, crm=crm, board=board, client=client,
                              app=app)
    finally:
        await client.close()
        board.stop()
        await crm.close()
        await store.close()


async def login(client: TestClient[Any, Any], user: str, password: str,
                headers: dict[str, str] | None = None) -> int:
    page = await client.get("/login", headers=headers)
    token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert token is not None
    resp = await client.post("/login", data={"user": user, "password": password,
                                             "csrf": token.group(1)},
                             allow_redirects=False, headers=headers)
    return resp.status


def test_password_hashes() -> None:
    for scheme in ("pbkdf2_sha256", "scrypt"):
        stored = hash_password("s3cret", scheme=scheme)
        assert stored.startswith(scheme + "$") and "s3cret" not in stored
        assert verify_password("s3cret", stored)
        assert not verify_password("S3cret", stored)
    assert not verify_password("x", "plain") and not verify_password("x", "scrypt$a$b")


def test_plaintext_password_is_refused_in_config() -> None:
    with pytest.raises(ConfigError, match="password_hash"):
        DashboardUser(name="a", endpoint="e", password_hash="hunter2")
    with pytest.raises(ConfigError, match="endpoint"):
        DashboardUser(name="a", password_hash=hash_password("x", iterations=FAST))


async def test_login_csrf_cookies_and_logout(env: SimpleNamespace) -> None:
    client = env.client
    resp = await client.get("/live", allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == "/login"
    assert (await client.get("/api/dash/live")).status == 401
    # no CSRF token: refused
    resp = await client.post("/login", data={"user": "ann", "password": "ann-pw"},
                             allow_redirects=False)
    assert resp.status == 403
    assert await login(client, "ann", "wrong") == 401
    assert await login(client, "nobody", "ann-pw") == 401
    assert await login(client, "ann", "ann-pw") == 303
    cookie = next(c for c in client.session.cookie_jar if c.key == "earpiece_session")
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http to 127.0.0.1 (auto)
    page = await client.get("/live")
    text = await page.text()
    assert page.status == 200 and 'data-role="agent"' in text and "ann-pw" not in text
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    token = re.search(r'name="csrf" value="([^"]+)"', text)
    assert token is not None
    # logout needs the session's CSRF token
    assert (await client.post("/logout", data={"csrf": "bad"})).status == 403
    resp = await client.post("/logout", data={"csrf": token.group(1)}, allow_redirects=False)
    assert resp.status == 303
    assert (await client.get("/api/dash/live")).status == 401


async def test_secure_cookie_behind_https_proxy_and_forwarded_prefix(
        env: SimpleNamespace) -> None:
    headers = {"X-Forwarded-Proto": "https", "X-Forwarded-Prefix": "/proxy/earpiece",
               "Host": "dash.example.com"}
    page = await env.client.get("/login", headers=headers)
    assert 'action="/proxy/earpiece/login"' in await page.text()
    assert "Secure" in page.headers["Set-Cookie"]
    assert "Path=/proxy/earpiece" in page.headers["Set-Cookie"]
    # a malformed forwarded prefix is ignored; [http] prefix is the default
    request = make_mocked_request("GET", "/login", headers={"X-Forwarded-Prefix": "/a\"b"})
    assert prefix(request, HttpSettings(prefix="/ep")) == "/ep"
    request = make_mocked_request("GET", "/login", headers={"X-Forwarded-Prefix": "/x/"})
    assert prefix(request, HttpSettings(prefix="/ep")) == "/x"


async def test_roles_on_live_board_pages_json_and_websocket(env: SimpleNamespace) -> None:
    for ev in [*call_events("call-a", "agent1", 100.0), *call_events("call-b", "agent2", 200.0)]:
        env.bus.publish(ev)
    call = env.board.calls["call-a"]
    assert call["agents"] == ["agent1"] and call["state"] == "answered"
    assert [(x["text"], x["final"]) for x in call["transcript"]] == [
        ("this is wrong again", True)]  # the partial was replaced by the final
    assert [a["kind"] for a in call["alerts"]] == ["negative", "qc"]
    assert call["prompts"][0]["reason"] == {"emotion": "negative"}

    client = env.client
    assert await login(client, "ann", "ann-pw") == 303
    live = await (await client.get("/api/dash/live")).json()
    assert [c["id"] for c in live["calls"]] == ["call-a"]
    assert (await client.get("/api/dash/live/call-a")).status == 200
    assert (await client.get("/api/dash/live/call-b")).status == 403
    assert (await client.get("/live/call-b")).status == 403
    assert (await client.get("/live/call-a")).status == 200
    assert (await client.get("/live/nope")).status == 404
    assert (await client.get("/api/dash/ws?call_id=call-b")).status == 403
    async with client.ws_connect("/api/dash/ws") as ws:
        hello = await ws.receive_json(timeout=2)
        assert [c["id"] for c in hello["calls"]] == ["call-a"]
        for ev in call_events("call-c", "agent2", 300.0) + call_events("call-d", "agent1", 400):
            env.bus.publish(ev)
        first = await ws.receive_json(timeout=2)
        # call-c (agent2) never reaches ann; call-d arrives whole once her leg joins
        assert first["type"] == "call" and first["call"]["id"] == "call-d"
        nxt = await ws.receive_json(timeout=2)
        assert nxt["type"] == "Transcript" and nxt["call_id"] == "call-d"

    await client.post("/logout", data={"csrf": ""})  # CSRF fails; log in as the supervisor
    client.session.cookie_jar.clear()
    assert await login(client, "sue", "sue-pw") == 303
    live = await (await client.get("/api/dash/live")).json()
    assert {c["id"] for c in live["calls"]} == {"call-a", "call-b", "call-c", "call-d"}
    assert (await client.get("/live/call-b")).status == 200
    async with client.ws_connect("/api/dash/ws?call_id=call-b") as ws:
        hello = await ws.receive_json(timeout=2)
        assert [c["id"] for c in hello["calls"]] == ["call-b"]
    resp = await client.get("/api/dash/ws", headers={"Origin": "http://evil.example"})
    assert resp.status == 403


async def test_history_search_and_call_page_respect_roles(env: SimpleNamespace) -> None:
    for ev in [*call_events("call-a", "agent1", 100.0), *call_events("call-b", "agent2", 200.0),
               CallEnded(call_id="call-a", outcome=CallState.ANSWERED, hangup_cause=16,
                         at=150.0)]:
        env.bus.publish(ev)
    await env.crm.flush()
    client = env.client
    assert await login(client, "ben", "ben-pw") == 303
    data = await (await client.get("/api/dash/history")).json()
    assert [c["id"] for c in data["calls"]] == ["call-b"]
    assert data["calls"][0]["agents"] == ["agent2"]
    assert (await client.get("/api/dash/history/call-a")).status == 403
    assert (await client.get("/history/call-a")).status == 403
    page = await (await client.get("/api/dash/history/call-b")).json()
    assert [u["text"] for u in page["transcript"]] == ["this is wrong again"]
    assert page["prompts"][0]["kind"] == "soothe"
    client.session.cookie_jar.clear()
    assert await login(client, "sue", "sue-pw") == 303
    data = await (await client.get("/api/dash/history?outcome=answered")).json()
    assert [c["id"] for c in data["calls"]] == ["call-b", "call-a"]
    data = await (await client.get("/api/dash/history?since=150&until=250")).json()
    assert [c["id"] for c in data["calls"]] == ["call-b"]
    assert (await client.get("/api/dash/history?since=x")).status == 400
    assert (await client.get("/api/dash/history/zzz")).status == 404
    assert (await client.get("/static/app.js")).status == 200
