"""The simulator's AMI against the real Asterisk 22 captures: event sequences per dial outcome,
header sets per event type, Reason/Cause/DialStatus values, and the byte-exact replies of the
simple actions. Plain asyncio TCP client, ephemeral ports."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from earpiece.agi.ami_message import AmiBanner, AmiFramer, AmiMessage
from earpiece.agi.ami_permissions import EVENT_CLASSES
from earpiece.sim.engine import OriginateRequest
from earpiece.sim.scenario import Scenario
from earpiece.sim.simulator import Simulator

CAPTURES = Path("/work/shared/asterisk/captures")
if not CAPTURES.exists():
    CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "asterisk" / "captures"
PJSIP = CAPTURES / "pjsip" / "ami"
needs_captures = pytest.mark.skipif(not CAPTURES.exists(), reason="captures not available")
NOISE = {"RTCPReceived", "RTCPSent"}


#: The AMI user of the captures in captures/ami and captures/pjsip: read = all, write = all
#: (captures/faults/ami/ami_permissions is the shipped least-privilege user).
READ_ALL: dict[str, Any] = {"credentials": {"ami_read": "all", "ami_write": "all"}}


def scenario(**overrides: Any) -> Scenario:
    endpoints = [
        {"name": "agent1", "role": "agent", "callerid_name": "Agent One", "ring_s": 0.15},
        {"name": "cust1", "callerid_name": "Customer One", "ring_s": 0.25,
         "hangup_after_s": 0.5},
        {"name": "busy1", "callerid_name": "Busy", "outcome": "busy", "ring_s": 0.15},
        {"name": "decl1", "outcome": "decline", "ring_s": 0.15},
        {"name": "unav1", "outcome": "unavailable", "ring_s": 0.15},
        {"name": "cong1", "outcome": "congestion", "ring_s": 0.15},
        {"name": "never1", "outcome": "noanswer"},
        {"name": "cust2", "registered": False},
        {"name": "agenthup", "ring_s": 0.1, "hangup_after_s": 0.4, "hangup_by": "agent"},
    ]
    data: dict[str, Any] = {"endpoints": endpoints, "dialplan": {"agents": ["agent1"]}}
    data.update(overrides)
    return Scenario.from_dict(data)


class AmiTestClient:
    """Minimal AMI client: records every message with its arrival time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = AmiFramer()
        self.items: list[tuple[float, AmiMessage | AmiBanner]] = []
        self.raw = b""
        self.eof = False
        self._task = asyncio.get_running_loop().create_task(self._read())
        self._n = 0

    @classmethod
    async def connect(cls, port: int) -> AmiTestClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> None:
        while True:
            data = await self.reader.read(65536)
            if not data:
                self.eof = True
                return
            self.raw += data
            now = time.monotonic()
            for item in self.framer.feed(data):
                self.items.append((now, item))

    def send(self, text: str) -> None:
        self.writer.write(text.encode())

    async def action(self, name: str, aid: str, **fields: str) -> AmiMessage:
        body = f"Action: {name}\r\nActionID: {aid}\r\n"
        body += "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
        self.send(body)
        return await self.wait(lambda m: m.response is not None and m.event is None
                               and m.action_id == aid)

    async def login(self, secret: str = "assist") -> AmiMessage:
        return await self.action("Login", "login-1", Username="assist", Secret=secret,
                                 Events="on")

    def messages(self) -> list[AmiMessage]:
        return [m for _, m in self.items if isinstance(m, AmiMessage)]

    def events(self) -> list[AmiMessage]:
        return [m for m in self.messages() if m.event is not None]

    async def wait(self, pred: Any, within: float = 5.0) -> AmiMessage:
        deadline = time.monotonic() + within
        seen = 0
        while time.monotonic() < deadline:
            msgs = self.messages()
            for m in msgs[seen:]:
                if pred(m):
                    return m
            seen = len(msgs)
            if self.eof:
                break
            await asyncio.sleep(0.005)
        raise AssertionError("AMI message not received")

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, ConnectionError):
            pass


async def until(pred: Any, within: float) -> None:
    for _ in range(int(within / 0.02) + 1):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def load_capture(path: Path) -> list[tuple[float, str, str]]:
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        out.append((d["t"], d["dir"], d["raw"]))
    return out


def capture_events(path: Path) -> list[tuple[float, AmiMessage]]:
    """Call events of a capture (no login/security noise, no RTCP)."""
    out = []
    for t, direction, raw in load_capture(path):
        if direction != "rx" or not raw.endswith("\r\n\r\n"):
            continue
        msg = AmiMessage.parse(raw.encode())
        if msg.event is None or msg.event in NOISE | {"FullyBooted", "SuccessfulAuth"}:
            continue
        out.append((t, msg))
    return out


