"""AMI wire format against every recorded Asterisk 22.10.1 message, plus Hypothesis properties."""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.agi.ami_message import AmiBanner, AmiFramer, AmiMessage
from earpiece.errors import AmiProtocolError


def _captures_root() -> Path:
    env = os.environ.get("EARPIECE_CAPTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "asterisk" / "captures"


CAPTURES = _captures_root()
CAPTURE_FILES = sorted([*CAPTURES.glob("ami/*.jsonl"), *CAPTURES.glob("pjsip/ami/*.jsonl")])

pytestmark = pytest.mark.skipif(
    not CAPTURE_FILES, reason=f"AMI captures not found under {CAPTURES} (set EARPIECE_CAPTURES)"
)


@dataclass(frozen=True)
class Record:
    t: float
    dir: str
    raw: bytes
    eof: bool


def load(path: Path) -> list[Record]:
    out = []
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        out.append(Record(obj["t"], obj["dir"], obj["raw"].encode("utf-8"), bool(obj.get("eof"))))
    return out


def stream(records: list[Record], direction: str) -> bytes:
    return b"".join(r.raw for r in records if r.dir == direction and not r.eof)


def ids(paths: list[Path]) -> list[str]:
    return [f"{p.parent.parent.name}/{p.stem}" if "pjsip" in p.parts else p.stem for p in paths]


def test_all_capture_files_are_present() -> None:
    # 21 plain AMI sessions and 12 PJSIP ones were recorded; a missing file is a broken fixture.
    names = {p.stem for p in CAPTURE_FILES}
    assert {"login_ok", "login_bad_secret", "core_show_channels", "outbound_answered"} <= names
    assert len(CAPTURE_FILES) >= 33


# --- every recorded message, one by one ---------------------------------------------------
@pytest.mark.parametrize("path", CAPTURE_FILES, ids=ids(CAPTURE_FILES))
def test_each_message_round_trips_byte_exactly(path: Path) -> None:
    records = load(path)
    first = records[0]
    assert first.dir == "rx"
    banner = AmiBanner.parse(first.raw)
    assert banner.version == "11.0.0"
    assert bytes(banner) == first.raw
    checked = 0
    for rec in records[1:]:
        if rec.eof:
            assert rec.raw == b""
            continue
        msg = AmiMessage.parse(rec.raw)
        assert bytes(msg) == rec.raw
        assert msg.to_text().encode() == rec.raw
        # Every message is an action, a response or an event, and says so in its first line.
        first_key = msg.headers[0][0]
        assert first_key in (("Action",) if rec.dir == "tx" else ("Response", "Event"))
        if first_key == "Response":
            # Responses put ActionID on the second line (README "Header and response formats").
            assert msg.headers[1][0] == "ActionID"
        checked += 1
    assert checked > 0


@pytest.mark.parametrize("path", CAPTURE_FILES, ids=ids(CAPTURE_FILES))
def test_streams_frame_byte_exactly_whole_and_split(path: Path) -> None:
    records = load(path)
    for direction in ("rx", "tx"):
        data = stream(records, direction)
        expected = [r.raw for r in records if r.dir == direction and not r.eof]
        framer = AmiFramer(expect_banner=direction == "rx")
        items = framer.feed(data)
        assert framer.errors == 0, framer.last_error
        assert [bytes(i) for i in items] == expected
        assert isinstance(items[0], AmiBanner) == (direction == "rx")

        # Split at every byte boundary of the banner and the first messages (~600 bytes),
        # then at random boundaries through the whole stream.
        n_head = 0
        while n_head < len(expected) and sum(map(len, expected[:n_head])) < 600:
            n_head += 1
        head = b"".join(expected[:n_head])
        for cut in range(len(head) + 1):
            framer = AmiFramer(expect_banner=direction == "rx")
            got = framer.feed(head[:cut]) + framer.feed(head[cut:])
            assert [bytes(i) for i in got] == expected[:n_head]
        rng = random.Random(path.stem + direction)
        for _ in range(5):
            framer = AmiFramer(expect_banner=direction == "rx")
            got = []
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 97)
                got += framer.feed(data[pos : pos + step])
                pos += step
            assert framer.errors == 0
            assert [bytes(i) for i in got] == expected


