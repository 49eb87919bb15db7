"""Asynchronous ARI client: typed REST calls and the ``/ari/events`` websocket.

REST: one method per ARI operation Earpiece uses; names of paths, methods and query
parameters follow Asterisk's Swagger (``ari-api-docs``), and bodies come back as the dataclasses
of :mod:`earpiece.agi.ari_models`. Query strings are percent-encoded like the recorded traffic
(``media=sound%3Abeep%2Csound%3Agoodbye``); list parameters (``media``, ``channel``,
``eventSource``) are sent comma-joined, as Asterisk expects. Parameters equal to Swagger's
documented default are left out, except ``spy``/``whisper`` of a snoop, which are always sent.

Errors: a non-2xx answer raises :class:`AriHttpError` (a :class:`~earpiece.errors.PbxError`)
carrying ``status`` and the ``message`` of Asterisk's JSON error body; 401 raises
:class:`AriAuthError` (also a :class:`~earpiece.errors.PbxAuthError`), 404
:class:`AriNotFoundError`, 409 :class:`AriConflictError`. Network failures and timeouts raise
:class:`~earpiece.errors.PbxConnectionError`. A 2xx body that is not the expected JSON raises
:class:`~earpiece.errors.AriProtocolError`.

Events: :meth:`AriClient.start` runs a task that keeps the websocket
``/ari/events?app=<app>&subscribeAll=<bool>`` open (Basic auth), which also registers the Stasis
application. After every (re)connect it awaits ``on_connected()`` before reading further frames,
so a consumer can resync (``list_channels()``) and then apply the events queued meanwhile. Each
text frame is parsed with :func:`~earpiece.agi.ari_models.parse_event` and handed to
``on_event``; malformed frames are counted in :attr:`AriClient.stats` and dropped. A lost or
refused connection is retried forever, with exponential backoff and full jitter
(``reconnect_initial_s``, doubling, capped at ``reconnect_max_s``), until :meth:`close`.

Ordering caveat (recorded on a real Asterisk): an event may arrive *before* the REST response
of the request that caused it (``StasisStart`` of a snoop before its 200,
``ChannelEnteredBridge`` before the ``addChannel`` 204, ``ChannelHangupRequest`` before the
``DELETE`` 204). Consumers must not assume the REST call returned first.

Application takeover (recorded: ``faults/ari/ari_app_replaced``): a second websocket for the
same app takes the app over; the first one gets one ``ApplicationReplaced`` event and then
nothing, although it stays open, and it does not get the app back by itself. The client then
logs an ERROR, reports :attr:`AriClient.app_owned` ``False`` and counts ``app_lost``; it never
fights a live holder: every ``app_poll_s`` it asks ``GET /applications/{app}`` and, once that
answers 404 (the other websocket left), closes its silent websocket and reconnects at once,
which registers the app again and runs ``on_connected()`` (``app_regained``). Before its first
connect, :meth:`AriClient.start` with ``refuse_if_taken=True`` raises
:class:`AriAppInUseError` when another websocket holds the app for ``app_free_wait_s``.

The typed REST operations and the query/path encoding are in :mod:`earpiece.agi.ari_rest`
(:class:`~earpiece.agi.ari_rest.AriRestApi`, inherited by :class:`AriClient`).

The password (``settings.password``) is only put into the ``Authorization`` header; it never
appears in a log line, an exception message or :attr:`AriClient.stats`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from earpiece.agi.ari_models import AriEvent, parse_event, parse_list
from earpiece.agi.ari_rest import AriRestApi, M, QueryItems
from earpiece.agi.ari_rest import encode_query as encode_query
from earpiece.agi.settings import AriSettings
from earpiece.errors import (
    AriProtocolError,
    PbxAuthError,
    PbxConnectionError,
    PbxError,
)

logger = logging.getLogger(__name__)

EventCallback = Callable[[AriEvent], None]
ConnectedCallback = Callable[[], Awaitable[None]]

#: A connection that stayed up this long resets the reconnect backoff to its initial delay.
STABLE_CONNECTION_S = 5.0
#: After a takeover: how often to ask whether the other websocket released our app.
APP_POLL_S = 2.0
#: ``start(refuse_if_taken=True)``: how long a holder may take to go (a just-killed
#: predecessor whose websocket Asterisk has not dropped yet) before the start is refused.
APP_FREE_WAIT_S = 2.0


class AriHttpError(PbxError):
    """Asterisk answered a REST call with a non-2xx status."""

    def __init__(self, method: str, path: str, status: int, message: str) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        super().__init__(f"ARI {method} {path}: {status} {message}")


class AriAuthError(AriHttpError, PbxAuthError):
    """401: ARI rejected the username/password."""


class AriNotFoundError(AriHttpError):
    """404: unknown channel, bridge, playback, application or resource."""


class AriConflictError(AriHttpError):
    """409: e.g. the channel is not in a Stasis application, or the id already exists."""


class AriAppInUseError(PbxError):
    """Another websocket holds our Stasis application (another Earpiece?)."""

    def __init__(self, app: str) -> None:
        self.app = app
        super().__init__(
            f"ARI app {app!r} is in use by another websocket (another Earpiece?); "
            "stop it or set ari.app"
        )


def _http_error(method: str, path: str, status: int, message: str) -> AriHttpError:
    if status == 401:
        return AriAuthError(method, path, status, message)
    if status == 404:
        return AriNotFoundError(method, path, status, message)
    if status == 409:
        return AriConflictError(method, path, status, message)
    return AriHttpError(method, path, status, message)


@dataclass
class AriClientStats:
    """Counters of the events websocket (mutable; read them, don't write them)."""

    connects: int = 0
    disconnects: int = 0
    connect_failures: int = 0
    auth_failures: int = 0
    frames: int = 0
    events: int = 0
    malformed_frames: int = 0
    handler_errors: int = 0
    app_lost: int = 0  # ApplicationReplaced: another websocket took our app over
    app_regained: int = 0  # reconnects that took the app back once it was free
    last_error: str = ""


class AriClient(AriRestApi):
    """ARI REST + events client for one Stasis application (``settings.app``)."""

    def __init__(
        self,
        settings: AriSettings,
        *,
        on_event: EventCallback | None = None,
        on_connected: ConnectedCallback | None = None,
        session: aiohttp.ClientSession | None = None,
        heartbeat_s: float | None = 20.0,
        app_poll_s: float | None = None,
        app_free_wait_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.on_event = on_event
        self.on_connected = on_connected
        self.stats = AriClientStats()
        self._session = session
        self._owns_session = session is None
        self._auth_headers = {
            "Authorization": aiohttp.encode_basic_auth(settings.username, settings.password.get())
        }
        self._heartbeat_s = heartbeat_s
        self.app_poll_s = APP_POLL_S if app_poll_s is None else app_poll_s
        self.app_free_wait_s = APP_FREE_WAIT_S if app_free_wait_s is None else app_free_wait_s
        base = URL(settings.url.rstrip("/"))
        self._log_base = str(base.with_user(None).with_password(None))
        self._base = self._log_base if self._log_base.endswith("/ari") else self._log_base + "/ari"
        self._timeout = aiohttp.ClientTimeout(total=settings.request_timeout_s)
        self._task: asyncio.Task[None] | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._last_failure: PbxError | None = None
        self._app_owned = False
        self._app_lost = False  # taken over and not yet regained
        self._regain_now = False  # our silent websocket was closed to take the app back
        self._watch: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    @property
    def connected(self) -> bool:
        """True while the events websocket is open."""
        return self._connected.is_set()

    @property
    def app_owned(self) -> bool:
        """True while the events websocket is open and holds ``settings.app`` (False after an
        ``ApplicationReplaced`` until the app is taken back)."""
        return self._app_owned and self.connected

    async def start(self, *, refuse_if_taken: bool = False) -> None:
        """Start the events websocket task (returns at once; see :meth:`wait_connected`).

        With ``refuse_if_taken``, first raise :class:`AriAppInUseError` when another websocket
        holds the app (see :meth:`ensure_app_free`), instead of taking it over.
        """
        if self._closing:
            raise PbxError("AriClient was closed")
        self._ensure_session()
        if self._task is None or self._task.done():
            if refuse_if_taken:
                await self.ensure_app_free()
            self._task = asyncio.create_task(self._run_events(), name="ari-events")

    async def app_taken(self) -> bool:
        """Whether a websocket holds ``settings.app`` now (``GET /applications/{app}``: 200;
        404 means free). While :attr:`app_owned`, that websocket is this client's own."""
        try:
            await self.get_application(self.settings.app)
        except AriNotFoundError:
            return False
        return True

    async def ensure_app_free(self, wait_s: float | None = None) -> None:
        """Raise :class:`AriAppInUseError` if another websocket still holds the app after
        ``wait_s`` (default ``app_free_wait_s``). Call it before connecting. When ARI cannot
        answer (down, 401), the check is skipped: connecting reports that failure."""
        app = self.settings.app
        deadline = time.monotonic() + (self.app_free_wait_s if wait_s is None else wait_s)
        logged = False
        while True:
            try:
                taken = await self.app_taken()
            except PbxError as exc:
                logger.debug("ARI application %r check skipped: %s", app, exc)
                return
            if not taken:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AriAppInUseError(app)
            if not logged:
                logged = True
                logger.info("ARI application %r is held by another websocket; waiting", app)
            await asyncio.sleep(min(0.25, remaining))

    async def wait_connected(self, timeout_s: float | None = None) -> None:
        """Wait until the websocket is open; on timeout raise the last failure seen.

        Raises :class:`~earpiece.errors.PbxAuthError` when the last attempt was refused with
        401, else :class:`~earpiece.errors.PbxConnectionError`.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self._connected.wait()
        except TimeoutError:
            failure = self._last_failure
            if isinstance(failure, PbxAuthError):
                raise PbxAuthError(str(failure)) from None
            detail = f": {failure}" if failure is not None else ""
            raise PbxConnectionError(
                f"ARI events websocket not connected after {timeout_s} s{detail}"
            ) from None

    async def close(self) -> None:
        """Stop reconnecting, close the websocket and (if created here) the HTTP session."""
        self._closing = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        await self._stop_watch()
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close()
        self._connected.clear()
        self._app_owned = False
        if self._owns_session and self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def __aenter__(self) -> AriClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            if self._closing:
                raise PbxError("AriClient was closed")
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # ---------------------------------------------------------------- REST plumbing

    def url(self, path: str, query: QueryItems = ()) -> URL:
        """Absolute URL of ``/ari<path>`` with an encoded query (no credentials in it)."""
        q = encode_query(query)
        return URL(f"{self._base}{path}{'?' + q if q else ''}", encoded=True)

    async def request(
        self,
        method: str,
        path: str,
        query: QueryItems = (),
        *,
        body: Mapping[str, Any] | None = None,
    ) -> object | None:
        """One REST call; the decoded JSON body, or ``None`` for an empty (204) answer."""
        session = self._ensure_session()
        url = self.url(path, query)
        try:
            async with session.request(
                method, url, headers=self._auth_headers, json=body, timeout=self._timeout
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except (aiohttp.ClientError, OSError) as exc:  # TimeoutError is an OSError
            reason = str(exc) or type(exc).__name__
            raise PbxConnectionError(f"ARI {method} {path}: {reason}") from exc
        text = raw.decode("utf-8", errors="replace")
        logger.debug("ARI %s %s -> %d (%d bytes)", method, url.path_qs, status, len(raw))
        if not 200 <= status < 300:
            raise _http_error(method, path, status, _error_message(text))
        if not text.strip():
            return None
        try:
            decoded: object = json.loads(text)
        except (ValueError, RecursionError):
            raise AriProtocolError(f"ARI {method} {path}: {status} body is not JSON") from None
        return decoded

    async def _model(
        self,
        cls: type[M],
        method: str,
        path: str,
        query: QueryItems = (),
        *,
        body: Mapping[str, Any] | None = None,
    ) -> M:
        data = await self.request(method, path, query, body=body)
        if data is None:
            raise AriProtocolError(f"ARI {method} {path}: empty body, expected {cls.__name__}")
        if not isinstance(data, Mapping):
            raise AriProtocolError(f"ARI {method} {path}: expected a JSON object")
        return cls.parse(data)

    async def _models(self, cls: type[M], method: str, path: str) -> list[M]:
        data = await self.request(method, path)
        return parse_list(cls, data if data is not None else [])

    async def _void(self, method: str, path: str, query: QueryItems = ()) -> None:
        await self.request(method, path, query)

    # ---------------------------------------------------------------- events websocket

    def events_url(self) -> URL:
        """The websocket URL (without credentials)."""
        query = (("app", self.settings.app), ("subscribeAll", self.settings.subscribe_all))
        return self.url("/events", query)

    def backoff_delay(self, attempt: int) -> float:
        """Full-jitter delay before reconnect attempt ``attempt`` (0-based)."""
        initial = max(0.0, self.settings.reconnect_initial_s)
        cap = max(initial, self.settings.reconnect_max_s)
        ceiling = cap if attempt >= 64 else min(cap, initial * (2.0**attempt))
        return random.uniform(0.0, ceiling)

    async def _run_events(self) -> None:
        attempt = 0
        url = self.events_url()
        while not self._closing:
            if self._app_lost:  # never take the app from a live holder
                await self._wait_app_free()
                if self._closing:
                    break
            try:
                stable = await self._connect_and_serve(url)
            except Exception:  # a bug here must not end the reconnect loop
                stable = False
                self.stats.handler_errors += 1
                logger.exception("ARI events loop failed; reconnecting")
            if self._closing:
                break
            if self._regain_now:  # our app is free again: take it back at once
                self._regain_now = False
                attempt = 0
                continue
            if stable:
                attempt = 0
            delay = self.backoff_delay(attempt)
            attempt += 1
            logger.debug("ARI events: reconnect attempt %d in %.3f s", attempt, delay)
            await asyncio.sleep(delay)

    async def _connect_and_serve(self, url: URL) -> bool:
        """One connection's life; True when it stayed up long enough to reset the backoff."""
        ws = await self._connect(url)
        if ws is None:
            return False
        started = time.monotonic()
        try:
            await self._serve(ws)
        except (aiohttp.ClientError, OSError) as exc:
            self.stats.last_error = f"ARI events websocket failed: {exc or type(exc).__name__}"
            logger.warning("%s", self.stats.last_error)
        finally:
            self._ws = None
            self._connected.clear()
            self._app_owned = False
            self.stats.disconnects += 1
            await self._stop_watch()
            if not ws.closed:
                await ws.close()
        if self._regain_now:
            logger.warning("ARI application %r is free again; reconnecting to take it back",
                           self.settings.app)
        elif not self._closing:
            logger.warning("ARI events websocket closed (code %s); reconnecting", ws.close_code)
        return time.monotonic() - started >= STABLE_CONNECTION_S

    async def _connect(self, url: URL) -> aiohttp.ClientWebSocketResponse | None:
        session = self._ensure_session()
        try:
            async with asyncio.timeout(self.settings.request_timeout_s):
                ws = await session.ws_connect(
                    url, headers=self._auth_headers, heartbeat=self._heartbeat_s, autoping=True
                )
        except aiohttp.WSServerHandshakeError as exc:
            self.stats.connect_failures += 1
            if exc.status == 401:
                self.stats.auth_failures += 1
                failure: PbxError = PbxAuthError(
                    f"ARI events websocket: 401 credentials of user {self.settings.username!r}"
                    " rejected"
                )
                logger.error("%s", failure)
            else:
                failure = PbxConnectionError(
                    f"ARI events websocket handshake refused: {exc.status} {exc.message}"
                )
                logger.warning("%s", failure)
            self._last_failure = failure
            self.stats.last_error = str(failure)
            return None
        except (aiohttp.ClientError, OSError) as exc:
            self.stats.connect_failures += 1
            failure = PbxConnectionError(
                f"ARI events websocket {self._log_base}: {exc or type(exc).__name__}"
            )
            self._last_failure = failure
            self.stats.last_error = str(failure)
            logger.warning("%s", failure)
            return None
        return ws

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self.stats.connects += 1
        self._last_failure = None
        self._app_owned = True  # a new websocket registers the app to us
        self._connected.set()
        if self._app_lost:
            self._app_lost = False
            self.stats.app_regained += 1
            logger.warning("ARI application %r regained; resynchronising", self.settings.app)
        logger.info(
            "ARI events websocket connected to %s (app=%s, subscribeAll=%s)",
            self._log_base,
            self.settings.app,
            self.settings.subscribe_all,
        )
        if self.on_connected is not None:
            try:
                await self.on_connected()
            except Exception:
                self.stats.handler_errors += 1
                logger.exception("ARI on_connected callback failed")
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                self._handle_text(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                self.stats.frames += 1
                self.stats.malformed_frames += 1
                logger.warning("ARI events: dropped a binary frame (%d bytes)", len(msg.data))
            elif msg.type is aiohttp.WSMsgType.ERROR:
                logger.warning("ARI events websocket error: %s", ws.exception())
                break

    def _handle_text(self, text: str) -> None:
        self.stats.frames += 1
        try:
            obj = json.loads(text)
            event = parse_event(obj)
        except (ValueError, RecursionError, AriProtocolError) as exc:
            self.stats.malformed_frames += 1
            count = self.stats.malformed_frames
            # The first few in full, then one line per 1000: a flood must not flood the log.
            level = logging.WARNING if count <= 10 or count % 1000 == 0 else logging.DEBUG
            logger.log(level, "ARI events: dropped malformed frame #%d: %s", count, str(exc)[:200])
            return
        self.stats.events += 1
        if event.type == "ApplicationReplaced":
            self._app_replaced(event.application)
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                self.stats.handler_errors += 1
                logger.exception("ARI on_event callback failed for %s", event.type)

    def _app_replaced(self, app: str) -> None:
        """``ApplicationReplaced``: no more events here; wait for the app to be free."""
        if self._app_lost:
            return  # a repeated event
        self._app_owned = False
        self._app_lost = True
        self.stats.app_lost += 1
        self.stats.last_error = f"ARI application {app or self.settings.app!r} taken over"
        logger.error(
            "ARI application %r was taken over by another websocket (a second Earpiece or "
            "another ARI client with the same app?): no events, media forks, transcripts or "
            "AMD verdicts until it is free again; checking every %g s",
            app or self.settings.app,
            self.app_poll_s,
        )
        ws = self._ws
        if ws is None or (self._watch is not None and not self._watch.done()):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._watch = loop.create_task(self._regain_when_free(ws), name="ari-app-regain")

    async def _wait_app_free(self) -> None:
        """Return once no websocket holds our app (404), asking every ``app_poll_s``."""
        while not self._closing:
            try:
                if not await self.app_taken():
                    return
            except PbxError as exc:
                logger.debug("ARI application %r check failed: %s", self.settings.app, exc)
            await asyncio.sleep(self.app_poll_s)

    async def _regain_when_free(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await self._wait_app_free()
        if self._closing or ws.closed:
            return
        self._regain_now = True
        await ws.close()  # ends _serve; _run_events reconnects at once

    async def _stop_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None and not watch.done() and watch is not asyncio.current_task():
            watch.cancel()
            await asyncio.wait([watch])

    def dispatch_text(self, text: str) -> None:
        """Handle one websocket text frame as if received (counted like a real frame)."""
        self._handle_text(text)


def _error_message(text: str) -> str:
    """The ``message`` of Asterisk's JSON error body, else the start of the body."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, Mapping):
        message = obj.get("message")
        if isinstance(message, str):
            return message
    snippet = " ".join(text.split())[:200]
    return snippet or "(empty body)"