def assert_same_sequence(captured: list[tuple[float, AmiMessage]], ours: list[AmiMessage],
                         skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """Our event names must follow the capture's order; events the capture received in one
    ``recv()`` (same timestamp) may come in any order among themselves."""
    cap = [(t, m.event) for t, m in captured if m.event not in skip]
    mine = [m.event for m in ours if m.event not in skip]
    assert len(mine) == len(cap), f"\ncapture: {[e for _, e in cap]}\nsim:     {mine}"
    i = 0
    while i < len(cap):
        j = i
        while j < len(cap) and cap[j][0] == cap[i][0]:
            j += 1
        assert Counter(e for _, e in cap[i:j]) == Counter(mine[i:j]), (
            f"at {i}: capture {[e for _, e in cap[i:j]]} vs sim {mine[i:j]}\n"
            f"capture: {[e for _, e in cap]}\nsim:     {mine}")
        i = j


def key_shapes(events: list[AmiMessage]) -> dict[str, set[tuple[str, ...]]]:
    shapes: dict[str, set[tuple[str, ...]]] = {}
    for m in events:
        assert m.event is not None
        shapes.setdefault(m.event, set()).add(tuple(k for k, _ in m.headers))
    return shapes


async def run_dialer_call(sim: Simulator, endpoint: str, timeout_ms: int = 20000,
                          wait_s: float = 3.0) -> tuple[AmiTestClient, list[AmiMessage]]:
    client = await AmiTestClient.connect(sim.ami_port)
    await client.login()
    resp = await client.action(
        "Originate", "orig-2", Channel=f"PJSIP/{endpoint}", Context="dialer", Exten="agent",
        Priority="1", CallerID="Dialer <5000>", Timeout=str(timeout_ms),
        Variable="FX_TAG=test", Async="true")
    assert resp.response == "Success"
    assert resp.get("Message") == "Originate successfully queued"
    await client.wait(lambda m: m.event == "OriginateResponse", within=wait_s)
    await until(lambda: not sim.channels(), wait_s)  # the call is over
    await asyncio.sleep(0.05)
    start = next(i for i, m in enumerate(client.messages())
                 if m.response == "Success" and m.action_id == "orig-2")
    events = [m for m in client.messages()[start + 1:]
              if m.event is not None and m.event not in NOISE]
    return client, events


@needs_captures
@pytest.mark.parametrize(("endpoint", "capture", "reason", "cause", "dial_status"), [
    ("busy1", "outbound_busy_486", "0", "17", "BUSY"),
    ("decl1", "outbound_decline_603", "0", "21", "NOANSWER"),
    ("unav1", "outbound_unavailable_480", "0", "19", "NOANSWER"),
])
async def test_failed_dial_matches_capture(endpoint: str, capture: str, reason: str, cause: str,
                                           dial_status: str) -> None:
    async with Simulator(scenario()) as sim:
        client, events = await run_dialer_call(sim, endpoint)
        await client.close()
    captured = capture_events(PJSIP / f"{capture}.jsonl")
    assert_same_sequence(captured, events)
    assert key_shapes(events) == key_shapes([m for _, m in captured])
    orig = next(m for m in events if m.event == "OriginateResponse")
    assert (orig["Response"], orig["Reason"], orig["Channel"], orig["Uniqueid"]) == \
        ("Failure", reason, f"PJSIP/{endpoint}", "<unknown>")
    assert orig["ActionID"] == "orig-2"
    hangup = next(m for m in events if m.event == "Hangup")
    cap_hangup = next(m for _, m in captured if m.event == "Hangup")
    assert hangup["Cause"] == cause == cap_hangup["Cause"]
    assert hangup["Cause-txt"] == cap_hangup["Cause-txt"]
    assert hangup["TechCause"] == cap_hangup["TechCause"]
    assert hangup["ChannelStateDesc"] == "Ringing"
    dial_end = next(m for m in events if m.event == "DialEnd")
    assert dial_end["DialStatus"] == dial_status
    assert "Channel" not in dial_end  # the originate's own dial: Dest* headers only
    assert [o.reason for o in sim.originated_outcomes] == [int(reason)]


@needs_captures
async def test_noanswer_timeout_matches_capture() -> None:
    async with Simulator(scenario()) as sim:
        t0 = time.monotonic()
        client, events = await run_dialer_call(sim, "never1", timeout_ms=600)
        elapsed = time.monotonic() - t0
        await client.close()
    captured = capture_events(PJSIP / "outbound_noanswer_timeout.jsonl")
    assert_same_sequence(captured, events)
    assert key_shapes(events) == key_shapes([m for _, m in captured])
    orig = next(m for m in events if m.event == "OriginateResponse")
    assert (orig["Response"], orig["Reason"]) == ("Failure", "3")
    assert not any(m.event in ("DialEnd", "HangupRequest") for m in events)
    hangup = next(m for m in events if m.event == "Hangup")
    assert (hangup["Cause"], hangup["Cause-txt"]) == ("19", "User alerting, no answer")
    assert elapsed >= 0.6


@needs_captures
async def test_offline_endpoint_fails_at_once_without_channel() -> None:
    async with Simulator(scenario()) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        t0 = time.monotonic()
        await client.action("Originate", "orig-2", Channel="PJSIP/cust2", Context="dialer",
                            Exten="agent", Priority="1", CallerID="Dialer <5000>",
                            Timeout="20000", Async="true")
        orig = await client.wait(lambda m: m.event == "OriginateResponse")
        assert time.monotonic() - t0 < 0.1
        await asyncio.sleep(0.1)
        events = [m for m in client.events() if m.event not in ("FullyBooted", "SuccessfulAuth")]
        await client.close()
    captured = capture_events(PJSIP / "outbound_offline_endpoint.jsonl")
    assert [m.event for m in events] == [m.event for _, m in captured] == ["OriginateResponse"]
    assert orig.headers[1:] == tuple(
        (k, v.replace("outbound_offline_endpoint-2", "orig-2"))
        for k, v in captured[0][1].headers[1:])


@needs_captures
async def test_answered_dialer_call_matches_capture() -> None:
    async with Simulator(scenario()) as sim:
        client, events = await run_dialer_call(sim, "cust1")
        await client.close()
        assert not sim.channels() and not sim.bridges()
    captured = capture_events(PJSIP / "outbound_answered.jsonl")
    assert_same_sequence(captured, events, skip={"VarSet"})
    assert key_shapes(events) == key_shapes([m for _, m in captured])
    cap_vars = {m["Variable"] for _, m in captured if m.event == "VarSet"}
    our_vars = {m["Variable"] for m in events if m.event == "VarSet"}
    assert our_vars == cap_vars
    orig = next(m for m in events if m.event == "OriginateResponse")
    assert (orig["Response"], orig["Reason"], orig["Context"], orig["Exten"]) == \
        ("Success", "4", "dialer", "agent")
    cust = orig["Channel"]
    assert cust.startswith("PJSIP/cust1-") and orig["Uniqueid"] != "<unknown>"
    # the OriginateResponse comes when the customer answers, before the agent is dialled
    names = [m.event for m in events]
    assert names.index("OriginateResponse") < [
        i for i, m in enumerate(events) if m.event == "Newchannel"][1]
    hangups = [m for m in events if m.event == "Hangup"]
    assert [h["Channel"].split("-")[0] for h in hangups] == ["PJSIP/agent1", "PJSIP/cust1"]
    assert all(h["Cause"] == "16" for h in hangups)
    bridge_events = [m for m in events if m.event.startswith("Bridge")]
    assert [m["BridgeTechnology"] for m in bridge_events] == [
        "simple_bridge", "simple_bridge", "simple_bridge", "native_rtp", "native_rtp",
        "native_rtp"]
    agent_dial = [m for m in events if m.event == "DialBegin" and "Channel" in m]
    assert agent_dial[0]["Channel"] == cust and agent_dial[0]["DialString"] == "agent1"
    outcome = sim.originated_outcomes[0]
    assert (outcome.scripted, outcome.response, outcome.reason, outcome.hangup_cause) == \
        ("answer", "Success", 4, 16)


async def test_agent_hangs_up_first_and_dialplan_continues() -> None:
    async with Simulator(scenario()) as sim:
        client, events = await run_dialer_call(sim, "agenthup")
        await client.close()
        assert not sim.channels() and not sim.bridges()
    hangups = [m["Channel"].split("-")[0] for m in events if m.event == "Hangup"]
    assert hangups == ["PJSIP/agent1", "PJSIP/agenthup"]
    apps = [m["Application"] for m in events if m.event == "Newexten"
            and m["Channel"].startswith("PJSIP/agenthup")]
    assert apps[-2:] == ["NoOp", "Hangup"]


async def test_congestion() -> None:
    async with Simulator(scenario()) as sim:
        client, events = await run_dialer_call(sim, "cong1")
        await client.close()
    hangup = next(m for m in events if m.event == "Hangup")
    assert (hangup["Cause"], hangup["TechCause"]) == ("34", "503")
    assert next(m for m in events if m.event == "DialEnd")["DialStatus"] == "CONGESTION"


# --- simple actions, byte-exact against the captures ----------------------------------------

def capture_exchanges(name: str) -> list[tuple[str, list[str]]]:
    """(tx raw, [rx raws until the next tx]) pairs of a capture."""
    items = load_capture(CAPTURES / f"{name}.jsonl")
    out: list[tuple[str, list[str]]] = []
    for _, direction, raw in items:
        if direction == "tx":
            out.append((raw, []))
        elif out and raw:
            out[-1][1].append(raw)
    return out


@needs_captures
@pytest.mark.parametrize("name", ["ami/invalid_action", "ami/command_action",
                                  "pjsip/ami/messagesend_pjsip"])
async def test_replies_are_byte_exact(name: str) -> None:
    async with Simulator(scenario(**READ_ALL)) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        for tx, rxs in capture_exchanges(name):
            action = AmiMessage.parse(tx.encode())
            if action.action_name in ("Login", "Logoff"):
                client.send(tx)
                await client.wait(lambda m, a=action.action_id: m.action_id == a
                                  and m.response is not None)
                continue
            client.send(tx)
            await client.wait(lambda m, a=action.action_id: m.action_id == a
                              and m.response is not None)
            await asyncio.sleep(0.02)
            responses = [bytes(m).decode() for m in client.messages()
                         if m.action_id == action.action_id]
            expected = [r for r in rxs if r.startswith("Response")]
            assert responses == expected
            if action.action_name == "NoSuchAction":
                bad = [m for m in client.events() if m.event == "RequestBadFormat"]
                cap = AmiMessage.parse(rxs[1].encode())
                assert bad and [k for k, _ in bad[-1].headers] == [k for k, _ in cap.headers]
        await client.close()


@needs_captures
async def test_login_logoff_ping() -> None:
    async with Simulator(scenario(**READ_ALL)) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.action("Login", "login_ok-1", Username="assist", Secret="assist",
                            Events="on")
        await client.wait(lambda m: m.event == "SuccessfulAuth")
        ping = await client.action("Ping", "ping-2")
        assert [k for k, _ in ping.headers] == ["Response", "ActionID", "Ping", "Timestamp"]
        assert abs(float(ping["Timestamp"]) - time.time()) < 5
        bye = await client.action("Logoff", "login_ok-2")
        await asyncio.sleep(0.05)
        assert client.eof
        await client.close()
    cap = load_capture(CAPTURES / "ami" / "login_ok.jsonl")
    assert client.raw.startswith(cap[0][2].encode())  # the banner
    assert bytes(bye).decode() == cap[-2][2]
    login_resp = client.messages()[0]
    assert bytes(login_resp).decode() == cap[2][2]
    ev = {m.event: m for m in client.events()}
    for raw in (cap[3][2], cap[4][2]):
        c = AmiMessage.parse(raw.encode())
        assert c.event is not None
        assert [k for k, _ in ev[c.event].headers] == [k for k, _ in c.headers]


async def test_bad_secret_fails_after_delay_then_closes() -> None:
    async with Simulator(scenario(), auth_fail_delay_s=0.3) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        t0 = time.monotonic()
        resp = await client.login(secret="wrong-secret")
        assert time.monotonic() - t0 >= 0.29
        assert (resp.response, resp["Message"]) == ("Error", "Authentication failed")
        await asyncio.sleep(0.1)
        assert client.eof
        await client.close()


async def test_actions_before_login_are_refused() -> None:
    async with Simulator(scenario()) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        resp = await client.action("CoreShowChannels", "x-1")
        assert (resp.response, resp["Message"]) == ("Error", "Permission denied")
        await client.close()


async def test_core_show_channels_hangup_and_no_such_channel() -> None:
    sc = scenario(endpoints=[
        {"name": "agent1", "role": "agent", "ring_s": 0.05},
        {"name": "cust1", "ring_s": 0.05, "hangup_after_s": 0},
    ])
    async with Simulator(sc) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        await client.action("Originate", "o-1", Channel="PJSIP/cust1", Context="dialer",
                            Exten="agent", Priority="1", Async="true")
        await client.wait(lambda m: m.event == "BridgeEnter" and m["BridgeNumChannels"] == "2")
        resp = await client.action("CoreShowChannels", "csc-1")
        assert [k for k, _ in resp.headers] == ["Response", "ActionID", "EventList", "Message"]
        done = await client.wait(lambda m: m.event == "CoreShowChannelsComplete")
        items = [m for m in client.events() if m.event == "CoreShowChannel"]
        assert done["ListItems"] == "2" and len(items) == 2
        cap = capture_events(CAPTURES / "ami" / "core_show_channels.jsonl")
        assert items[0].action_id == "csc-1"
        if CAPTURES.exists():
            cap_items = [m for t, m in load_capture_msgs("core_show_channels")
                         if m.event == "CoreShowChannel"]
            assert [k for k, _ in items[0].headers] == [k for k, _ in cap_items[0].headers]
        del cap
        bridge_ids = {m["BridgeId"] for m in items}
        assert len(bridge_ids) == 1 and bridge_ids != {""}
        cust = next(m["Channel"] for m in items if m["Channel"].startswith("PJSIP/cust1"))
        bad = await client.action("Hangup", "h-1", Channel=cust + "x")
        assert (bad.response, bad["Message"]) == ("Error", "No such channel")
        ok = await client.action("Hangup", "h-2", Channel=cust, Cause="16")
        assert (ok.response, ok["Message"]) == ("Success", "Channel Hungup")
        await client.wait(lambda m: m.event == "Hangup" and m["Channel"] == cust)
        assert not sim.channels()
        await client.close()


def load_capture_msgs(name: str) -> list[tuple[float, AmiMessage]]:
    out = []
    for t, direction, raw in load_capture(CAPTURES / "ami" / f"{name}.jsonl"):
        if direction == "rx" and raw.endswith("\r\n\r\n"):
            out.append((t, AmiMessage.parse(raw.encode())))
    return out


async def test_list_commands_and_rtcp_noise() -> None:
    sc = scenario(**READ_ALL, endpoints=[
        {"name": "agent1", "role": "agent", "ring_s": 0.05},
        {"name": "cust1", "ring_s": 0.05, "hangup_after_s": 0.3},
    ])
    async with Simulator(sc) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        listing = await client.action("ListCommands", "lc-1")
        for action in ("Originate", "Hangup", "CoreShowChannels", "SendText", "MessageSend"):
            assert "(Priv: " in listing[action]
        await client.action("Originate", "o-1", Channel="PJSIP/cust1", Context="dialer",
                            Exten="agent", Priority="1", Async="true")
        await client.wait(lambda m: m.event == "Hangup" and m["Channel"].startswith(
            "PJSIP/cust1"))
        rtcp = [m for m in client.events() if m.event in NOISE]
        await client.close()
    if CAPTURES.exists():
        cap = [m for _, m in load_capture_msgs("../pjsip/ami/outbound_answered")
               if m.event == "RTCPReceived" and m["PT"] == "201(RR)"]
        ours = [m for m in rtcp if m["PT"] == "201(RR)"]
        assert ours and [k for k, _ in ours[0].headers] == [k for k, _ in cap[0].headers]
    assert {m["Channel"].split("-")[0] for m in rtcp} == {"PJSIP/cust1", "PJSIP/agent1"}


async def test_message_send_and_send_text() -> None:
    async with Simulator(scenario()) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        ok = await client.action("MessageSend", "m-1", To="pjsip:agent1",
                                 From='"Dialer Assist" <sip:assist@127.0.0.1>',
                                 Body="Suggestion: offer the discount")
        assert (ok.response, ok["Message"]) == ("Success", "Message successfully sent")
        js = await client.action("MessageSend", "m-2", To="pjsip:agent1", Body='{"a":1}',
                                 Variable="Content-Type=application/json")
        assert js.response == "Success"
        off = await client.action("MessageSend", "m-3", To="pjsip:cust2", Body="x")
        unknown = await client.action("MessageSend", "m-4", To="pjsip:nosuchendpoint",
                                      Body="x")
        assert off["Message"] == unknown["Message"] == "Message failed to send."
        none = await client.action("MessageSend", "m-5", Body="x")
        assert none["Message"] == "No 'To' address specified."
        txt = await client.action("SendText", "t-1", Channel="PJSIP/nosuch-00000000",
                                  Message="hi")
        assert txt["Message"] == "No such channel"
        await client.close()
    assert [(m["endpoint"], m["content_type"]) for m in sim.messages] == [
        ("agent1", "text/plain"), ("agent1", "application/json")]
    assert sim.messages[0]["body"] == "Suggestion: offer the discount"


async def test_restart_ami_keeps_live_calls() -> None:
    sc = scenario(endpoints=[
        {"name": "agent1", "role": "agent", "ring_s": 0.05},
        {"name": "cust1", "ring_s": 0.05, "hangup_after_s": 0},
    ])
    async with Simulator(sc) as sim:
        port = sim.ami_port
        client = await AmiTestClient.connect(port)
        await client.login()
        await client.action("Originate", "o-1", Channel="PJSIP/cust1", Context="dialer",
                            Exten="agent", Priority="1", Async="true")
        await client.wait(lambda m: m.event == "BridgeEnter" and m["BridgeNumChannels"] == "2")
        before = {c.name for c in sim.channels()}
        restart = asyncio.create_task(sim.restart_ami(delay_s=0.3))
        await asyncio.sleep(0.1)
        assert client.eof  # cut by the restart
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", port)
        await restart
        assert sim.ami_port == port
        again = await AmiTestClient.connect(port)
        await again.login()
        await again.action("CoreShowChannels", "csc-2")
        await again.wait(lambda m: m.event == "CoreShowChannelsComplete")
        listed = {m["Channel"] for m in again.events() if m.event == "CoreShowChannel"}
        assert listed == before and len(listed) == 2
        # the call goes on and its events reach the new session
        cust = next(n for n in listed if n.startswith("PJSIP/cust1"))
        await again.action("Hangup", "h-1", Channel=cust, Cause="16")
        await again.wait(lambda m: m.event == "Hangup" and m["Channel"] == cust)
        await client.close()
        await again.close()


async def test_drop_connections_and_malformed_frames() -> None:
    async with Simulator(scenario(**READ_ALL)) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        await client.wait(lambda m: m.event == "SuccessfulAuth")
        sim.inject_malformed_ami(count=4)
        pong = await client.action("Ping", "p-1")  # the stream is still usable
        assert pong["Ping"] == "Pong"
        assert client.framer.errors == 4
        assert sim.drop_connections() == 1
        await asyncio.sleep(0.05)
        assert client.eof
        await client.close()


async def test_internal_dialer_originates_the_scripted_calls() -> None:
    sc = scenario(dialer={"enabled": True, "start_after_s": 0.05, "spacing_s": 0.05,
                          "calls": ["busy1", "cust2", "cust1"], "timeout_ms": 5000})
    async with Simulator(sc) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        await until(lambda: len(sim.originated_outcomes) == 3
                    and all(o.finished for o in sim.originated_outcomes), 4.0)
        outcomes = sim.originated_outcomes
        responses = [m for m in client.events() if m.event == "OriginateResponse"]
        await client.close()
    assert [(o.endpoint, o.scripted, o.response, o.reason) for o in outcomes] == [
        ("busy1", "busy", "Failure", 0), ("cust2", "offline", "Failure", 0),
        ("cust1", "answer", "Success", 4)]
    assert sorted(m["ActionID"] for m in responses) == ["sim-dialer-1", "sim-dialer-2",
                                                        "sim-dialer-3"]


async def test_python_originate_and_sync_ami_originate() -> None:
    async with Simulator(scenario()) as sim:
        answered = await sim.originate(OriginateRequest(
            channel="PJSIP/busy1", context="dialer", exten="agent", action_id="py-1"))
        assert answered is False
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        resp = await client.action("Originate", "s-1", Channel="PJSIP/decl1",
                                   Context="dialer", Exten="agent", Priority="1")
        assert (resp.response, resp["Message"]) == ("Error", "Originate failed")
        await client.close()


# --- Local channels (captures/ami/originate_*) ----------------------------------------------

LOCAL_SCENARIO = {
    "endpoints": [
        {"name": "answer", "hangup_after_s": 1.7, "says": [{"wav": "hello-world", "at_s": 0.1}]},
        {"name": "busy", "outcome": "busy"},
        {"name": "congestion", "outcome": "congestion"},
        {"name": "noanswer", "outcome": "noanswer"},
    ],
}


@needs_captures
@pytest.mark.parametrize(("capture", "fields", "reason", "causes"), [
    ("originate_answer", {"Channel": "Local/answer@test", "CallerID": "Assist Fixture <1000>",
                          "Timeout": "15000", "Variable": "FX_TAG=originate_answer"},
     "4", ["16", "16"]),
    ("originate_busy", {"Channel": "Local/busy@test"}, "5", ["0", "17"]),
    ("originate_congestion", {"Channel": "Local/congestion@test"}, "8", ["0", "34"]),
    ("originate_noanswer", {"Channel": "Local/noanswer@test", "Timeout": "600"}, "3",
     ["19", "19"]),
    ("originate_bad_exten", {"Channel": "Local/nosuchexten@test"}, "0", ["0", "0"]),
])
async def test_local_originate_matches_capture(capture: str, fields: dict[str, str],
                                               reason: str, causes: list[str]) -> None:
    async with Simulator(scenario(**LOCAL_SCENARIO, dialplan={})) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        ordered = {"Channel": fields["Channel"], "Application": "Wait", "Data": "10",
                   **{k: v for k, v in fields.items() if k != "Channel"}, "Async": "true"}
        await client.action("Originate", "orig-2", **ordered)
        await client.wait(lambda m: m.event == "OriginateResponse", within=3)
        await until(lambda: not sim.channels(), 3.0)
        await asyncio.sleep(0.05)
        start = next(i for i, m in enumerate(client.messages())
                     if m.response == "Success" and m.action_id == "orig-2")
        events = [m for m in client.messages()[start + 1:]
                  if m.event is not None and m.event not in NOISE]
        await client.close()
    captured = capture_events(CAPTURES / "ami" / f"{capture}.jsonl")
    assert_same_sequence(captured, events)
    assert key_shapes(events) == key_shapes([m for _, m in captured])
    orig = next(m for m in events if m.event == "OriginateResponse")
    cap_orig = next(m for _, m in captured if m.event == "OriginateResponse")
    assert [k for k, _ in orig.headers] == [k for k, _ in cap_orig.headers]
    assert (orig["Response"], orig["Reason"]) == (cap_orig["Response"], reason)
    hangups = sorted((m["Channel"][-1], m["Cause"]) for m in events if m.event == "Hangup")
    assert [c for _, c in hangups] == causes


async def test_busy_agent_and_customer_hanging_up_while_agent_rings() -> None:
    sc = scenario(endpoints=[
        {"name": "agentbusy", "role": "agent", "outcome": "busy", "ring_s": 0.1},
        {"name": "cust1", "ring_s": 0.05, "hangup_after_s": 2.0},
    ], dialplan={"agents": ["agentbusy"]})
    async with Simulator(sc) as sim:
        client, events = await run_dialer_call(sim, "cust1")
        await client.close()
        assert not sim.channels() and not sim.bridges()
    agent_end = [m for m in events if m.event == "DialEnd" and "Channel" in m]
    assert [m["DialStatus"] for m in agent_end] == ["BUSY"]
    assert [(m["Channel"].split("-")[0], m["Cause"]) for m in events if m.event == "Hangup"] \
        == [("PJSIP/agentbusy", "17"), ("PJSIP/cust1", "16")]
    assert sim.originated_outcomes[0].reason == 4
    sc = scenario(endpoints=[
        {"name": "agentslow", "role": "agent", "ring_s": 5.0},
        {"name": "cust1", "ring_s": 0.05, "hangup_after_s": 0.3},
    ], dialplan={"agents": ["agentslow"]})
    async with Simulator(sc) as sim:
        client, events = await run_dialer_call(sim, "cust1")
        await client.close()
        assert not sim.channels()
    agent_end = [m for m in events if m.event == "DialEnd" and "Channel" in m]
    assert [m["DialStatus"] for m in agent_end] == ["CANCEL"]


async def test_garbage_from_clients_never_breaks_the_servers() -> None:
    import random

    rng = random.Random(1234)
    blobs = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 300)))
             for _ in range(60)]
    blobs += [b"Action: Originate\r\nChannel: PJSIP/\r\nExten: x\r\nTimeout: abc\r\n\r\n",
              b"Action: Originate\r\nChannel: Local/@\r\nApplication: Wait\r\n\r\n",
              b"Action: Hangup\r\nChannel: \r\nCause: nope\r\n\r\n",
              b"Action:\r\n\r\n", b"\r\n\r\n\r\n", b"Action: Ping\r\n" * 1000]
    async with Simulator(scenario()) as sim:
        client = await AmiTestClient.connect(sim.ami_port)
        await client.login()
        for blob in blobs:
            client.writer.write(blob + b"\r\n\r\n")
        pong = await client.action("Ping", "after-garbage")
        assert pong["Ping"] == "Pong"
        await client.close()
        import aiohttp

        async with aiohttp.ClientSession() as s:
            auth = {"Authorization": "Basic YXNzaXN0OmFzc2lzdA=="}
            for path, params in [("/ari/channels", {"endpoint": "PJSIP/"}),
                                 ("/ari/channels", {"endpoint": "Local/@", "app": "x"}),
                                 ("/ari/channels/externalMedia",
                                  {"app": "x", "external_host": "nohost", "format": "ulaw"}),
                                 ("/ari/bridges/x/addChannel", {}),
                                 ("/ari/channels/x/snoop", {"spy": "sideways", "app": "x"})]:
                async with s.post(sim.ari_url + path, params=params, headers=auth,
                                  data=b"\xff{not json") as r:
                    assert r.status == 200 or 400 <= r.status < 600
            async with s.get(sim.ari_url + "/ari/asterisk/ping", headers=auth) as r:
                assert r.status == 200
        await until(lambda: not sim.channels(), 2.0)  # the bogus Local/@ failed and is gone


