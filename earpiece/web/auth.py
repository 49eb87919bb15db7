"""Dashboard logins: password hashes, server-side sessions, cookies, CSRF tokens and roles.

Users come from ``[[http.users]]`` (:class:`~earpiece.config.DashboardUser`): a name, a role
(``agent``: sees only the calls whose agent leg is on their ``endpoint``; ``supervisor``: every
call) and a password hash (``pbkdf2_sha256$<iterations>$<salt>$<hash>`` or
``scrypt$<n>$<r>$<p>$<salt>$<hash>``, salt and hash base64; never a plaintext password).

A login creates a random session id kept in memory (a restart logs everybody out), sent as an
``HttpOnly``, ``SameSite=Strict`` cookie limited to the pages' path prefix, ``Secure`` unless
``[http] cookie_secure`` says otherwise (``auto``: everywhere but plain http to a loopback host).
Each session carries a CSRF token that every form posts back; the login form, before there is
a session, uses a double-submit token (a short-lived cookie plus the same value in the form).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Literal

from aiohttp import web

from earpiece.config import DashboardUser, HttpSettings

SESSION_COOKIE = "earpiece_session"
LOGIN_CSRF_COOKIE = "earpiece_login_csrf"
PBKDF2_ITERATIONS = 600_000
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")

Role = Literal["agent", "supervisor"]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, scheme: str = "pbkdf2_sha256",
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """A salted hash of ``password`` for ``[[http.users]] password_hash``."""
    salt = secrets.token_bytes(16)
    if scheme == "scrypt":
        n, r, p = 2**14, 8, 1
        digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=32)
        return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"pbkdf2_sha256${iterations}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (constant-time compare; False when malformed)."""
    parts = stored.split("$")
    try:
        if parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            salt, want = base64.b64decode(parts[2]), base64.b64decode(parts[3])
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, int(parts[1]))
        elif parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            salt, want = base64.b64decode(parts[4]), base64.b64decode(parts[5])
            got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(want),
                                 maxmem=128 * n * r * p + 2**20)
        else:
            return False
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass
class Session:
    user: str
    role: Role
    endpoint: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    expires: float = 0.0

    def may_see(self, agent_endpoints: set[str] | frozenset[str]) -> bool:
        """Whether this user may see a call whose agent legs are on ``agent_endpoints``."""
        return self.role == "supervisor" or self.endpoint in agent_endpoints


class Auth:
    """The users, the open sessions and the cookie policy."""

    def __init__(self, settings: HttpSettings) -> None:
        self.settings = settings
        self.users: dict[str, DashboardUser] = {u.name: u for u in settings.users}
        self.sessions: dict[str, Session] = {}
        self._dummy = hash_password(secrets.token_urlsafe(8), iterations=1000)

    async def login(self, name: str, password: str) -> tuple[str, Session] | None:
        """A new session for good credentials (hashing off the event loop), else None."""
        import asyncio

        user = self.users.get(name)
        stored = user.password_hash if user is not None else self._dummy
        ok = await asyncio.to_thread(verify_password, password, stored)
        if user is None or not ok:
            return None
        sid = secrets.token_urlsafe(32)
        session = Session(user=user.name, role=user.role, endpoint=user.endpoint,
                          expires=time.time() + self.settings.session_hours * 3600)
        self.sessions[sid] = session
        return sid, session

    def logout(self, request: web.Request) -> None:
        self.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)

    def session(self, request: web.Request) -> Session | None:
        sid = request.cookies.get(SESSION_COOKIE, "")
        session = self.sessions.get(sid) if sid else None
        if session is None:
            return None
        if session.expires < time.time():
            del self.sessions[sid]
            return None
        return session

    def set_cookie(self, request: web.Request, response: web.StreamResponse, name: str,
                   value: str, max_age: int | None) -> None:
        response.set_cookie(name, value, max_age=max_age, path=prefix(request, self.settings)
                            or "/", secure=self.secure(request), httponly=True,
                            samesite="Strict")

    def secure(self, request: web.Request) -> bool:
        mode = self.settings.cookie_secure
        if mode != "auto":
            return mode == "always"
        proto = request.headers.get("X-Forwarded-Proto", request.scheme)
        if proto == "https":
            return True
        return not _loopback(request.host)


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def prefix(request: web.Request, settings: HttpSettings) -> str:
    """The path prefix the browser sees: ``X-Forwarded-Prefix`` when well-formed, else
    ``[http] prefix`` (no trailing slash; "" at the root)."""
    forwarded = request.headers.get("X-Forwarded-Prefix", "").rstrip("/")
    if forwarded and _PREFIX_RE.match(forwarded):
        return forwarded
    return settings.prefix


def check_csrf(expected: str, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())
