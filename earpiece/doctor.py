"""``earpiece doctor``: check a configuration against the real PBX, one step at a time.

Each check prints ``PASS``/``FAIL``/``SKIP`` with what was seen and, on failure, the exact
setting to fix (which Asterisk file and key, which Earpiece key or environment variable)::

    config            the TOML file loads (errors name the file and the key)
    ami.connect       TCP connect to ami.host:ami.port
    ami.banner        the server greets with "Asterisk Call Manager/..."
    ami.login         Login with ami.username and the secret
    ami.permissions   the AMI user may run the actions Earpiece needs (ListCommands)
    ami.logoff        Logoff is answered with Goodbye
    ari.info          GET /ari/asterisk/info with Basic auth
    ari.events        the /ari/events websocket handshake answers 101
    agi.bind          the FastAGI port can be bound here
    crm               the CRM database (crm.url) opens as the service opens it, has the
                      expected tables and columns, takes a write (a probe row inserted and
                      deleted in one transaction); reports the backend, where it is (SQLite
                      path, PostgreSQL user@host:port/database) and how many calls it holds.
                      An SQLite file not created yet is tried as a scratch database in the
                      directory the service would create it in, removed afterwards

The exit code is 0 only when every check passes. ``--json`` prints the same as JSON. The PBX
checks use plain asyncio, :mod:`earpiece.agi.ami_message` and aiohttp, not the service's
clients, so the doctor works even when those are what is broken; the CRM check opens the
service's own store (:mod:`earpiece.crm`), with a short connect timeout. Secrets never appear in
the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import socket
import sqlite3
import stat
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from earpiece.agi.ami_message import BANNER_PREFIX, AmiBanner, AmiFramer, AmiMessage
from earpiece.config import SECRET_ENV, Settings, load_settings
from earpiece.crm.backend import CrmBackend, make_store, url_scheme
from earpiece.crm.dialect import SQLITE
from earpiece.crm.store import sqlite_path
from earpiece.errors import ConfigError, CrmError
from earpiece.secret import Secret

if TYPE_CHECKING:
    from earpiece.crm.postgres import PgTarget

Status = Literal["PASS", "FAIL", "SKIP"]

# Actions the service sends; ListCommands only lists what the user's write= allows.
NEEDED_AMI_ACTIONS = ("Originate", "Hangup", "CoreShowChannels", "SendText", "MessageSend")
AMI_WRITE_HINT = "system,call,originate,reporting,message"
AMI_READ_HINT = "system,call,agent,user,dtmf,reporting"
MIN_LOGIN_WAIT_S = 3.0  # Asterisk answers a bad secret about 1 s after the Login
CRM_CONNECT_TIMEOUT_S = 3.0  # PostgreSQL connect timeout (the service waits 10 s)
CRM_CHECK_TIMEOUT_S = 10.0  # the whole CRM check, whatever hangs
CRM_EXACT_COUNT_MAX = 1_000_000  # above this PostgreSQL's row estimate is reported instead


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    fix: str = ""


@dataclass
class DoctorReport:
    config: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status == "PASS" for c in self.checks)

    def result(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config, "ok": self.ok, "checks": [asdict(c) for c in self.checks]}

    def render(self) -> str:
        width = max((len(c.name) for c in self.checks), default=10) + 2
        lines = [f"earpiece doctor: {self.config}"]
        for c in self.checks:
            lines.append(f"{c.status}  {c.name.ljust(width)}{c.detail}")
            if c.fix:
                lines.append(f"      fix: {c.fix}")
        counts = {s: sum(c.status == s for c in self.checks) for s in ("PASS", "FAIL", "SKIP")}
        lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
                     + ("" if self.ok else " -> NOT READY"))
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------


async def run_doctor(config: str | Path, *, env: Mapping[str, str] | None = None) -> DoctorReport:
    """Run every check against the PBX named in ``config``; never raises for PBX problems."""
    env = os.environ if env is None else env
    report = DoctorReport(str(config))
    try:
        settings = load_settings(config, env)
    except ConfigError as exc:
        fix = (f"edit {exc.file}: fix key '{exc.key}'" if exc.key
               else f"check that {exc.file} exists and is valid TOML")
        report.checks.append(CheckResult("config", "FAIL", str(exc), fix))
        for name in ("ami.connect", "ami.banner", "ami.login", "ami.permissions", "ami.logoff",
                     "ari.info", "ari.events", "agi.bind", "crm"):
            report.checks.append(CheckResult(name, "SKIP", "needs config"))
        return report
    report.checks.append(CheckResult(
        "config", "PASS",
        f"loaded (AMI {settings.ami.host}:{settings.ami.port}, ARI {settings.ari.url}, "
        f"FastAGI {settings.agi.host}:{settings.agi.port})"))
    report.checks.extend(await check_ami(settings, _secret_source(config, "ami", env)))
    report.checks.extend(await check_ari(settings, _secret_source(config, "ari", env)))
    report.checks.append(check_agi_bind(settings.agi.host, settings.agi.port))
    report.checks.append(await check_crm(settings, str(config),
                                         _secret_source(config, "crm", env)))
    return report


def _secret_source(config: str | Path, section: str, env: Mapping[str, str]) -> str:
    """Where the secret came from, in config.py's order (for hints; never the value)."""
    key = "secret" if section == "ami" else "password"
    env_name = SECRET_ENV[f"{section}.{key}"]
    if env.get(env_name):
        return f"${env_name}"
    with contextlib.suppress(OSError, tomllib.TOMLDecodeError):
        with open(config, "rb") as fh:
            table = tomllib.load(fh).get(section, {})
        if isinstance(table, dict) and f"{key}_file" in table:
            return f"{section}.{key}_file ({table[f'{key}_file']})"
    return f"nothing (set ${env_name} or {section}.{key}_file)"


