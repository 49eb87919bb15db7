"""RTP (RFC 3550) wire format: pure parse/serialise, no I/O.

Design decision (recorded as the issue asks): the shape follows aiortc's ``rtp.py``
``RtpPacket`` (a plain object with ``parse(data)`` and ``__bytes__``, CSRC list, header
extension kept as profile + raw bytes, padding stripped), but it is written here rather than
imported: aiortc is not a dependency (it pulls in av, cryptography, pylibsrtp...), and its
``parse`` raises a bare ``ValueError`` where Earpiece wants :class:`RtpProtocolError`. On top of
the full parser there is a fast path, :func:`parse_header`, that unpacks only the fixed 12-byte
header with one ``struct.unpack_from`` and returns the payload offset; the receiver uses it for
the 20,000 packets/s of 200 calls, and uses :meth:`RtpPacket.parse` nowhere on the hot path.

Asterisk externalMedia (see ``shared/asterisk/README.md``): RTP v2, no CSRC, no extension, no
padding, marker never set, ulaw PT 0 / 160-byte payloads, slin16 PT 118 / 640-byte payloads
(big-endian samples), one random SSRC per stream, nothing on port+1.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from earpiece.errors import RtpProtocolError

RTP_VERSION = 2
RTP_HEADER_LENGTH = 12
_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")

#: Static payload types Earpiece decodes, and the dynamic one Asterisk uses for slin16.
PT_PCMU = 0
PT_PCMA = 8
PT_SLIN16_ASTERISK = 118


def is_rtcp(data: bytes) -> bool:
    """RFC 5761 demultiplexing: RTCP packet types 192..223 sit where RTP has M+PT."""
    return len(data) >= 2 and 192 <= data[1] <= 223


@dataclass(slots=True)
class RtpHeader:
    """The fixed header plus where the payload lies (fast path, no copies)."""

    marker: bool
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload_offset: int
    payload_end: int


def parse_header(data: bytes) -> RtpHeader:
    """Parse the fixed header and locate the payload (skipping CSRCs, extension, padding).

    Raises :class:`RtpProtocolError` for anything that is not a well-formed RTP v2 packet.
    """
    n = len(data)
    if n < RTP_HEADER_LENGTH:
        raise RtpProtocolError(f"RTP packet too short: {n} bytes < 12")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data, 0)
    if b0 >> 6 != RTP_VERSION:
        raise RtpProtocolError(f"RTP version {b0 >> 6} != 2")
    offset = RTP_HEADER_LENGTH + 4 * (b0 & 0x0F)
    if b0 & 0x10:
        if n < offset + 4:
            raise RtpProtocolError("RTP header extension truncated")
        _profile, words = _EXT_HEADER.unpack_from(data, offset)
        offset += 4 + 4 * words
    if offset > n:
        raise RtpProtocolError(f"RTP header ({offset} bytes) longer than packet ({n} bytes)")
    end = n
    if b0 & 0x20:
        pad = data[-1]
        if pad == 0 or offset + pad > n:
            raise RtpProtocolError(f"RTP padding length {pad} invalid for {n - offset} bytes")
        end = n - pad
    return RtpHeader(
        marker=bool(b1 & 0x80),
        payload_type=b1 & 0x7F,
        sequence_number=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload_offset=offset,
        payload_end=end,
    )


@dataclass
class RtpPacket:
    """A whole RTP packet; ``bytes(RtpPacket.parse(x))`` reproduces ``x`` for unpadded input.

    Padding is stripped on parse and regenerated from ``padding_size`` on serialise.
    """

    payload_type: int = 0
    marker: bool = False
    sequence_number: int = 0
    timestamp: int = 0
    ssrc: int = 0
    csrc: list[int] = field(default_factory=list)
    extension_profile: int | None = None
    extension: bytes = b""
    payload: bytes = b""
    padding_size: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"payload_type {self.payload_type} out of 0..127")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise ValueError(f"sequence_number {self.sequence_number} out of 0..65535")
        if not 0 <= self.timestamp <= 0xFFFFFFFF:
            raise ValueError("timestamp out of 32-bit range")
        if not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError("ssrc out of 32-bit range")
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRCs")
        if len(self.extension) % 4 or len(self.extension) > 4 * 0xFFFF:
            raise ValueError("extension data must be a multiple of 4 bytes")
        if not 0 <= self.padding_size <= 255:
            raise ValueError("padding_size out of 0..255")

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        h = parse_header(data)
        b0 = data[0]
        cc = b0 & 0x0F
        csrc = list(struct.unpack_from(f"!{cc}I", data, RTP_HEADER_LENGTH)) if cc else []
        ext_profile: int | None = None
        ext = b""
        if b0 & 0x10:
            pos = RTP_HEADER_LENGTH + 4 * cc
            ext_profile, words = _EXT_HEADER.unpack_from(data, pos)
            ext = bytes(data[pos + 4 : pos + 4 + 4 * words])
        return cls(
            payload_type=h.payload_type,
            marker=h.marker,
            sequence_number=h.sequence_number,
            timestamp=h.timestamp,
            ssrc=h.ssrc,
            csrc=csrc,
            extension_profile=ext_profile,
            extension=ext,
            payload=bytes(data[h.payload_offset : h.payload_end]),
            padding_size=len(data) - h.payload_end,
        )

    def __bytes__(self) -> bytes:
        b0 = (RTP_VERSION << 6) | len(self.csrc)
        if self.padding_size:
            b0 |= 0x20
        if self.extension_profile is not None:
            b0 |= 0x10
        b1 = (0x80 if self.marker else 0) | self.payload_type
        out = bytearray(_HEADER.pack(b0, b1, self.sequence_number, self.timestamp, self.ssrc))
        for c in self.csrc:
            out += struct.pack("!I", c)
        if self.extension_profile is not None:
            out += _EXT_HEADER.pack(self.extension_profile, len(self.extension) // 4)
            out += self.extension
        out += self.payload
        if self.padding_size:
            out += bytes(self.padding_size - 1) + bytes([self.padding_size])
        return bytes(out)


def build_packet(
    payload: bytes, *, payload_type: int, sequence_number: int, timestamp: int, ssrc: int,
    marker: bool = False,
) -> bytes:
    """Serialise a plain RTP packet (no CSRC/extension/padding) quickly: the sender's path."""
    return _HEADER.pack(
        0x80, (0x80 if marker else 0) | payload_type, sequence_number & 0xFFFF,
        timestamp & 0xFFFFFFFF, ssrc,
    ) + payload