def test_one_byte_at_a_time_over_all_captures() -> None:
    framer = AmiFramer(expect_banner=False)
    expected: list[bytes] = []
    data = bytearray()
    for path in CAPTURE_FILES:
        for rec in load(path)[1:]:  # skip each banner: one continuous message stream
            if rec.dir == "rx" and not rec.eof:
                expected.append(rec.raw)
                data += rec.raw
    got: list[bytes] = []
    for i in range(len(data)):
        got.extend(bytes(m) for m in framer.feed(bytes(data[i : i + 1])))
    assert framer.errors == 0
    assert got == expected


# --- semantics the rest of Earpiece relies on ---------------------------------------------
def _messages(name: str, direction: str = "rx") -> list[AmiMessage]:
    path = next(p for p in CAPTURE_FILES if p.stem == name)
    return [
        AmiMessage.parse(r.raw)
        for r in load(path)[1:]
        if r.dir == direction and not r.eof
    ]


def test_repeated_headers_and_lookups_on_real_messages() -> None:
    originate = next(m for m in _messages("originate_answer", "tx") if m.action_name == "Originate")
    assert originate.variables() == {"FX_TAG": "originate_answer"}
    assert originate["callerid"] == "Assist Fixture <1000>"
    assert originate.action_id == "originate_answer-2"

    resp = next(m for m in _messages("command_action") if m.action_id == "command_action-2")
    assert resp.response == "Success"
    assert resp.get_all("Output") == [
        "Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on 2026-11-23 14:44:11 UTC"
    ]
    events = _messages("originate_answer")
    orig = [m for m in events if m.event == "OriginateResponse"]
    assert len(orig) == 1
    assert orig[0].action_id == "originate_answer-2"
    assert orig[0].response == "Success" and orig[0]["Reason"] == "4"
    # Empty values arrive as "Key: " and stay empty strings, not missing keys.
    newchannel = next(m for m in events if m.event == "Newchannel")
    assert "AccountCode" in newchannel and newchannel["AccountCode"] == ""
    assert newchannel.get("nosuchheader") is None
    with pytest.raises(KeyError):
        newchannel["nosuchheader"]


def test_list_action_messages_carry_eventlist_markers() -> None:
    msgs = [m for m in _messages("core_show_channels") if m.action_id == "core_show_channels-3"]
    assert msgs[0].response == "Success" and msgs[0]["EventList"] == "start"
    assert [m.event for m in msgs[1:]] == [
        "CoreShowChannel",
        "CoreShowChannel",
        "CoreShowChannelsComplete",
    ]
    assert msgs[-1]["EventList"] == "Complete" and msgs[-1]["ListItems"] == "2"


def test_action_builder_matches_recorded_originate_bytes() -> None:
    recorded = next(
        r.raw
        for r in load(next(p for p in CAPTURE_FILES if p.stem == "originate_answer"))
        if r.dir == "tx" and b"Originate" in r.raw
    )
    built = AmiMessage.action(
        "Originate",
        "originate_answer-2",
        Channel="Local/answer@test",
        Application="Wait",
        Data="10",
        CallerID="Assist Fixture <1000>",
        Timeout="15000",
        Variable=["FX_TAG=originate_answer"],
        Async="true",
    )
    assert bytes(built) == recorded


