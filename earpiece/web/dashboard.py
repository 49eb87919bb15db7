"""The dashboard: login, the agent's and the supervisor's live views, and the call history.

Pages (HTML shells filled by ``static/app.js``; no inline script, a strict CSP):

- ``GET /login``, ``POST /login`` (form with a CSRF token), ``POST /logout`` (CSRF token).
- ``GET /live``: an agent sees their current call (state, both parties' transcripts, the
  customer's emotion per utterance and as a timeline, the current prompt and its reason, QC
  flags); a supervisor sees every live call (state, agent, duration, customer emotion, alerts).
- ``GET /live/{call_id}``: one call live; ``GET /history`` (search by outcome and start time),
  ``GET /history/{call_id}``: a stored call with its transcript.

Data, all behind the session cookie and its role (an agent asking for another agent's call gets
403): ``GET /api/dash/live``, ``/api/dash/live/{id}``, ``/api/dash/history``,
``/api/dash/history/{id}`` (JSON) and ``GET /api/dash/ws[?call_id=]`` (websocket of the
:class:`~earpiece.web.live.LiveBoard`: ``hello`` with the visible calls, then event messages).
Behind a reverse proxy the links carry ``X-Forwarded-Prefix`` (or ``[http] prefix``).
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import secrets
import weakref
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from earpiece.config import HttpSettings
from earpiece.web import history
from earpiece.web.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Auth, Session, check_csrf, prefix
from earpiece.web.live import LiveBoard

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
SOCKETS: web.AppKey[weakref.WeakSet[web.WebSocketResponse]] = web.AppKey(
    "dash_sockets", weakref.WeakSet)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; form-action 'self'; "
       "base-uri 'none'")

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Earpiece · {title}</title>
<link rel="stylesheet" href="{p}/static/dashboard.css">
</head><body>
<header><a class="brand" href="{p}/live">Earpiece</a>
<nav>{nav}</nav></header>
<main id="main" {data}>{body}</main>
{script}
</body></html>
"""


