"""AudioSocket (Asterisk ``res_audiosocket``): wire format and a TCP server.

Frame: 1-byte kind, 2-byte big-endian payload length, payload. Kinds (Asterisk docs):
``0x00`` hangup (empty), ``0x01`` UUID (16 bytes, binary), ``0x03`` DTMF (1 ASCII byte),
``0x10`` signed linear 16-bit 8 kHz mono **little-endian**, ``0xff`` error (optional code).
Asterisk 22 also defines higher-rate signed-linear kinds ``0x11``-``0x18`` (12, 16, 24, 32,
44.1, 48, 96, 192 kHz); they are parsed the same way (the rate table is from the Asterisk
source, not from a capture here).

:class:`AudioSocketFrame` and :class:`AudioSocketFramer` are pure (no I/O);
:class:`AudioSocketServer` accepts connections, requires the first frame to be the UUID of a
registered stream, and hands audio to that stream's :class:`~earpiece.media.frames.PartyStream`.
Malformed input is counted and the connection closed; nothing is raised out of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import struct
import time
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field

from earpiece.errors import AudioSocketProtocolError
from earpiece.events import Party
from earpiece.media.frames import Codec, FrameHub, PartyStream
from earpiece.media.settings import VadSettings

log = logging.getLogger(__name__)

_HDR = struct.Struct("!BH")
HEADER_LENGTH = 3
MAX_PAYLOAD = 0xFFFF


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    DTMF = 0x03
    SLIN = 0x10
    SLIN_12K = 0x11
    SLIN_16K = 0x12
    SLIN_24K = 0x13
    SLIN_32K = 0x14
    SLIN_44K = 0x15
    SLIN_48K = 0x16
    SLIN_96K = 0x17
    SLIN_192K = 0x18
    ERROR = 0xFF


SLIN_RATES: dict[int, int] = {
    Kind.SLIN: 8000, Kind.SLIN_12K: 12000, Kind.SLIN_16K: 16000, Kind.SLIN_24K: 24000,
    Kind.SLIN_32K: 32000, Kind.SLIN_44K: 44100, Kind.SLIN_48K: 48000, Kind.SLIN_96K: 96000,
    Kind.SLIN_192K: 192000,
}
_KINDS = frozenset(int(k) for k in Kind)


@dataclass(frozen=True)
class AudioSocketFrame:
    kind: int
    payload: bytes = b""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise AudioSocketProtocolError(f"unknown AudioSocket kind 0x{self.kind:02x}")
        if len(self.payload) > MAX_PAYLOAD:
            raise AudioSocketProtocolError(f"payload of {len(self.payload)} bytes > 65535")
        if self.kind == Kind.UUID and len(self.payload) != 16:
            raise AudioSocketProtocolError(
                f"UUID frame needs 16 bytes, got {len(self.payload)}"
            )
        if self.kind == Kind.DTMF and len(self.payload) != 1:
            raise AudioSocketProtocolError(f"DTMF frame needs 1 byte, got {len(self.payload)}")
        if self.kind == Kind.HANGUP and self.payload:
            raise AudioSocketProtocolError("hangup frame must be empty")
        if self.kind in SLIN_RATES and len(self.payload) % 2:
            raise AudioSocketProtocolError("signed-linear payload of odd length")

    @property
    def uuid(self) -> uuidlib.UUID:
        if self.kind != Kind.UUID:
            raise AudioSocketProtocolError("not a UUID frame")
        return uuidlib.UUID(bytes=self.payload)

    @property
    def rate(self) -> int | None:
        return SLIN_RATES.get(self.kind)

    @classmethod
    def parse(cls, data: bytes) -> AudioSocketFrame:
        """Parse exactly one frame (the whole of ``data``)."""
        if len(data) < HEADER_LENGTH:
            raise AudioSocketProtocolError(f"frame too short: {len(data)} bytes < 3")
        kind, length = _HDR.unpack_from(data)
        if len(data) != HEADER_LENGTH + length:
            raise AudioSocketProtocolError(
                f"length field says {length} payload bytes, frame has {len(data) - 3}"
            )
        return cls(kind, bytes(data[HEADER_LENGTH:]))

    def __bytes__(self) -> bytes:
        return _HDR.pack(self.kind, len(self.payload)) + self.payload

    @classmethod
    def for_uuid(cls, value: uuidlib.UUID | str) -> AudioSocketFrame:
        u = value if isinstance(value, uuidlib.UUID) else uuidlib.UUID(value)
        return cls(Kind.UUID, u.bytes)


class AudioSocketFramer:
    """Incremental parser of a TCP byte stream into frames."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[AudioSocketFrame]:
        """Raises :class:`AudioSocketProtocolError` on the first malformed frame."""
        buf = self._buf
        buf += data
        out: list[AudioSocketFrame] = []
        pos = 0
        n = len(buf)
        try:
            while n - pos >= HEADER_LENGTH:
                kind, length = _HDR.unpack_from(buf, pos)
                end = pos + HEADER_LENGTH + length
                if end > n:
                    break
                out.append(AudioSocketFrame(kind, bytes(buf[pos + HEADER_LENGTH : end])))
                pos = end
        finally:
            del buf[:pos]
        return out

    @property
    def buffered(self) -> int:
        return len(self._buf)


