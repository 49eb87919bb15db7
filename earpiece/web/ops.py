"""The operations HTTP endpoint of a running service: ``/healthz``, ``/readyz``, ``/metrics``.

- ``GET /healthz``: 200 ``{"status": "ok"}`` while the process and its event loop answer.
- ``GET /readyz``: 200 when every part the service needs is up, else 503; the JSON body names
  each part and, for those not ready, why (``{"ready": false, "not_ready": {"ami": "not
  connected"}, "checks": {...}}``). Parts: ``ami`` (logged in), ``ari`` (events websocket
  open), ``ari_app`` (our Stasis application not taken over by another client), ``crm`` (store
  open, writer running) and ``media`` (fork running; only when media is on).
- ``GET /metrics``: Prometheus text format (or OpenMetrics when asked) from a private registry
  (:mod:`earpiece.web.metrics`).
- ``GET /api/feed``: the live feed websocket, bearer-token authenticated (:mod:`earpiece.web.feed`).
- The dashboard (``/login``, ``/live``, ``/history``, ``/api/dash/...``): session-authenticated
  pages for agents and supervisors (:mod:`earpiece.web.dashboard`).

:class:`OpsServer` is started by :class:`earpiece.app.Service` from ``[http]`` settings. A port
that cannot be bound is logged as an error and the service goes on without the endpoint: call
handling matters more than its monitoring (and a probe that cannot connect is noticed anyway).
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from prometheus_client.aiohttp import make_aiohttp_handler

from earpiece.config import HttpSettings
from earpiece.delivery.feed import FeedHub
from earpiece.web.dashboard import Dashboard
from earpiece.web.feed import add_feed
from earpiece.web.live import LiveBoard
from earpiece.web.metrics import CallCounters, ari_app_owned, make_registry

log = logging.getLogger(__name__)


def readiness(service: Any) -> dict[str, str | None]:
    """Each part the service needs, mapped to ``None`` when ready or the reason it is not."""
    out: dict[str, str | None] = {}
    ami = getattr(service, "ami", None)
    out["ami"] = (None if ami is not None and ami.connected
                  else "not started" if ami is None else "not connected")
    ari = getattr(service, "ari", None)
    out["ari"] = (None if ari is not None and ari.connected
                  else "not started" if ari is None else "events websocket not connected")
    if ari_app_owned(service):
        out["ari_app"] = None
    else:
        out["ari_app"] = ("ARI not connected" if ari is None or not ari.connected
                          else "Stasis application taken over by another ARI client")
    out["crm"] = _crm_problem(service)
    if getattr(service, "want_media", False):
        out["media"] = _media_problem(service)
    return out


def _crm_problem(service: Any) -> str | None:
    if getattr(service, "store", None) is None:
        return "store not open"
    crm = getattr(service, "crm", None)
    if crm is None:
        return "writer not started"
    task = getattr(crm, "_task", None)  # no public "running" flag on CrmWriter yet
    if task is not None and task.done():
        return "writer stopped"
    return None


def _media_problem(service: Any) -> str | None:
    media = getattr(service, "media", None)
    if media is None:
        return "not started"
    if not getattr(media, "_running", True):  # no public "running" flag on MediaFork yet
        return "media fork stopped"
    return None


class OpsServer:
    """aiohttp application + runner serving the ops endpoints of ``service``."""

    def __init__(self, service: Any, settings: HttpSettings | None = None) -> None:
        self.service = service
        self.settings = settings or HttpSettings()
        self.calls = CallCounters(service.bus)
        self.registry = make_registry(service, self.calls, lambda: readiness(service))
        self.feed = FeedHub(service.bus)
        self.app = make_app(service, self.registry)
        add_feed(self.app, service, self.feed, self.settings.feed_token)
        self.board = LiveBoard(service.bus)
        self.dashboard = Dashboard(service, self.settings, self.board)
        self.dashboard.add_routes(self.app)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the bound port once started (settings.port 0: ephemeral)

    async def start(self) -> None:
        """Count bus events and listen; a port that cannot be bound is logged, not raised."""
        self.calls.start()
        self.feed.start()
        self.board.start()
        s = self.settings
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, s.host, s.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            log.error("ops HTTP endpoint disabled: cannot listen on %s:%d (http.host, "
                      "http.port): %s", s.host, s.port, exc.strerror or exc)
            return
        self._runner = runner
        addresses = runner.addresses
        self.port = int(addresses[0][1]) if addresses else s.port
        log.info("ops HTTP endpoint on http://%s:%d (/healthz /readyz /metrics)", s.host,
                 self.port)

    async def close(self) -> None:
        self.calls.stop()
        self.feed.stop()
        self.board.stop()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def make_app(service: Any, registry: Any) -> web.Application:
    """The aiohttp application (usable alone with aiohttp's test client)."""

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = readiness(service)
        not_ready = {k: v for k, v in checks.items() if v is not None}
        body = {"ready": not not_ready, "not_ready": not_ready,
                "checks": {k: v is None for k, v in checks.items()}}
        return web.json_response(body, status=503 if not_ready else 200)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    return app