class _AmiProbe:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = AmiFramer()
        self.items: list[AmiMessage | AmiBanner] = []
        self.eof = False

    async def next(self, wait_s: float) -> AmiMessage | AmiBanner | None:
        """Next banner/message, None at EOF; TimeoutError when nothing comes."""
        async with asyncio.timeout(wait_s):
            while not self.items:
                if self.eof:
                    return None
                data = await self.reader.read(65536)
                if not data:
                    self.eof = True
                    continue
                self.items.extend(self.framer.feed(data))
        return self.items.pop(0)

    async def send(self, message: AmiMessage) -> None:
        self.writer.write(bytes(message))
        await self.writer.drain()

    async def response(self, action_id: str, wait_s: float) -> AmiMessage | None:
        """The response to ``action_id`` (events in between are skipped); None at EOF."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            item = await self.next(max(0.0, deadline - loop.time()))
            if item is None:
                return None
            if isinstance(item, AmiMessage) and item.response is not None \
                    and item.action_id == action_id:
                return item


async def check_ami(settings: Settings, secret_source: str) -> list[CheckResult]:
    ami = settings.ami
    where = f"{ami.host}:{ami.port}"
    out: list[CheckResult] = []
    names = ["ami.connect", "ami.banner", "ami.login", "ami.permissions", "ami.logoff"]

    def skip_rest(reason: str) -> list[CheckResult]:
        done = {c.name for c in out}
        return out + [CheckResult(n, "SKIP", reason) for n in names if n not in done]

    enable_hint = (f"is manager.conf [general] enabled = yes, port = {ami.port}, bindaddr = "
                   f"{'0.0.0.0' if ami.host not in ('127.0.0.1', 'localhost', '::1') else ami.host}"
                   f" (or this host's address)? then `asterisk -rx 'manager reload'`; "
                   f"`asterisk -rx 'manager show settings'` shows what it listens on")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ami.host, ami.port),
                                                ami.connect_timeout_s)
    except ConnectionRefusedError:
        out.append(CheckResult("ami.connect", "FAIL", f"{where}: connection refused", enable_hint))
        return skip_rest("needs ami.connect")
    except TimeoutError:
        out.append(CheckResult(
            "ami.connect", "FAIL", f"{where}: no answer within {ami.connect_timeout_s:g} s",
            f"check ami.host/ami.port and any firewall between here and Asterisk "
            f"(TCP {ami.port} must be open); {enable_hint}"))
        return skip_rest("needs ami.connect")
    except socket.gaierror as exc:
        out.append(CheckResult("ami.connect", "FAIL", f"{where}: cannot resolve host: {exc}",
                               "set ami.host to a resolvable name or an IP address"))
        return skip_rest("needs ami.connect")
    except OSError as exc:
        out.append(CheckResult("ami.connect", "FAIL", f"{where}: {exc.strerror or exc}",
                               f"check ami.host/ami.port; {enable_hint}"))
        return skip_rest("needs ami.connect")
    out.append(CheckResult("ami.connect", "PASS", f"connected to {where}"))
    probe = _AmiProbe(reader, writer)
    try:
        return await _ami_session(probe, settings, secret_source, out, skip_rest)
    except (ConnectionError, OSError) as exc:
        failed = next(n for n in names if n not in {c.name for c in out})
        out.append(CheckResult(failed, "FAIL", f"connection lost: {exc}",
                               "look at the Asterisk log (manager.conf writetimeout, ACLs)"))
        return skip_rest(f"needs {failed}")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def _ami_session(probe: _AmiProbe, settings: Settings, secret_source: str,
                       out: list[CheckResult],
                       skip_rest: Callable[[str], list[CheckResult]]) -> list[CheckResult]:
    ami = settings.ami
    wait = max(ami.action_timeout_s, MIN_LOGIN_WAIT_S)
    # Banner
    try:
        first = await probe.next(ami.connect_timeout_s)
    except TimeoutError:
        first = None
        detail = f"no banner within {ami.connect_timeout_s:g} s"
    else:
        detail = "connection closed before the banner"
    if not isinstance(first, AmiBanner) or not first.text.startswith(BANNER_PREFIX):
        if probe.framer.errors:
            detail = f"not an AMI banner: {probe.framer.last_error}"
        elif isinstance(first, AmiBanner):
            detail = f"not an AMI banner: {first.text[:60]!r}"
        out.append(CheckResult(
            "ami.banner", "FAIL", detail,
            f"ami.port {ami.port} does not look like the Asterisk manager port: check "
            f"manager.conf [general] port = and ami.port"))
        return skip_rest("needs ami.banner")
    out.append(CheckResult("ami.banner", "PASS", first.text))

    # Login
    user_hint = (f"manager.conf [{ami.username}] must exist with secret = the value Earpiece "
                 f"uses, here from {secret_source}; its permit=/deny= must allow this host; "
                 f"then `asterisk -rx 'manager reload'`")
    if not ami.secret:
        out.append(CheckResult("ami.login", "FAIL", "no AMI secret configured",
                               f"set $EARPIECE_AMI_SECRET or ami.secret_file; {user_hint}"))
        return skip_rest("needs ami.login")
    await probe.send(AmiMessage.action("Login", "doctor-login", Username=ami.username,
                                       Secret=ami.secret.get(), Events="off"))
    try:
        reply = await probe.response("doctor-login", wait)
    except TimeoutError:
        out.append(CheckResult("ami.login", "FAIL", f"no answer to Login within {wait:g} s",
                               "Asterisk is overloaded or this is not Asterisk's AMI"))
        return skip_rest("needs ami.login")
    if reply is None:
        out.append(CheckResult("ami.login", "FAIL", "connection closed during Login", user_hint))
        return skip_rest("needs ami.login")
    if (reply.response or "").lower() != "success":
        message = reply.get("Message", "") or ""
        out.append(CheckResult(
            "ami.login", "FAIL", f"user '{ami.username}': Response: {reply.response}"
            + (f" ({message})" if message else ""), user_hint))
        return skip_rest("needs ami.login")
    out.append(CheckResult("ami.login", "PASS",
                           f"logged in as '{ami.username}' ({reply.get('Message', '')})"))

    # Permissions
    await probe.send(AmiMessage.action("ListCommands", "doctor-perms"))
    try:
        listing = await probe.response("doctor-perms", ami.action_timeout_s)
    except TimeoutError:
        listing = None
    if listing is None or (listing.response or "").lower() != "success":
        out.append(CheckResult("ami.permissions", "FAIL", "ListCommands was not answered",
                               f"manager.conf [{ami.username}] write = {AMI_WRITE_HINT}"))
    else:
        missing = [a for a in NEEDED_AMI_ACTIONS if a not in listing]
        if missing:
            out.append(CheckResult(
                "ami.permissions", "FAIL",
                f"user '{ami.username}' may not run: {', '.join(missing)}",
                f"manager.conf [{ami.username}]: write = {AMI_WRITE_HINT} (or all), "
                f"read = {AMI_READ_HINT} (or all)"))
        else:
            out.append(CheckResult("ami.permissions", "PASS",
                                   f"may run {', '.join(NEEDED_AMI_ACTIONS)}"))

    # Logoff
    await probe.send(AmiMessage.action("Logoff", "doctor-logoff"))
    try:
        bye = await probe.response("doctor-logoff", ami.action_timeout_s)
    except TimeoutError:
        bye = None
    if bye is None or (bye.response or "").lower() != "goodbye":
        out.append(CheckResult("ami.logoff", "FAIL",
                               "Logoff not answered with 'Response: Goodbye'",
                               "this does not behave like Asterisk's AMI; check ami.port"))
    else:
        out.append(CheckResult("ami.logoff", "PASS", bye.get("Message", "Goodbye") or "Goodbye"))
    return out


def _ari_base(url: str) -> str:
    base = url.rstrip("/")
    return base[: -len("/ari")] if base.endswith("/ari") else base


async def check_ari(settings: Settings, secret_source: str) -> list[CheckResult]:
    import aiohttp  # heavy-ish; only when the doctor runs

    ari = settings.ari
    base = _ari_base(ari.url)
    info_url = f"{base}/ari/asterisk/info"
    auth_hint = (f"ari.conf [{ari.username}] needs type = user and password = the value "
                 f"Earpiece uses, here from {secret_source} (password_format = plain); "
                 f"then `asterisk -rx 'module reload res_ari.so'`")
    http_hint = (f"is http.conf [general] enabled = yes with bindport = "
                 f"{_port_of(base)} and a bindaddr reachable from here? "
                 f"`asterisk -rx 'http show status'` shows it")
    out: list[CheckResult] = []
    if not ari.password:
        out.append(CheckResult("ari.info", "FAIL", "no ARI password configured",
                               f"set $EARPIECE_ARI_PASSWORD or ari.password_file; {auth_hint}"))
        out.append(CheckResult("ari.events", "SKIP", "needs ari.info"))
        return out
    auth = {"Authorization": aiohttp.encode_basic_auth(ari.username, ari.password.get())}
    timeout = aiohttp.ClientTimeout(total=ari.request_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        try:
            async with session.get(info_url, headers=auth) as resp:
                status = resp.status
                body = await resp.text()
        except aiohttp.ClientConnectorError as exc:
            refused = exc.os_error.errno == errno.ECONNREFUSED if exc.os_error else False
            detail = f"{info_url}: " + ("connection refused" if refused else str(exc.os_error))
            out.append(CheckResult("ari.info", "FAIL", detail, http_hint))
            out.append(CheckResult("ari.events", "SKIP", "needs ari.info"))
            return out
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.append(CheckResult("ari.info", "FAIL", f"{info_url}: {exc!r}", http_hint))
            out.append(CheckResult("ari.events", "SKIP", "needs ari.info"))
            return out
        message = _json_message(body)
        if status == 200:
            version = _json_path(body, "system", "version")
            if version is None:
                out.append(CheckResult("ari.info", "FAIL", f"200 but not ARI JSON: {body[:80]!r}",
                                       f"ari.url {ari.url} must point at Asterisk's HTTP server"))
                out.append(CheckResult("ari.events", "SKIP", "needs ari.info"))
                return out
            out.append(CheckResult("ari.info", "PASS", f"Asterisk {version} at {base}"))
        else:
            if status == 401:
                fix = auth_hint
            elif status == 404:
                fix = ("ARI is not served: load res_ari (modules.conf; `asterisk -rx 'module "
                       "show like res_ari'`) and set ari.conf [general] enabled = yes; ari.url "
                       "must be the server root (no path)")
            else:
                fix = "see the Asterisk log for this request"
            out.append(CheckResult("ari.info", "FAIL",
                                   f"GET /ari/asterisk/info: {status} {message}".rstrip(), fix))
            out.append(CheckResult("ari.events", "SKIP", "needs ari.info"))
            return out

        # Websocket handshake. A separate app name, so that a running service's app is left
        # alone (Asterisk hands an app's events to its newest websocket).
        ws_url = ("wss" if base.startswith("https") else "ws") + base[base.index(":"):]
        ws_url += "/ari/events"
        app = f"{ari.app}-doctor"
        params = {"app": app}
        if ari.subscribe_all:
            params["subscribeAll"] = "true"
        try:
            async with session.ws_connect(ws_url, params=params, headers=auth, autoping=False,
                                          heartbeat=None) as ws:
                out.append(CheckResult("ari.events", "PASS",
                                       f"websocket /ari/events?app={app}: 101 Switching Protocols"))
                await ws.close()
        except aiohttp.WSServerHandshakeError as exc:
            fix = auth_hint if exc.status == 401 else (
                "the HTTP server refused the websocket upgrade: a proxy in between? "
                "(Asterisk answers 101 for any app name)")
            out.append(CheckResult("ari.events", "FAIL",
                                   f"websocket /ari/events?app={app}: {exc.status} {exc.message}",
                                   fix))
        except (aiohttp.ClientError, TimeoutError) as exc:
            out.append(CheckResult("ari.events", "FAIL", f"websocket {ws_url}: {exc!r}",
                                   http_hint))
    return out


def _port_of(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def _json_message(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:80]
    return str(data.get("message", "")) if isinstance(data, dict) else ""


def _json_path(body: str, *keys: str) -> str | None:
    try:
        data: Any = json.loads(body)
    except ValueError:
        return None
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return str(data)


def check_agi_bind(host: str, port: int) -> CheckResult:
    """Can the FastAGI server listen on ``host:port``? (as asyncio.start_server would)."""
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return CheckResult("agi.bind", "FAIL", f"{host}:{port}: cannot resolve: {exc}",
                           "set agi.host to a local address (0.0.0.0 for all)")
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(1)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            owner = listener_of(port)
            who = f"in use by {owner}" if owner else "in use by another process"
            return CheckResult(
                "agi.bind", "FAIL", f"{host}:{port}: address already in use ({who})",
                f"stop that process (`ss -ltnp 'sport = :{port}'` shows it; is another "
                f"earpiece running?) or set agi.port and the agi://host:PORT/ URLs in "
                f"extensions.conf to a free port")
        if exc.errno == errno.EACCES:
            return CheckResult("agi.bind", "FAIL", f"{host}:{port}: permission denied",
                               "use agi.port >= 1024 (FastAGI's usual port is 4573)")
        if exc.errno == errno.EADDRNOTAVAIL:
            return CheckResult("agi.bind", "FAIL", f"{host}:{port}: not a local address",
                               "set agi.host to an address of this machine, or 0.0.0.0")
        return CheckResult("agi.bind", "FAIL", f"{host}:{port}: {exc.strerror}",
                           "check agi.host/agi.port")
    finally:
        sock.close()
    return CheckResult("agi.bind", "PASS", f"{host}:{port} is free for the FastAGI server")


def listener_of(port: int) -> str | None:
    """``"pid 123 (python3)"`` listening on TCP ``port``, from /proc (Linux; best effort)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                parts = line.split()
                if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) \
                        == port:
                    inodes.add(parts[9])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (pid_dir / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in targets:
                        comm = (pid_dir / "comm").read_text().strip()
                        return f"pid {pid_dir.name} ({comm})"
    return "a process this user cannot see (run as root to name it)"


# --------------------------------------------------------------------------------------------
# CRM database
# --------------------------------------------------------------------------------------------


class CrmSchemaMismatch(CrmError):
    """The CRM tables exist but not with the columns this version of Earpiece writes."""


@dataclass(frozen=True)
class CrmProbe:
    """What the CRM check saw in a database that opened, matched the schema and took a write."""

    tables: int
    calls: int
    calls_estimated: bool  # PostgreSQL's planner estimate (a large table is not counted)
    server: str = ""  # PostgreSQL server version
    schema: str = ""  # PostgreSQL schema (the first of the search_path)

    def summary(self) -> str:
        calls = f"about {self.calls}" if self.calls_estimated else str(self.calls)
        return (f"{self.tables} tables ok, write ok (probe row inserted and deleted), "
                f"{calls} call{'' if self.calls == 1 else 's'} stored")


async def check_crm(settings: Settings, config: str, password_source: str = "", *,
                    connect_timeout_s: float = CRM_CONNECT_TIMEOUT_S,
                    timeout_s: float = CRM_CHECK_TIMEOUT_S) -> CheckResult:
    """Open ``crm.url`` as the service does and prove it can be read and written.

    Never raises for database problems and never takes much longer than ``timeout_s``; the
    PostgreSQL password (``password_source`` says where it comes from) is scrubbed from
    whatever the result says.
    """
    crm = settings.crm
    url_fix = (f"edit {config}: set crm.url to sqlite:///path/to/file.sqlite3 or "
               f"postgresql://user@host:port/database")
    try:
        scheme = url_scheme(crm.url)
    except ConfigError as exc:
        return CheckResult("crm", "FAIL", str(exc), url_fix)
    if scheme == "sqlite":
        result = await _check_sqlite(crm.url, config, timeout_s, url_fix)
    else:
        result = await _check_postgres(crm.url, crm.password, config, password_source,
                                       connect_timeout_s, timeout_s, url_fix)
    if crm.password:  # the stores scrub their messages already; this is the last line
        secret = crm.password.get()
        result = CheckResult(result.name, result.status,
                             result.detail.replace(secret, "********"),
                             result.fix.replace(secret, "********"))
    return result


def _expected_columns() -> dict[str, set[str]]:
    """Table -> columns of the schema this Earpiece creates (same names in every dialect)."""
    conn = sqlite3.connect(":memory:")
    try:
        conn.executescript(SQLITE.schema())
        rows = conn.execute("SELECT m.name, p.name FROM sqlite_master AS m "
                            "JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'")
        out: dict[str, set[str]] = {}
        for table, column in rows:
            out.setdefault(table, set()).add(column)
        return out
    finally:
        conn.close()


async def _probe_store(store: CrmBackend) -> CrmProbe:
    """Schema check, a write that leaves nothing behind, and the number of calls."""
    postgres = store.dialect.name == "postgresql"
    server = schema = ""
    if postgres:
        rows = await store.query(
            "SELECT table_name AS t, column_name AS c FROM information_schema.columns "
            "WHERE table_schema = current_schema()")
        info = await store.query("SELECT current_setting('server_version') AS v, "
                                 "current_schema() AS s")
        server, schema = str(info[0]["v"]), str(info[0]["s"])
    else:
        rows = await store.query("SELECT m.name AS t, p.name AS c FROM sqlite_master AS m "
                                 "JOIN pragma_table_info(m.name) AS p WHERE m.type = 'table'")
    actual: dict[str, set[str]] = {}
    for row in rows:
        actual.setdefault(str(row["t"]), set()).add(str(row["c"]))
    expected = _expected_columns()
    problems = []
    for table, columns in sorted(expected.items()):
        if table not in actual:
            problems.append(f"table {table} is missing")
        elif missing := sorted(columns - actual[table]):
            problems.append(f"table {table} lacks column{'s' if len(missing) > 1 else ''} "
                            f"{', '.join(missing)}")
    if problems:
        raise CrmSchemaMismatch("schema mismatch: " + "; ".join(problems))

    probe_id = f"earpiece-doctor-{uuid.uuid4().hex}"
    probe_columns = ("id", "direction", "channel", "started")
    await store.execute_many([
        (store.dialect.insert("calls", probe_columns), (probe_id, "outbound", "doctor/probe",
                                                  time.time())),
        ("DELETE FROM calls WHERE id = ?", (probe_id,)),
    ])

    estimated = False
    count = -1
    if postgres:
        est = await store.query("SELECT reltuples::bigint AS n FROM pg_class "
                                "WHERE oid = to_regclass('calls')")
        count = int(est[0]["n"]) if est and est[0]["n"] is not None else -1
        estimated = count > CRM_EXACT_COUNT_MAX
    if not estimated:
        count = int((await store.query("SELECT COUNT(*) AS n FROM calls"))[0]["n"])
    return CrmProbe(tables=len(expected), calls=count, calls_estimated=estimated,
                    server=server, schema=schema)


def _schema_fix(config: str) -> str:
    return (f"this database was made by another version of Earpiece (or holds other tables "
            f"with these names): migrate it, or point crm.url in {config} at a new database")


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat``, None when the path does not exist (or a parent is not a directory)."""
    try:
        return path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None


def _sqlite_access_problem(db: Path) -> tuple[str, str] | None:
    """(detail, fix) when ``db`` certainly cannot be opened read-write by this user."""
    who = f"the user that runs earpiece (here uid {os.geteuid()})"
    if (st := _stat(db)) is not None:
        if not stat.S_ISREG(st.st_mode):
            return f"{db} is not a regular file", "set crm.url to an SQLite file's path"
        if not os.access(db, os.R_OK | os.W_OK):
            return (f"permission denied: {db} is not readable and writable",
                    f"chown/chmod {db} for {who}")
        wal, shm = Path(f"{db}-wal"), Path(f"{db}-shm")
        if not os.access(db.parent, os.W_OK | os.X_OK) and not (wal.exists() and shm.exists()):
            return (f"permission denied: directory {db.parent} is not writable (SQLite's WAL "
                    f"mode creates {wal.name} and {shm.name} there)",
                    f"make {db.parent} writable for {who}")
        return None
    anchor = db.parent
    while _stat(anchor) is None:
        anchor = anchor.parent
    if not anchor.is_dir():
        return (f"cannot create {db}: {anchor} is not a directory",
                f"set crm.url to a path under a directory (not under the file {anchor})")
    if not os.access(anchor, os.W_OK | os.X_OK):
        return (f"permission denied: cannot create {db}: directory {anchor} is not writable",
                f"make {anchor} writable for {who}, or set crm.url to a writable place")
    return None


@dataclass(frozen=True)
class _SqliteTarget:
    where: str  # "SQLite /abs/path"
    open_url: str  # crm.url, or a scratch database's URL when the file does not exist yet
    note: str  # said after ``where`` in a PASS
    scratch: Path | None = None


def _sqlite_target(path: str, config: str) -> _SqliteTarget | CheckResult:
    """Where the SQLite database is and what to open to test it, or why it cannot work."""
    if path == ":memory:":
        return _SqliteTarget("SQLite :memory:", "sqlite://:memory:",
                             " (nothing is kept when the service stops):")
    db = Path(path).absolute()
    where = f"SQLite {db}"
    note = "" if Path(path).is_absolute() else " (crm.url is relative to the working directory)"
    try:
        problem = _sqlite_access_problem(db)
        exists = _stat(db) is not None
    except OSError as exc:  # e.g. a parent directory that may not be searched
        return CheckResult("crm", "FAIL", f"{where}: {exc.strerror or exc}: {exc.filename}",
                           f"make the directories of {db} searchable for the user that runs "
                           f"earpiece, or set crm.url in {config}")
    if problem is not None:
        return CheckResult("crm", "FAIL", f"{where}: {problem[0]}", problem[1])
    if exists:
        return _SqliteTarget(where, f"sqlite:///{db}", note + ":")
    # Not created yet: do what the service would do in a scratch database where it would
    # create its directories and file, and leave nothing there.
    anchor = db.parent
    while _stat(anchor) is None:
        anchor = anchor.parent
    scratch = anchor / f".earpiece-doctor-{uuid.uuid4().hex[:12]}.sqlite3"
    return _SqliteTarget(where, f"sqlite:///{scratch}",
                         f"{note} does not exist yet, the service will create it; in a scratch "
                         f"database in {anchor}:", scratch)


def _remove_scratch(scratch: Path) -> None:
    for leftover in (scratch, *(Path(f"{scratch}{s}") for s in ("-wal", "-shm", "-journal"))):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


async def _check_sqlite(url: str, config: str, timeout_s: float, url_fix: str) -> CheckResult:
    try:
        target = _sqlite_target(sqlite_path(url), config)
    except ConfigError as exc:
        return CheckResult("crm", "FAIL", str(exc), url_fix)
    if isinstance(target, CheckResult):
        return target
    where = target.where
    store = make_store(target.open_url)
    try:
        async with asyncio.timeout(timeout_s):
            await store.open()
            probe = await _probe_store(store)
    except TimeoutError:
        return CheckResult("crm", "FAIL", f"{where}: no answer within {timeout_s:g} s",
                           "another process holds a lock on the database, or its file system "
                           "hangs (network mount?)")
    except CrmSchemaMismatch as exc:
        return CheckResult("crm", "FAIL", f"{where}: {exc}", _schema_fix(config))
    except CrmError as exc:
        reason = _sqlite_reason(exc, sqlite_path(target.open_url))
        return CheckResult("crm", "FAIL", f"{where}: {reason}",
                           _sqlite_fix(str(exc), where, config))
    finally:
        await store.close()
        if target.scratch is not None:
            _remove_scratch(target.scratch)
    return CheckResult("crm", "PASS", f"{where}{target.note} {probe.summary()}")


def _sqlite_reason(exc: CrmError, path: str) -> str:
    """The store's message without the path (the check's detail starts with it)."""
    text = str(exc)
    for prefix in (f"cannot open SQLite database {path}: ", f"SQLite {path}: "):
        if text.startswith(prefix):
            return text.removeprefix(prefix)
    return text.replace(f" in {path}:", ":")


def _sqlite_fix(message: str, where: str, config: str) -> str:
    low = message.lower()
    if "readonly" in low or "read-only" in low:
        return (f"{where} is read-only for this user: make the file, its -wal/-shm files and "
                f"its directory writable for the user that runs earpiece")
    if "not a database" in low:
        return f"that file is not an SQLite database: point crm.url in {config} at a new file"
    if "locked" in low or "busy" in low:
        return "another process holds a write lock on the database (for more than 5 s)"
    return f"check crm.url in {config} and the permissions of the file and its directory"


async def _check_postgres(url: str, password: Secret, config: str, password_source: str,
                          connect_timeout_s: float, timeout_s: float,
                          url_fix: str) -> CheckResult:
    from earpiece.crm.postgres import PostgresStore  # psycopg: only for a PostgreSQL URL

    try:
        store = PostgresStore(url, password=password or None,
                              connect_timeout_s=connect_timeout_s)
    except ConfigError as exc:
        return CheckResult("crm", "FAIL", str(exc), url_fix)
    target = store.target
    where = f"PostgreSQL {target}"
    try:
        async with asyncio.timeout(timeout_s):
            await store.open()
            probe = await _probe_store(store)
    except TimeoutError:
        return CheckResult("crm", "FAIL", f"{where}: no answer within {timeout_s:g} s",
                           _pg_fix("timeout", target, config, password_source))
    except CrmSchemaMismatch as exc:
        return CheckResult("crm", "FAIL", f"{where}: {exc}", _schema_fix(config))
    except CrmError as exc:
        message = str(exc)
        for prefix in (f"cannot connect to PostgreSQL {target}: ", f"PostgreSQL {target}: "):
            message = message.removeprefix(prefix)
        low = message.lower()
        if "connection refused" in low:
            message = "connection refused"
        elif "timeout expired" in low:
            message = f"no answer within {connect_timeout_s:g} s (connect timeout)"
        return CheckResult("crm", "FAIL", f"{where}: {message}",
                           _pg_fix(low, target, config, password_source))
    finally:
        await store.close()
    version = f"PostgreSQL {probe.server}" if probe.server else "PostgreSQL"
    return CheckResult("crm", "PASS",
                       f"{version} at {target} (schema {probe.schema}): {probe.summary()}")


def _pg_fix(low: str, target: PgTarget, config: str, password_source: str) -> str:
    host, port, user = target.host or "localhost", target.port, target.user or "<default user>"
    if "connection refused" in low:
        return (f"is PostgreSQL running and listening on {host}:{port}? (postgresql.conf "
                f"listen_addresses and port; `pg_isready -h {host} -p {port}`); or fix crm.url "
                f"in {config}")
    if "timeout" in low:
        return (f"check crm.url's host and port in {config} and any firewall between here and "
                f"the server (TCP {port})")
    if "translate host name" in low or "name or service not known" in low:
        return f"set crm.url in {config} to a resolvable host name or an IP address"
    if "password" in low:
        return (f"the password for '{user}' comes from {password_source or 'nothing'}; check "
                f"it, and the pg_hba.conf rule for this host")
    if "database" in low and "does not exist" in low:
        return (f"create it (`createdb -h {host} -p {port} -U {user} {target.database}`) or "
                f"fix the database name in crm.url in {config}")
    if "role" in low and "does not exist" in low:
        return f"create the role '{user}' or fix the user in crm.url in {config}"
    if "read-only" in low:
        return ("crm.url points at a read-only server (a standby?): use the primary, or add "
                "?target_session_attrs=read-write to crm.url")
    if "permission denied" in low:
        return (f"grant '{user}' CREATE on the schema and SELECT, INSERT, UPDATE, DELETE on the "
                f"CRM tables")
    return f"check crm.url in {config} and the PostgreSQL server log"


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="earpiece TOML configuration to check")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def main(args: argparse.Namespace) -> int:
    report = asyncio.run(run_doctor(args.config))
    if args.json:
        json.dump(report.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(report.render())
    return 0 if report.ok else 1
