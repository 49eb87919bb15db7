"""RTP receiver: one UDP socket per (call, party) stream, from a configurable port range.

Each port's :class:`RtpPortProtocol` (an ``asyncio.DatagramProtocol``) only validates and hands
off: the datagram's source must be the address Asterisk announced
(``UNICASTRTP_LOCAL_ADDRESS``/``PORT``) or, when none was given, the first one seen; its SSRC
must be the stream's (learnt from the first valid packet unless given); its payload type must
match the codec. Anything else is dropped and counted by reason; malformed datagrams are counted,
never raised. Valid payloads go to the stream's :class:`~earpiece.media.frames.PartyStream`
(jitter buffer, decode, VAD, fan-out) in the same callback: no task per packet. One periodic
tick (every 20 ms) lets jitter buffers declare losses when packets stop coming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from earpiece.errors import RtpProtocolError
from earpiece.events import Party
from earpiece.media.frames import Codec, FrameHub, PartyStream
from earpiece.media.rtp import PT_PCMA, PT_PCMU, is_rtcp, parse_header
from earpiece.media.settings import MediaSettings

log = logging.getLogger(__name__)

_FIXED = struct.Struct("!BBHII")
TICK_S = 0.02
READ_BATCH = 64
EPOLL_ROUNDS = 32
#: An announced source address that says "any interface": only its port can be checked; the
#: host is learnt from the first packet from that port.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::"})
RECV_SIZE = 4096


def expected_payload_types(codec: Codec) -> frozenset[int]:
    if codec == "ulaw":
        return frozenset({PT_PCMU})
    if codec == "alaw":
        return frozenset({PT_PCMA})
    return frozenset(range(96, 128))  # slin16: dynamic (Asterisk uses 118)


@dataclass
class DropStats:
    """Datagrams that never reached a stream, by reason."""

    no_stream: int = 0  # a port with nothing registered (yet / any more)
    bad_source: int = 0
    bad_ssrc: int = 0
    bad_payload_type: int = 0
    malformed: int = 0
    rtcp: int = 0

    def total(self) -> int:
        return (
            self.no_stream + self.bad_source + self.bad_ssrc + self.bad_payload_type
            + self.malformed + self.rtcp
        )


@dataclass
class _Binding:
    stream: PartyStream
    source: tuple[str, int] | None
    ssrc: int | None
    payload_types: frozenset[int]
    source_port: int | None = None  # wildcard host announced: the port must still match


@dataclass
class RtpPortProtocol(asyncio.DatagramProtocol):
    receiver: RtpReceiver
    port: int = 0
    binding: _Binding | None = None
    transport: asyncio.BaseTransport | None = field(default=None, repr=False)
    datagrams: int = 0
    sock: socket.socket | None = field(default=None, repr=False)
    own_reader: bool = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.datagrams += 1
        b = self.binding
        if b is None:
            self.receiver.drops.no_stream += 1
            return
        if addr != b.source:  # IPv4 addr is (host, port): the common case is one comparison
            src = (addr[0], addr[1])
            if b.source is None:
                if b.source_port is not None and src[1] != b.source_port:
                    self.receiver.drops.bad_source += 1
                    return
                b.source = src  # type: ignore[assignment]
            elif src != b.source:
                self.receiver.drops.bad_source += 1
                return
        drops = self.receiver.drops
        n = len(data)
        if n < 12 or data[0] & 0xC0 != 0x80:
            drops.malformed += 1
            return
        if data[0] & 0x3F:  # padding, extension or CSRCs: the full header parser
            try:
                h = parse_header(data)
            except RtpProtocolError:
                drops.malformed += 1
                return
            pt, seq, ssrc = h.payload_type, h.sequence_number, h.ssrc
            payload = data[h.payload_offset : h.payload_end]
        else:
            _b0, b1, seq, _ts, ssrc = _FIXED.unpack_from(data)
            pt = b1 & 0x7F
            payload = data[12:]
        if pt not in b.payload_types:
            if is_rtcp(data):
                drops.rtcp += 1
            else:
                drops.bad_payload_type += 1
            return
        if b.ssrc is None:
            b.ssrc = ssrc
        elif ssrc != b.ssrc:
            drops.bad_ssrc += 1
            return
        if not payload:
            drops.malformed += 1
            return
        b.stream.on_rtp(seq, payload, self.receiver.clock())

    def read_ready(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recv = sock.recvfrom
        for _ in range(READ_BATCH):
            try:
                data, addr = recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                return
            self.datagram_received(data, addr)

    def read_one(self) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            data, addr = sock.recvfrom(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.error_received(exc)
            return
        self.datagram_received(data, addr)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            if self.own_reader:
                with contextlib.suppress(RuntimeError, ValueError):
                    asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        if self.transport is not None:
            self.transport.close()

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP port %d: %s", self.port, exc)


class RtpReceiver:
    """Owns the RTP ports and the streams bound to them."""

    def __init__(
        self,
        settings: MediaSettings,
        hub: FrameHub,
        *,
        clock: Callable[[], float] = time.monotonic,
        rcvbuf: int = 1 << 18,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.clock = clock
        self.rcvbuf = rcvbuf
        self.drops = DropStats()
        self.ports: dict[int, RtpPortProtocol] = {}
        self._next_port = settings.rtp_port_min
        self._tick_task: asyncio.Task[None] | None = None
        self._epoll: select.epoll | None = select.epoll() if hasattr(select, "epoll") else None
        self._epoll_armed = False
        self._by_fd: dict[int, RtpPortProtocol] = {}
        self.finished: list[PartyStream] = []  # closed streams, for statistics (bounded)

    # -- ports -------------------------------------------------------------------------------

    async def allocate_port(self) -> int:
        """Bind a free UDP port from the range (``rtp_port_min == 0``: an ephemeral port)."""
        s = self.settings
        host = s.bind_host
        loop = asyncio.get_running_loop()
        if s.rtp_port_min == 0:
            candidates: list[int] = [0]
        else:
            size = s.rtp_port_max - s.rtp_port_min + 1
            start = self._next_port
            candidates = [
                s.rtp_port_min + (start - s.rtp_port_min + i) % size for i in range(size)
            ]
        for port in candidates:
            if port and port in self.ports:
                continue
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                 socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sock.setblocking(False)
            proto = RtpPortProtocol(self)
            bound = sock.getsockname()[1]
            proto.port = bound
            proto.sock = sock
            # Drain the socket on each wake-up (up to a batch) instead of asyncio's one
            # datagram per selector event. On Linux all ports sit in one private epoll set
            # that is itself registered with the loop: one loop callback per wake-up serves
            # every ready port (see _on_ready).
            if self._epoll is not None:
                self._epoll.register(sock.fileno(), select.EPOLLIN)
                self._by_fd[sock.fileno()] = proto
                if not self._epoll_armed:
                    loop.add_reader(self._epoll.fileno(), self._on_ready)
                    self._epoll_armed = True
            else:
                loop.add_reader(sock.fileno(), proto.read_ready)
                proto.own_reader = True
            self.ports[bound] = proto
            if s.rtp_port_min:
                self._next_port = bound + 1 if bound < s.rtp_port_max else s.rtp_port_min
            return int(bound)
        raise OSError(f"no free UDP port in {s.rtp_port_min}-{s.rtp_port_max} on {host}")

    def release_port(self, port: int) -> PartyStream | None:
        """Close the port; closes and returns its stream, if any."""
        stream = self.unregister(port)
        proto = self.ports.pop(port, None)
        if proto is not None:
            if proto.sock is not None and self._epoll is not None and not proto.own_reader:
                fd = proto.sock.fileno()
                self._by_fd.pop(fd, None)
                with contextlib.suppress(OSError, ValueError):
                    self._epoll.unregister(fd)
            proto.close()
        return stream

    def _on_ready(self) -> None:
        ep = self._epoll
        if ep is None:
            return
        by_fd = self._by_fd
        # One datagram per ready port per round, rounds until nothing is ready (bounded, so
        # other loop work is not starved): no failing recvfrom() per port, as a drain would do.
        for _ in range(EPOLL_ROUNDS):
            events = ep.poll(0)
            if not events:
                return
            for fd, _ev in events:
                proto = by_fd.get(fd)
                if proto is not None:
                    proto.read_one()

    # -- streams -----------------------------------------------------------------------------

    def register(
        self,
        port: int,
        call_id: str,
        party: Party,
        codec: Codec,
        *,
        source: tuple[str, int] | None = None,
        ssrc: int | None = None,
    ) -> PartyStream:
        proto = self.ports.get(port)
        if proto is None:
            raise KeyError(f"port {port} is not allocated")
        if proto.binding is not None:
            raise ValueError(f"port {port} already carries {proto.binding.stream.call_id}")
        s = self.settings
        depth = max(1, s.jitter_ms // 20)
        stream = PartyStream(
            call_id, party, codec, self.hub, vad=s.vad, jitter_depth=depth,
            jitter_wait_s=s.jitter_ms / 1000.0, clock=self.clock,
        )
        port_only: int | None = None
        if source is not None and source[0] in WILDCARD_HOSTS:
            port_only = source[1]
            source = None
        proto.binding = _Binding(stream, source, ssrc, expected_payload_types(codec), port_only)
        return stream

    def unregister(self, port: int) -> PartyStream | None:
        proto = self.ports.get(port)
        if proto is None or proto.binding is None:
            return None
        stream = proto.binding.stream
        proto.binding = None
        stream.close()
        self.finished.append(stream)
        del self.finished[:-1000]
        return stream

    def streams(self) -> list[PartyStream]:
        return [p.binding.stream for p in self.ports.values() if p.binding is not None]

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tick_task is None:
            self._tick_task = asyncio.create_task(self._tick(), name="rtp-jitter-tick")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            now = self.clock()
            for proto in list(self.ports.values()):
                b = proto.binding
                if b is not None and b.stream.jitter.pending:
                    b.stream.tick(now)

    async def close(self) -> None:
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
            self._tick_task = None
        for port in list(self.ports):
            self.release_port(port)
        if self._epoll is not None:
            if self._epoll_armed:
                with contextlib.suppress(RuntimeError, ValueError):
                    asyncio.get_running_loop().remove_reader(self._epoll.fileno())
                self._epoll_armed = False