# -- server ------------------------------------------------------------------------------------


@dataclass
class AudioSocketStats:
    connections: int = 0
    frames: int = 0
    malformed: int = 0
    unknown_uuid: int = 0
    no_uuid_first: int = 0
    wrong_rate: int = 0
    dtmf: int = 0
    errors_from_peer: int = 0
    hangups: int = 0


@dataclass
class _Registration:
    stream: PartyStream
    connected: bool = False
    transport: asyncio.Transport | None = None


class AudioSocketProtocol(asyncio.Protocol):
    def __init__(self, server: AudioSocketServer) -> None:
        self.server = server
        self.framer = AudioSocketFramer()
        self.reg: _Registration | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.stats.connections += 1

    def data_received(self, data: bytes) -> None:
        st = self.server.stats
        try:
            frames = self.framer.feed(data)
        except AudioSocketProtocolError as exc:
            st.malformed += 1
            log.debug("AudioSocket: %s", exc)
            self._abort()
            return
        for fr in frames:
            st.frames += 1
            if not self._handle(fr):
                self._abort()
                return

    def _handle(self, fr: AudioSocketFrame) -> bool:
        srv = self.server
        st = srv.stats
        if self.reg is None:
            if fr.kind != Kind.UUID:
                st.no_uuid_first += 1
                return False
            reg = srv._by_uuid.get(fr.payload)
            if reg is None or reg.connected:
                st.unknown_uuid += 1
                return False
            reg.connected = True
            reg.transport = self.transport
            self.reg = reg
            return True
        rate = SLIN_RATES.get(fr.kind)
        if rate is not None:
            if rate != self.reg.stream.rate:
                st.wrong_rate += 1
                return True
            self.reg.stream.on_pcm(fr.payload, srv.clock())
            return True
        if fr.kind == Kind.HANGUP:
            st.hangups += 1
            return False
        if fr.kind == Kind.DTMF:
            st.dtmf += 1
            return True
        if fr.kind == Kind.ERROR:
            st.errors_from_peer += 1
            log.info("AudioSocket peer error %s for %s", fr.payload.hex(),
                     self.reg.stream.call_id)
            return True
        st.malformed += 1  # a second UUID
        return False

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reg is not None:
            self.reg.connected = False
            self.reg.transport = None


@dataclass
class AudioSocketServer:
    """TCP server for Asterisk AudioSocket connections (externalMedia encapsulation=audiosocket)."""

    hub: FrameHub
    host: str = "127.0.0.1"
    port: int = 0
    vad: VadSettings = field(default_factory=VadSettings)
    clock: Callable[[], float] = time.monotonic
    stats: AudioSocketStats = field(default_factory=AudioSocketStats)
    _by_uuid: dict[bytes, _Registration] = field(default_factory=dict)
    _server: asyncio.Server | None = None

    async def start(self) -> int:
        """Listen (idempotent); returns the bound port."""
        if self._server is not None:
            return self.port
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: AudioSocketProtocol(self), self.host, self.port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    def register(self, stream_uuid: uuidlib.UUID | str, call_id: str, party: Party,
                 codec: Codec = "slin") -> PartyStream:
        u = stream_uuid if isinstance(stream_uuid, uuidlib.UUID) else uuidlib.UUID(stream_uuid)
        if u.bytes in self._by_uuid:
            raise ValueError(f"AudioSocket UUID {u} already registered")
        stream = PartyStream(call_id, party, codec, self.hub, vad=self.vad, clock=self.clock)
        self._by_uuid[u.bytes] = _Registration(stream)
        return stream

    def unregister(self, stream_uuid: uuidlib.UUID | str) -> PartyStream | None:
        u = stream_uuid if isinstance(stream_uuid, uuidlib.UUID) else uuidlib.UUID(stream_uuid)
        reg = self._by_uuid.pop(u.bytes, None)
        if reg is None:
            return None
        if reg.transport is not None:
            reg.transport.close()
        reg.stream.close()
        return reg.stream

    async def close(self) -> None:
        for key in list(self._by_uuid):
            self.unregister(uuidlib.UUID(bytes=key))
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.CancelledError):
                await self._server.wait_closed()
            self._server = None
