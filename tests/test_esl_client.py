"""The inbound event-socket client against a fake server that answers with captured frames."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable

import pytest
from esl_captures import ESL_FILES, frames, load
from eslserver_fake import FakeEslServer

from earpiece.errors import PbxAuthError, PbxConnectionError
from earpiece.freeswitch.esl_client import EslClient, EslTimeoutError, subscription_command
from earpiece.freeswitch.esl_event import EslEvent
from earpiece.freeswitch.esl_message import EslMessage
from earpiece.freeswitch.settings import EslSettings
from earpiece.secret import Secret

pytestmark = pytest.mark.skipif(not ESL_FILES, reason="ESL captures not found")


def settings(port: int, **kw: object) -> EslSettings:
    base: dict[str, object] = {
        "port": port, "connect_timeout_s": 2.0, "command_timeout_s": 1.0,
        "reconnect_initial_s": 0.02, "reconnect_max_s": 0.1, "keepalive_s": 0,
    }
    base.update(kw)
    return EslSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def server() -> AsyncIterator[FakeEslServer]:
    srv = FakeEslServer()
    await srv.start()
    yield srv
    await srv.close()


def event_frames(name: str) -> list[bytes]:
    return [r for r in frames(name) if r.startswith(b"Content-Length") and b"text/event" in r[:60]]


async def wait_for(cond: Callable[[], bool], limit_s: float = 2.0) -> None:
    for _ in range(int(limit_s / 0.005)):
        if cond():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"condition not met within {limit_s} s")


def test_subscription_puts_custom_subclasses_last_and_adds_background_job() -> None:
    cmd = subscription_command("plain", ("CUSTOM", "CHANNEL_ANSWER", "mod_audio_fork::connect"))
    assert cmd.command == "event plain BACKGROUND_JOB CHANNEL_ANSWER CUSTOM mod_audio_fork::connect"
    assert subscription_command("json", ("ALL",)).command == "event json ALL"
    with pytest.raises(ValueError):
        subscription_command("xml", ("ALL",))


async def test_auth_subscribe_api_and_exit(server: FakeEslServer) -> None:
    client = EslClient(settings(server.port), on_event=lambda e: None)
    await client.start()
    assert client.connected
    assert [c.verb for c in server.received] == ["auth", "event"]
    assert server.received[0].command == "auth ClueCon"
    assert server.received[1].argument.startswith("plain CHANNEL_CREATE CHANNEL_UUID")
    assert "BACKGROUND_JOB" in server.received[1].argument.split()
    assert await client.api("version") == "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"
    assert (await client.api("no_such_command")).startswith("-ERR no_such_command")
    assert await client.show_channels() == []
    await client.close()
    assert server.received[-1].command == "exit"
    assert not client.connected


async def test_wrong_password_raises_auth_error(server: FakeEslServer) -> None:
    client = EslClient(settings(server.port, password=Secret("nope")), on_event=lambda e: None)
    with pytest.raises(PbxAuthError, match=r"password rejected.*-ERR invalid"):
        await client.start()
    assert "nope" not in repr(client.settings)
    assert client.stats.auth_failures == 1


async def test_nothing_listening_times_out_with_the_reason() -> None:
    srv = FakeEslServer()
    port = await srv.start()
    await srv.stop_listening()
    client = EslClient(settings(port), on_event=lambda e: None)
    with pytest.raises(PbxConnectionError, match=r"not connected within 0\.3 s.*connect failed"):
        await client.start(timeout_s=0.3)
    assert client.stats.connect_failures >= 2  # it retried with backoff meanwhile


async def test_show_channels_rows_from_a_captured_call() -> None:
    srv = FakeEslServer(overlay=("sip_kill",))
    await srv.start()
    client = EslClient(settings(srv.port), on_event=lambda e: None)
    await client.start()
    rows = await client.show_channels()
    assert len(rows) == 2
    assert {r["name"] for r in rows} == {
        "sofia/internal/1002@127.0.0.1:5192", "sofia/internal/1001@127.0.0.1:5191"
    }
    assert all(r["call_uuid"] for r in rows)
    await client.close()
    await srv.close()


async def test_bgapi_jobs_are_correlated_by_job_uuid_out_of_order(server: FakeEslServer) -> None:
    seen: list[EslEvent] = []
    client = EslClient(settings(server.port), on_event=seen.append)
    await client.start()
    server.hold_jobs = True
    server.jobs = {"originate a": "+OK aaaa\n", "originate b": "-ERR USER_BUSY\n"}
    job_a = await client.bgapi("originate a")
    job_b = await client.bgapi("originate b", job_uuid="11111111-2222-3333-4444-555555555555")
    assert job_b.job_uuid == "11111111-2222-3333-4444-555555555555"
    sent = [c for c in server.received if c.verb == "bgapi"]
    assert [c["Job-UUID"] for c in sent] == [job_a.job_uuid, job_b.job_uuid]
    server.push([ev for _, ev in reversed(server.held)])  # b's result first
    b = await job_b.result(1.0)
    a = await job_a.result(1.0)
    assert (a.body, b.body) == ("+OK aaaa\n", "-ERR USER_BUSY\n")
    assert a["Job-Command-Arg"] == "a"
    assert [e.job_uuid for e in seen] == [job_b.job_uuid, job_a.job_uuid]  # also on_event
    job_c = await client.bgapi("originate c")
    with pytest.raises(EslTimeoutError, match=r"no BACKGROUND_JOB within 0\.05 s"):
        await job_c.result(0.05)
    await client.close()
    with pytest.raises(PbxConnectionError):
        await job_c.result(1.0)


async def test_captured_events_reach_on_event_in_order(server: FakeEslServer) -> None:
    seen: list[EslEvent] = []
    client = EslClient(settings(server.port), on_event=seen.append)
    await client.start()
    for name in ("originate_busy", "dialer_loopback_json"):
        seen.clear()
        captured = event_frames(name)
        server.push(captured)
        n = len(captured)
        await wait_for(lambda n=n: len(seen) == n)  # type: ignore[misc]
        expected = [EslEvent.from_message(EslMessage.parse(r)).name for r in captured]
        assert [e.name for e in seen] == expected
        assert "CHANNEL_HANGUP_COMPLETE" in expected
    assert client.stats.malformed == 0
    server.push([b"Content-Length: 3\nContent-Type: text/event-json\n\n{x}"])
    server.push(event_frames("originate_busy")[:1])
    await wait_for(lambda: client.stats.malformed == 1 and len(seen) > 0)
    assert "not JSON" in client.stats.last_malformed
    await client.close()


def _restart_tail() -> list[bytes]:
    """What FreeSWITCH sent after ``api fsctl shutdown restart``'s +OK, until EOF."""
    records = load("restart_mid_call")
    start = next(i for i, r in enumerate(records) if r.raw == b"api fsctl shutdown restart\n\n")
    tail = [r.raw for r in records[start + 2 :] if r.dir == "in" and not r.eof]
    assert tail[-1].endswith(b"The system is being shut down.\n")
    return tail


