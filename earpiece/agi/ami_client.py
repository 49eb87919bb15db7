"""Async AMI client: login, event stream, actions with ActionID correlation, reconnect, keepalive.

The rest of Earpiece sees only :class:`~earpiece.agi.ami_message.AmiMessage`: events go to
``on_event`` in stream order, actions return their response (and, for list actions, the
list's events).

Built on panoramisk 1.4, selectively. What we use and what we replace, and why (read against
``panoramisk/manager.py``, ``ami_protocol.py``, ``message.py`` and ``actions.py``):

* **Used:** ``panoramisk.ami_protocol.AMIProtocol`` as the asyncio protocol base of
  :class:`~earpiece.agi.ami_protocol.AmiStreamProtocol` (transport bookkeeping).
* **Parser replaced** (``data_received``): panoramisk decodes with ``errors='ignore'``, splits on
  ``\\r\\n\\r\\n`` after ``strip()`` and stores headers in a case-insensitive dict. Header order is
  lost, a repeated header becomes a list only by key (its position among the others is gone),
  the bytes cannot be reproduced, and malformed messages vanish silently (``from_line`` returns
  ``None``). Our :class:`~earpiece.agi.ami_message.AmiFramer` is byte-exact on every recorded
  message (tests/test_ami_message.py) and counts what it drops.
* **Serialiser replaced:** ``Action.__str__`` sorts headers alphabetically; we send headers in
  the order given (``Action`` then ``ActionID`` first, as the recordings show) and refuse CR/LF
  inside a value (header injection).
* **Manager not used:**

  - its reconnect is a fixed ``reconnect_timeout`` (no backoff, no jitter), and on disconnect it
    silently re-queues unanswered actions to be re-sent after the next ``FullyBooted``; an
    Originate or Hangup replayed minutes later is wrong for a dialer. Here pending actions fail
    with :class:`~earpiece.errors.PbxConnectionError` and the caller decides.
  - ``login()`` ignores ``Response: Error``: with a bad secret it reconnects every 2 s forever
    and nobody is told. Here the first login raises :class:`~earpiece.errors.PbxAuthError`; a
    later rejection is logged as an error and retried only every ``reconnect_max_s``.
  - its correlation routes every message carrying a known ActionID to the action, and treats
    ``... successfully queued`` as a multi-message answer; so the ``OriginateResponse`` event
    of an async Originate is swallowed by the action instead of reaching the event stream, and
    the Originate only completes when the call is answered or fails.
  - its ping never checks the Pong, so a dead peer (half-open TCP) is never noticed.

Correlation rules: a message is a *response* if it has ``Response`` and no ``Event``. A
response whose ActionID is pending completes that action; a list action (``send_list_action``)
whose response says ``EventList: start`` then collects the events carrying its ActionID until
one says ``EventList: Complete`` (that final ``...Complete`` event is not in the returned list).
Every other event, including ``OriginateResponse`` (it carries the Originate's ActionID, after
the Originate's own response), goes to ``on_event``. To correlate an OriginateResponse, pass your
own ``action_id`` to :meth:`AmiClient.originate` and register it before the call: in principle
the event can race the ``Originate successfully queued`` response.

The convenience actions (:meth:`AmiClient.originate`, :meth:`AmiClient.hangup`...) and the errors
:class:`AmiActionError` / :class:`AmiTimeoutError` are in :mod:`earpiece.agi.ami_actions`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from earpiece.agi.ami_actions import AmiActionError as AmiActionError
from earpiece.agi.ami_actions import AmiActions
from earpiece.agi.ami_actions import AmiTimeoutError as AmiTimeoutError
from earpiece.agi.ami_message import AmiBanner, AmiMessage
from earpiece.agi.ami_protocol import AmiStreamProtocol
from earpiece.agi.settings import AmiSettings
from earpiece.errors import PbxAuthError, PbxConnectionError, PbxError

logger = logging.getLogger(__name__)

ERROR_RESPONSES = frozenset({"error", "failure", "fail"})
REDACTED_HEADERS = frozenset({"secret", "key"})
LOGOFF_TIMEOUT_S = 1.0


@dataclass
class AmiClientStats:
    """Counters of one :class:`AmiClient` over its whole life (all connections)."""

    connects: int = 0  # successful logins
    reconnects: int = 0  # successful logins after the first one
    connect_failures: int = 0  # attempts that failed before login (refused, timeout, lost)
    auth_failures: int = 0  # logins answered with Response: Error
    malformed: int = 0  # server messages dropped by the framer
    events: int = 0  # events delivered to on_event
    unmatched: int = 0  # responses nobody waited for (e.g. late, after a timeout)
    callback_errors: int = 0  # on_event / on_connected raised
    ping_failures: int = 0  # keepalive Pings without answer (connection dropped)
    last_malformed: str = ""


def backoff_delay(attempt: int, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter, never below ``initial_s``.

    ``attempt`` 0, 1, 2... draws uniformly from ``[initial_s, min(max_s, initial_s * 2**attempt)]``.
    """
    low = max(0.0, min(initial_s, max_s))
    cap = min(max_s, low * 2.0 ** min(max(attempt, 0), 62))
    return rng.uniform(low, max(low, cap))