# --- manager.conf read=/write= classes (captures/faults/ami/ami_permissions) -------------------

FAULTS_AMI = CAPTURES / "faults" / "ami"
OLD_SITE_USER = {"username": "site", "secret": "s",
                 "read": "system,call,agent,user,dtmf,reporting",
                 "write": "system,call,originate,reporting,message"}


def _users_scenario(*users: dict[str, str]) -> Scenario:
    return scenario(credentials={"ami_users": list(users)}, endpoints=[
        {"name": "agent1", "role": "agent", "ring_s": 0.05},
        {"name": "cust1", "ring_s": 0.05, "hangup_after_s": 0.4},
    ])


async def _login_as(port: int, username: str, secret: str) -> AmiTestClient:
    client = await AmiTestClient.connect(port)
    reply = await client.action("Login", "l-1", Username=username, Secret=secret, Events="on")
    assert reply["Message"] == "Authentication accepted"
    return client


async def test_events_follow_the_read_classes() -> None:
    nodialplan = {"username": "nodialplan", "secret": "n", "read": "system,call"}
    readall = {"username": "readall", "secret": "r", "read": "all", "write": "all"}
    async with Simulator(_users_scenario(nodialplan, readall)) as sim:
        default = await _login_as(sim.ami_port, "assist", "assist")  # shipped least privilege
        bare = await _login_as(sim.ami_port, "nodialplan", "n")
        full = await _login_as(sim.ami_port, "readall", "r")
        await default.action("Originate", "o-1", Channel="PJSIP/cust1", Context="dialer",
                             Exten="agent", Priority="1", Async="true")
        for client in (default, bare, full):
            await client.wait(lambda m: m.event == "Hangup" and m["Channel"].startswith(
                "PJSIP/agent1"))
        await asyncio.sleep(0.05)
        got = {name: [m.event for m in c.events()]
               for name, c in (("default", default), ("bare", bare), ("full", full))}
        privs = {(m.event, m["Privilege"]) for m in full.events()}
        for client in (default, bare, full):
            await client.close()
    assert "Newexten" in got["default"] and "VarSet" in got["default"]
    assert "Newexten" not in got["bare"] and "VarSet" not in got["bare"]
    assert "Newchannel" in got["bare"] and "FullyBooted" in got["bare"]
    # reporting (RTCP) and security only reach the read = all user
    assert not {"RTCPReceived", "SuccessfulAuth"} & (set(got["default"]) | set(got["bare"]))
    assert {"RTCPReceived", "SuccessfulAuth", "Newexten"} <= set(got["full"])
    # default = everything of read=all but the classes it does not hold
    assert [e for e in got["full"] if e not in ("RTCPReceived", "RTCPSent", "SuccessfulAuth")
            ] == got["default"]
    # each Privilege header is the class Asterisk 22.10.1 gives the event (plus ",all")
    for event, priv in privs:
        assert event is not None and priv == f"{EVENT_CLASSES[event]},all", (event, priv)


