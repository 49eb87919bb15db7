"""A whole-PBX restart of the simulator (``core restart now`` / ``core restart gracefully``), as
in ``shared/asterisk/captures/faults/{ami,ari}/core_restart*``: the calls end, AMI gets
``Event: Shutdown`` and a TCP close without ``Response``/``Goodbye``, the ARI websockets are cut
(no close frame after ``now``; close frame 1000 after ``gracefully``), both ports refuse
connections, ARI answers 404 (HTML) and then 503 ``Asterisk not booted`` while booting, AMI
accepts logins before ``FullyBooted``, and the fresh process numbers channels from
``-00000000`` and Uniqueids from ``<epoch>.0``. The listeners keep their ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable

from earpiece.agi.ami_message import AmiMessage
from earpiece.sim import shutdown
from earpiece.sim.ami_server import AmiServer, AmiSession
from earpiece.sim.ari_server import AriServer
from earpiece.sim.engine import Engine
from earpiece.sim.faults import RestartPlan

log = logging.getLogger(__name__)

NOT_FOUND_HTML = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n<html><head>\r\n'
    "<title>404 Not Found</title>\r\n</head><body>\r\n<h1>Not Found</h1>\r\n"
    "<p>The requested URL was not found on this server.</p>\r\n<hr />\r\n"
    "<address>Asterisk/22.10.1</address>\r\n</body></html>\r\n")
NOT_BOOTED_JSON = '{"message":"Asterisk not booted"}'
SHUTTING_DOWN = "Asterisk is shutting down"


def http_date() -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())


def not_found_response() -> bytes:
    """The 404 every ARI request got while the HTTP server ran but ARI was not loaded."""
    body = NOT_FOUND_HTML.encode()
    return (f"HTTP/1.1 404 Not Found\r\nServer: Asterisk/22.10.1\r\nDate: {http_date()}\r\n"
            "Cache-Control: no-cache, no-store\r\nContent-type: text/html\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def not_booted_response() -> bytes:
    body = NOT_BOOTED_JSON.encode()
    return (f"HTTP/1.1 503 Service Unavailable\r\nServer: Asterisk/22.10.1\r\n"
            f"Date: {http_date()}\r\nConnection: close\r\nCache-Control: no-cache, no-store\r\n"
            f"Content-type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


class BootingHttp:
    """The HTTP port while Asterisk boots: every request gets the 404 page, then the 503."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.mode = "not_found"
        self._server: asyncio.base_events.Server | None = None
        self._sock: socket.socket | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._sock = socket.create_server((self.host, self.port))
        self._server = await asyncio.start_server(self._serve, sock=self._sock)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5.0)
            writer.write(not_found_response() if self.mode == "not_found"
                         else not_booted_response())
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def hand_over(self) -> socket.socket:
        """Stop accepting and hand the listening socket (a duplicate) to ARI: connections that
        arrive meanwhile wait in its backlog instead of being refused."""
        assert self._server is not None and self._sock is not None
        listener = self._sock.dup()
        self._server.close()
        return listener

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None


