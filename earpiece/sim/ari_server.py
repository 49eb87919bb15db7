"""Asterisk REST Interface server of the simulator (aiohttp): REST resources and the events
websocket, with the status codes, reasons and ``{"message": ...}`` bodies of
``shared/asterisk/captures/ari/errors_http.jsonl`` and compact JSON (``pretty = no``).

Event routing follows Asterisk: a websocket for ``app=X`` gets the events of channels in
Stasis for X, of channels and bridges X created (originate with ``app``, externalMedia,
``POST /bridges``), and, with ``subscribeAll=true``, every channel, bridge and device-state
event. Snoop channels and channels that entered Stasis from the dialplan lose the
subscription at ``StasisEnd`` (so no ``ChannelDestroyed`` for them on a plain subscription).
Each app's events go to the websocket that holds it, the newest one that asked for it
(:mod:`earpiece.sim.ari_apps`: ``ApplicationReplaced``, and channels sent to an app without a
websocket hang up at once).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from earpiece.sim.ari_apps import AppOwners, EventSocket, dumps, vanish
from earpiece.sim.engine import Engine, OriginateRequest, parse_callerid
from earpiece.sim.faults import Faults
from earpiece.sim.model import UP, Channel, wall_ts
from earpiece.sim.rtp_sender import FORMATS, parse_host_port
from earpiece.sim.scenario import Credentials

log = logging.getLogger(__name__)

SERVER = "Asterisk/22.10.1"
CAUSES = {"normal": 16, "busy": 17, "congestion": 34, "no_answer": 19, "timeout": 19,
          "rejected": 21, "unallocated": 1, "answered_elsewhere": 26}
MISSING_APP_HTML = (
    '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\r\n<html><head>\r\n'
    "<title>400 Bad Request</title>\r\n</head><body>\r\n<h1>Bad Request</h1>\r\n"
    "<p>HTTP request is missing param: [app]</p>\r\n<hr />\r\n"
    "<address>Asterisk/22.10.1</address>\r\n</body></html>\r\n")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(obj: Any, status: int = 200, reason: str | None = None,
                  headers: dict[str, str] | None = None) -> web.Response:
    hdrs = {"Cache-Control": "no-cache, no-store", "Content-Type": "application/json"}
    if headers:
        hdrs.update(headers)
    return web.Response(body=dumps(obj).encode(), status=status, reason=reason, headers=hdrs)


def error(status: int, message: str, reason: str | None = None) -> web.Response:
    return json_response({"message": message}, status, reason)


def no_content() -> web.Response:
    return web.Response(status=204, headers={"Cache-Control": "no-cache, no-store"})


class AriServer:
    def __init__(self, engine: Engine, credentials: Credentials, *, host: str = "127.0.0.1",
                 port: int = 0, faults: Faults | None = None) -> None:
        self.engine = engine
        self.credentials = credentials
        self.host = host
        self.port = port
        self.faults = faults or Faults()
        self.sockets: set[EventSocket] = set()
        self.owners = AppOwners(engine.asterisk_id)
        self._runner: web.AppRunner | None = None
        self._site: web.BaseSite | None = None
        self._ws_tasks: set[asyncio.Task[Any]] = set()
        engine.ari_listeners.append(self._on_event)

    # --- lifecycle -------------------------------------------------------------------------
    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/ari/asterisk/info", self.asterisk_info)
        r.add_get("/ari/asterisk/ping", self.asterisk_ping)
        r.add_get("/ari/applications", self.applications)
        r.add_get("/ari/applications/{name}", self.application)
        r.add_get("/ari/channels", self.list_channels)
        r.add_post("/ari/channels", self.originate)
        r.add_post("/ari/channels/externalMedia", self.external_media)
        r.add_get("/ari/channels/{id}", self.get_channel)
        r.add_delete("/ari/channels/{id}", self.hangup)
        r.add_post("/ari/channels/{id}/answer", self.answer)
        r.add_post("/ari/channels/{id}/snoop", self.snoop)
        r.add_post("/ari/channels/{id}/play", self.play)
        r.add_post("/ari/channels/{id}/dtmf", self.dtmf)
        r.add_get("/ari/channels/{id}/variable", self.get_variable)
        r.add_post("/ari/channels/{id}/variable", self.set_variable)
        r.add_get("/ari/bridges", self.list_bridges)
        r.add_post("/ari/bridges", self.create_bridge)
        r.add_get("/ari/bridges/{id}", self.get_bridge)
        r.add_delete("/ari/bridges/{id}", self.delete_bridge)
        r.add_post("/ari/bridges/{id}/addChannel", self.add_channel)
        r.add_post("/ari/bridges/{id}/removeChannel", self.remove_channel)
        r.add_get("/ari/playbacks/{id}", self.get_playback)
        r.add_get("/ari/events", self.events)
        app.on_response_prepare.append(self._server_header)
        return app

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on host:port, or on ``sock``, a listening socket handed over (the boot stub's:
        connections waiting in its backlog are served, none is refused)."""
        self._runner = web.AppRunner(self.make_app(), access_log=None,
                                     handle_signals=False)
        await self._runner.setup()
        site: web.BaseSite = (
            web.SockSite(self._runner, sock) if sock is not None
            else web.TCPSite(self._runner, self.host, self.port, reuse_address=True))
        self._site = site
        await site.start()
        server = site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            if sockets:
                self.port = sockets[0].getsockname()[1]
        log.info("ARI listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        self.drop_connections()
        for task in list(self._ws_tasks):
            task.cancel()
        for task in list(self._ws_tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def restart(self, delay_s: float = 0.5) -> None:
        """Like an HTTP server restart: sockets cut, port closed, then listening again."""
        await self.stop()
        await asyncio.sleep(delay_s)
        await self.start()

    def drop_connections(self) -> int:
        n = 0
        for sock in list(self.sockets):
            n += 1
            self.sockets.discard(sock)
            self.owners.unregister(sock)
            if isinstance(sock.transport, asyncio.Transport):
                sock.transport.abort()
            sock.queue.put_nowait(None)
        return n

    @property
    def listening(self) -> bool:
        return self._runner is not None

    async def send_raw_all(self, frames: list[str]) -> None:
        for sock in list(self.sockets):
            for frame in frames:
                sock.queue.put_nowait(frame)

    # --- plumbing --------------------------------------------------------------------------
    async def _server_header(self, request: web.Request, response: web.StreamResponse) -> None:
        if isinstance(response, web.WebSocketResponse):
            # the recorded 101 carries exactly Upgrade, Connection and Sec-WebSocket-Accept
            response.headers["Connection"] = "Upgrade"
            response.headers.popall("Server", None)
            response.headers.popall("Date", None)
            return
        response.headers["Server"] = SERVER

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self._authorized(request):
            return json_response({"message": "Authentication required"}, 401,
                                 headers={"WWW-Authenticate":
                                          'Basic realm="Asterisk REST Interface"'})
        delay = self.faults.ari_response_delay_s
        if delay > 0 and request.path != "/ari/events":
            await asyncio.sleep(delay)
        try:
            return await handler(request)
        except web.HTTPNotFound:
            return error(404, "Resource not found")
        except web.HTTPMethodNotAllowed:
            return error(405, "Invalid method")

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        user = password = None
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return False
            user, _, password = decoded.partition(":")
        elif "api_key" in request.query:
            user, _, password = request.query["api_key"].partition(":")
        return (user == self.credentials.ari_username
                and password == self.credentials.ari_password)

    async def _params(self, request: web.Request) -> tuple[dict[str, str], dict[str, str]]:
        """Query parameters merged with a JSON body; returns (params, variables)."""
        params = dict(request.query)
        variables: dict[str, str] = {}
        if request.can_read_body:
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                body = None
            if isinstance(body, dict):
                for key, value in body.items():
                    if key == "variables" and isinstance(value, dict):
                        variables = {str(k): str(v) for k, v in value.items()}
                    elif not isinstance(value, dict | list):
                        params.setdefault(key, str(value).lower()
                                          if isinstance(value, bool) else str(value))
        return params, variables

    def _on_event(self, event: dict[str, Any], apps: set[str]) -> None:
        for sock in list(self.sockets):
            for app in sock.apps:
                if not self.owners.owns(sock, app):
                    continue  # replaced by a newer websocket: silent
                if not (sock.subscribe_all or app in apps):
                    continue
                if event["type"] == "DeviceStateChanged":
                    if not sock.subscribe_all:
                        continue
                    payload = {"type": event["type"], "application": app,
                               "timestamp": event["timestamp"],
                               "device_state": event["device_state"],
                               "asterisk_id": self.engine.asterisk_id}
                else:
                    payload = {**event, "asterisk_id": self.engine.asterisk_id,
                               "application": app}
                sock.queue.put_nowait(dumps(payload))
                sock.sent += 1
                every = self.faults.ari_malformed_every
                if every and sock.sent % every == 0:
                    sock.queue.put_nowait(self.faults.malformed_ari(sock.sent // every))

    def _channel(self, request: web.Request) -> Channel | None:
        return self.engine.channel(request.match_info["id"])

    # --- asterisk / applications -----------------------------------------------------------
    async def asterisk_info(self, request: web.Request) -> web.Response:
        start = wall_ts(self.engine.started_wall)
        return json_response({
            "build": {"os": "Linux", "kernel": "6.18.44-fc-v657", "machine": "x86_64",
                      "options": "OPTIONAL_API", "date": "2026-11-23 14:44:11 UTC",
                      "user": "root"},
            "system": {"version": "22.10.1", "entity_id": self.engine.asterisk_id},
            "config": {"name": "", "default_language": "en",
                       "setid": {"user": "", "group": ""}},
            "status": {"startup_time": start, "last_reload_time": start},
        })

    async def asterisk_ping(self, request: web.Request) -> web.Response:
        return json_response({"ping": "pong", "timestamp": wall_ts(),
                              "asterisk_id": self.engine.asterisk_id})

    def _registered_apps(self) -> list[str]:
        return self.owners.apps()

    def _app_json(self, name: str) -> dict[str, Any]:
        chans = [c.id for c in self.engine.channels() if name in c.apps()]
        bridges = [b.id for b in self.engine.bridges() if name in b.ari_apps]
        return {"name": name, "channel_ids": chans, "bridge_ids": bridges, "endpoint_ids": [],
                "device_names": [], "events_allowed": [], "events_disallowed": []}

    async def applications(self, request: web.Request) -> web.Response:
        return json_response([self._app_json(a) for a in self._registered_apps()])

    async def application(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self._registered_apps():
            return error(404, "Application not found")
        return json_response(self._app_json(name))

    # --- channels --------------------------------------------------------------------------
    async def list_channels(self, request: web.Request) -> web.Response:
        return json_response([c.ari_json() for c in self.engine.channels()])

    async def get_channel(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if ch is None:
            return error(404, "Channel not found")
        return json_response(ch.ari_json())

    async def originate(self, request: web.Request) -> web.Response:
        params, variables = await self._params(request)
        endpoint = params.get("endpoint", "")
        if not endpoint:
            return error(400, "Endpoint must be specified")
        app = params.get("app", "")
        if not app and not params.get("extension"):
            return error(400, "Application or extension must be specified")
        name, num = parse_callerid(params.get("callerId", ""))
        try:
            timeout_s = int(params.get("timeout", "30"))
        except ValueError:
            return error(400, "timeout must be an integer")
        if params.get("channelId") and self.engine.channel(params["channelId"]) is not None:
            return error(409, "Channel with given unique ID already exists")
        req = OriginateRequest(
            channel=endpoint, context=params.get("context", ""),
            exten=params.get("extension", ""), priority=int(params.get("priority", "1")),
            callerid_name=name, callerid_num=num, timeout_ms=timeout_s * 1000,
            variables=list(variables.items()), source="ari", app=app,
            app_args=[a for a in params.get("appArgs", "").split(",") if a],
            channel_id=params.get("channelId", ""),
            other_channel_id=params.get("otherChannelId", ""))
        if endpoint.lower().startswith("local/") and "@" in endpoint:
            return json_response(self.engine.local.ari_originate(req).ari_json())
        ch = self.engine.ari_originate(req)
        if ch is None:
            return error(500, "Allocation failed")
        return json_response(ch.ari_json())

    async def external_media(self, request: web.Request) -> web.Response:
        params, variables = await self._params(request)
        app = params.get("app", "")
        if not app:
            return error(400, "app cannot be empty")
        host = params.get("external_host", "")
        fmt = params.get("format", "")
        if not host:
            return error(400, "external_host is required for all but websocket server "
                              "connections")
        if not fmt:
            return error(400, "format cannot be empty")
        if params.get("encapsulation", "rtp") != "rtp" or params.get("transport", "udp") != "udp":
            return error(501, "Only encapsulation rtp over transport udp is simulated")
        if fmt not in FORMATS:
            return error(500, "An internal error prevented this request from being handled")
        try:
            parse_host_port(host)
        except ValueError:
            return error(400, "external_host must be host:port")
        cid = params.get("channelId") or None
        if cid and self.engine.channel(cid) is not None:
            return error(409, "Channel with given unique ID already exists")
        ch = self.engine.external_media(app=app, external_host=host, fmt=fmt, channel_id=cid,
                                        variables=variables)
        body = ch.ari_json(with_vars=True)
        if app not in self.owners:
            vanish(self.engine, ch)  # recorded: 200, then the channel is gone
        else:
            asyncio.get_running_loop().call_soon(self.engine.external_media_answer, ch, app)
        return json_response(body)

    async def hangup(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if ch is None:
            return error(404, "Channel not found")
        params, _ = await self._params(request)
        cause = 16
        if "reason_code" in params and params["reason_code"].isdigit():
            cause = int(params["reason_code"])
        elif "reason" in params:
            cause = CAUSES.get(params["reason"], 16)
        self.engine.hangup_channel(ch, cause, soft=True)
        return no_content()

    async def answer(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if ch is None:
            return error(404, "Channel not found")
        if ch.state != UP:
            self.engine._newstate(ch, UP)
        return no_content()

    async def snoop(self, request: web.Request) -> web.Response:
        target = self._channel(request)
        if target is None or target.doomed:  # a Local originate failing at once: 404
            return error(404, "Provided channel was not found", "Channel Not Found")
        params, _ = await self._params(request)
        spy = params.get("spy", "none")
        whisper = params.get("whisper", "none")
        valid = ("none", "in", "out", "both")
        if spy not in valid or whisper not in valid:
            return error(400, "Invalid direction specified")
        if spy == "none" and whisper == "none":
            return error(400, "Direction must be specified for at least spy or whisper")
        app = params.get("app", "")
        if not app:
            return error(400, "app cannot be empty")
        snoop_id = params.get("snoopId") or None
        if snoop_id and self.engine.channel(snoop_id) is not None:
            return error(409, "Channel with given unique ID already exists")
        ch = self.engine.snoop(target, spy=spy, whisper=whisper, app=app,
                               app_args=params.get("appArgs", ""), snoop_id=snoop_id)
        body = ch.ari_json()
        if app not in self.owners:
            vanish(self.engine, ch)  # recorded: 200, then the channel is gone
        return json_response(body)

    async def play(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if ch is None:
            return error(404, "Channel not found")
        params, _ = await self._params(request)
        media = [m for m in params.get("media", "").split(",") if m]
        if not media:
            return error(400, "media: required parameter missing")
        if params.get("playbackId") and self.engine.playback(params["playbackId"]):
            return error(409, "Playback with given unique ID already exists")
        pb = self.engine.play(ch, media, params.get("playbackId") or None,
                              params.get("lang", ch.language))
        return json_response(pb.ari_json(), 201,
                             headers={"Location": f"/ari/playbacks/{pb.id}"})

    async def dtmf(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if ch is None:
            return error(404, "Channel not found")
        params, _ = await self._params(request)
        if not params.get("dtmf"):
            return error(400, "DTMF is required")
        ch.variables["SIM_LAST_DTMF_SENT"] = params["dtmf"]
        return no_content()

    async def get_variable(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if ch is None:
            return error(404, "Channel not found")
        name = request.query.get("variable", "")
        if not name:
            return error(400, "Variable name is required")
        if name not in ch.variables:
            return error(404, "Provided variable was not found")
        return json_response({"value": ch.variables[name]})

    async def set_variable(self, request: web.Request) -> web.Response:
        ch = self._channel(request)
        if ch is None:
            return error(404, "Channel not found")
        params, _ = await self._params(request)
        if not params.get("variable"):
            return error(400, "Variable name is required")
        self.engine.set_var(ch, params["variable"], params.get("value", ""))
        return no_content()

    # --- bridges ---------------------------------------------------------------------------
    async def list_bridges(self, request: web.Request) -> web.Response:
        return json_response([b.ari_json() for b in self.engine.bridges()])

    async def create_bridge(self, request: web.Request) -> web.Response:
        params, _ = await self._params(request)
        bid = params.get("bridgeId") or None
        if bid is not None:
            existing = self.engine.bridge(bid)
            if existing is not None:
                return json_response(existing.ari_json())
        apps = self._registered_apps()
        bridge = self.engine.create_bridge(bid, params.get("name", ""),
                                           apps[0] if apps else None)
        return json_response(bridge.ari_json())

    async def get_bridge(self, request: web.Request) -> web.Response:
        bridge = self.engine.bridge(request.match_info["id"])
        if bridge is None:
            return error(404, "Bridge not found")
        return json_response(bridge.ari_json())

    async def delete_bridge(self, request: web.Request) -> web.Response:
        bridge = self.engine.bridge(request.match_info["id"])
        if bridge is None:
            return error(404, "Bridge not found")
        self.engine.destroy_bridge(bridge)
        return no_content()

    async def _bridge_channels(self, request: web.Request) -> tuple[Any, list[Channel]] | \
            web.Response:
        bridge = self.engine.bridge(request.match_info["id"])
        if bridge is None:
            return error(404, "Bridge not found", "Not found")
        params, _ = await self._params(request)
        ids = [i for i in params.get("channel", "").split(",") if i]
        if not ids:
            return error(400, "channel: required parameter missing")
        chans = []
        for cid in ids:
            ch = self.engine.channel(cid)
            if ch is None:
                return error(400, "Channel not found")
            chans.append(ch)
        return bridge, chans

    async def add_channel(self, request: web.Request) -> web.Response:
        got = await self._bridge_channels(request)
        if isinstance(got, web.Response):
            return got
        bridge, chans = got
        for ch in chans:
            if ch.stasis_app is None:
                return error(422, "Channel not in Stasis application")
        for ch in chans:
            if ch.bridge is not bridge:
                self.engine.bridge_add(bridge, ch)
        return no_content()

    async def remove_channel(self, request: web.Request) -> web.Response:
        got = await self._bridge_channels(request)
        if isinstance(got, web.Response):
            return got
        bridge, chans = got
        for ch in chans:
            if ch.bridge is not bridge:
                return error(422, "Channel not in this bridge")
        for ch in chans:
            self.engine.bridge_remove(bridge, ch)
        return no_content()

    async def get_playback(self, request: web.Request) -> web.Response:
        pb = self.engine.playback(request.match_info["id"])
        if pb is None:
            return error(404, "Playback not found")
        return json_response(pb.ari_json())

    # --- events websocket ------------------------------------------------------------------
    async def events(self, request: web.Request) -> web.StreamResponse:
        apps = [a for a in request.query.get("app", "").split(",") if a]
        if not apps:
            # recorded: the HTML 400, then a second, empty 400 on the same connection
            first = web.Response(status=400, body=MISSING_APP_HTML.encode(),
                                 headers={"Cache-Control": "no-cache, no-store",
                                          "Content-Type": "text/html"})
            await first.prepare(request)
            await first.write_eof()
            if request.transport is not None:
                request.transport.write(
                    b"HTTP/1.1 400 Bad Request\r\nServer: Asterisk/22.10.1\r\nDate: "
                    + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()).encode()
                    + b"\r\nCache-Control: no-cache, no-store\r\n"
                    b"Sec-WebSocket-Version: 7, 8, 13\r\nContent-Length: 0\r\n\r\n")
            return first
        protocols = request.headers.get("Sec-WebSocket-Protocol", "")
        if protocols and "ari" not in [p.strip() for p in protocols.split(",")]:
            return web.Response(status=400, headers={"Cache-Control": "no-cache, no-store",
                                                     "Sec-WebSocket-Version": "7, 8, 13"})
        ws = web.WebSocketResponse(protocols=("ari",), autoping=True, heartbeat=None)
        await ws.prepare(request)
        subscribe_all = request.query.get("subscribeAll", "false").lower() in ("true", "1",
                                                                               "yes")
        sock = EventSocket(ws=ws, apps=apps, subscribe_all=subscribe_all,
                           transport=request.transport)
        self.sockets.add(sock)
        self.owners.register(sock)  # an older socket of the same app gets ApplicationReplaced
        task = asyncio.current_task()
        if task is not None:
            self._ws_tasks.add(task)
        writer = asyncio.get_running_loop().create_task(self._ws_writer(sock))
        try:
            async for msg in ws:
                if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.sockets.discard(sock)
            self.owners.unregister(sock)
            sock.queue.put_nowait(None)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            if task is not None:
                self._ws_tasks.discard(task)
        return ws

    async def _ws_writer(self, sock: EventSocket) -> None:
        try:
            while True:
                frame = await sock.queue.get()
                if frame is None:
                    break
                delay = self.faults.ari_event_delay_s
                if delay > 0:
                    await asyncio.sleep(delay)
                if sock.ws.closed:
                    break
                await sock.ws.send_str(frame)
        except ConnectionError:
            pass
        finally:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await sock.ws.close()


__all__ = ["AriServer", "EventSocket", "dumps"]
