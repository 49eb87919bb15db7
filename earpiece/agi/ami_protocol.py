"""The asyncio protocol of one AMI connection: it buffers bytes and hands off framed items.

This is panoramisk's :class:`panoramisk.ami_protocol.AMIProtocol` (its transport bookkeeping:
``transport``, ``closed``, ``version``) with its parsing replaced by our byte-exact
:class:`~earpiece.agi.ami_message.AmiFramer`; see :mod:`earpiece.agi.ami_client` for why.
Nothing here knows about actions, logins or reconnects: every banner, message, malformed
message and the end of the connection go to an :class:`AmiStreamHandler`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from panoramisk.ami_protocol import AMIProtocol

from earpiece.agi.ami_message import AmiBanner, AmiFramer, AmiMessage
from earpiece.errors import PbxConnectionError

logger = logging.getLogger(__name__)


class AmiStreamHandler(Protocol):
    """Receives what :class:`AmiStreamProtocol` reads, in stream order."""

    def banner_received(self, banner: AmiBanner) -> None: ...

    def message_received(self, message: AmiMessage) -> None: ...

    def malformed_received(self, count: int, reason: str) -> None: ...

    def stream_lost(self, exc: Exception | None) -> None: ...


class AmiStreamProtocol(AMIProtocol):  # type: ignore[misc]  # panoramisk ships no type hints
    """One AMI TCP connection, client side (the server speaks first: the banner)."""

    transport: asyncio.Transport | None
    closed: bool
    version: str | None

    def __init__(self, handler: AmiStreamHandler) -> None:
        super().__init__()
        self._handler = handler
        self.framer = AmiFramer(expect_banner=True)
        self.transport = None
        self.closed = True
        self.version = None
        self.bytes_received = 0
        self.bytes_sent = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # transport, closed=False, version=None, queues
        self.log = logger  # panoramisk sets its own logger; keep ours

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        errors_before = self.framer.errors
        items = self.framer.feed(data)
        new_errors = self.framer.errors - errors_before
        if new_errors:
            self._handler.malformed_received(new_errors, self.framer.last_error)
        for item in items:
            if isinstance(item, AmiBanner):
                self.version = item.version
                self._handler.banner_received(item)
            else:
                self._handler.message_received(item)

    def send_message(self, message: AmiMessage) -> None:
        """Write one message; raises :class:`PbxConnectionError` once the connection is gone."""
        if self.closed or self.transport is None or self.transport.is_closing():
            raise PbxConnectionError("AMI connection is closed")
        raw = bytes(message)
        self.bytes_sent += len(raw)
        self.transport.write(raw)

    def connection_lost(self, exc: Exception | None) -> None:
        # Replaces panoramisk's, which re-queues actions and calls its Manager's reconnect.
        self.closed = True
        self._handler.stream_lost(exc)

    def close(self) -> None:
        """Close gracefully (buffered data is still sent)."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now (a dead peer will never drain the send buffer)."""
        if self.transport is not None:
            self.transport.abort()
