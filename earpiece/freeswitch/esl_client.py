"""Async inbound event-socket client: auth, events, ``api``/``bgapi`` with Job-UUID, reconnect.

Our own client rather than a library: greenswitch and the SWIG ``ESL`` module are not asyncio,
and the asyncio ones on PyPI (``genesis``, ``switchio``'s) parse with dicts that lose repeated
headers and header order, and none is checked against recorded FreeSWITCH traffic. Here the
wire format is :mod:`earpiece.freeswitch.esl_message` (byte-exact on every captured frame) and
the connection is :class:`~earpiece.freeswitch.esl_protocol.EslStreamProtocol`.

Correlation rules (README "Commands, replies and job correlation"):

* FreeSWITCH answers commands one at a time, in order: every command gets exactly one
  ``command/reply`` or ``api/response``, so pending commands are a FIFO.
* ``bgapi`` is sent with a client-chosen ``Job-UUID`` header, which FreeSWITCH uses in its reply
  and in the ``BACKGROUND_JOB`` event; the job is registered *before* the command is sent, so the
  event cannot race it. The BACKGROUND_JOB also goes to ``on_event`` (the registry reads
  originate results from it). A ``filter Unique-ID`` subscription hides BACKGROUND_JOB: do not
  filter a connection that runs jobs.
* Events and ``text/disconnect-notice`` are never replies.

After every (re)connect and auth the subscription is sent again and ``on_connected`` is awaited
in its own task: that is the resync hook (:meth:`EslClient.show_channels` gives
``show channels as json`` rows; after a restart it is ``{"row_count": 0}``: the calls are gone).
When the connection drops, pending commands and jobs fail with
:class:`~earpiece.errors.PbxConnectionError`; nothing is re-sent (an originate replayed later is
wrong for a dialer). Reconnects back off exponentially with jitter (FreeSWITCH refused TCP for
about 10 s during its restart in the captures). A rejected password raises
:class:`~earpiece.errors.PbxAuthError` from :meth:`EslClient.start`; later rejections are
retried every ``reconnect_max_s``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from earpiece.agi.ami_client import backoff_delay
from earpiece.errors import EslProtocolError, PbxAuthError, PbxConnectionError, PbxError
from earpiece.freeswitch.esl_event import EslEvent
from earpiece.freeswitch.esl_message import (
    API_RESPONSE,
    AUTH_REQUEST,
    COMMAND_REPLY,
    DISCONNECT_NOTICE,
    RUDE_REJECTION,
    EslCommand,
    EslMessage,
)
from earpiece.freeswitch.esl_protocol import EslStreamProtocol
from earpiece.freeswitch.settings import EslSettings

logger = logging.getLogger(__name__)


class EslCommandError(PbxError):
    """FreeSWITCH answered a command with ``-ERR`` (``reply`` holds the frame)."""

    def __init__(self, command: str, reply: EslMessage) -> None:
        self.command = command
        self.reply = reply
        text = reply.reply_text if reply.content_type == COMMAND_REPLY else reply.text.strip()
        super().__init__(f"{command.partition(' ')[0]}: {text}")


class EslTimeoutError(PbxError):
    """No reply (or no BACKGROUND_JOB) in time."""


@dataclass
class EslClientStats:
    connects: int = 0
    reconnects: int = 0
    connect_failures: int = 0
    auth_failures: int = 0
    events: int = 0
    malformed: int = 0
    unmatched: int = 0
    callback_errors: int = 0
    keepalive_failures: int = 0
    last_malformed: str = ""
    last_notice: str = ""


@dataclass(frozen=True)
class EslJob:
    """A ``bgapi`` command: its Job-UUID at once, its BACKGROUND_JOB later."""

    job_uuid: str
    command: str
    future: asyncio.Future[EslEvent]

    async def result(self, timeout_s: float) -> EslEvent:
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(self.future)
        except TimeoutError:
            raise EslTimeoutError(
                f"bgapi {self.command.partition(' ')[0]} (Job-UUID {self.job_uuid}):"
                f" no BACKGROUND_JOB within {timeout_s:g} s"
            ) from None


def subscription_command(event_format: str, events: tuple[str, ...]) -> EslCommand:
    """``event plain A B CUSTOM x::y``: CUSTOM subclasses must come after the ``CUSTOM`` word."""
    if event_format not in ("plain", "json"):
        raise ValueError(f"event format must be plain or json, not {event_format!r}")
    names = [e for e in events if "::" not in e and e != "CUSTOM"]
    subclasses = [e for e in events if "::" in e]
    words = [*names, *(["CUSTOM", *subclasses] if subclasses or "CUSTOM" in events else [])]
    if "BACKGROUND_JOB" not in words and "ALL" not in words:
        words.insert(0, "BACKGROUND_JOB")  # bgapi results arrive as this event
    return EslCommand(f"event {event_format} {' '.join(words)}")


class _Session:
    """One TCP connection: its protocol, its pending commands and jobs, its fate."""

    def __init__(self, client: EslClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.protocol: EslStreamProtocol | None = None
        self.pending: collections.deque[tuple[str, asyncio.Future[EslMessage]]] = (
            collections.deque()
        )
        self.jobs: dict[str, EslJob] = {}
        self.auth_request: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.lost_reason = ""
        self.ready = False

    def message_received(self, message: EslMessage) -> None:
        self.client._dispatch(self, message)

    def malformed_received(self, count: int, reason: str) -> None:
        self.client._malformed(count, reason)

    def stream_lost(self, exc: Exception | None) -> None:
        self.lost_reason = str(exc) if exc else (self.lost_reason or "closed by FreeSWITCH")
        self.fail_pending(self.lost_reason)
        if not self.lost.done():
            self.lost.set_result(None)

    @property
    def alive(self) -> bool:
        return self.protocol is not None and not self.protocol.closed

    def fail_pending(self, reason: str) -> None:
        err = f"event socket {self.client.where}: connection lost ({reason})"
        while self.pending:
            _, future = self.pending.popleft()
            if not future.done():
                future.set_exception(PbxConnectionError(err))
        for job in self.jobs.values():
            if not job.future.done():
                job.future.set_exception(PbxConnectionError(err))
                job.future.exception()  # mark retrieved: nobody may be waiting
        self.jobs.clear()

    def send(self, command: EslCommand) -> None:
        if self.protocol is None:
            raise PbxConnectionError("event socket not connected")
        self.protocol.send_command(command)

    def close(self) -> None:
        if self.protocol is not None:
            self.protocol.close()

    def abort(self) -> None:
        if self.protocol is not None:
            self.protocol.abort()


class EslClient:
    """An authenticated inbound event socket that stays up: reconnects until :meth:`close`.

    ``on_event`` is called synchronously, in stream order, for every event (it must not block);
    ``on_connected`` is awaited after every (re)connect, auth and subscription (the resync hook).
    """

    def __init__(
        self,
        settings: EslSettings,
        *,
        on_event: Callable[[EslEvent], None],
        on_connected: Callable[[], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._on_event = on_event
        self._on_connected = on_connected
        self._rng = rng if rng is not None else random.Random()
        self.stats = EslClientStats()
        self._session: _Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._first_done: asyncio.Event | None = None
        self._first_error: PbxError | None = None
        self._last_error = ""

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        s = self._session
        return s is not None and s.ready and s.alive

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self, *, wait: bool = True, timeout_s: float | None = None) -> None:
        """Start connecting; with ``wait``, return after the first auth and subscription."""
        if self._task is not None:
            raise RuntimeError("EslClient.start() called twice")
        self._first_done = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"esl {self.where}")
        if not wait:
            return
        timeout = self.settings.connect_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout):
                await self._first_done.wait()
        except TimeoutError:
            await self.close()
            raise PbxConnectionError(
                f"event socket {self.where}: not connected within {timeout:g} s"
                f" ({self._last_error or 'no answer'})"
            ) from None
        if self._first_error is not None:
            await self.close()
            raise self._first_error

    async def close(self) -> None:
        """Send ``exit`` (best effort), stop reconnecting, fail what is pending."""
        self._closing = True
        self._finish_first(PbxConnectionError(f"event socket {self.where}: client closed"))
        session = self._session
        if session is not None and self.connected:
            try:
                await self._request(session, EslCommand("exit"), 1.0)
            except PbxError as exc:
                logger.debug("event socket %s: exit: %s", self.where, exc)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if session is not None:
            session.close()
            session.fail_pending("client closed")
        self._session = None

    def _finish_first(self, error: PbxError | None) -> None:
        if self._first_done is not None and not self._first_done.is_set():
            self._first_error = error
            self._first_done.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        s = self.settings
        attempt = 0
        while not self._closing:
            try:
                session = await self._connect(loop)
            except PbxAuthError as exc:
                self.stats.auth_failures += 1
                self._last_error = str(exc)
                delay = s.reconnect_max_s
                logger.error("%s; next try in %.1f s", exc, delay)
                self._finish_first(exc)
            except PbxConnectionError as exc:
                self.stats.connect_failures += 1
                self._last_error = str(exc)
                delay = backoff_delay(attempt, s.reconnect_initial_s, s.reconnect_max_s, self._rng)
                attempt += 1
                logger.warning("%s; next try in %.2f s", exc, delay)
            else:
                started = loop.time()
                self.stats.connects += 1
                if self.stats.connects > 1:
                    self.stats.reconnects += 1
                logger.info("event socket %s: connected", self.where)
                self._finish_first(None)
                await self._serve(session)
                if self._closing:
                    break
                if loop.time() - started >= s.reconnect_max_s:
                    attempt = 0
                delay = backoff_delay(attempt, s.reconnect_initial_s, s.reconnect_max_s, self._rng)
                attempt += 1
                self._last_error = f"connection lost: {session.lost_reason}"
                logger.warning("event socket %s: connection lost (%s); reconnecting in %.2f s",
                               self.where, session.lost_reason, delay)
            await asyncio.sleep(delay)

    async def _connect(self, loop: asyncio.AbstractEventLoop) -> _Session:
        s = self.settings
        session = _Session(self, loop)
        self._session = session
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: EslStreamProtocol(session), s.host, s.port
                )
                session.protocol = protocol
                await asyncio.wait({session.auth_request, session.lost},
                                   return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            session.abort()
            raise PbxConnectionError(
                f"event socket {self.where}: no auth/request within {s.connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise PbxConnectionError(f"event socket {self.where}: connect failed: {exc}") from None
        if not session.auth_request.done():
            raise PbxConnectionError(
                f"event socket {self.where}: closed before auth/request ({session.lost_reason})"
            )
        try:
            await self._request(session, EslCommand(f"auth {s.password.get()}"),
                                s.command_timeout_s)
        except EslCommandError as exc:
            session.close()
            raise PbxAuthError(f"event socket {self.where}: password rejected ({exc})") from None
        except EslTimeoutError:
            session.abort()
            raise PbxConnectionError(f"event socket {self.where}: no answer to auth") from None
        try:
            await self._request(session, subscription_command(s.event_format, s.events),
                                s.command_timeout_s)
        except (EslCommandError, EslTimeoutError) as exc:
            session.abort()
            raise PbxConnectionError(f"event socket {self.where}: subscription: {exc}") from None
        session.ready = True
        return session

    async def _serve(self, session: _Session) -> None:
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._keepalive(session), name=f"esl keepalive {self.where}")]
        if self._on_connected is not None:
            tasks.append(loop.create_task(self._call_on_connected(), name="esl on_connected"))
        try:
            await asyncio.shield(session.lost)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _call_on_connected(self) -> None:
        assert self._on_connected is not None
        try:
            await self._on_connected()
        except Exception:
            self.stats.callback_errors += 1
            logger.exception("event socket %s: on_connected failed", self.where)

    async def _keepalive(self, session: _Session) -> None:
        interval = self.settings.keepalive_s
        if interval <= 0:
            return
        while session.alive:
            await asyncio.sleep(interval)
            try:
                await self._request(session, EslCommand("api status"),
                                    self.settings.command_timeout_s)
            except EslTimeoutError as exc:
                self.stats.keepalive_failures += 1
                logger.warning("event socket %s: keepalive failed (%s); dropping the connection",
                               self.where, exc)
                session.lost_reason = "keepalive not answered"
                session.abort()
                return
            except PbxError:
                return

    # --- incoming ------------------------------------------------------------------------
    def _malformed(self, count: int, reason: str) -> None:
        self.stats.malformed += count
        self.stats.last_malformed = reason
        logger.warning("event socket %s: dropped %d malformed frame(s): %s",
                       self.where, count, reason)

    def _dispatch(self, session: _Session, message: EslMessage) -> None:
        ctype = message.content_type
        if ctype in (COMMAND_REPLY, API_RESPONSE):
            while session.pending:
                _, future = session.pending.popleft()
                if not future.done():  # a timed-out command still owns its reply
                    future.set_result(message)
                    return
            self.stats.unmatched += 1
            logger.debug("event socket %s: unmatched %s", self.where, ctype)
        elif message.is_event:
            try:
                event = EslEvent.from_message(message)
            except EslProtocolError as exc:
                self._malformed(1, str(exc))
                return
            self.stats.events += 1
            if event.name == "BACKGROUND_JOB" and event.job_uuid:
                job = session.jobs.pop(event.job_uuid, None)
                if job is not None and not job.future.done():
                    job.future.set_result(event)
            try:
                self._on_event(event)
            except Exception:
                self.stats.callback_errors += 1
                logger.exception("event socket %s: on_event failed on %s", self.where, event.name)
        elif ctype == AUTH_REQUEST:
            if not session.auth_request.done():
                session.auth_request.set_result(None)
        elif ctype in (DISCONNECT_NOTICE, RUDE_REJECTION):
            notice = message.text.strip() or (message.get("Content-Disposition") or "")
            self.stats.last_notice = notice
            session.lost_reason = f"{ctype}: {notice}"
            logger.info("event socket %s: %s", self.where, session.lost_reason)
        else:
            self.stats.unmatched += 1

    # --- commands ------------------------------------------------------------------------
    def _live(self) -> _Session:
        s = self._session
        if s is None or not s.ready or not s.alive:
            raise PbxConnectionError(f"event socket {self.where}: not connected")
        return s

    async def _request(self, session: _Session, command: EslCommand,
                       timeout_s: float) -> EslMessage:
        future: asyncio.Future[EslMessage] = asyncio.get_running_loop().create_future()
        session.send(command)  # raises before anything is queued when the link is gone
        session.pending.append((command.verb, future))
        try:
            async with asyncio.timeout(timeout_s):
                reply = await future
        except TimeoutError:
            future.cancel()
            raise EslTimeoutError(
                f"event socket {self.where}: {command.verb} not answered within {timeout_s:g} s"
            ) from None
        if reply.content_type == COMMAND_REPLY and (reply.reply_text or "").startswith("-"):
            raise EslCommandError(command.command if command.verb != "auth" else "auth", reply)
        return reply

    async def send(self, command: EslCommand, *, timeout_s: float | None = None) -> EslMessage:
        """Send any command (``filter``, ``sendmsg``, ``sendevent``...) and return its reply.

        Raises :class:`EslCommandError` when a ``command/reply`` says ``-ERR``.
        """
        timeout = self.settings.command_timeout_s if timeout_s is None else timeout_s
        return await self._request(self._live(), command, timeout)

    async def api(self, command: str, *, timeout_s: float | None = None) -> str:
        """``api <command>``: the response text. FreeSWITCH reports errors *in* the text
        (``-ERR no_such_command Command not found!``, ``-USAGE: ...``), so they are returned,
        not raised: the caller knows which answers mean failure for its command."""
        reply = await self.send(EslCommand(f"api {command}"), timeout_s=timeout_s)
        return reply.text

    async def bgapi(self, command: str, *, job_uuid: str | None = None) -> EslJob:
        """``bgapi <command>`` with our Job-UUID; returns once FreeSWITCH accepted the job."""
        session = self._live()
        job_id = job_uuid or str(uuid.uuid4())
        if job_id in session.jobs:
            raise ValueError(f"Job-UUID {job_id} is already pending")
        job = EslJob(job_id, command, asyncio.get_running_loop().create_future())
        session.jobs[job_id] = job
        try:
            reply = await self._request(
                session, EslCommand.build(f"bgapi {command}", [("Job-UUID", job_id)]),
                self.settings.command_timeout_s,
            )
        except BaseException:
            session.jobs.pop(job_id, None)
            raise
        if reply.get("Job-UUID") not in (None, job_id):
            logger.warning("event socket %s: bgapi reply names Job-UUID %s, not %s",
                           self.where, reply.get("Job-UUID"), job_id)
        return job

    async def show_channels(self) -> list[dict[str, Any]]:
        """``show channels as json`` rows (``[]`` for ``{"row_count": 0}``): the resync source."""
        text = await self.api("show channels as json")
        try:
            data = json.loads(text)
        except ValueError:
            raise EslProtocolError(f"show channels: not JSON: {text[:80]!r}") from None
        if not isinstance(data, dict) or not isinstance(data.get("row_count"), int):
            raise EslProtocolError(f"show channels: no row_count: {text[:80]!r}")
        rows = data.get("rows", [])
        if not isinstance(rows, list) or len(rows) != data["row_count"]:
            raise EslProtocolError(f"show channels: row_count {data['row_count']} but rows differ")
        return [r for r in rows if isinstance(r, dict)]
