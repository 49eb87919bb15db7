"""``GET /api/feed``: the live feed (:mod:`earpiece.delivery.feed`) as a websocket.

Authentication: ``Authorization: Bearer <token>`` (or, for a browser's ``WebSocket`` that cannot
set headers, the ``access_token`` query parameter) must equal ``[http] feed_token``
(``$EARPIECE_FEED_TOKEN`` or ``feed_token_file``); a missing or wrong token gets 401, and
without a configured token the feed is refused (403). ``?call_id=<id>`` follows one call;
without it every call. After the upgrade the server sends one ``{"type": "hello", "calls":
[...]}`` with the calls live at that moment, then one JSON text message per event
(``CallStarted``, ``CallStateChanged``, ``Transcript``, ``EmotionChanged``, ``PromptReady``,
``PromptDelivered``...; ``{"type": ..., "call_id": ..., "at": ..., <the event's fields>}``).
What the client sends is ignored.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import weakref
from typing import Any

from aiohttp import WSCloseCode, web

from earpiece.delivery.feed import FeedHub
from earpiece.secret import Secret

log = logging.getLogger(__name__)

SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey(
    "feed_sockets", weakref.WeakSet)


def _token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.query.get("access_token", "")


def add_feed(app: web.Application, service: Any, hub: FeedHub, token: Secret) -> None:
    """Add ``/api/feed`` to ``app`` (and close open feeds when the app shuts down)."""
    app[SOCKETS] = weakref.WeakSet()

    async def feed(request: web.Request) -> web.StreamResponse:
        want = token.get()
        if not want:
            return web.json_response(
                {"error": "feed disabled: set http.feed_token ($EARPIECE_FEED_TOKEN)"},
                status=403)
        if not hmac.compare_digest(_token(request).encode(), want.encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401,
                                     headers={"WWW-Authenticate": 'Bearer realm="earpiece"'})
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        call_id = request.query.get("call_id") or None
        sub = hub.subscribe(call_id)
        try:
            await ws.send_str(json.dumps({"type": "hello", "call_id": call_id,
                                          "calls": _live_calls(service, call_id)},
                                         ensure_ascii=False, default=str))
            reader = asyncio.ensure_future(_drain(ws))
            try:
                while not ws.closed:
                    getter = asyncio.ensure_future(sub.queue.get())
                    done, _ = await asyncio.wait({getter, reader},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        break
                    await ws.send_str(getter.result())
            finally:
                reader.cancel()
        except ConnectionResetError:
            pass
        finally:
            hub.unsubscribe(sub)
        return ws

    async def close_feeds(app: web.Application) -> None:
        sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS]
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    app.router.add_get("/api/feed", feed)
    app.on_shutdown.append(close_feeds)


async def _drain(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, until it closes."""
    async for _msg in ws:
        pass


def _live_calls(service: Any, call_id: str | None) -> list[dict[str, Any]]:
    registry = getattr(service, "registry", None)
    snapshot = getattr(registry, "snapshot", None)
    if snapshot is None:
        return []
    calls: list[dict[str, Any]] = snapshot()
    return [c for c in calls if call_id is None or c.get("id") == call_id]