def _page(p: str, title: str, body: str, *, session: Session | None = None,
          data: dict[str, str] | None = None, status: int = 200) -> web.Response:
    nav = ""
    if session is not None:
        nav = (f'<a href="{p}/live">Live</a> <a href="{p}/history">History</a> '
               f'<span class="who">{html.escape(session.user)} ({session.role})</span> '
               f'<form method="post" action="{p}/logout" class="inline">'
               f'<input type="hidden" name="csrf" value="{html.escape(session.csrf)}">'
               '<button type="submit">Log out</button></form>')
    attrs = " ".join(f'data-{k}="{html.escape(v)}"' for k, v in (data or {}).items())
    script = f'<script type="module" src="{p}/static/app.js"></script>' if data else ""
    text = PAGE.format(title=html.escape(title), p=p, nav=nav, data=attrs, body=body,
                       script=script)
    return web.Response(text=text, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store",
                                 "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "same-origin"})


def _float(value: str) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        raise web.HTTPBadRequest(text="since/until must be epoch seconds") from None


class Dashboard:
    """The dashboard's routes on the ops app (:class:`earpiece.web.ops.OpsServer`)."""

    def __init__(self, service: Any, settings: HttpSettings, board: LiveBoard) -> None:
        self.service = service
        self.settings = settings
        self.board = board
        self.auth = Auth(settings)

    def add_routes(self, app: web.Application) -> None:
        app[SOCKETS] = weakref.WeakSet()
        r = app.router
        r.add_get("/", self.root)
        r.add_get("/login", self.login_form)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/live", self.shell)
        r.add_get("/live/{call_id}", self.shell)
        r.add_get("/history", self.shell)
        r.add_get("/history/{call_id}", self.shell)
        r.add_get("/api/dash/live", self.api_live)
        r.add_get("/api/dash/live/{call_id}", self.api_live_call)
        r.add_get("/api/dash/history", self.api_history)
        r.add_get("/api/dash/history/{call_id}", self.api_history_call)
        r.add_get("/api/dash/ws", self.websocket)
        r.add_static("/static", STATIC, append_version=False)
        app.on_shutdown.append(self._close_sockets)

    # ------------------------------------------------------------------ login / logout
    async def root(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(prefix(request, self.settings) + "/live")

    async def login_form(self, request: web.Request, error: str = "",
                         status: int = 200) -> web.Response:
        p = prefix(request, self.settings)
        token = secrets.token_urlsafe(24)
        msg = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        body = (f'<form method="post" action="{p}/login" class="login">{msg}'
                '<label>User <input name="user" autocomplete="username" required></label>'
                '<label>Password <input name="password" type="password" '
                'autocomplete="current-password" required></label>'
                f'<input type="hidden" name="csrf" value="{token}">'
                '<button type="submit">Log in</button></form>')
        response = _page(p, "Log in", body, status=status)
        self.auth.set_cookie(request, response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        given = str(form.get("csrf", ""))
        if not check_csrf(request.cookies.get(LOGIN_CSRF_COOKIE, ""), given):
            return await self.login_form(request, "The form expired; please log in again.",
                                         status=403)
        made = await self.auth.login(str(form.get("user", "")), str(form.get("password", "")))
        if made is None:
            log.warning("dashboard: failed login for %r", str(form.get("user", ""))[:64])
            return await self.login_form(request, "Wrong user name or password.", status=401)
        sid, session = made
        log.info("dashboard: %s (%s) logged in", session.user, session.role)
        response = web.HTTPSeeOther(prefix(request, self.settings) + "/live")
        self.auth.set_cookie(request, response, SESSION_COOKIE, sid,
                             max_age=int(self.settings.session_hours * 3600))
        response.del_cookie(LOGIN_CSRF_COOKIE, path=prefix(request, self.settings) or "/")
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        session = self.auth.session(request)
        form = await request.post()
        if session is not None and not check_csrf(session.csrf, str(form.get("csrf", ""))):
            raise web.HTTPForbidden(text="bad CSRF token")
        self.auth.logout(request)
        response = web.HTTPSeeOther(prefix(request, self.settings) + "/login")
        response.del_cookie(SESSION_COOKIE, path=prefix(request, self.settings) or "/")
        raise response

    # ------------------------------------------------------------------ pages
    def _need_session(self, request: web.Request) -> Session:
        session = self.auth.session(request)
        if session is None:
            raise web.HTTPFound(prefix(request, self.settings) + "/login")
        return session

    async def shell(self, request: web.Request) -> web.Response:
        session = self._need_session(request)
        p = prefix(request, self.settings)
        view = request.path.strip("/").split("/")[0]
        call_id = request.match_info.get("call_id", "")
        if call_id:
            allowed = await self._allowed(session, call_id, live=view == "live")
            if allowed is None:
                return _page(p, "Not found", "<p>No such call.</p>", session=session,
                             status=404)
            if not allowed:
                return _page(p, "Forbidden", '<p class="error">This call is not yours.</p>',
                             session=session, status=403)
        page = "call" if call_id else view
        title = {"live": "Live", "history": "History", "call": "Call"}[page]
        data = {"view": f"{view}-call" if call_id else view, "prefix": p, "role": session.role,
                "user": session.user, "call-id": call_id}
        return _page(p, title, '<p class="loading">Loading…</p>', session=session, data=data)

    async def _allowed(self, session: Session, call_id: str, *, live: bool) -> bool | None:
        """Whether ``session`` may open the call (None: unknown), live board first, then CRM."""
        if live or call_id in self.board.calls:
            seen = self.board.may_see(session, call_id)
            if seen is not None:
                return seen
        store = getattr(self.service, "store", None)
        if store is None:
            return None
        agents = await history.call_agents(store, call_id)
        return None if agents is None else session.may_see(set(agents))

    # ------------------------------------------------------------------ JSON
    def _api_session(self, request: web.Request) -> Session:
        session = self.auth.session(request)
        if session is None:
            raise web.HTTPUnauthorized(text=json.dumps({"error": "not logged in"}),
                                       content_type="application/json")
        return session

    async def api_live(self, request: web.Request) -> web.Response:
        session = self._api_session(request)
        return _json({"user": session.user, "role": session.role,
                      "calls": self.board.visible(session)})

    async def api_live_call(self, request: web.Request) -> web.Response:
        session = self._api_session(request)
        call_id = request.match_info["call_id"]
        allowed = self.board.may_see(session, call_id)
        if allowed is None:
            return _json({"error": "no such live call"}, status=404)
        if not allowed:
            return _json({"error": "not your call"}, status=403)
        return _json(self.board.calls[call_id])

    def _store(self) -> Any:
        store = getattr(self.service, "store", None)
        if store is None:
            raise web.HTTPServiceUnavailable(text='{"error": "CRM store not open"}',
                                             content_type="application/json")
        return store

    async def api_history(self, request: web.Request) -> web.Response:
        session = self._api_session(request)
        q = request.query
        try:
            limit = int(q.get("limit", "100"))
        except ValueError:
            return _json({"error": "limit must be an integer"}, status=400)
        calls = await history.search(self._store(), session, outcome=q.get("outcome", ""),
                                     since=_float(q.get("since", "")),
                                     until=_float(q.get("until", "")), limit=limit)
        return _json({"calls": calls})

    async def api_history_call(self, request: web.Request) -> web.Response:
        session = self._api_session(request)
        call = await history.call_page(self._store(), request.match_info["call_id"])
        if call is None:
            return _json({"error": "no such call"}, status=404)
        if not session.may_see(set(call["agents"])):
            return _json({"error": "not your call"}, status=403)
        return _json(call)

    # ------------------------------------------------------------------ websocket
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        session = self._api_session(request)
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            return _json({"error": "cross-origin websocket refused"}, status=403)
        call_id = request.query.get("call_id") or None
        if call_id is not None and self.board.may_see(session, call_id) is False:
            return _json({"error": "not your call"}, status=403)
        ws = web.WebSocketResponse(heartbeat=20.0)
        await ws.prepare(request)
        request.app[SOCKETS].add(ws)
        sub = self.board.subscribe(session, call_id)
        calls = [c for c in self.board.visible(session) if call_id in (None, c["id"])]
        sub.known.update(c["id"] for c in calls)
        try:
            await ws.send_str(json.dumps({"type": "hello", "calls": calls}, default=str,
                                         ensure_ascii=False))
            reader = asyncio.ensure_future(_drain(ws))
            try:
                while not ws.closed:
                    getter = asyncio.ensure_future(sub.queue.get())
                    done, _ = await asyncio.wait({getter, reader},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    if getter not in done:
                        getter.cancel()
                        break
                    if self.auth.session(request) is None:  # logged out meanwhile
                        break
                    await ws.send_str(getter.result())
            finally:
                reader.cancel()
        except ConnectionResetError:
            pass
        finally:
            self.board.unsubscribe(sub)
        return ws

    async def _close_sockets(self, app: web.Application) -> None:
        sockets: weakref.WeakSet[web.WebSocketResponse] = app[SOCKETS]
        for ws in list(sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")


async def _drain(ws: web.WebSocketResponse) -> None:
    async for _msg in ws:
        pass


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body, default=str, ensure_ascii=False), status=status,
                        content_type="application/json", headers={"Cache-Control": "no-store"})
