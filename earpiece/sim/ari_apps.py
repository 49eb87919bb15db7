"""Stasis applications of the simulated ARI: which events websocket owns each app, and what
happens to channels sent to an app that no websocket owns (``faults/ari/ari_app_replaced``).

As recorded on Asterisk 22: a second websocket for an app takes the app over. The first one
gets one ``ApplicationReplaced`` event and then nothing at all, yet stays open (no close frame,
no TCP close); every event of the app goes to the newest websocket. When that one leaves, the
app is gone (``GET /applications`` lists it no more, ``GET /applications/{app}`` answers 404
``Application not found``) even though the replaced websocket is still open: it does not get
the app back until it reconnects. A snoop or externalMedia channel sent to an app without a
websocket is created (200 with its body) but hangs up at once, because ``Stasis()`` finds no
app: a later ``addChannel`` answers 400 ``Channel not found`` and ``DELETE`` 404.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from earpiece.sim.engine import Engine
from earpiece.sim.model import Channel, wall_ts


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(eq=False)
class EventSocket:
    ws: web.WebSocketResponse
    apps: list[str]
    subscribe_all: bool
    transport: asyncio.BaseTransport | None = None
    queue: asyncio.Queue[str | None] = field(default_factory=asyncio.Queue)
    sent: int = 0


class AppOwners:
    """App name -> the websocket that holds it (the newest one that asked for it)."""

    def __init__(self, asterisk_id: str) -> None:
        self.asterisk_id = asterisk_id
        self._owners: dict[str, EventSocket] = {}

    def register(self, sock: EventSocket) -> list[EventSocket]:
        """``sock`` takes its apps; the sockets that lost one get ``ApplicationReplaced``."""
        replaced: list[EventSocket] = []
        for app in sock.apps:
            old = self._owners.get(app)
            self._owners[app] = sock
            if old is None or old is sock:
                continue
            # recorded: {"type","timestamp","application","asterisk_id"}, within 1 ms
            old.queue.put_nowait(dumps({"type": "ApplicationReplaced", "timestamp": wall_ts(),
                                        "application": app,
                                        "asterisk_id": self.asterisk_id}))
            old.sent += 1
            replaced.append(old)
        return replaced

    def unregister(self, sock: EventSocket) -> None:
        """``sock`` left: the apps it still held are gone (a replaced socket held none)."""
        for app, owner in list(self._owners.items()):
            if owner is sock:
                del self._owners[app]

    def owns(self, sock: EventSocket, app: str) -> bool:
        return self._owners.get(app) is sock

    def apps(self) -> list[str]:
        """Registered apps, in registration order."""
        return list(self._owners)

    def __contains__(self, app: object) -> bool:
        return app in self._owners


def vanish(engine: Engine, ch: Channel) -> None:
    """A snoop or externalMedia channel whose ``Stasis(app)`` found no app hangs up at once
    (before an externalMedia channel is answered)."""
    if ch.tech == "Snoop":
        engine._hangup_snoop(ch, by_request=False)
    else:
        engine._hangup_final(ch, 0)


__all__ = ["AppOwners", "EventSocket", "dumps", "vanish"]
