"""Test helper: an in-process aiohttp server that answers like the recorded Asterisk ARI.

REST answers come from an explicit queue (``expect``), then from ``routes`` keyed by
``(method, decoded path)``, else ``404 {"message":"Resource not found"}`` as Asterisk does.
Every request is recorded with its exact request-target. ``/ari/events`` upgrades to a
websocket (after the same Basic-auth check, 401 with Asterisk's body otherwise) and sends
``ws_frames`` on each connect; ``push`` sends more and ``drop_websockets`` closes them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

AUTH_REQUIRED = '{"message":"Authentication required"}'


@dataclass
class Answer:
    status: int
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    push_before: list[str] = field(default_factory=list)  # websocket frames sent first


@dataclass
class Seen:
    method: str
    path: str  # decoded
    target: str  # exact request-target (encoded path + query)
    query: dict[str, str]
    body: bytes
    authorization: str | None
    websocket: bool = False


class FakeAri:
    def __init__(self, *, username: str = "assist", password: str = "assist") -> None:
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.expected_auth = f"Basic {token}"
        self.requests: list[Seen] = []
        self.queue: collections.deque[Answer] = collections.deque()
        self.routes: dict[tuple[str, str], Answer] = {}
        self.ws_frames: list[str | bytes] = []
        self.websockets: list[web.WebSocketResponse] = []
        self.ws_connects = 0
        self.refuse_websocket: int | None = None  # status to refuse /ari/events with
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # ephemeral port
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ control

    def expect(self, status: int, body: str = "", **kw: Any) -> None:
        self.queue.append(Answer(status, body, **kw))

    async def push(self, frame: str | bytes) -> None:
        for ws in list(self.websockets):
            if ws.closed:
                continue
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)

    async def drop_websockets(self) -> None:
        for ws in list(self.websockets):
            if not ws.closed:
                await ws.close()
        self.websockets.clear()

    def open_websockets(self) -> int:
        return sum(1 for ws in self.websockets if not ws.closed)

    # ------------------------------------------------------------------ handler

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        is_ws = request.headers.get("Upgrade", "").lower() == "websocket"
        seen = Seen(
            method=request.method,
            path=request.path,
            target=request.raw_path,
            query=dict(request.query),
            body=body,
            authorization=request.headers.get("Authorization"),
            websocket=is_ws,
        )
        self.requests.append(seen)
        if seen.authorization != self.expected_auth:
            return web.Response(
                status=401,
                text=AUTH_REQUIRED,
                content_type="application/json",
                headers={"WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'},
            )
        if request.path == "/ari/events" and is_ws:
            return await self._websocket(request)
        answer = self._answer_for(seen)
        for frame in answer.push_before:
            await self.push(frame)
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        if answer.status == 204 or not answer.body:
            return web.Response(status=answer.status, headers=answer.headers)
        return web.Response(
            status=answer.status,
            text=answer.body,
            content_type="application/json",
            headers=answer.headers,
        )

    def _answer_for(self, seen: Seen) -> Answer:
        if self.queue:
            return self.queue.popleft()
        route = self.routes.get((seen.method, seen.path))
        if route is not None:
            return route
        return Answer(404, '{"message":"Resource not found"}')

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if self.refuse_websocket is not None:
            return web.Response(status=self.refuse_websocket, text="")
        if "app" not in request.query:
            return web.Response(
                status=400, text="HTTP request is missing param: [app]", content_type="text/html"
            )
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_connects += 1
        self.websockets.append(ws)
        for frame in self.ws_frames:
            if isinstance(frame, bytes):
                await ws.send_bytes(frame)
            else:
                await ws.send_str(frame)
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
        return ws