def redacted_text(message: AmiMessage) -> str:
    """The message as one log line, with ``Secret``/``Key`` values masked."""
    return " | ".join(
        f"{k}: {'********' if k.lower() in REDACTED_HEADERS else v}" for k, v in message.headers
    )


@dataclass
class _Pending:
    name: str
    future: asyncio.Future[tuple[AmiMessage, list[AmiMessage]]]
    is_list: bool
    response: AmiMessage | None = None
    items: list[AmiMessage] = field(default_factory=list)


class _Session:
    """One TCP connection: its protocol, its pending actions, its fate."""

    def __init__(self, client: AmiClient, loop: asyncio.AbstractEventLoop) -> None:
        self.client = client
        self.protocol: AmiStreamProtocol | None = None
        self.pending: dict[str, _Pending] = {}
        self.banner: asyncio.Future[AmiBanner] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.lost_reason = ""
        self.logged_in = False

    # AmiStreamHandler -------------------------------------------------------------------
    def banner_received(self, banner: AmiBanner) -> None:
        if not self.banner.done():
            self.banner.set_result(banner)

    def message_received(self, message: AmiMessage) -> None:
        self.client._dispatch(self, message)

    def malformed_received(self, count: int, reason: str) -> None:
        self.client._malformed(count, reason)

    def stream_lost(self, exc: Exception | None) -> None:
        self.fail_pending(f"{exc}" if exc is not None else "closed by the server")

    # ------------------------------------------------------------------------------------
    @property
    def alive(self) -> bool:
        return not self.lost.done()

    def fail_pending(self, reason: str) -> None:
        if not self.lost.done():
            self.lost_reason = reason
            self.lost.set_result(None)
        self.logged_in = False
        error = PbxConnectionError(f"AMI connection to {self.client.where} lost: {reason}")
        for pending in self.pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)
        self.pending.clear()

    def send(self, message: AmiMessage) -> None:
        if self.protocol is None or not self.alive:
            raise PbxConnectionError(f"AMI connection to {self.client.where} is closed")
        self.protocol.send_message(message)

    def close(self) -> None:
        if self.protocol is not None:
            self.protocol.close()

    def abort(self) -> None:
        if self.protocol is not None:
            self.protocol.abort()


