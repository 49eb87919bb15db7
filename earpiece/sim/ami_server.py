"""Asterisk Manager Interface server of the simulator (asyncio TCP).

Speaks the AMI of Asterisk 22 as recorded in ``shared/asterisk/captures``: the
``Asterisk Call Manager/11.0.0`` banner, Login/Logoff/Ping/Command/Originate/Hangup/
CoreShowChannels/MessageSend/SendText/Getvar/Setvar/Events/ListCommands, the exact error
messages, and the engine's events to every session logged in with events on. Each session has
one outgoing queue so responses and events keep their order.

Permissions as manager.conf sets them (:class:`~earpiece.sim.scenario.AmiUser`, default the
shipped least-privilege user, :mod:`earpiece.agi.ami_permissions`): an event reaches a session
only when the user's read classes (and the session's ``Events:`` mask) hold every class of its
``Privilege``; an action none of whose classes the user's write classes hold is answered
``Response: Error`` / ``Message: Permission denied``, as Asterisk 22 does (``ami_permissions``
capture); ``ListCommands`` lists only the actions the user may run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from earpiece.agi.ami_message import AmiFramer, AmiMessage
from earpiece.agi.ami_permissions import (
    ACTION_CLASSES,
    ALL,
    CLASSES,
    action_allowed,
    event_allowed,
    priv_text,
)
from earpiece.sim.ami_commands import SYNOPSIS
from earpiece.sim.engine import Engine, OriginateRequest, parse_callerid
from earpiece.sim.faults import Faults
from earpiece.sim.model import wall_ts
from earpiece.sim.scenario import AmiUser, Credentials

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
VERSION_LINE = ("Asterisk 22.10.1 built by root @ vm on a x86_64 running Linux on "
                "2026-11-23 14:44:11 UTC")


def _response(action: AmiMessage, response: str, *rest: tuple[str, str]) -> AmiMessage:
    headers: list[tuple[str, str]] = [("Response", response)]
    if action.action_id is not None:
        headers.append(("ActionID", action.action_id))
    headers.extend(rest)
    return AmiMessage(tuple(headers))


class AmiSession:
    def __init__(self, server: AmiServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.framer = AmiFramer(expect_banner=False)
        self.logged_in = False
        self.events_on = False
        self.user: AmiUser | None = None
        self.event_mask: frozenset[str] = frozenset({ALL})  # the session's Events: mask
        self.queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()
        self.closed = False
        self.events_sent = 0
        self.session_id = f"0x{id(self) & 0xFFFFFFFFFFFF:x}"
        peer = writer.get_extra_info("peername") or ("127.0.0.1", 0)
        sock = writer.get_extra_info("sockname") or ("127.0.0.1", 0)
        self.remote = f"IPV4/TCP/{peer[0]}/{peer[1]}"
        self.local = f"IPV4/TCP/{sock[0]}/{sock[1]}"

    def send(self, msg: AmiMessage | bytes, kind: str = "response") -> None:
        if self.closed:
            return
        self.queue.put_nowait((kind, msg if isinstance(msg, bytes) else bytes(msg)))

    def wants(self, privilege: str) -> bool:
        """Would Asterisk send this session an event with this ``Privilege``?"""
        return (self.logged_in and self.events_on and self.user is not None
                and event_allowed(privilege, self.user.read)
                and event_allowed(privilege, self.event_mask))

    def event(self, msg: AmiMessage) -> None:
        if self.closed or not self.wants(msg.get("Privilege") or ""):
            return
        self.send(msg, "event")
        self.events_sent += 1
        every = self.server.faults.ami_malformed_every
        if every and self.events_sent % every == 0:
            self.send(self.server.faults.malformed_ami(self.events_sent // every), "event")

    async def run(self) -> None:
        writer_task = asyncio.get_running_loop().create_task(self._write_loop())
        try:
            self.writer.write(BANNER)
            while not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    break
                for item in self.framer.feed(data):
                    if isinstance(item, AmiMessage):
                        await self.handle(item)
                    if self.closed:
                        break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.close()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await writer_task

    async def _write_loop(self) -> None:
        faults = self.server.faults
        try:
            while True:
                item = await self.queue.get()
                if item is None:
                    break
                kind, data = item
                delay = faults.ami_event_delay_s if kind == "event" else \
                    faults.ami_response_delay_s
                if delay > 0:
                    await asyncio.sleep(delay)
                self.writer.write(data)
                await self.writer.drain()
        except ConnectionError:
            pass
        finally:
            self.writer.close()
            with contextlib.suppress(ConnectionError):
                await self.writer.wait_closed()

    def close(self) -> None:
        """Flush what is queued, then close."""
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)
            self.server.sessions.discard(self)

    def abort(self) -> None:
        """Drop the TCP connection at once (fault injection / listener restart)."""
        self.closed = True
        self.server.sessions.discard(self)
        transport = self.writer.transport
        transport.abort()
        self.queue.put_nowait(None)

    # --- actions ---------------------------------------------------------------------------
    async def handle(self, msg: AmiMessage) -> None:
        name = (msg.action_name or "").strip()
        key = name.lower()
        if key == "login":
            await self._login(msg)
            return
        if key == "logoff":
            self.send(_response(msg, "Goodbye", ("Message", "Thanks for all the fish.")))
            self.close()
            return
        if not self.logged_in:
            self.send(_response(msg, "Error", ("Message", "Permission denied")))
            return
        known = _ACTIONS.get(key)
        if known is not None and self.user is not None \
                and not action_allowed(known, self.user.write):
            self.send(_response(msg, "Error", ("Message", "Permission denied")))
            return
        handler = self.server.handlers.get(key)
        if handler is None:
            self.send(_response(msg, "Error", (
                "Message", f"Invalid/unknown command: {name}. Use Action: ListCommands to show "
                "available commands.")))
            self._security_event("RequestBadFormat", "Error", [
                ("RequestType", f"Action: {name}"),
            ])
            return
        handler(self, msg)

    async def _login(self, msg: AmiMessage) -> None:
        user = self.server.credentials.ami_user(msg.get("Username"))
        if user is not None and msg.get("Secret") == user.secret:
            self.logged_in = True
            self.user = user
            self.set_event_mask(msg.get("Events") or "on")
            self.send(_response(msg, "Success", ("Message", "Authentication accepted")))
            uptime = int(time.monotonic() - self.server.started)
            # only to users that read system (manager.c), and only once booted
            if self.wants("system,all") and self.server.engine.fully_booted:
                self.send(AmiMessage((("Event", "FullyBooted"), ("Privilege", "system,all"),
                                      ("Uptime", str(uptime)),
                                      ("LastReload", str(int(time.monotonic()
                                                             - self.server.reloaded))),
                                      ("Status", "Fully Booted"))), "event")
            self._security_event("SuccessfulAuth", "Informational",
                                 [("UsingPassword", "0")], account_first=True)
            return
        await asyncio.sleep(self.server.auth_fail_delay_s)
        self.send(_response(msg, "Error", ("Message", "Authentication failed")))
        self.close()

    def set_event_mask(self, value: str) -> bool:
        """``Events:``/``EventMask:`` on, off or a class list; True when events flow."""
        mask = value.strip().lower()
        if mask in ("on", "yes", "true", "1"):
            self.event_mask = frozenset({ALL})
        elif mask in ("off", "no", "false", "none", "0", ""):
            self.event_mask = frozenset()
        else:
            self.event_mask = frozenset(p.strip() for p in mask.split(",")
                                        if p.strip() in (*CLASSES, ALL))
        self.events_on = bool(self.event_mask)
        return self.events_on

    def _security_event(self, name: str, severity: str, extra: list[tuple[str, str]],
                        *, account_first: bool = False) -> None:
        if not self.wants("security,all"):
            return
        now = wall_ts()
        account = self.user.username if self.user is not None else \
            self.server.credentials.ami_username
        headers: list[tuple[str, str]] = [
            ("Event", name), ("Privilege", "security,all"), ("EventTV", now),
            ("Severity", severity), ("Service", "AMI"), ("EventVersion", "1")]
        if account_first:
            headers.append(("AccountID", account))
        headers += [("SessionID", self.session_id), ("LocalAddress", self.local),
                    ("RemoteAddress", self.remote)]
        if account_first:
            headers += [*extra, ("SessionTV", now)]
        else:
            headers += [*extra, ("SessionTV", now),
                        ("AccountID", account)]
        self.send(AmiMessage(tuple(headers)), "event")


Handler = Callable[[AmiSession, AmiMessage], None]


class AmiServer:
    """Listens on ``host:port``; ``port=0`` picks a free port (see :attr:`port`)."""

    def __init__(self, engine: Engine, credentials: Credentials, *, host: str = "127.0.0.1",
                 port: int = 0, faults: Faults | None = None,
                 auth_fail_delay_s: float = 1.0) -> None:
        self.engine = engine
        self.credentials = credentials
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.auth_fail_delay_s = auth_fail_delay_s
        self.sessions: set[AmiSession] = set()
        self.started = time.monotonic()
        self.reloaded = time.monotonic()
        self._server: asyncio.base_events.Server | None = None
        self._session_tasks: set[asyncio.Task[None]] = set()
        self.handlers: dict[str, Handler] = {
            "ping": _ping, "command": _command, "originate": _originate, "hangup": _hangup,
            "coreshowchannels": _core_show_channels, "messagesend": _message_send,
            "sendtext": _send_text, "events": _events, "getvar": _getvar, "setvar": _setvar,
            "listcommands": _list_commands,
        }
        engine.ami_listeners.append(self._on_event)

    def _on_event(self, msg: AmiMessage) -> None:
        for session in list(self.sessions):
            session.event(msg)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port,
                                                  reuse_address=True)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("AMI listening on %s:%d", self.host, self.port)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = AmiSession(self, reader, writer)
        self.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._session_tasks.add(task)
        try:
            await session.run()
        finally:
            if task is not None:
                self._session_tasks.discard(task)

    def drop_connections(self) -> int:
        sessions = list(self.sessions)
        for session in sessions:
            session.abort()
        return len(sessions)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections()
        tasks = list(self._session_tasks)
        if tasks:
            # aborted transports end the sessions by themselves; cancelling a
            # client_connected_cb task would make asyncio log a spurious error
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def restart(self, delay_s: float = 0.5) -> None:
        """Like ``manager reload`` with a bounce: clients are cut, the port stops listening,
        then listens again on the same port. Live calls are untouched."""
        await self.stop()
        await asyncio.sleep(delay_s)
        self.reloaded = time.monotonic()
        await self.start()

    @property
    def listening(self) -> bool:
        return self._server is not None


# --- action handlers -----------------------------------------------------------------------

#: Asterisk's actions by lower-case name (Asterisk matches action names case-insensitively).
_ACTIONS = {name.lower(): name for name in ACTION_CLASSES}


def _list_commands(s: AmiSession, msg: AmiMessage) -> None:
    """Every action of Asterisk 22.10.1 the user may run (not only those simulated here)."""
    write = s.user.write if s.user is not None else frozenset()
    s.send(_response(msg, "Success", *[
        (name, f"{text}  (Priv: {priv_text(ACTION_CLASSES[name])})")
        for name, text in SYNOPSIS if action_allowed(name, write)]))


def _ping(s: AmiSession, msg: AmiMessage) -> None:
    s.send(_response(msg, "Success", ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")))


def _command(s: AmiSession, msg: AmiMessage) -> None:
    cmd = " ".join((msg.get("Command") or "").split())
    engine = s.server.engine
    if cmd == "core show version":
        lines = [VERSION_LINE]
    elif cmd in ("core show channels", "core show channels concise"):
        chans = engine.channels()
        if cmd.endswith("concise"):
            lines = [f"{c.name}!{c.context}!{c.exten}!{c.priority}!{c.state_desc}!{c.app}!"
                     f"{c.app_data}!{c.caller_num}!!!3!{c.duration()}!!{c.id}" for c in chans]
        else:
            lines = ["Channel              Location             State   Application(Data)"]
            for c in chans:
                loc = f"{c.exten}@{c.context}:{c.priority}"
                lines.append(f"{c.name[:20]:<20} {loc[:20]:<20} {c.state_desc:<7} "
                             f"{c.app}({c.app_data})"[:80])
            calls = sum(1 for call in engine.calls if not call.ended and call.customer)
            lines += [f"{len(chans)} active channel{'s' if len(chans) != 1 else ''}",
                      f"{calls} active call{'s' if calls != 1 else ''}",
                      f"{len(engine.calls)} call{'s' if len(engine.calls) != 1 else ''} "
                      "processed"]
    else:
        s.send(_response(msg, "Error", ("Message", "Command output follows"), (
            "Output", f"No such command '{cmd}' (type 'core show help {cmd}' for other "
            "possible commands)")))
        return
    s.send(_response(msg, "Success", ("Message", "Command output follows"),
                     *[("Output", line) for line in lines]))


def _originate(s: AmiSession, msg: AmiMessage) -> None:
    channel = msg.get("Channel")
    if not channel:
        s.send(_response(msg, "Error", ("Message", "Channel not specified")))
        return
    application = msg.get("Application") or ""
    exten = msg.get("Exten") or ""
    if not application and not exten:
        s.send(_response(msg, "Error", ("Message", "Exten not specified")))
        return
    try:
        timeout_ms = int(msg.get("Timeout") or "30000")
        priority = int(msg.get("Priority") or "1")
    except ValueError:
        s.send(_response(msg, "Error", ("Message", "Invalid timeout")))
        return
    name, num = parse_callerid(msg.get("CallerID") or "")
    variables: list[tuple[str, str]] = []
    for item in msg.get_all("Variable"):
        for part in item.split(","):
            k, sep, v = part.partition("=")
            if sep and k:
                variables.append((k.strip(), v))
    req = OriginateRequest(
        channel=channel, context=msg.get("Context") or "default", exten=exten,
        priority=priority, application=application, data=msg.get("Data") or "",
        callerid_name=name, callerid_num=num, timeout_ms=timeout_ms, variables=variables,
        action_id=msg.action_id, source="ami",
        is_async=(msg.get("Async") or "").lower() in ("true", "yes", "1", "on"))
    is_async = req.is_async
    done = s.server.engine.originate(req)
    if is_async:
        s.send(_response(msg, "Success", ("Message", "Originate successfully queued")))
        return

    def answered(fut: asyncio.Future[bool]) -> None:
        if fut.result():
            s.send(_response(msg, "Success", ("Message", "Originate successfully queued")))
        else:
            s.send(_response(msg, "Error", ("Message", "Originate failed")))

    done.add_done_callback(answered)


def _hangup(s: AmiSession, msg: AmiMessage) -> None:
    name = msg.get("Channel")
    if not name:
        s.send(_response(msg, "Error", ("Message", "No channel specified")))
        return
    ch = s.server.engine.channel(name)
    if ch is None or ch.name != name:
        s.send(_response(msg, "Error", ("Message", "No such channel")))
        return
    try:
        cause = int(msg.get("Cause") or "0")
    except ValueError:
        s.send(_response(msg, "Error", ("Message", "Invalid cause")))
        return
    s.send(_response(msg, "Success", ("Message", "Channel Hungup")))
    s.server.engine.hangup_channel(ch, cause)


def _core_show_channels(s: AmiSession, msg: AmiMessage) -> None:
    s.send(_response(msg, "Success", ("EventList", "start"),
                     ("Message", "Channels will follow")))
    chans = sorted(s.server.engine.channels(), key=lambda c: c.created_mono, reverse=True)
    aid = [("ActionID", msg.action_id)] if msg.action_id is not None else []
    for ch in chans:
        s.send(AmiMessage((("Event", "CoreShowChannel"), *aid, *ch.ami_block(),
                           ("Application", ch.app), ("ApplicationData", ch.app_data),
                           ("Duration", ch.duration()),
                           ("BridgeId", ch.bridge.id if ch.bridge is not None else ""))))
    s.send(AmiMessage((("Event", "CoreShowChannelsComplete"), *aid,
                       ("EventList", "Complete"), ("ListItems", str(len(chans))))))


def _message_send(s: AmiSession, msg: AmiMessage) -> None:
    to = msg.get("To") or ""
    if not to:
        s.send(_response(msg, "Error", ("Message", "No 'To' address specified.")))
        return
    tech = to.partition(":")[0].lower()
    if tech != "pjsip":
        s.send(_response(msg, "Error", ("Message", "Message technology not found.")))
        return
    content_type = msg.variables().get("Content-Type", "text/plain")
    ok = s.server.engine.message_send(to, msg.get("From") or "", msg.get("Body") or "",
                                      content_type)
    if ok:
        s.send(_response(msg, "Success", ("Message", "Message successfully sent")))
    else:
        s.send(_response(msg, "Error", ("Message", "Message failed to send.")))


def _send_text(s: AmiSession, msg: AmiMessage) -> None:
    name = msg.get("Channel") or ""
    ch = s.server.engine.channel(name)
    if ch is None or ch.name != name:
        s.send(_response(msg, "Error", ("Message", "No such channel")))
        return
    text = msg.get("Message")
    if text is None:
        s.send(_response(msg, "Error", ("Message", "No Message specified")))
        return
    s.server.engine.texts.append((ch.name, text))
    s.send(_response(msg, "Success", ("Message", "Success")))


def _events(s: AmiSession, msg: AmiMessage) -> None:
    on = s.set_event_mask(msg.get("EventMask") or "on")
    s.send(_response(msg, "Success", ("Events", "On" if on else "Off")))


def _getvar(s: AmiSession, msg: AmiMessage) -> None:
    var = msg.get("Variable") or ""
    if not var:
        s.send(_response(msg, "Error", ("Message", "No variable specified")))
        return
    name = msg.get("Channel")
    value = ""
    if name:
        ch = s.server.engine.channel(name)
        if ch is None:
            s.send(_response(msg, "Error", ("Message", "No such channel")))
            return
        value = ch.variables.get(var, "")
    s.send(_response(msg, "Success", ("Variable", var), ("Value", value)))


def _setvar(s: AmiSession, msg: AmiMessage) -> None:
    var = msg.get("Variable") or ""
    if not var:
        s.send(_response(msg, "Error", ("Message", "No variable specified")))
        return
    ch = s.server.engine.channel(msg.get("Channel") or "")
    if ch is None:
        s.send(_response(msg, "Error", ("Message", "No such channel")))
        return
    s.server.engine.set_var(ch, var, msg.get("Value") or "")
    s.send(_response(msg, "Success", ("Message", "Variable Set")))