async def test_restart_reconnects_and_resyncs_to_no_calls() -> None:
    srv = FakeEslServer(overlay=("sip_kill",))  # a live call before the restart
    await srv.start()
    resyncs: list[list[dict[str, object]]] = []
    seen: list[str] = []

    async def resync() -> None:
        resyncs.append(await client.show_channels())

    client = EslClient(settings(srv.port), on_event=lambda e: seen.append(e.name),
                       on_connected=resync, rng=random.Random(1))
    await client.start()
    await wait_for(lambda: len(resyncs) == 1)
    assert len(resyncs[0]) == 2
    srv.hold_jobs = True
    job = await client.bgapi("originate x")
    port = srv.port
    srv.push(_restart_tail())
    await asyncio.sleep(0.05)
    await srv.close()  # EOF; connects are refused until it listens again
    with pytest.raises(PbxConnectionError, match="connection lost"):
        await job.result(1.0)
    assert "SHUTDOWN" in seen and seen.count("CHANNEL_HANGUP") == 2
    assert client.stats.last_notice == "The system is being shut down."
    await asyncio.sleep(0.2)
    assert not client.connected and client.stats.connect_failures >= 1
    srv2 = FakeEslServer(overlay=("restart_mid_call_reconnect",))
    await srv2.start(port)
    await wait_for(lambda: len(resyncs) == 2)
    assert resyncs[1] == []  # README: the call is gone after the restart
    assert client.stats.reconnects == 1 and client.connected
    assert [c.verb for c in srv2.received][:3] == ["auth", "event", "api"]
    await client.close()
    await srv2.close()


async def test_keepalive_drops_a_silent_connection(server: FakeEslServer) -> None:
    client = EslClient(settings(server.port, keepalive_s=0.05, command_timeout_s=0.1),
                       on_event=lambda e: None)
    await client.start()
    await wait_for(lambda: sum(c.command == "api status" for c in server.received) >= 1)
    assert client.stats.keepalive_failures == 0
    server.silent_for.add("api status")
    await wait_for(lambda: client.stats.keepalive_failures == 1)
    await wait_for(lambda: client.stats.reconnects == 1 and client.connected)
    assert server.connections == 2
    await client.close()


def test_show_channels_capture_is_what_the_fake_answers() -> None:
    reply = next(r for r in frames("sip_kill") if b'"row_count":2' in r)
    assert json.loads(EslMessage.parse(reply).text)["row_count"] == 2
