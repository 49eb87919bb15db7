"""Asyncio FastAGI server: one task per Asterisk connection, dispatch by script name.

``AGI(agi://earpiece:4573/route)`` runs the handler registered as ``"route"``;
``AGI(agi://earpiece:4573/tag?campaign=..)`` runs ``"tag"``. A handler is
``async def handler(session: AgiSession) -> None``: it reads ``session.request`` and
``session.env`` and talks to Asterisk with ``await session.execute(AgiCommand...)``. When the
handler returns, the server closes the connection and the dialplan goes on.

Malformed input (a bad environment block, an unparsable or unsolicited reply), an unknown
script and handler errors are counted in :class:`FastAgiStats` and end that one connection
cleanly; the server itself keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from earpiece.agi.fastagi import (
    DEFAULT_PORT,
    AgiCommand,
    AgiEnvironment,
    AgiHangup,
    AgiReply,
    AgiRequest,
    AgiStreamFramer,
)
from earpiece.agi.settings import AgiSettings
from earpiece.errors import AgiProtocolError, PbxConnectionError, PbxError
from earpiece.logs import call_id_var

log = logging.getLogger(__name__)

READ_CHUNK = 4096


class AgiConnectionClosed(PbxConnectionError):
    """Asterisk closed the FastAGI connection (or it was closed after bad input)."""


class AgiCommandError(PbxError):
    """Asterisk answered a command with ``510``/``511``/``520``."""

    def __init__(self, command: AgiCommand, reply: AgiReply) -> None:
        self.command = command
        self.reply = reply
        super().__init__(f"{command.verb}: {reply.code} {reply.text}")


AgiHandler = Callable[["AgiSession"], Coroutine[Any, Any, None]]


@dataclass
class FastAgiStats:
    connections: int = 0
    active: int = 0
    completed: int = 0
    malformed: int = 0
    unknown_script: int = 0
    handler_errors: int = 0
    hangups: int = 0
    commands: int = 0


class AgiSession:
    """One FastAGI connection as a handler sees it."""

    def __init__(
        self,
        env: AgiEnvironment,
        request: AgiRequest,
        writer: asyncio.StreamWriter,
        replies: asyncio.Queue[AgiReply | None],
        *,
        reply_timeout_s: float,
        stats: FastAgiStats,
    ) -> None:
        self.env = env
        self.request = request
        self.hung_up = False
        self._writer = writer
        self._replies = replies
        self._timeout = reply_timeout_s
        self._stats = stats
        self._lock = asyncio.Lock()
        self._closed = False

    @property
    def uniqueid(self) -> str:
        return self.env.uniqueid

    @property
    def channel(self) -> str:
        return self.env.channel

    async def execute(self, command: AgiCommand) -> AgiReply:
        """Send one command and return Asterisk's reply (any status code).

        Raises :class:`AgiConnectionClosed` if the connection ends first and
        :class:`TimeoutError` if no reply comes within the reply timeout.
        """
        async with self._lock:
            if self._closed:
                raise AgiConnectionClosed("FastAGI connection is closed")
            self._writer.write(bytes(command))
            self._stats.commands += 1
            try:
                await self._writer.drain()
            except (ConnectionError, OSError) as exc:
                self._closed = True
                raise AgiConnectionClosed(f"write failed: {exc}") from None
            reply = await asyncio.wait_for(self._replies.get(), self._timeout)
            if reply is None:
                self._closed = True
                raise AgiConnectionClosed("Asterisk closed the FastAGI connection")
            log.debug("AGI %s -> %d %s", command.verb, reply.code, reply.text)
            return reply

    async def run(self, command: AgiCommand) -> AgiReply:
        """Like :meth:`execute` but raise :class:`AgiCommandError` unless the reply is 200."""
        reply = await self.execute(command)
        if reply.code != 200:
            raise AgiCommandError(command, reply)
        return reply

    async def set_variable(self, name: str, value: str) -> bool:
        """``SET VARIABLE``; True when Asterisk answered ``200 result=1``."""
        reply = await self.run(AgiCommand.set_variable(name, value))
        return reply.result == 1

    async def get_variable(self, name: str) -> str | None:
        """``GET VARIABLE``: the value, or None when the variable is not set."""
        reply = await self.run(AgiCommand.get_variable(name))
        return reply.data if reply.result == 1 else None

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.run(AgiCommand.verbose(message, level))


class FastAgiServer:
    """TCP server for Asterisk's ``AGI(agi://...)``."""

    def __init__(
        self,
        handlers: Mapping[str, AgiHandler],
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        env_timeout_s: float = 5.0,
        reply_timeout_s: float = 10.0,
        handler_timeout_s: float = 30.0,
    ) -> None:
        self.handlers = dict(handlers)
        self.host = host
        self.requested_port = port
        self.env_timeout_s = env_timeout_s
        self.reply_timeout_s = reply_timeout_s
        self.handler_timeout_s = handler_timeout_s
        self.stats = FastAgiStats()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def from_settings(cls, settings: AgiSettings, handlers: Mapping[str, AgiHandler],
                      **kwargs: float) -> FastAgiServer:
        return cls(handlers, host=settings.host, port=settings.port, **kwargs)

    @property
    def port(self) -> int:
        """The bound port (useful with ``port=0``)."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError("server not started")
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._on_connect, self.host, self.requested_port, reuse_address=True
        )
        log.info("FastAGI listening on %s:%d (scripts: %s)", self.host, self.port,
                 ", ".join(sorted(self.handlers)))

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> FastAgiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------------------------
    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.stats.connections += 1
        self.stats.active += 1
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(reader, writer, peer)
        finally:
            self.stats.active -= 1
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     peer: object) -> None:
        framer = AgiStreamFramer()
        env: AgiEnvironment | None = None
        pending: list[object] = []
        try:
            async with asyncio.timeout(self.env_timeout_s):
                while env is None:
                    data = await reader.read(READ_CHUNK)
                    if not data:
                        log.debug("FastAGI %s closed before sending its environment", peer)
                        return
                    items = framer.feed(data)
                    if framer.broken:
                        self._malformed(peer, framer.last_error)
                        return
                    if items:
                        first = items[0]
                        if not isinstance(first, AgiEnvironment):  # pragma: no cover
                            self._malformed(peer, "reply before the environment")
                            return
                        env = first
                        pending.extend(items[1:])
        except TimeoutError:
            self._malformed(peer, f"no complete environment within {self.env_timeout_s} s")
            return
        except (ConnectionError, OSError) as exc:
            log.debug("FastAGI %s: %s", peer, exc)
            return

        if framer.errors:  # garbage right behind the environment
            self._malformed(peer, framer.last_error)
            return
        try:
            request = AgiRequest.from_environment(env)
        except AgiProtocolError as exc:
            self._malformed(peer, str(exc))
            return
        handler = self.handlers.get(request.script)
        if handler is None:
            self.stats.unknown_script += 1
            log.warning("FastAGI: unknown script %r from %s (channel %s); known: %s",
                        request.script, peer, env.channel, ", ".join(sorted(self.handlers)))
            return

        replies: asyncio.Queue[AgiReply | None] = asyncio.Queue()
        session = AgiSession(env, request, writer, replies,
                             reply_timeout_s=self.reply_timeout_s, stats=self.stats)
        token = call_id_var.set(env.uniqueid or "-")
        try:
            handler_task = asyncio.create_task(handler(session), name=f"agi-{request.script}")
            reader_task = asyncio.create_task(
                self._read_replies(reader, framer, pending, session, replies, peer)
            )
            try:
                async with asyncio.timeout(self.handler_timeout_s):
                    await handler_task
                self.stats.completed += 1
            except AgiConnectionClosed as exc:
                log.info("FastAGI %s on %s ended early: %s", request.script, env.channel, exc)
            except TimeoutError:
                self.stats.handler_errors += 1
                log.warning("FastAGI %s on %s: no reply or handler too slow (timeout)",
                            request.script, env.channel)
            except asyncio.CancelledError:
                handler_task.cancel()
                raise
            except Exception:
                self.stats.handler_errors += 1
                log.exception("FastAGI handler %r failed on %s", request.script, env.channel)
            finally:
                reader_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader_task
        finally:
            call_id_var.reset(token)

    async def _read_replies(
        self,
        reader: asyncio.StreamReader,
        framer: AgiStreamFramer,
        pending: list[object],
        session: AgiSession,
        replies: asyncio.Queue[AgiReply | None],
        peer: object,
    ) -> None:
        items = pending
        try:
            while True:
                bad = self._deliver(items, session, replies, peer)
                if bad:
                    break
                errors_before = framer.errors
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                items = list(framer.feed(data))
                if framer.errors != errors_before:
                    # The dialogue is out of step; nothing after this can be trusted.
                    self._malformed(peer, framer.last_error)
                    session._writer.close()
                    break
        except (ConnectionError, OSError) as exc:
            log.debug("FastAGI %s: read failed: %s", peer, exc)
        session._closed = True
        replies.put_nowait(None)

    def _deliver(self, items: list[object], session: AgiSession,
                 replies: asyncio.Queue[AgiReply | None], peer: object) -> bool:
        """Hand replies to the waiting command; True if the dialogue broke."""
        for item in items:
            if isinstance(item, AgiHangup):
                if not session.hung_up:
                    self.stats.hangups += 1
                session.hung_up = True
                log.debug("FastAGI %s: channel %s hung up", peer, session.channel)
            elif isinstance(item, AgiReply):
                if session._lock.locked() and replies.empty():
                    replies.put_nowait(item)
                else:
                    self._malformed(peer, f"unsolicited reply {item.code} {item.text!r}")
                    session._writer.close()
                    return True
        return False

    def _malformed(self, peer: object, reason: str) -> None:
        self.stats.malformed += 1
        log.warning("FastAGI: malformed input from %s: %s; closing the connection", peer, reason)
