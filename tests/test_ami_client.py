"""AmiClient against a replay server that answers with recorded Asterisk 22.10.1 AMI traffic.

The replay server (asyncio TCP on port 0) sends the captured banner; for each action it
receives it finds the next unused recorded action of the same name in the capture and sends the
recorded reaction (response and events, in recorded order), with the recorded ActionID
rewritten to the client's. Unrecorded Ping/Logoff/unknown actions get answers built like the
recorded ones.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from earpiece.agi.ami_client import (
    AmiActionError,
    AmiClient,
    AmiTimeoutError,
    backoff_delay,
    redacted_text,
)
from earpiece.agi.ami_message import AmiFramer, AmiMessage
from earpiece.agi.settings import AmiSettings
from earpiece.errors import PbxAuthError, PbxConnectionError, PbxError
from earpiece.secret import Secret


def _captures_root() -> Path:
    env = os.environ.get("EARPIECE_CAPTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "asterisk" / "captures"


CAPTURES = _captures_root()
pytestmark = pytest.mark.skipif(
    not (CAPTURES / "ami" / "login_ok.jsonl").exists(),
    reason=f"AMI captures not found under {CAPTURES} (set EARPIECE_CAPTURES)",
)

SECRET = "Zq7-very-secret-AMI-pw"


# --- the replay server --------------------------------------------------------------------
@dataclass
class Exchange:
    action: AmiMessage
    reactions: list[tuple[float, bytes]]  # (seconds after the action, raw); b"" = server closes


@dataclass
class Script:
    name: str
    banner: bytes
    exchanges: list[Exchange]

    def reaction_messages(self, action: str, index: int = 0) -> list[AmiMessage]:
        exchanges = [e for e in self.exchanges if e.action.action_name == action]
        return [AmiMessage.parse(raw) for _, raw in exchanges[index].reactions if raw]

    def tx(self, action: str, index: int = 0) -> bytes:
        return bytes([e.action for e in self.exchanges if e.action.action_name == action][index])


def load_script(name: str) -> Script:
    path = CAPTURES / "ami" / f"{name}.jsonl"
    if not path.exists():
        path = CAPTURES / "pjsip" / "ami" / f"{name}.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    banner = records[0]["raw"].encode()
    exchanges: list[Exchange] = []
    tx_time = 0.0
    for rec in records[1:]:
        raw = rec["raw"].encode()
        if rec["dir"] == "tx":
            exchanges.append(Exchange(AmiMessage.parse(raw), []))
            tx_time = rec["t"]
        else:
            exchanges[-1].reactions.append((rec["t"] - tx_time, b"" if rec.get("eof") else raw))
    return Script(name, banner, exchanges)


def rewrite_action_id(raw: bytes, recorded: str | None, actual: str | None) -> bytes:
    msg = AmiMessage.parse(raw)
    if recorded is None or actual is None or msg.action_id != recorded:
        return raw
    return bytes(
        AmiMessage(tuple((k, actual if k == "ActionID" else v) for k, v in msg.headers))
    )


@dataclass
class Plan:
    script: Script
    silent: frozenset[str] = frozenset()  # lower-case action names left unanswered
    inject_after_login: bytes = b""  # raw bytes sent right after the Login reaction


@dataclass
class ConnLog:
    opened_at: float
    writer: asyncio.StreamWriter
    received: list[AmiMessage] = field(default_factory=list)
    raw: bytearray = field(default_factory=bytearray)
    closed_at: float | None = None

    def actions(self, name: str) -> list[AmiMessage]:
        return [m for m in self.received if m.action_name == name]


class ReplayServer:
    def __init__(self, plans: list[Plan], *, time_scale: float = 0.0) -> None:
        self.plans = plans
        self.time_scale = time_scale
        self.conns: list[ConnLog] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.ping = load_script("ping").exchanges[1]
        self.logoff = load_script("ping").exchanges[2]
        self.new_conn = asyncio.Event()

    async def __aenter__(self) -> ReplayServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.conns:
            conn.writer.close()
        # Closing a writer ends its handler's read loop; the handlers then finish on their own.
        async with asyncio.timeout(5):
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def drop(self) -> None:
        """Close every open connection now, as a crashing or restarting Asterisk would."""
        for conn in self.conns:
            if conn.closed_at is None:
                conn.closed_at = asyncio.get_running_loop().time()
                conn.writer.close()

    async def wait_conns(self, n: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.conns) < n:
                self.new_conn.clear()
                await self.new_conn.wait()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        loop = asyncio.get_running_loop()
        plan = self.plans[min(len(self.conns), len(self.plans) - 1)]
        conn = ConnLog(loop.time(), writer)
        self.conns.append(conn)
        self.new_conn.set()
        used = [False] * len(plan.script.exchanges)
        lock = asyncio.Lock()
        reacting: list[asyncio.Task[None]] = []
        framer = AmiFramer(expect_banner=False)
        writer.write(plan.script.banner)
        try:
            while data := await reader.read(65536):
                conn.raw += data
                for msg in framer.feed(data):
                    assert isinstance(msg, AmiMessage)
                    conn.received.append(msg)
                    reacting.append(
                        loop.create_task(self._react(plan, used, msg, conn, lock))
                    )
        except ConnectionError:
            pass
        finally:
            if conn.closed_at is None:
                conn.closed_at = loop.time()
            for t in reacting:
                t.cancel()
            await asyncio.gather(*reacting, return_exceptions=True)
            writer.close()
            self._tasks.discard(task)

    async def _react(
        self, plan: Plan, used: list[bool], msg: AmiMessage, conn: ConnLog, lock: asyncio.Lock
    ) -> None:
        name = (msg.action_name or "").lower()
        if name in plan.silent:
            return
        exchange = None
        for i, ex in enumerate(plan.script.exchanges):
            if not used[i] and (ex.action.action_name or "").lower() == name:
                used[i] = True
                exchange = ex
                break
        if exchange is None:
            exchange = self._fallback(msg)
        async with lock:
            for delay, raw in exchange.reactions:
                if delay * self.time_scale > 0:
                    await asyncio.sleep(delay * self.time_scale)
                if conn.writer.is_closing():
                    return
                if raw == b"":
                    conn.closed_at = asyncio.get_running_loop().time()
                    conn.writer.close()
                    return
                conn.writer.write(rewrite_action_id(raw, exchange.action.action_id, msg.action_id))
            if name == "login" and plan.inject_after_login:
                conn.writer.write(plan.inject_after_login)

    def _fallback(self, msg: AmiMessage) -> Exchange:
        name = msg.action_name or ""
        if name.lower() == "ping":
            return self.ping
        if name.lower() == "logoff":
            return self.logoff
        # As recorded in invalid_action.jsonl.
        error = AmiMessage(
            (
                ("Response", "Error"),
                ("ActionID", msg.action_id or ""),
                (
                    "Message",
                    f"Invalid/unknown command: {name}."
                    " Use Action: ListCommands to show available commands.",
                ),
            )
        )
        return Exchange(msg, [(0.0, bytes(error))])


# --- helpers ------------------------------------------------------------------------------
def settings_for(port: int, **overrides: float) -> AmiSettings:
    base = AmiSettings(
        host="127.0.0.1",
        port=port,
        username="assist",
        secret=Secret(SECRET),
        connect_timeout_s=3.0,
        action_timeout_s=2.0,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
        ping_interval_s=30.0,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


@dataclass
class Recorder:
    events: list[AmiMessage] = field(default_factory=list)
    connected_calls: int = 0
    connected_event: asyncio.Event = field(default_factory=asyncio.Event)
    event_arrived: asyncio.Event = field(default_factory=asyncio.Event)
    resync: Callable[[], Awaitable[None]] | None = None

    def on_event(self, msg: AmiMessage) -> None:
        self.events.append(msg)
        self.event_arrived.set()

    async def on_connected(self) -> None:
        self.connected_calls += 1
        if self.resync is not None:
            await self.resync()
        self.connected_event.set()

    async def wait_connected(self, calls: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while self.connected_calls < calls or not self.connected_event.is_set():
                self.connected_event.clear()
                await self.connected_event.wait()

    async def wait_events(self, n: int, within: float = 3.0) -> None:
        async with asyncio.timeout(within):
            while len(self.events) < n:
                self.event_arrived.clear()
                await self.event_arrived.wait()

    async def wait_event(self, name: str, within: float = 3.0) -> AmiMessage:
        async with asyncio.timeout(within):
            while True:
                for ev in self.events:
                    if ev.event == name:
                        return ev
                self.event_arrived.clear()
                await self.event_arrived.wait()


def make_client(port: int, rec: Recorder, **overrides: float) -> AmiClient:
    return AmiClient(
        settings_for(port, **overrides),
        on_event=rec.on_event,
        on_connected=rec.on_connected,
        rng=random.Random(1234),
    )


def without_action_id(msg: AmiMessage) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in msg.headers if k != "ActionID")


# --- login --------------------------------------------------------------------------------
async def test_login_ok_delivers_events_and_logs_off() -> None:
    script = load_script("login_ok")
    async with ReplayServer([Plan(script)]) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        assert not client.connected
        await client.start()
        assert client.connected
        assert client.banner is not None and client.banner.version == "11.0.0"
        await rec.wait_connected(1)
        await rec.wait_event("SuccessfulAuth")
        (login,) = server.conns[0].actions("Login")
        assert login.headers[0] == ("Action", "Login")
        assert login.headers[1][0] == "ActionID"
        assert login["Username"] == "assist"
        assert login["Secret"] == SECRET
        assert login["Events"] == "on"
        assert [e.event for e in rec.events] == ["FullyBooted", "SuccessfulAuth"]
        assert rec.events == script.reaction_messages("Login")[1:]
        assert client.stats.connects == 1 and client.stats.reconnects == 0
        assert client.stats.events == 2 and client.stats.malformed == 0

        await client.close()
        assert not client.connected
        assert len(server.conns[0].actions("Logoff")) == 1
        assert rec.connected_calls == 1
        with pytest.raises(PbxConnectionError, match="not connected"):
            await client.ping()


async def test_bad_secret_raises_auth_error_after_the_servers_delay() -> None:
    # The server answers a bad secret ~1.0 s after the Login (scaled by 0.2 here), then closes.
    async with ReplayServer([Plan(load_script("login_bad_secret"))], time_scale=0.2) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(PbxAuthError, match="login as 'assist' rejected: Authentication failed"):
            await client.start()
        assert loop.time() - started >= 0.19
        assert client.stats.auth_failures == 1
        assert rec.connected_calls == 0
        assert not client.connected
        await asyncio.sleep(0.3)  # start() closed the client: no retry afterwards
        assert len(server.conns) == 1


async def test_auth_failure_is_not_retried_in_a_hot_loop(caplog: pytest.LogCaptureFixture) -> None:
    async with ReplayServer([Plan(load_script("login_bad_secret"))]) as server:
        rec = Recorder()
        client = make_client(server.port, rec, reconnect_initial_s=0.01, reconnect_max_s=0.3)
        loop = asyncio.get_running_loop()
        with caplog.at_level(logging.ERROR, logger="earpiece.agi.ami_client"):
            started = loop.time()
            await client.start(wait=False)
            await asyncio.sleep(1.0)
            await client.close()
            elapsed = loop.time() - started
        # Auth failures wait reconnect_max_s (0.3 s), not the 0.01 s initial backoff (a hot
        # loop would log in ~100 times here).
        assert 2 <= len(server.conns) <= 1 + elapsed / 0.3
        assert client.stats.auth_failures == len(server.conns)
        assert client.stats.connects == 0
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert errors and all("rejected: Authentication failed" in m for m in errors)


async def test_start_times_out_when_nothing_listens() -> None:
    # Bind and close a socket to get a port with no listener.
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    rec = Recorder()
    client = make_client(port, rec, reconnect_initial_s=0.02, reconnect_max_s=0.05)
    with pytest.raises(PbxConnectionError, match=r"not logged in within 0.4 s \(.*connect failed"):
        await client.start(timeout_s=0.4)
    assert client.stats.connect_failures >= 2  # it kept retrying, with backoff, until the timeout
    assert client.stats.connects == 0


async def test_close_while_start_waits_stops_everything() -> None:
    # A server that accepts but never sends the banner.
    conns: list[asyncio.StreamWriter] = []
    handlers: list[asyncio.Task[object]] = []

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append(task)
        conns.append(writer)
        await reader.read()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = make_client(port, Recorder())
    starting = asyncio.create_task(client.start(timeout_s=5.0))
    for _ in range(200):
        if conns:
            break
        await asyncio.sleep(0.01)
    await client.close()
    with pytest.raises(PbxConnectionError, match="client closed"):
        await starting
    assert not client.connected
    for w in conns:
        w.close()
    await asyncio.wait(handlers, timeout=2)  # handlers end on their own (EOF), none cancelled
    server.close()
    await server.wait_closed()


# --- actions ------------------------------------------------------------------------------
async def test_ping_and_command_output() -> None:
    plans = [Plan(load_script("command_action"))]
    async with ReplayServer(plans) as server:
        client = make_client(server.port, Recorder())
        await client.start()
        rtt = await client.ping()
        assert 0 < rtt < 2.0
        (ping,) = server.conns[0].actions("Ping")
        assert ping.action_id is not None and ping.action_id.startswith("ep-")
        assert await client.command("core show version") == [
            "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-23 "
            "14:44:11 UTC"
        ]
        with pytest.raises(PbxError, match=r"Command failed: No such command 'core show nosuch"):
            await client.command("core show nosuchthing")
        sent = [bytes(m) for m in server.conns[0].actions("Command")]
        recorded = load_script("command_action")
        # Byte-identical to what was recorded, but for our ActionIDs.
        assert [without_action_id(AmiMessage.parse(b)) for b in sent] == [
            without_action_id(AmiMessage.parse(recorded.tx("Command", i))) for i in (0, 1)
        ]
        await client.close()


async def test_core_show_channels_collects_the_event_list() -> None:
    script = load_script("core_show_channels")
    async with ReplayServer([Plan(script)]) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        await client.start()
        channels = await client.core_show_channels()
        recorded = script.reaction_messages("CoreShowChannels")
        assert [without_action_id(c) for c in channels] == [
            without_action_id(m) for m in recorded if m.event == "CoreShowChannel"
        ]
        assert sorted(c["Channel"] for c in channels) == [
            "Local/voice_long@test-000001ce;1",
            "Local/voice_long@test-000001ce;2",
        ]
        (sent,) = server.conns[0].actions("CoreShowChannels")
        assert all(c.action_id == sent.action_id for c in channels)
        # The Newexten recorded right after the list is an event, not a list item.
        ev = await rec.wait_event("Newexten")
        assert ev == recorded[-1]
        assert not {"CoreShowChannel", "CoreShowChannelsComplete"} & {e.event for e in rec.events}
        await client.close()


async def test_originate_action_id_correlates_with_the_later_originate_response() -> None:
    script = load_script("originate_answer")
    async with ReplayServer([Plan(script)]) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        await client.start()
        await rec.wait_event("SuccessfulAuth")
        n_login_events = len(rec.events)
        action_id = await client.originate(
            "Local/answer@test",
            application="Wait",
            data="10",
            caller_id="Assist Fixture <1000>",
            timeout_ms=15000,
            variables={"FX_TAG": "originate_answer"},
            action_id="originate_answer-2",
        )
        assert action_id == "originate_answer-2"
        # The Originate we send is byte-identical to the one Asterisk accepted.
        assert bytes(server.conns[0].actions("Originate")[0]) == script.tx("Originate")
        response = await rec.wait_event("OriginateResponse")
        assert response.action_id == action_id
        assert response.response == "Success" and response["Reason"] == "4"
        # Event order is preserved exactly: everything but the Originate's own response.
        expected = [m for m in script.reaction_messages("Originate") if m.event is not None]
        await rec.wait_events(n_login_events + len(expected))
        assert rec.events[n_login_events:] == expected
        assert len(expected) == 28
        await client.close()


async def test_originate_with_generated_action_id_and_dialplan_target() -> None:
    script = load_script("outbound_answered")
    async with ReplayServer([Plan(script)]) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        await client.start()
        action_id = await client.originate(
            "PJSIP/cust1",
            context="dialer",
            exten="agent",
            priority=1,
            caller_id="Dialer <5000>",
            timeout_ms=20000,
            variables={"FX_TAG": "outbound_answered"},
        )
        assert action_id.startswith("ep-")
        sent = server.conns[0].actions("Originate")[0]
        recorded = AmiMessage.parse(script.tx("Originate"))
        assert without_action_id(sent) == without_action_id(recorded)
        response = await rec.wait_event("OriginateResponse")
        assert response.action_id == action_id
        assert response["Channel"].startswith("PJSIP/cust1-")
        with pytest.raises(ValueError, match="exactly one of exten= or application="):
            await client.originate("PJSIP/cust1", exten="agent", application="Wait")
        with pytest.raises(ValueError, match="context=/priority= go with exten="):
            await client.originate("PJSIP/cust1", context="dialer", application="Wait")
        with pytest.raises(ValueError, match="data= goes with application="):
            await client.originate("PJSIP/cust1", exten="agent", data="x")
        assert len(server.conns[0].actions("Originate")) == 1  # nothing invalid was sent
        await client.close()


async def test_hangup_success_and_errors() -> None:
    async with ReplayServer([Plan(load_script("hangup_action"))]) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        await client.start()
        await client.hangup("Local/voice_long@test-000001cf;1", cause=16)
        sent = server.conns[0].actions("Hangup")[0]
        assert without_action_id(sent) == without_action_id(
            AmiMessage.parse(load_script("hangup_action").tx("Hangup"))
        )
        hangups = [await rec.wait_event("Hangup")]
        assert hangups[0]["Cause"] == "16"
        await client.close()

    async with ReplayServer([Plan(load_script("invalid_action"))]) as server:
        client = make_client(server.port, Recorder())
        await client.start()
        with pytest.raises(AmiActionError, match="AMI Hangup failed: No such channel") as info:
            await client.hangup("Local/nosuch@test-00000000;1")
        assert info.value.message == "No such channel"
        assert info.value.response.response == "Error"
        with pytest.raises(PbxError, match="Invalid/unknown command: NoSuchAction"):
            await client.send_action(AmiMessage.action("NoSuchAction"))
        await client.close()


async def test_send_text_and_message_send() -> None:
    async with ReplayServer([Plan(load_script("sendtext"))]) as server:
        client = make_client(server.port, Recorder())
        await client.start()
        await client.send_text("Local/hold@test-000001d2;1", "hello from assist")
        with pytest.raises(PbxError, match="No such channel"):
            await client.send_text("Local/nosuch@test-00000000;1", "hello")
        await client.close()

    script = load_script("messagesend_pjsip")
    async with ReplayServer([Plan(script)]) as server:
        client = make_client(server.port, Recorder())
        await client.start()
        await client.message_send(
            "pjsip:agent1",
            "Suggestion: offer the 10% loyalty discount",
            from_='"Dialer Assist" <sip:assist@127.0.0.1>',
        )
        await client.message_send("pjsip:agent1", "note without From header")
        await client.message_send(
            "pjsip:agent1",
            '{"type":"hint","text":"customer mentioned cancellation"}',
            from_="sip:assist@127.0.0.1",
            variables={"Content-Type": "application/json"},
        )
        for to, body in (("pjsip:cust2", "are you there?"), ("pjsip:nosuchendpoint", "hello")):
            with pytest.raises(PbxError, match=r"MessageSend failed: Message failed to send\."):
                await client.message_send(to, body, from_="sip:assist@127.0.0.1")
        sent = server.conns[0].actions("MessageSend")
        assert [without_action_id(m) for m in sent] == [
            without_action_id(AmiMessage.parse(script.tx("MessageSend", i))) for i in range(5)
        ]
        await client.close()


async def test_multiline_message_body_goes_base64() -> None:
    async with ReplayServer([Plan(load_script("messagesend_pjsip"))]) as server:
        client = make_client(server.port, Recorder())
        await client.start()
        await client.message_send("pjsip:agent1", "line one\nline two")
        sent = server.conns[0].actions("MessageSend")[0]
        assert "Body" not in sent
        assert sent["Base64Body"] == "bGluZSBvbmUKbGluZSB0d28="
        await client.close()


async def test_action_timeout_and_invalid_actions() -> None:
    plan = Plan(load_script("login_ok"), silent=frozenset({"status"}))
    async with ReplayServer([plan]) as server:
        client = make_client(server.port, Recorder())
        await client.start()
        with pytest.raises(AmiTimeoutError, match=r"AMI Status \(ActionID ep-.*\) not answered"):
            await client.send_action(AmiMessage.action("Status"), timeout_s=0.1)
        assert isinstance(AmiTimeoutError("x"), PbxError)
        with pytest.raises(ValueError, match="'Message': value contains CR or LF"):
            await client.send_action(
                AmiMessage.action("SendText", Channel="x", Message="a\r\nAction: Hangup")
            )
        with pytest.raises(ValueError, match="must start with an 'Action' header"):
            await client.send_action(AmiMessage((("Event", "x"),)))
        # The connection is still usable afterwards.
        assert await client.ping() > 0
        await client.close()


# --- events, malformed input, callbacks ---------------------------------------------------
async def test_long_call_event_order_is_preserved() -> None:
    script = load_script("dial_answer")
    async with ReplayServer([Plan(script)]) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        await client.start()
        await client.originate("Local/dial_answer@test", application="Wait", data="10")
        expected = [
            m
            for ex in script.exchanges[:2]
            for _, raw in ex.reactions
            if raw and (m := AmiMessage.parse(raw)).event is not None
        ]
        await rec.wait_events(len(expected))
        assert [without_action_id(e) for e in rec.events] == [
            without_action_id(e) for e in expected
        ]
        assert len(expected) == 77  # FullyBooted, SuccessfulAuth and the whole call
        assert client.stats.events == len(expected)
        await client.close()


async def test_malformed_bytes_are_counted_not_raised() -> None:
    garbage = (
        b"this is not AMI\r\n\r\n"
        + b"Event: Broken\r\nno separator\r\n\r\n"
        + b"Event: AfterGarbage\r\nCallerIDName: M\xfcller\r\n\r\n"
    )
    plan = Plan(load_script("ping"), inject_after_login=garbage)
    async with ReplayServer([plan]) as server:
        rec = Recorder()
        client = make_client(server.port, rec)
        await client.start()
        ev = await rec.wait_event("AfterGarbage")
        assert ev["CallerIDName"] == "M\udcfcller"
        assert client.stats.malformed == 2
        assert client.stats.last_malformed == "line 2: no 'Key: Value' separator: 'no separator'"
        assert client.connected
        assert await client.ping() > 0
        await client.close()


async def test_failing_on_event_callback_does_not_break_the_stream() -> None:
    seen: list[str] = []
    done = asyncio.Event()

    def on_event(msg: AmiMessage) -> None:
        seen.append(msg.event or "")
        if msg.event == "SuccessfulAuth":
            done.set()
        if msg.event == "FullyBooted":
            raise RuntimeError("registry bug")

    async with ReplayServer([Plan(load_script("login_ok"))]) as server:
        client = AmiClient(settings_for(server.port), on_event=on_event)
        await client.start()
        async with asyncio.timeout(3):
            await done.wait()
        assert seen == ["FullyBooted", "SuccessfulAuth"]
        assert client.stats.callback_errors == 1
        assert client.connected
        await client.close()


# --- reconnect ----------------------------------------------------------------------------
async def test_server_drop_mid_call_fails_pending_and_reconnects_with_backoff() -> None:
    first = Plan(load_script("originate_answer"), silent=frozenset({"status"}))
    second = Plan(load_script("core_show_channels"))
    async with ReplayServer([first, second]) as server:
        rec = Recorder()
        channel_counts: list[int] = []
        client = make_client(server.port, rec)

        async def resync() -> None:
            channel_counts.append(len(await client.core_show_channels()))

        await client.start()
        await rec.wait_connected(1)
        rec.resync = resync  # the first script has no CoreShowChannels; the second has
        await client.originate("Local/answer@test", application="Wait", data="10")
        await rec.wait_event("OriginateResponse")
        pending = asyncio.create_task(client.send_action(AmiMessage.action("Status")))
        await asyncio.sleep(0.05)
        assert not pending.done()

        server.drop()
        with pytest.raises(PbxConnectionError, match="lost"):
            await pending
        await rec.wait_connected(2)
        assert client.connected
        assert client.stats.reconnects == 1 and client.stats.connects == 2
        # on_connected ran again after the re-login and resynchronised via CoreShowChannels.
        assert channel_counts == [2]
        # The reconnect waited at least reconnect_initial_s after the drop.
        dropped_at = server.conns[0].closed_at
        assert dropped_at is not None
        assert server.conns[1].opened_at - dropped_at >= 0.045
        assert len(server.conns[1].actions("Login")) == 1
        await client.close()


async def test_dead_peer_is_detected_by_keepalive() -> None:
    first = Plan(load_script("ping"), silent=frozenset({"ping"}))  # swallows Pings
    second = Plan(load_script("ping"))
    async with ReplayServer([first, second]) as server:
        rec = Recorder()
        client = make_client(server.port, rec, ping_interval_s=0.1, action_timeout_s=0.5)
        await client.start()
        await rec.wait_connected(2, within=5)
        assert client.stats.ping_failures == 1
        assert client.stats.reconnects == 1
        assert len(server.conns[0].actions("Ping")) == 1
        # On the healthy connection, keepalive Pings are answered and nothing is dropped.
        for _ in range(300):
            if len(server.conns[1].actions("Ping")) >= 3:
                break
            await asyncio.sleep(0.01)
        assert len(server.conns[1].actions("Ping")) >= 3
        assert len(server.conns) == 2 and client.connected
        assert client.stats.ping_failures == 1
        await client.close()


async def test_repeated_drops_back_off_exponentially() -> None:
    async with ReplayServer([Plan(load_script("login_ok"))]) as server:
        rec = Recorder()
        client = make_client(server.port, rec, reconnect_initial_s=0.04, reconnect_max_s=0.32)
        await client.start()
        for n in range(2, 6):
            await rec.wait_connected(n - 1)
            server.drop()
            await server.wait_conns(n)
        gaps = []
        for prev, nxt in zip(server.conns, server.conns[1:], strict=False):
            assert prev.closed_at is not None
            gaps.append(nxt.opened_at - prev.closed_at)
        # The client's rng (seed 1234) is only used for backoff: replay its draws. Each one is
        # from [0.04, min(0.32, 0.04 * 2**n)] (full jitter, floor = initial).
        rng = random.Random(1234)
        draws = [backoff_delay(n, 0.04, 0.32, rng) for n in range(4)]
        caps = (0.04, 0.08, 0.16, 0.32)
        assert all(0.04 <= d <= cap for d, cap in zip(draws, caps, strict=True))
        assert draws[0] == 0.04
        for gap, draw in zip(gaps, draws, strict=True):
            assert draw - 0.005 <= gap < draw + 0.5  # slack for a loaded machine
        await client.close()


# --- secrets ------------------------------------------------------------------------------
async def test_secret_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        async with ReplayServer([Plan(load_script("command_action"))]) as server:
            client = make_client(server.port, Recorder())
            await client.start()
            await client.command("core show version")
            with pytest.raises(PbxError):
                await client.command("core show nosuchthing")
            await client.close()
        async with ReplayServer([Plan(load_script("login_bad_secret"))]) as server:
            client = make_client(server.port, Recorder())
            with pytest.raises(PbxAuthError) as info:
                await client.start()
            assert SECRET not in str(info.value)
    texts = []
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.append(repr(record.args))
        if record.exc_info:
            texts.append(logging.Formatter().formatException(record.exc_info))
    assert any("Action: Login" in t and "Secret: ********" in t for t in texts)  # logged, masked
    assert all(SECRET not in t for t in texts)
    assert SECRET not in caplog.text


def test_redacted_text_masks_secret_headers() -> None:
    msg = AmiMessage.action("Login", "a-1", Username="u", Secret="pw", Key="k")
    assert redacted_text(msg) == (
        "Action: Login | ActionID: a-1 | Username: u | Secret: ******** | Key: ********"
    )


# --- backoff ------------------------------------------------------------------------------
@given(
    st.integers(0, 200),
    st.floats(0.001, 5.0),
    st.floats(0.001, 120.0),
    st.integers(0, 2**32),
)
def test_backoff_delay_stays_in_bounds(attempt: int, initial: float, cap: float, seed: int) -> None:
    rng = random.Random(seed)
    delay = backoff_delay(attempt, initial, cap, rng)
    low = min(initial, cap)
    assert low <= delay <= max(low, min(cap, initial * 2.0**attempt)) + 1e-9


def test_backoff_delay_grows_then_saturates() -> None:
    rng = random.Random(5)
    means = [
        sum(backoff_delay(a, 0.5, 30.0, rng) for _ in range(2000)) / 2000 for a in range(10)
    ]
    # Uniform on [0.5, cap]: mean (0.5 + cap) / 2 with cap = 0.5 * 2**a up to 30.
    for a, mean in enumerate(means):
        cap = min(30.0, 0.5 * 2**a)
        assert abs(mean - (0.5 + cap) / 2) < 0.05 * cap + 0.01
    assert means[0] == 0.5