# --- precise errors -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "empty message"),
        (b"\r\n\r\n", "empty message"),
        (b"Event: X\r\nno separator here\r\n\r\n", "line 2: no 'Key: Value' separator"),
        (b": value\r\n\r\n", "line 1: bad header name ''"),
        (b" Event: X\r\n\r\n", "line 1: bad header name ' Event'"),
        (b"Ev:ent: X\r\n\r\n", "line 1: bad header name 'Ev:ent'"),
        (b"Event: X\r\n\r\nMore: Y\r\n\r\n", "line 2: empty line inside a message"),
        (b"Event: X\nKey: Y\r\n\r\n", "line 1: bare CR or LF"),
        (b"Event: X\rKey: Y\r\n\r\n", "line 1: bare CR or LF"),
        (b"A: " + b"x" * (1 << 20) + b"\r\n\r\n", "message longer than 1048576 bytes"),
    ],
)
def test_malformed_message_errors_are_precise(raw: bytes, message: str) -> None:
    with pytest.raises(AmiProtocolError) as info:
        AmiMessage.parse(raw)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"Asterisk Call Manager/11.0.0", "banner must be exactly one CRLF-terminated line"),
        (b"Asterisk\r\nCall Manager\r\n", "banner must be exactly one CRLF-terminated line"),
        ("Astérisk\r\n".encode(), "banner is not ASCII at byte 3"),
    ],
)
def test_malformed_banner_errors_are_precise(raw: bytes, message: str) -> None:
    with pytest.raises(AmiProtocolError, match="^" + message):
        AmiBanner.parse(raw)


def test_framer_counts_and_drops_bad_messages_and_keeps_going() -> None:
    good = b"Event: Ping\r\nA: 1\r\n\r\n"
    framer = AmiFramer(expect_banner=True)
    items = framer.feed(
        b"Asterisk Call Manager/11.0.0\r\n"
        + good
        + b"garbage line\r\n\r\n"
        + good
        + b": nokey\r\n\r\n"
        + b"\r\n\r\n"  # stray blank lines between messages are tolerated
        + good
    )
    assert [bytes(i) for i in items[1:]] == [good, good, good]
    assert framer.errors == 2
    assert framer.last_error == "line 1: bad header name ''"


def test_framer_banner_error_and_overflow() -> None:
    framer = AmiFramer(expect_banner=True)
    assert framer.feed(b"\xffgarbage\r\nEvent: A\r\n\r\n")[0] == AmiMessage((("Event", "A"),))
    assert framer.errors == 1 and framer.last_error == "banner is not ASCII at byte 0"

    framer = AmiFramer(expect_banner=False, max_buffer=100)
    assert framer.feed(b"Event: A\r\nB: " + b"x" * 200) == []
    assert framer.errors == 1
    assert framer.last_error == "no message terminator within 100 bytes; buffer dropped"
    # After the drop the tail of the oversized message is one bad message, then it resyncs.
    items = framer.feed(b"xx\r\n\r\nEvent: B\r\n\r\n")
    assert [bytes(i) for i in items] == [b"Event: B\r\n\r\n"]
    assert framer.errors == 2


def test_non_utf8_values_are_kept_byte_exactly() -> None:
    # A latin-1 caller name must not cost us the event (see module docstring).
    raw = b"Event: Newchannel\r\nCallerIDName: M\xfcller\r\nChannel: PJSIP/x-1\r\n\r\n"
    framer = AmiFramer(expect_banner=False)
    (msg,) = framer.feed(raw)
    assert framer.errors == 0
    assert isinstance(msg, AmiMessage)
    assert msg["Channel"] == "PJSIP/x-1"
    assert msg["CallerIDName"] == "M\udcfcller"
    assert bytes(msg) == raw
    # Valid UTF-8 is ordinary text.
    assert AmiMessage.parse("CallerIDName: Müller\r\n\r\n".encode())["CallerIDName"] == "Müller"


def test_key_without_space_is_an_empty_value() -> None:
    msg = AmiMessage.parse(b"Event: X\r\nEmpty:\r\n\r\n")
    assert msg["Empty"] == ""
    assert bytes(msg) == b"Event: X\r\nEmpty: \r\n\r\n"  # canonical form, as Asterisk sends it


def test_action_list_values_become_repeated_headers() -> None:
    msg = AmiMessage.action("Originate", "x-1", Channel="Local/a@b", Variable=["A=1", "B=2=3"])
    assert msg.headers == (
        ("Action", "Originate"),
        ("ActionID", "x-1"),
        ("Channel", "Local/a@b"),
        ("Variable", "A=1"),
        ("Variable", "B=2=3"),
    )
    assert msg.variables() == {"A": "1", "B": "2=3"}
    assert AmiMessage.action("Ping").headers == (("Action", "Ping"),)


