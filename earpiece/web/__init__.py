"""aiohttp app: ops endpoints, the live feed websocket and the dashboard. May import every stage
below it.

:mod:`earpiece.web.ops` serves ``/healthz``, ``/readyz`` and ``/metrics`` for a running service;
:mod:`earpiece.web.metrics` is the Prometheus collector that reads every component's counters at
scrape time (plus call outcomes and AMD verdicts counted from the event bus).

:mod:`earpiece.web.dashboard` serves the dashboard pages and their data (logins, sessions and
roles in :mod:`earpiece.web.auth`, live state in :mod:`earpiece.web.live`, call history from the
CRM in :mod:`earpiece.web.history`, front end in ``static/``).
"""