class PbxRestart:
    """Runs :class:`~earpiece.sim.faults.RestartPlan` s against one simulator's parts."""

    def __init__(self, engine: Engine, ami: AmiServer, ari: AriServer) -> None:
        self.engine = engine
        self.ami = ami
        self.ari = ari
        self.state = "up"  # up | shutting_down | down | not_found | not_booted
        self.restarts = 0
        self._booting: BootingHttp | None = None
        self._originate: Callable[[AmiSession, AmiMessage], None] | None = None

    async def run(self, plan: RestartPlan) -> None:
        e = self.engine
        e.shutting_down = True
        self.state = "shutting_down"
        self._refuse_originate()
        try:
            if plan.graceful:
                while True:  # until the last call has ended by itself
                    if not e.channels():
                        break
                    await asyncio.sleep(0.005)
            else:
                shutdown.cancel_call_tasks(e)
                await asyncio.sleep(plan.hangup_after_s)
                shutdown.hangup_all(e)
            await asyncio.sleep(plan.shutdown_after_s)
            e.ami("Shutdown", "system", [("Shutdown", "Cleanly"), ("Restart", "True")])
            if plan.graceful:
                await self._close_websockets()
            await asyncio.sleep(plan.ami_close_after_s)
            await self._close_ami()
            if not plan.graceful:
                await asyncio.sleep(max(0.0, plan.ari_close_after_s - plan.ami_close_after_s))
                self.ari.drop_connections()  # TCP close, no close frame
            await self.ari.stop()
            shutdown.reset(e)
            self.state = "down"
            await asyncio.sleep(plan.down)
            await self._boot(plan)
        finally:
            await self._stop_booting()
            self._allow_originate()
            e.shutting_down = False
            e.fully_booted = True
            self.state = "up" if self.ari.listening else self.state

    async def stop(self) -> None:
        await self._stop_booting()

    # --- phases ----------------------------------------------------------------------------
    async def _close_websockets(self) -> None:
        """``core restart gracefully``: a close frame 1000 (empty reason), then TCP close."""
        for sock in list(self.ari.sockets):
            sock.queue.put_nowait(None)  # the writer closes the websocket (code 1000)
        for _ in range(100):
            if not self.ari.sockets:
                break
            await asyncio.sleep(0.005)

    async def _close_ami(self) -> None:
        """Queued events are flushed, then FIN; no ``Response``/``Goodbye``."""
        for session in list(self.ami.sessions):
            session.close()
        await self.ami.stop()

    async def _boot(self, plan: RestartPlan) -> None:
        e = self.engine
        e.fully_booted = False
        if plan.not_found > 0 or plan.not_booted > 0:
            self._booting = BootingHttp(self.ari.host, self.ari.port)
            await self._booting.start()
            if plan.not_found > 0:
                self.state = "not_found"
                await asyncio.sleep(plan.not_found)
            self._booting.mode = "not_booted"
            self.state = "not_booted"
            await self._start_ami()
            await asyncio.sleep(plan.not_booted)
            # hand the listening socket itself to ARI: no refusal between the 503 and the 101
            await self.ari.start(sock=self._booting.hand_over())
            await self._stop_booting()
        else:
            await self._start_ami()
            await self.ari.start()
        self._allow_originate()
        e.shutting_down = False
        e.fully_booted = True
        self.restarts += 1
        self.state = "up"
        if plan.contact_status:
            self._contact_status()
        e.ami("FullyBooted", "system", [("Status", "Fully Booted"), ("Uptime", "0"),
                                        ("LastReload", "0")])

    async def _start_ami(self) -> None:
        self.ami.started = self.ami.reloaded = time.monotonic()
        await self.ami.start()

    def _contact_status(self) -> None:
        """The registered phones' contacts, restored from the database at boot."""
        for i, ep in enumerate(self.engine.scenario.endpoints):
            if not ep.registered:
                continue
            self.engine.ami("ContactStatus", "system", [
                ("URI", f"sip:{ep.name}@{self.engine.host}:{5091 + i};ob"),
                ("ContactStatus", "NonQualified"), ("AOR", ep.name), ("EndpointName", ep.name),
                ("RoundtripUsec", "0")])

    async def _stop_booting(self) -> None:
        if self._booting is not None:
            booting, self._booting = self._booting, None
            await booting.stop()

    # --- AMI Originate while shutting down -------------------------------------------------
    def _refuse_originate(self) -> None:
        if self._originate is not None:
            return
        self._originate = self.ami.handlers.get("originate")

        def refuse(s: AmiSession, msg: AmiMessage) -> None:
            headers: list[tuple[str, str]] = [("Response", "Error")]
            if msg.action_id is not None:
                headers.append(("ActionID", msg.action_id))
            headers.append(("Message", SHUTTING_DOWN))
            s.send(AmiMessage(tuple(headers)))

        self.ami.handlers["originate"] = refuse

    def _allow_originate(self) -> None:
        if self._originate is None:
            return
        self.ami.handlers["originate"], self._originate = self._originate, None
