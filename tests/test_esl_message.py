"""ESL wire format against every frame recorded from FreeSWITCH 1.10.12, plus Hypothesis."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from esl_captures import CAPTURES, ESL_FILES, frames, load
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.errors import EslProtocolError
from earpiece.freeswitch.esl_event import EslEvent, url_decode, url_encode
from earpiece.freeswitch.esl_message import (
    API_RESPONSE,
    COMMAND_REPLY,
    DISCONNECT_NOTICE,
    EVENT_JSON,
    EVENT_PLAIN,
    EslCommand,
    EslFramer,
    EslMessage,
)

pytestmark = pytest.mark.skipif(
    not ESL_FILES, reason=f"ESL captures not found under {CAPTURES} (set EARPIECE_FS_CAPTURES)"
)


def test_all_capture_files_are_present() -> None:
    names = {p.stem for p in ESL_FILES}
    assert {"auth_ok", "auth_bad", "api_commands", "outbound_socket", "restart_mid_call"} <= names
    assert {"sip_busy_486", "sip_decline_603", "originate_noanswer", "events_json_all"} <= names
    assert len(ESL_FILES) == 36  # README "Files": 36 sessions


# --- every recorded frame, one by one -----------------------------------------------------
@pytest.mark.parametrize("path", ESL_FILES, ids=[p.stem for p in ESL_FILES])
def test_each_frame_round_trips_byte_exactly(path: Path) -> None:
    records = load(path)
    kinds: Counter[str] = Counter()
    for rec in records:
        if rec.eof:
            assert rec.raw == b""
            assert rec is records[-1]
            continue
        if rec.dir == "in":
            msg = EslMessage.parse(rec.raw)
            assert bytes(msg) == rec.raw
            assert msg.content_type is not None
            kinds[msg.content_type] += 1
            if msg.content_type in (EVENT_PLAIN, EVENT_JSON):
                event = EslEvent.from_message(msg)
                assert event.name
                again = event.to_plain() if msg.content_type == EVENT_PLAIN else event.to_json()
                assert again == msg.body
                # The same event in the other format round-trips too (what a simulator sends).
                other = event.to_json() if msg.content_type == EVENT_PLAIN else event.to_plain()
                back = EslEvent.parse_json(other) if msg.content_type == EVENT_PLAIN else (
                    EslEvent.parse_plain(other)
                )
                assert back == event
                assert bytes(event.to_message(msg.content_type)) == rec.raw
        else:
            cmd = EslCommand.parse(rec.raw)
            assert bytes(cmd) == rec.raw
            kinds["out:" + cmd.verb] += 1
    # Every session starts with auth/request, except the outbound socket (FreeSWITCH waits
    # for our ``connect``).
    first = records[0]
    if path.stem.startswith("outbound_socket") and "originator" not in path.stem:
        assert first.dir == "out" and first.raw == b"connect\n\n"
    else:
        assert first.dir == "in" and first.raw == b"Content-Type: auth/request\n\n"
    assert sum(kinds.values()) > 0


@pytest.mark.parametrize("path", ESL_FILES, ids=[p.stem for p in ESL_FILES])
def test_streams_frame_byte_exactly_whole_and_split(path: Path) -> None:
    records = load(path)
    for direction in ("in", "out"):
        expected = [r.raw for r in records if r.dir == direction and not r.eof]
        data = b"".join(expected)
        framer = EslFramer(commands=direction == "out")
        got = framer.feed(data)
        assert framer.errors == 0, framer.last_error
        assert [bytes(f) for f in got] == expected
        assert framer.buffered == 0
        rng = random.Random(path.stem + direction)
        framer = EslFramer(commands=direction == "out")
        got = []
        pos = 0
        while pos < len(data):
            step = rng.choice((1, 2, 7, 64, 1000, 5000))
            got += framer.feed(data[pos : pos + step])
            pos += step
        assert framer.errors == 0
        assert [bytes(f) for f in got] == expected


def test_one_byte_at_a_time_across_body_boundaries() -> None:
    expected = frames("api_commands") + frames("auth_bad") + frames("originate_answer")[:40]
    framer = EslFramer()
    got = []
    for byte in b"".join(expected):
        got += framer.feed(bytes([byte]))
    assert framer.errors == 0
    assert [bytes(f) for f in got] == expected


def test_frame_kinds_over_all_captures() -> None:
    kinds: Counter[str] = Counter()
    for path in ESL_FILES:
        for rec in load(path):
            if rec.dir == "in" and not rec.eof:
                kinds[EslMessage.parse(rec.raw).content_type or ""] += 1
    # README: these six content types, and no other, come from FreeSWITCH.
    assert set(kinds) == {
        "auth/request", COMMAND_REPLY, API_RESPONSE, EVENT_PLAIN, EVENT_JSON, DISCONNECT_NOTICE
    }
    assert kinds[EVENT_PLAIN] > 1000 and kinds[EVENT_JSON] > 100


# --- semantics the client relies on --------------------------------------------------------
def _parse(name: str, pred: str, direction: str = "in") -> EslMessage:
    raw = next(r for r in frames(name, direction) if pred.encode() in r)
    return EslMessage.parse(raw)


def test_replies_and_api_responses() -> None:
    ok = EslMessage.parse(frames("auth_ok")[1])
    assert ok.content_type == COMMAND_REPLY and ok.reply_text == "+OK accepted" and ok.ok
    bad = EslMessage.parse(frames("auth_bad")[1])
    assert bad.reply_text == "-ERR invalid" and not bad.ok
    version = _parse("api_commands", "FreeSWITCH Version")
    assert version.content_type == API_RESPONSE and version.ok
    assert version.text == "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"
    unknown = _parse("api_commands", "no_such_command")
    assert unknown.content_type == API_RESPONSE and not unknown.ok
    notice = EslMessage.parse(frames("auth_bad")[-1])
    assert notice.content_type == DISCONNECT_NOTICE
    assert notice.text.startswith("Disconnected, goodbye.\n") and len(notice.body) == 67


def test_bgapi_with_job_uuid_header_and_background_job() -> None:
    cmd = EslCommand.parse(next(r for r in frames("api_commands", "out") if b"Job-UUID" in r))
    assert cmd.verb == "bgapi" and cmd.argument == "version"
    job = cmd["job-uuid"]
    reply = _parse("api_commands", f"Reply-Text: +OK Job-UUID: {job}")
    assert reply["Job-UUID"] == job
    event = EslEvent.from_message(_parse("api_commands", f"Job-UUID: {job}\nJob-Command: version"))
    assert event.name == "BACKGROUND_JOB" and event.job_uuid == job
    assert event.body.startswith("FreeSWITCH Version 1.10.12")
    assert event["Content-Length"] == str(len(event.body))


def test_plain_event_values_are_url_decoded() -> None:
    event = EslEvent.from_message(_parse("originate_answer", "BACKGROUND_JOB"))
    arg = event["Job-Command-Arg"]
    assert arg.startswith("{origination_uuid=") and arg.endswith("loopback/answer/fixtures &park()")
    assert event["FreeSWITCH-IPv6"] == "fd00::2"
    assert event.body.startswith("+OK ") and event.body.endswith("\n")


def test_repeated_headers_are_kept_in_plain_and_json() -> None:
    for name, ctype in (("originate_busy", EVENT_PLAIN), ("events_json_all", EVENT_JSON)):
        msg = _parse(name, "CHANNEL_HANGUP_COMPLETE")
        assert msg.content_type == ctype
        event = EslEvent.from_message(msg)
        causes = event.get_all("Hangup-Cause")
        assert len(causes) == 2 and causes[0] == causes[1]


def test_outbound_connect_reply_has_its_content_type_at_the_end() -> None:
    reply = _parse("outbound_socket", "CHANNEL_DATA")
    assert reply.headers[0] == ("Event-Name", "CHANNEL_DATA")
    assert "Content-Length" not in reply and reply.body == b""
    assert reply.content_type == COMMAND_REPLY
    assert reply.headers[-4:][0] == ("Content-Type", "command/reply")
    assert url_decode(reply["Reply-Text"]) == "+OK\n"
    assert reply["Socket-Mode"] == "async" and reply["Control"] == "full"
    assert len(reply.headers) == 118  # README says "120 lines": 118 headers in this capture


def test_sendevent_body_and_its_echo_with_two_content_lengths() -> None:
    cmd = EslCommand.parse(next(r for r in frames("sip_message_chat", "out") if b"sendevent" in r))
    assert cmd.command == "sendevent SEND_MESSAGE" and cmd.body == b"Prompt via SEND_MESSAGE event"
    echo = EslEvent.from_message(_parse("sip_message_chat", "Command: sendevent"))
    assert echo.get_all("Content-Length") == ["29", "29"]
    assert echo.body == "Prompt via SEND_MESSAGE event"


def test_url_encoding_matches_freeswitch() -> None:
    assert url_encode("a b:c=d&e{f}|g@h\n~'(),./") == "a%20b%3Ac%3Dd%26e%7Bf%7D%7Cg%40h%0A~'(),./"
    assert url_encode("100%") == "100%25"
    assert url_encode("é") == "%C3%A9"
    assert url_decode("%2BOK%0A") == "+OK\n" and url_decode("%2bok+") == "+ok+"


# --- precise errors ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b"", "no empty line"),
        (b"Content-Type: command/reply\n", "no empty line"),
        (b"\n\n", "empty header block"),
        (b"Content-Type: a\r\n\n", "CRLF"),
        (b"Content-Type:a\n\n", "separator"),
        (b" Content-Type: a\n\n", "bad header name"),
        (b"A: b\n\nbody", "without Content-Length"),
        (b"Content-Length: 5\n\nabc", "Content-Length 5 but the body has 3"),
        (b"Content-Length: x\n\n", "not a number"),
        (b"Content-Length: 03\n\nabc", "leading zero"),
        (b"Content-Length: 1\nContent-Length: 1\n\na", "appears 2 times"),
    ],
)
def test_malformed_frames_raise_precise_errors(raw: bytes, needle: str) -> None:
    with pytest.raises(EslProtocolError, match=needle):
        EslMessage.parse(raw)


def test_malformed_events_and_commands() -> None:
    with pytest.raises(EslProtocolError, match="not JSON"):
        EslEvent.parse_json(b"{nope")
    with pytest.raises(EslProtocolError, match="not a string"):
        EslEvent.parse_json(b'{"Event-Name":1}')
    with pytest.raises(EslProtocolError, match="bad %-escape"):
        EslEvent.parse_plain(b"Event-Name: 100%\n\n")
    with pytest.raises(EslProtocolError, match="Content-Length '9' but the body has 2"):
        EslEvent.parse_plain(b"Event-Name: X\nContent-Length: 9\n\nab")
    with pytest.raises(EslProtocolError, match="bad command line"):
        EslCommand.parse(b" api status\n\n")
    with pytest.raises(EslProtocolError, match="newline inside the value"):
        EslCommand.build("sendmsg", [("call-command", "hangup\nexecute-app-name: x")])


def test_framer_skips_a_bad_frame_and_keeps_step() -> None:
    good = frames("api_commands")[:6]
    bad = b"Content-Length: 4\nBroken\n\nxxxx"
    framer = EslFramer()
    got = framer.feed(good[1] + bad + b"".join(good[2:]))
    assert framer.errors == 1 and "separator" in framer.last_error
    assert [bytes(f) for f in got] == [good[1], *good[2:]]


# --- properties ----------------------------------------------------------------------------
_name = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=":"), min_size=1,
    max_size=20,
).filter(lambda s: s.lower() != "content-length")
_value = st.text(st.characters(exclude_characters="\n\r", codec="utf-8"), max_size=40)
_pairs = st.lists(st.tuples(_name, _value), min_size=1, max_size=8)


@settings(max_examples=300, deadline=None)
@given(_pairs, st.binary(max_size=200))
def test_any_message_round_trips(pairs: list[tuple[str, str]], body: bytes) -> None:
    msg = EslMessage.build(pairs, body)
    raw = bytes(msg)
    assert EslMessage.parse(raw) == msg
    framer = EslFramer()
    assert framer.feed(raw + raw) == [msg, msg]


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(exclude_characters="\n\r", codec="utf-8"), min_size=1)
    .map(str.strip).filter(bool),
    st.lists(st.tuples(_name, _value), max_size=5),
    st.binary(max_size=100),
)
def test_any_command_round_trips(command: str, pairs: list[tuple[str, str]], body: bytes) -> None:
    cmd = EslCommand.build(command, pairs, body)
    assert EslCommand.parse(bytes(cmd)) == cmd
    assert EslFramer(commands=True).feed(bytes(cmd)) == [cmd]


_any_value = st.text(st.characters(codec="utf-8"), max_size=40).filter(
    lambda s: not s.startswith("ARRAY::")
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_name, _any_value), min_size=1, max_size=8), _any_value)
def test_any_event_round_trips_plain_and_json(pairs: list[tuple[str, str]], body: str) -> None:
    event = EslEvent.build(pairs, body)
    assert EslEvent.parse_plain(event.to_plain()) == event
    assert EslEvent.parse_json(event.to_json()) == event
    for ctype in (EVENT_PLAIN, EVENT_JSON):
        assert EslEvent.from_message(EslMessage.parse(bytes(event.to_message(ctype)))) == event


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_byte_soup_gives_a_canonical_message_or_the_precise_error(soup: bytes) -> None:
    try:
        msg = EslMessage.parse(soup)
    except EslProtocolError:
        pass
    else:
        assert bytes(msg) == soup
    try:
        cmd = EslCommand.parse(soup)
    except EslProtocolError:
        pass
    else:
        assert bytes(cmd) == soup
    for parse in (EslEvent.parse_plain, EslEvent.parse_json):
        try:
            parse(soup)
        except EslProtocolError:
            pass
    framer = EslFramer()
    for item in framer.feed(soup):  # never raises; what it yields is canonical
        assert bytes(item) in soup


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(_pairs, st.binary(max_size=50)), min_size=1, max_size=5), st.data())
def test_any_stream_frames_the_same_however_it_is_cut(
    items: list[tuple[list[tuple[str, str]], bytes]], data: st.DataObject
) -> None:
    msgs = [EslMessage.build(p, b) for p, b in items]
    stream = b"".join(bytes(m) for m in msgs)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = EslFramer()
    got = []
    prev = 0
    for cut in [*cuts, len(stream)]:
        got += framer.feed(stream[prev:cut])
        prev = cut
    assert got == msgs and framer.errors == 0
