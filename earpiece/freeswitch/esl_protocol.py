"""The asyncio protocol of one event-socket connection: it buffers bytes and hands off frames.

Nothing here knows about auth, commands or reconnects: every frame, every malformed frame and
the end of the connection go to an :class:`EslStreamHandler`, in stream order (as
:mod:`earpiece.agi.ami_protocol` does for AMI).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from earpiece.errors import PbxConnectionError
from earpiece.freeswitch.esl_message import EslCommand, EslFramer, EslMessage


class EslStreamHandler(Protocol):
    """Receives what :class:`EslStreamProtocol` reads."""

    def message_received(self, message: EslMessage) -> None: ...

    def malformed_received(self, count: int, reason: str) -> None: ...

    def stream_lost(self, exc: Exception | None) -> None: ...


class EslStreamProtocol(asyncio.Protocol):
    """One inbound event-socket TCP connection, client side (FreeSWITCH speaks first)."""

    def __init__(self, handler: EslStreamHandler) -> None:
        self._handler = handler
        self.framer = EslFramer(commands=False)
        self.transport: asyncio.Transport | None = None
        self.closed = True
        self.bytes_received = 0
        self.bytes_sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        errors_before = self.framer.errors
        items = self.framer.feed(data)
        new_errors = self.framer.errors - errors_before
        if new_errors:
            self._handler.malformed_received(new_errors, self.framer.last_error)
        for item in items:
            assert isinstance(item, EslMessage)
            self._handler.message_received(item)

    def send_command(self, command: EslCommand) -> None:
        """Write one command; raises :class:`PbxConnectionError` once the connection is gone."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise PbxConnectionError("event socket connection is closed")
        raw = bytes(command)
        self.bytes_sent += len(raw)
        self.transport.write(raw)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._handler.stream_lost(exc)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
