"""RTP wire format: the recorded Asterisk captures, round trips, precise errors, Hypothesis."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.errors import RtpProtocolError
from earpiece.media.rtp import RtpPacket, build_packet, is_rtcp, parse_header

SHARED = Path(__file__).resolve().parents[2] / "shared"
CAPTURES = [
    *sorted((SHARED / "asterisk/captures/rtp").glob("*.bin")),
    *sorted((SHARED / "asterisk/captures/pjsip/rtp").glob("*.bin")),
]
pytestmark = pytest.mark.skipif(not CAPTURES, reason="Asterisk captures not present")


def datagrams(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    out, pos = [], 0
    while pos < len(raw):
        (n,) = struct.unpack_from("!I", raw, pos)
        out.append(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_capture_headers_match_sidecar_stats(path: Path) -> None:
    meta = json.loads(path.with_suffix(".json").read_text())
    stats = meta["stats"]
    pkts = [RtpPacket.parse(d) for d in datagrams(path)]
    assert len(pkts) == stats["packets"]
    assert {f"0x{p.ssrc:08x}" for p in pkts} == set(stats["ssrcs"])
    assert {str(p.payload_type) for p in pkts} == set(stats["payload_types"])
    assert pkts[0].sequence_number == stats["first_seq"]
    assert pkts[0].timestamp == stats["first_timestamp"]
    assert not any(p.marker for p in pkts)
    for d, p in zip(datagrams(path), pkts, strict=True):
        assert bytes(p) == d  # byte-exact
        h = parse_header(d)
        assert (h.sequence_number, h.timestamp, h.ssrc) == (
            p.sequence_number, p.timestamp, p.ssrc)
        assert d[h.payload_offset : h.payload_end] == p.payload


def test_csrc_extension_padding_round_trip() -> None:
    p = RtpPacket(payload_type=8, marker=True, sequence_number=65535, timestamp=2**32 - 1,
                  ssrc=0xDEADBEEF, csrc=[1, 2, 3], extension_profile=0xBEDE,
                  extension=b"\x10\x01\x00\x00", payload=b"abc", padding_size=5)
    data = bytes(p)
    assert len(data) == 12 + 12 + 4 + 4 + 3 + 5
    q = RtpPacket.parse(data)
    assert q == p
    h = parse_header(data)
    assert data[h.payload_offset : h.payload_end] == b"abc"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short"),
        (b"\x80" * 11, "too short"),
        (b"\x40" + bytes(11), "version 1"),
        (b"\x8f" + bytes(11), "longer than packet"),  # 15 CSRCs announced, none present
        (b"\x90" + bytes(11), "extension truncated"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x05", "longer than packet"),
        (b"\xa0" + bytes(11) + b"\x00", "padding length 0"),
        (b"\xa0" + bytes(11) + b"\x09", "padding length 9"),
    ],
)
def test_precise_errors(data: bytes, message: str) -> None:
    with pytest.raises(RtpProtocolError, match=message):
        parse_header(data)
    with pytest.raises(RtpProtocolError):
        RtpPacket.parse(data)


def test_field_validation() -> None:
    with pytest.raises(ValueError, match="payload_type"):
        RtpPacket(payload_type=128)
    with pytest.raises(ValueError, match="sequence_number"):
        RtpPacket(sequence_number=70000)


def test_rtcp_detection_and_fast_builder() -> None:
    assert is_rtcp(b"\x80\xc8" + bytes(26))  # sender report
    assert not is_rtcp(build_packet(b"x", payload_type=0, sequence_number=1, timestamp=2,
                                    ssrc=3))
    assert RtpPacket.parse(build_packet(b"\xff" * 160, payload_type=0, sequence_number=70000,
                                        timestamp=5, ssrc=9)).sequence_number == 70000 & 0xFFFF


packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    marker=st.booleans(),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 2**32 - 1),
    ssrc=st.integers(0, 2**32 - 1),
    csrc=st.lists(st.integers(0, 2**32 - 1), max_size=15),
    extension_profile=st.one_of(st.none(), st.integers(0, 0xFFFF)),
    extension=st.integers(0, 4).map(lambda n: bytes(range(4 * n))),
    payload=st.binary(max_size=200),
    padding_size=st.integers(0, 255),
)


@given(packets)
def test_round_trip_property(p: RtpPacket) -> None:
    if p.extension_profile is None:
        p.extension = b""
    assert RtpPacket.parse(bytes(p)) == p


@settings(max_examples=2000)
@given(st.binary(max_size=120))
def test_arbitrary_bytes_parse_or_raise_precisely(data: bytes) -> None:
    try:
        h = parse_header(data)
    except RtpProtocolError:
        return
    assert 12 <= h.payload_offset <= h.payload_end <= len(data)