# --- Hypothesis properties ----------------------------------------------------------------
# Header names: visible ASCII without ':'; values: any text without CR/LF (may be empty, may
# contain ': ', may have leading, inner or trailing spaces).
header_names = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters=":"),
    min_size=1,
    max_size=20,
)
header_values = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=["Cs"]),
    max_size=40,
)
messages = st.lists(st.tuples(header_names, header_values), min_size=1, max_size=12).map(
    lambda pairs: AmiMessage(tuple(pairs))
)


@given(messages)
def test_generated_messages_round_trip(msg: AmiMessage) -> None:
    raw = bytes(msg)
    again = AmiMessage.parse(raw)
    assert again == msg
    assert bytes(again) == raw
    for key, _ in msg.headers:
        assert again.get_all(key.upper()) == msg.get_all(key)
        assert again.get(key.lower()) == msg.get_all(key)[0]


@given(st.lists(messages, min_size=1, max_size=8), st.data())
def test_generated_streams_frame_identically_in_any_chunking(
    msgs: list[AmiMessage], data: st.DataObject
) -> None:
    stream_bytes = b"Asterisk Call Manager/11.0.0\r\n" + b"".join(bytes(m) for m in msgs)
    cuts = sorted(
        data.draw(st.lists(st.integers(0, len(stream_bytes)), max_size=20), label="cuts")
    )
    framer = AmiFramer()
    got: list[AmiMessage | AmiBanner] = []
    prev = 0
    for cut in [*cuts, len(stream_bytes)]:
        got += framer.feed(stream_bytes[prev:cut])
        prev = cut
    assert framer.errors == 0
    assert got == [AmiBanner("Asterisk Call Manager/11.0.0"), *msgs]


# Arbitrary bytes rarely contain a terminator; mix in AMI-shaped fragments so that messages,
# malformed messages, stray blank lines and banners all occur.
fragments = st.sampled_from(
    [b"\r\n", b"\r\n\r\n", b"\r", b"\n", b": ", b":", b"Event", b"Key", b" ", b"\xff", b"\xc3"]
)
ami_ish_bytes = st.one_of(
    st.binary(max_size=400),
    st.lists(st.one_of(fragments, st.binary(max_size=6)), max_size=60).map(b"".join),
    st.lists(
        st.one_of(messages.map(bytes), fragments, st.binary(max_size=6)), max_size=12
    ).map(b"".join),
)


@settings(max_examples=300)
@given(ami_ish_bytes, st.data(), st.booleans())
def test_arbitrary_bytes_never_raise_and_chunking_does_not_matter(
    blob: bytes, data: st.DataObject, banner: bool
) -> None:
    whole = AmiFramer(expect_banner=banner)
    expected = whole.feed(blob)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=30), label="cuts"))
    chunked = AmiFramer(expect_banner=banner)
    got: list[AmiMessage | AmiBanner] = []
    prev = 0
    for cut in [*cuts, len(blob)]:
        got += chunked.feed(blob[prev:cut])
        prev = cut
    assert got == expected
    assert chunked.errors == whole.errors
    # Every terminated chunk is accounted for: either a message or a counted error.
    messages_and_errors = sum(isinstance(i, AmiMessage) for i in got) + chunked.errors
    if not banner:
        body = blob
        while body.startswith(b"\r\n"):
            body = body[2:]
        assert (messages_and_errors > 0) == (b"\r\n\r\n" in body)
    for item in got:
        assert isinstance(item, AmiMessage | AmiBanner)
        if isinstance(item, AmiMessage):
            assert AmiMessage.parse(bytes(item)) == item


@given(ami_ish_bytes)
def test_parse_raises_only_protocol_errors(blob: bytes) -> None:
    try:
        msg = AmiMessage.parse(blob)
    except AmiProtocolError as exc:
        assert str(exc)
    else:
        assert AmiMessage.parse(bytes(msg)) == msg