class AmiClient(AmiActions):
    """A logged-in AMI connection that stays up: reconnects with backoff until :meth:`close`.

    ``on_event`` is called synchronously, in stream order, for every event (it must not block);
    ``on_connected`` is awaited after every successful (re)connect and login, in its own task
    (cancelled if that connection drops). Errors raised by either are logged and counted.
    """

    def __init__(
        self,
        settings: AmiSettings,
        *,
        on_event: Callable[[AmiMessage], None],
        on_connected: Callable[[], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self._on_event = on_event
        self._on_connected = on_connected
        self._rng = rng if rng is not None else random.Random()
        self.stats = AmiClientStats()
        self.banner: AmiBanner | None = None
        self._session: _Session | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._first_done: asyncio.Event | None = None
        self._start_waiting = False
        self._first_error: PbxError | None = None
        self._last_error = ""
        self._id_prefix = f"ep-{uuid.uuid4().hex[:8]}"
        self._ids = itertools.count(1)

    @property
    def where(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    @property
    def connected(self) -> bool:
        """True while logged in on a live connection."""
        session = self._session
        return session is not None and session.logged_in and session.alive

    def next_action_id(self) -> str:
        return f"{self._id_prefix}-{next(self._ids)}"

    # --- lifecycle -----------------------------------------------------------------------
    async def start(self, *, wait: bool = True, timeout_s: float | None = None) -> None:
        """Start connecting in the background.

        With ``wait`` (the default), return once the first login succeeded; raise
        :class:`PbxAuthError` if it was rejected, or :class:`PbxConnectionError` if no login
        succeeded within ``timeout_s`` (default ``settings.connect_timeout_s``; connection
        attempts are retried with backoff meanwhile). Either error closes the client.
        """
        if self._task is not None:
            raise RuntimeError("AmiClient.start() called twice")
        if self._closing:
            raise RuntimeError("AmiClient is closed")
        self._first_done = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ami {self.where}")
        if not wait:
            return
        timeout = self.settings.connect_timeout_s if timeout_s is None else timeout_s
        self._start_waiting = True
        try:
            async with asyncio.timeout(timeout):
                await self._first_done.wait()
        except TimeoutError:
            await self.close()
            raise PbxConnectionError(
                f"AMI {self.where}: not logged in within {timeout:g} s"
                f" ({self._last_error or 'no answer'})"
            ) from None
        finally:
            self._start_waiting = False
        if self._first_error is not None:
            await self.close()
            raise self._first_error

    async def close(self) -> None:
        """Log off (best effort), stop reconnecting, fail pending actions."""
        self._closing = True
        self._finish_first(PbxConnectionError(f"AMI {self.where}: client closed"))
        session = self._session
        if session is not None and self.connected:
            timeout = min(LOGOFF_TIMEOUT_S, self.settings.action_timeout_s)
            try:
                await self._request(session, self._with_id(AmiMessage.action("Logoff")), timeout)
            except PbxError as exc:
                logger.debug("AMI %s: Logoff: %s", self.where, exc)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if session is not None:
            session.close()
            session.fail_pending("client closed")
        self._session = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        while not self._closing:
            try:
                session = await self._connect_and_login()
            except PbxAuthError as exc:
                self.stats.auth_failures += 1
                self._last_error = str(exc)
                delay = self.settings.reconnect_max_s
                if self._start_waiting:
                    logger.error("%s", exc)  # start() raises it and closes the client
                else:
                    logger.error("%s; next try in %.1f s", exc, delay)
                self._finish_first(exc)
            except PbxConnectionError as exc:
                self.stats.connect_failures += 1
                self._last_error = str(exc)
                delay = backoff_delay(
                    attempt, self.settings.reconnect_initial_s, self.settings.reconnect_max_s,
                    self._rng,
                )
                attempt += 1
                logger.warning("%s; next try in %.2f s", exc, delay)
            else:
                started = loop.time()
                self.stats.connects += 1
                if self.stats.connects > 1:
                    self.stats.reconnects += 1
                logger.info("AMI %s: logged in as %r", self.where, self.settings.username)
                self._finish_first(None)
                await self._serve(session)
                if self._closing:
                    break
                if loop.time() - started >= self.settings.reconnect_max_s:
                    attempt = 0  # it was a healthy session: start the backoff afresh
                delay = backoff_delay(
                    attempt, self.settings.reconnect_initial_s, self.settings.reconnect_max_s,
                    self._rng,
                )
                attempt += 1
                self._last_error = f"connection lost: {session.lost_reason}"
                logger.warning(
                    "AMI %s: connection lost (%s); reconnecting in %.2f s",
                    self.where, session.lost_reason, delay,
                )
            await asyncio.sleep(delay)

    def _finish_first(self, error: PbxError | None) -> None:
        if self._first_done is not None and not self._first_done.is_set():
            self._first_error = error
            self._first_done.set()

    async def _connect_and_login(self) -> _Session:
        loop = asyncio.get_running_loop()
        session = _Session(self, loop)
        self._session = session
        s = self.settings
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                _, protocol = await loop.create_connection(
                    lambda: AmiStreamProtocol(session), s.host, s.port
                )
                session.protocol = protocol
                waiting: set[asyncio.Future[Any]] = {session.banner, session.lost}
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            session.abort()
            session.fail_pending("no banner")
            raise PbxConnectionError(
                f"AMI {self.where}: no connection and banner within {s.connect_timeout_s:g} s"
            ) from None
        except OSError as exc:
            raise PbxConnectionError(f"AMI {self.where}: connect failed: {exc}") from None
        if not session.banner.done():
            raise PbxConnectionError(
                f"AMI {self.where}: closed before the banner ({session.lost_reason})"
            )
        self.banner = session.banner.result()
        logger.debug("AMI %s: banner %r", self.where, self.banner.text)
        login = AmiMessage.action(
            "Login",
            self.next_action_id(),
            Username=s.username,
            Secret=s.secret.get(),
            Events="on",
        )
        try:
            await self._request(session, login, s.action_timeout_s)
        except AmiActionError as exc:
            session.close()
            session.fail_pending("login rejected")
            raise PbxAuthError(
                f"AMI {self.where}: login as {s.username!r} rejected: {exc.message or 'Error'}"
            ) from None
        except AmiTimeoutError:
            session.abort()
            session.fail_pending("no answer to Login")
            raise PbxConnectionError(
                f"AMI {self.where}: no answer to Login within {s.action_timeout_s:g} s"
            ) from None
        session.logged_in = True
        return session

    async def _serve(self, session: _Session) -> None:
        """Run keepalive and on_connected until the connection is lost."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._keepalive(session), name=f"ami keepalive {self.where}")]
        if self._on_connected is not None:
            tasks.append(loop.create_task(self._call_on_connected(), name="ami on_connected"))
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
            logger.exception("AMI %s: on_connected callback failed", self.where)

    async def _keepalive(self, session: _Session) -> None:
        interval = self.settings.ping_interval_s
        if interval <= 0:
            return
        while session.alive:
            await asyncio.sleep(interval)
            ping = self._with_id(AmiMessage.action("Ping"))
            try:
                await self._request(session, ping, self.settings.action_timeout_s)
            except AmiTimeoutError as exc:
                self.stats.ping_failures += 1
                logger.warning("AMI %s: keepalive failed (%s); dropping the connection",
                               self.where, exc)
                session.abort()
                session.fail_pending("keepalive Ping not answered")
                return
            except AmiActionError as exc:
                logger.warning("AMI %s: keepalive: %s", self.where, exc)
            except PbxConnectionError:
                return

    # --- incoming ------------------------------------------------------------------------
    def _malformed(self, count: int, reason: str) -> None:
        self.stats.malformed += count
        self.stats.last_malformed = reason
        logger.warning("AMI %s: dropped %d malformed message(s): %s", self.where, count, reason)

    def _dispatch(self, session: _Session, message: AmiMessage) -> None:
        action_id = message.action_id
        is_event = message.event is not None
        pending = session.pending.get(action_id) if action_id is not None else None
        if pending is not None and not pending.future.done():
            if not is_event and message.response is not None:
                listing = (message.get("EventList") or "").lower() == "start"
                if (
                    pending.is_list
                    and listing
                    and (message.response or "").lower() not in ERROR_RESPONSES
                ):
                    pending.response = message
                else:
                    pending.future.set_result((message, []))
                return
            if is_event and pending.is_list and pending.response is not None:
                if (message.get("EventList") or "").lower() == "complete":
                    expected = message.get("ListItems")
                    if expected is not None and expected != str(len(pending.items)):
                        logger.warning(
                            "AMI %s: %s list says ListItems: %s but %d arrived",
                            self.where, pending.name, expected, len(pending.items),
                        )
                    pending.future.set_result((pending.response, pending.items))
                else:
                    pending.items.append(message)
                return
        if is_event:
            self.stats.events += 1
            try:
                self._on_event(message)
            except Exception:
                self.stats.callback_errors += 1
                logger.exception("AMI %s: on_event failed on %s", self.where, message.event)
        else:
            self.stats.unmatched += 1
            logger.debug("AMI %s: unmatched %s (ActionID %s)", self.where,
                         message.headers[0] if message.headers else "", action_id)

    # --- actions -------------------------------------------------------------------------
    def _with_id(self, message: AmiMessage) -> AmiMessage:
        """Check the action and give it an ActionID (second header) if it has none."""
        if not message.headers or message.headers[0][0].lower() != "action":
            raise ValueError("an AMI action must start with an 'Action' header")
        for key, value in message.headers:
            if any(c in key for c in "\r\n:") or key != key.strip() or not key:
                raise ValueError(f"bad AMI header name {key!r}")
            if "\r" in value or "\n" in value:
                raise ValueError(f"AMI header {key!r}: value contains CR or LF")
        if message.action_id is not None:
            return message
        headers = message.headers
        return AmiMessage((headers[0], ("ActionID", self.next_action_id()), *headers[1:]))

    def _live_session(self) -> _Session:
        session = self._session
        if session is None or not session.logged_in or not session.alive:
            raise PbxConnectionError(f"AMI {self.where}: not connected")
        return session

    async def _request(
        self, session: _Session, message: AmiMessage, timeout_s: float, *, is_list: bool = False
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        action_id = message.action_id
        name = message.action_name or "?"
        assert action_id is not None
        if action_id in session.pending:
            raise ValueError(f"ActionID {action_id!r} is already in use")
        future: asyncio.Future[tuple[AmiMessage, list[AmiMessage]]] = (
            asyncio.get_running_loop().create_future()
        )
        pending = _Pending(name, future, is_list)
        session.pending[action_id] = pending
        try:
            if logger.isEnabledFor(logging.DEBUG):
                logger.debug("AMI %s -> %s", self.where, redacted_text(message))
            session.send(message)
            try:
                async with asyncio.timeout(timeout_s):
                    response, items = await future
            except TimeoutError:
                raise AmiTimeoutError(
                    f"AMI {name} (ActionID {action_id}) not answered within {timeout_s:g} s"
                ) from None
        finally:
            if session.pending.get(action_id) is pending:
                del session.pending[action_id]
        if (response.response or "").lower() in ERROR_RESPONSES:
            raise AmiActionError(name, response)
        return response, items

    async def send_action(
        self, message: AmiMessage, *, timeout_s: float | None = None
    ) -> AmiMessage:
        """Send an action and return its response.

        An ActionID is added if missing. Raises :class:`AmiActionError` (a :class:`PbxError`)
        on ``Response: Error``, :class:`AmiTimeoutError` after ``timeout_s`` (default
        ``settings.action_timeout_s``), :class:`PbxConnectionError` when not connected or when
        the connection drops before the answer.
        """
        session = self._live_session()
        timeout = self.settings.action_timeout_s if timeout_s is None else timeout_s
        response, _ = await self._request(session, self._with_id(message), timeout)
        return response

    async def send_list_action(
        self, message: AmiMessage, *, timeout_s: float | None = None
    ) -> tuple[AmiMessage, list[AmiMessage]]:
        """Send an EventList action; return its response and the listed events.

        The events are collected until the one with ``EventList: Complete`` (not included).
        If the response has no ``EventList: start``, the list is empty. The timeout covers
        the whole list.
        """
        session = self._live_session()
        timeout = self.settings.action_timeout_s if timeout_s is None else timeout_s
        return await self._request(session, self._with_id(message), timeout, is_list=True)
