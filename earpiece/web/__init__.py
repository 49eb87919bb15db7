"""aiohttp app: ops endpoints now; REST API, dashboard and websocket feed later. May import every
stage below it.

:mod:`earpiece.web.ops` serves ``/healthz``, ``/readyz`` and ``/metrics`` for a running service;
:mod:`earpiece.web.metrics` is the Prometheus collector that reads every component's counters at
scrape time (plus call outcomes and AMD verdicts counted from the event bus).
"""
