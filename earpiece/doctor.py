"""``earpiece doctor``: check a configuration against the real PBX, one step at a time.

Each check prints ``PASS``/``FAIL``/``SKIP`` with what was seen and, on failure, the exact
setting to fix (which Asterisk file and key, which Earpiece key or environment variable)::

    config            the TOML file loads (errors name the file and the key)
    ami.connect       TCP connect to ami.host:ami.port
    ami.banner        the server greets with "Asterisk Call Manager/..."
    ami.login         Login with ami.username and the secret
    ami.permissions   the AMI user may run the actions Earpiece needs (ListCommands); WARN
                      when it may run more (write= classes beyond the least-privilege set)
    ami.events        the AMI user reads the event classes Earpiece needs (FullyBooted after
                      Login shows system; Privilege headers of what arrives); WARN on extras
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

The exit code is 0 only when every check passes or warns. ``--json`` prints the same as JSON.
The PBX checks use plain asyncio, :mod:`earpiece.agi.ami_message` and aiohttp, not the service's
clients, so the doctor works even when those are what is broken; the CRM check
(:mod:`earpiece.crm.health`) opens the service's own store (:mod:`earpiece.crm`), with a short
connect timeout. Secrets never appear in the output.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import os
import socket
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from earpiece.agi.ami_check import NEEDED_ACTIONS, READ_LINE, WRITE_LINE, EventsSeen
from earpiece.agi.ami_check import check_read as check_ami_read
from earpiece.agi.ami_check import check_write as check_ami_write
from earpiece.agi.ami_message import BANNER_PREFIX, AmiBanner, AmiFramer, AmiMessage
from earpiece.checks import CheckResult, Status
from earpiece.config import SECRET_ENV, Settings, load_settings
from earpiece.crm.health import (
    CRM_CHECK_TIMEOUT_S,
    CRM_CONNECT_TIMEOUT_S,
    CRM_EXACT_COUNT_MAX,
    CrmProbe,
    CrmSchemaMismatch,
    check_crm,
)
from earpiece.errors import ConfigError

# CheckResult, Status and the CRM check's names live in earpiece.checks and earpiece.crm.health;
# they are re-exported so that ``from earpiece.doctor import CheckResult, check_crm`` still works.
__all__ = [
    "AMI_READ_HINT", "AMI_WRITE_HINT", "CRM_CHECK_TIMEOUT_S", "CRM_CONNECT_TIMEOUT_S",
    "CRM_EXACT_COUNT_MAX", "MIN_LOGIN_WAIT_S", "NEEDED_AMI_ACTIONS", "CheckResult", "CrmProbe",
    "CrmSchemaMismatch", "DoctorReport", "Status", "check_agi_bind", "check_ami", "check_ari",
    "check_crm", "configure", "listener_of", "main", "run_doctor",
]

# Actions the service sends and the least-privilege classes (earpiece.agi.ami_permissions);
# ListCommands only lists what the user's write= allows.
NEEDED_AMI_ACTIONS = NEEDED_ACTIONS
AMI_WRITE_HINT = WRITE_LINE
AMI_READ_HINT = READ_LINE
MIN_LOGIN_WAIT_S = 3.0  # Asterisk answers a bad secret about 1 s after the Login


@dataclass
class DoctorReport:
    config: str
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.status in ("PASS", "WARN") for c in self.checks)

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
        counts = {s: sum(c.status == s for c in self.checks)
                  for s in ("PASS", "WARN", "FAIL", "SKIP")}
        lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped"
                     + (f", {counts['WARN']} warned" if counts["WARN"] else "")
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
        for name in ("ami.connect", "ami.banner", "ami.login", "ami.permissions", "ami.events",
                     "ami.logoff", "ari.info", "ari.events", "agi.bind", "crm"):
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
        self.seen = EventsSeen()  # classes of the events received (read= check)

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
            if isinstance(item, AmiMessage) and item.event is not None:
                self.seen.add(item.event, item.get("Privilege"))
            if isinstance(item, AmiMessage) and item.response is not None \
                    and item.action_id == action_id:
                return item


async def check_ami(settings: Settings, secret_source: str) -> list[CheckResult]:
    ami = settings.ami
    where = f"{ami.host}:{ami.port}"
    out: list[CheckResult] = []
    names = ["ami.connect", "ami.banner", "ami.login", "ami.permissions", "ami.events",
             "ami.logoff"]

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
                                       Secret=ami.secret.get(), Events="on"))
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

    # Permissions: write= from ListCommands, read= from the events that arrived (FullyBooted
    # comes right after the Login answer, so before the ListCommands answer).
    await probe.send(AmiMessage.action("ListCommands", "doctor-perms"))
    try:
        listing = await probe.response("doctor-perms", ami.action_timeout_s)
    except TimeoutError:
        listing = None
    answered = listing is not None and (listing.response or "").lower() == "success"
    out.append(check_ami_write(ami.username, listing.headers if answered and listing else None))
    out.append(check_ami_read(ami.username, probe.seen))

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