async def test_no_fullybooted_without_system_or_with_events_off() -> None:
    nosystem = {"username": "nosystem", "secret": "n", "read": "call,dialplan"}
    async with Simulator(_users_scenario(nosystem)) as sim:
        client = await _login_as(sim.ami_port, "nosystem", "n")
        quiet = await AmiTestClient.connect(sim.ami_port)
        await quiet.action("Login", "l-1", Username="assist", Secret="assist", Events="off")
        await client.action("Ping", "p-1")
        await quiet.action("Ping", "p-1")
        assert client.events() == [] and quiet.events() == []
        await client.close()
        await quiet.close()


@pytest.mark.skipif(not (FAULTS_AMI / "ami_permissions.jsonl").exists(),
                    reason="faults captures not available")
async def test_permission_denied_is_byte_exact_and_listcommands_matches_capture() -> None:
    async with Simulator(_users_scenario(OLD_SITE_USER)) as sim:
        site = await _login_as(sim.ami_port, "site", "s")
        least = await _login_as(sim.ami_port, "assist", "assist")
        for tx, rxs in capture_exchanges("faults/ami/ami_permissions"):
            action = AmiMessage.parse(tx.encode())
            if rxs and "Permission denied" in rxs[0]:  # Command, UserEvent, Agents
                site.send(tx)
                reply = await site.wait(lambda m, a=action.action_id: m.action_id == a)
                assert bytes(reply).decode() == rxs[0]
        listed = await site.action("ListCommands", "lc-1")
        mine = await least.action("ListCommands", "lc-2")
        denied = await least.action("GetConfig", "g-1", Filename="manager.conf")
        allowed = await least.action("CoreShowChannels", "c-1")
        await site.close()
        await least.close()
    notes = json.loads((FAULTS_AMI / "ami_permissions.json").read_text())["facts"]
    assert sorted(k for k, _ in listed.headers[2:]) == sorted(notes["list_commands_user_actions"])
    # the whole answer as recorded, but for the ActionID
    (recorded,) = [rxs[0] for tx, rxs in capture_exchanges("faults/ami/ami_permissions")
                   if "Action: ListCommands" in tx]
    assert bytes(listed).decode() == recorded.replace("ami_permissions-13", "lc-1")
    assert "Originate" in [k for k, _ in mine.headers] and "GetConfig" not in dict(mine.headers)
    assert "Command" not in dict(mine.headers) and "Reload" not in dict(mine.headers)
    assert (denied.response, denied["Message"]) == ("Error", "Permission denied")
    assert allowed.response == "Success"
