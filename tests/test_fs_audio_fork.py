"""uuid_audio_fork: command builders against the captured commands, AudioForkControl through a
real EslClient and the fake event socket, fork state from the captured events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from esl_captures import ESL_FILES, frames, sidecar
from eslserver_fake import FakeEslServer
from hypothesis import given
from hypothesis import strategies as st

from earpiece.freeswitch.audio_fork import (
    AudioForkControl,
    AudioForkError,
    ForkHandle,
    metadata_word,
    send_text_command,
    start_command,
    stop_command,
)
from earpiece.freeswitch.esl_client import EslClient
from earpiece.freeswitch.esl_event import EslEvent
from earpiece.freeswitch.esl_message import EslMessage
from earpiece.freeswitch.settings import EslSettings

pytestmark = pytest.mark.skipif(not ESL_FILES, reason="ESL captures not found")

CUSTOMER = "620edc2a-2d8e-4233-b08e-3852255f7b33"
AGENT = "d1f9db16-0dc5-4073-8201-89490ba773dd"


def captured() -> dict[str, str]:
    """case -> the command line as sent (without ``api ``)."""
    return {c["case"]: c["command"].removeprefix("api ") for c in sidecar("audio_fork")["fork_api"]}


def test_builders_write_the_captured_commands() -> None:
    cmds = captured()
    meta = {"leg": "customer", "call": CUSTOMER, "mix": "stereo"}
    assert start_command(CUSTOMER, "ws://127.0.0.1:8090/customer-stereo", "stereo", 8000,
                         metadata=meta) == cmds["customer_stereo_8k"]
    assert start_command(CUSTOMER, "ws://127.0.0.1:8090/customer-mono", "mono", 8000,
                         bug="fork_mono", metadata={**meta, "mix": "mono"}
                         ) == cmds["customer_mono_8k"]
    assert start_command(AGENT, "ws://127.0.0.1:8090/agent-mono16", "mono", 16000,
                         metadata={"leg": "agent", "call": CUSTOMER, "mix": "mono",
                                   "rate": 16000}) == cmds["agent_mono_16k"]
    assert start_command(CUSTOMER, "ws://127.0.0.1:8090/dup", "mono", 8000
                         ) == cmds["duplicate_bugname"]
    assert start_command(CUSTOMER, "ws://127.0.0.1:40987/nobody", "mono", 8000,
                         bug="failfork") == cmds["connect_refused"]
    assert send_text_command(CUSTOMER, '{"event":"dtmf","digit":"5"}') == cmds["send_text"]
    assert stop_command(CUSTOMER, bug="fork_mono", text='{"final":true}'
                        ) == cmds["stop_with_text"]
    assert stop_command(CUSTOMER) == f"uuid_audio_fork {CUSTOMER} stop"
    # every captured start names a mix and rate the builder accepts
    for case, cmd in cmds.items():
        if " start ws://" in cmd:
            mix, rate = cmd.split()[4:6]
            assert (mix, rate) in {("mono", "8k"), ("stereo", "8k"), ("mono", "16k")} or (
                case == "bad_mix_type"
            )


@pytest.mark.parametrize(
    "call",
    [
        lambda: start_command(CUSTOMER, "ws://h/x", "quad", 8000),  # type: ignore[arg-type]
        lambda: start_command(CUSTOMER, "ws://h/x", "mono", 44100),
        lambda: start_command(CUSTOMER, "http://h/x", "mono", 8000),
        lambda: start_command(CUSTOMER, "ws://h/a b", "mono", 8000),
        lambda: start_command("", "ws://h/x", "mono", 8000),
        lambda: start_command(CUSTOMER, "ws://h/x", "mono", 8000, bug="{x}"),
        lambda: start_command(CUSTOMER, "ws://h/x", "mono", 8000, metadata="a b"),
        lambda: stop_command(CUSTOMER, text="{}"),
    ],
)
def test_builders_refuse_what_would_be_misread(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


@given(st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=12), st.integers(),
                                                       st.booleans(), st.none()), max_size=5))
def test_metadata_is_one_word_with_the_same_json(meta: dict[str, object]) -> None:
    word = metadata_word(meta)
    assert word and not any(c.isspace() for c in word)
    assert json.loads(word) == meta


def _settings(port: int) -> EslSettings:
    return EslSettings(port=port, connect_timeout_s=2.0, command_timeout_s=1.0,
                       reconnect_initial_s=0.02, reconnect_max_s=0.1, keepalive_s=0)


@pytest.fixture
async def esl() -> AsyncIterator[tuple[FakeEslServer, EslClient]]:
    srv = FakeEslServer(overlay=("audio_fork",))
    await srv.start()
    client = EslClient(_settings(srv.port), on_event=lambda e: None)
    await client.start()
    yield srv, client
    await client.close()
    await srv.close()


async def test_control_starts_and_stops_per_party(
    esl: tuple[FakeEslServer, EslClient],
) -> None:
    srv, client = esl
    cmds = captured()
    ok = srv.replies["api " + cmds["customer_stereo_8k"]]
    failed = srv.replies["api " + cmds["unknown_uuid"]]
    assert b"+OK Success" in b"".join(ok) and b"-ERR Operation Failed" in b"".join(failed)
    ctl = AudioForkControl(client)
    url = "ws://127.0.0.1:8781/audio-fork/TOKEN1"
    expect_start = start_command(CUSTOMER, url, "stereo", 8000, bug="earpiece_customer_agent",
                                 metadata={"call": "c1", "parties": ["customer", "agent"]})
    srv.replies["api " + expect_start] = ok
    expect_agent = start_command(AGENT, url + "b", "mono", 16000, bug="earpiece_agent",
                                 metadata={"call": "c1", "parties": ["agent"], "token": "T"})
    srv.replies["api " + expect_agent] = ok
    stereo = await ctl.start("c1", CUSTOMER, ("customer", "agent"), url)
    agent = await ctl.start_party("c1", "agent", AGENT, url + "b", rate=16000,
                                  metadata={"token": "T"})
    assert stereo.state == agent.state == "started" and stereo.mix == "stereo"
    sent = [c.command for c in srv.received if c.verb == "api"]
    assert sent == ["api " + expect_start, "api " + expect_agent]
    with pytest.raises(ValueError, match="already has a fork"):
        await ctl.start("c1", CUSTOMER, ("customer", "agent"), url)

    srv.replies["api " + stop_command(CUSTOMER, bug="earpiece_customer_agent")] = ok
    assert await ctl.stop_call("c1") == 1  # the agent's stop gets the fake's unknown reply
    assert stereo.state == agent.state == "stopped" and agent.reason.startswith("-ERR")
    assert not await ctl.stop(stereo)  # already stopped: nothing sent

    gone = "00000000-0000-0000-0000-000000000000"
    bad = start_command(gone, url, "mono", 8000, bug="earpiece_customer",
                        metadata={"call": "c2", "parties": ["customer"]})
    srv.replies["api " + bad] = failed
    with pytest.raises(AudioForkError, match="Operation Failed"):
        await ctl.start_party("c2", "customer", gone, url)
    assert [f.state for f in ctl.of_call("c2")] == ["failed"]
    ctl.forget("c2")
    assert ctl.of_call("c2") == []


def test_fork_state_follows_the_captured_events() -> None:
    ctl = AudioForkControl(esl=None)  # type: ignore[arg-type]
    stereo = ForkHandle("c", CUSTOMER, ("customer", "agent"), 8000, "ws://x", "audio_fork",
                        "started")
    mono = ForkHandle("c", CUSTOMER, ("customer",), 8000, "ws://x", "fork_mono", "started")
    agent = ForkHandle("c", AGENT, ("agent",), 16000, "ws://x", "audio_fork", "started")
    ctl.forks += [stereo, mono, agent]
    seen: list[tuple[str, str, str]] = []
    for raw in frames("audio_fork"):
        if not raw.startswith(b"Content-Length") or b"text/event" not in raw[:60]:
            continue
        ev = EslEvent.from_message(EslMessage.parse(raw))
        if ev.name == "MEDIA_BUG_START" and ev.get("Media-Bug-Function") == "failfork":
            ctl.forks.append(ForkHandle("c", CUSTOMER, ("customer",), 8000, "ws://closed",
                                        "failfork", "started"))
        changed = ctl.feed(ev)
        if changed is not None:
            seen.append((changed.bug, changed.channel_uuid[:4], changed.state))
    assert seen == [
        ("audio_fork", "620e", "connected"),
        ("fork_mono", "620e", "connected"),
        ("audio_fork", "d1f9", "connected"),
        ("audio_fork", "d1f9", "disconnected"),  # Earpiece closed it ("asr done")
        ("fork_mono", "620e", "stopped"),  # stop fork_mono {"final":true}
        ("failfork", "620e", "failed"),  # +OK Success, then connect_failed
        ("audio_fork", "d1f9", "stopped"),  # hangup: the agent leg's bug goes first
        ("audio_fork", "620e", "stopped"),
    ]
    assert ctl.forks[-1].reason == "Unable to connect"
