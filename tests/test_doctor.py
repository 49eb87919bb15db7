"""``earpiece doctor`` against in-test fake AMI/ARI servers that replay recorded Asterisk bytes."""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from earpiece import doctor
from earpiece.agi.ami_check import READ_LINE
from earpiece.agi.ami_message import AmiFramer, AmiMessage
from earpiece.agi.ami_permissions import ACTION_CLASSES, event_allowed, parse_classes

REPO = Path(__file__).resolve().parents[1]
SECRET = "s3cret-ami-value"
PASSWORD = "s3cret-ari-value"


def _asterisk_dir() -> Path:
    env = os.environ.get("EARPIECE_ASTERISK_DIR")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "asterisk"]:
        if (cand / "captures" / "ami").is_dir():
            return cand
    pytest.skip("Asterisk captures (../shared/asterisk) not found; set EARPIECE_ASTERISK_DIR")


@cache
def _records(rel: str) -> tuple[dict[str, Any], ...]:
    path = _asterisk_dir() / "captures" / rel
    return tuple(json.loads(line) for line in path.read_text().splitlines() if line.strip())


def _ami_rx(rel: str) -> list[str]:
    return [r["raw"] for r in _records(rel) if r["dir"] == "rx" and r["raw"]]


def _ari_response(rel: str, status: int, case: str | None = None) -> dict[str, Any]:
    for r in _records(rel):
        if r["kind"] == "response" and r["status"] == status and (case is None
                                                                  or r.get("case") == case):
            return r
    raise LookupError((rel, status, case))


def _with_action_id(raw: str, action_id: str) -> bytes:
    msg = AmiMessage.parse(raw.encode())
    return bytes(AmiMessage(tuple((k, action_id if k == "ActionID" else v)
                                  for k, v in msg.headers)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------------------------
# Fake AMI: banner, Login (good/bad as recorded), ListCommands, Logoff
# --------------------------------------------------------------------------------------------


@dataclass
class FakeAmi:
    secret: str = SECRET
    username: str = "assist"
    actions: tuple[str, ...] = ("Login", "Logoff", "Ping", "ListCommands", "Originate",
                                "Hangup", "CoreShowChannels", "SendText", "MessageSend")
    read: str = READ_LINE  # manager.conf read= of the user: which login events it gets
    bad_secret_delay_s: float = 0.2  # real Asterisk: ~1.0 s
    banner: bytes | None = None
    received: list[AmiMessage] = field(default_factory=list)
    server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ok_rx = _ami_rx("ami/login_ok.jsonl")
        writer.write(self.banner if self.banner is not None else ok_rx[0].encode())
        framer = AmiFramer(expect_banner=False)
        try:
            while data := await reader.read(4096):
                for msg in framer.feed(data):
                    assert isinstance(msg, AmiMessage)
                    self.received.append(msg)
                    aid = msg.action_id or ""
                    action = (msg.action_name or "").lower()
                    if action == "login":
                        good = (msg.get("Username"), msg.get("Secret")) == (self.username,
                                                                           self.secret)
                        if good:
                            for raw in ok_rx[1:4]:  # Success, FullyBooted, SuccessfulAuth
                                event = AmiMessage.parse(raw.encode())
                                if event.event is not None and not event_allowed(
                                        event.get("Privilege") or "", parse_classes(self.read)):
                                    continue  # Asterisk filters events by read= classes
                                writer.write(_with_action_id(raw, aid) if "ActionID" in raw
                                             else raw.encode())
                        else:
                            await asyncio.sleep(self.bad_secret_delay_s)
                            bad = _ami_rx("ami/login_bad_secret.jsonl")[1]
                            writer.write(_with_action_id(bad, aid))
                            await writer.drain()
                            return  # Asterisk closes after a failed login
                    elif action == "listcommands":
                        lines = "".join(f"{a}: synopsis of {a} (Priv: <none>)\r\n"
                                        for a in self.actions)
                        writer.write(f"Response: Success\r\nActionID: {aid}\r\n{lines}\r\n"
                                     .encode())
                    elif action == "logoff":
                        writer.write(_with_action_id(ok_rx[4], aid))
                        await writer.drain()
                        return
                await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> FakeAmi:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


# --------------------------------------------------------------------------------------------
# Fake ARI: /ari/asterisk/info and the /ari/events websocket, recorded bodies
# --------------------------------------------------------------------------------------------


@dataclass
class FakeAri:
    password: str = PASSWORD
    serve_ari: bool = True
    ws_apps: list[str] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    def _authorised(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"assist:{self.password}".encode()).decode()
        return header == expected

    def _unauthorised(self) -> web.Response:
        rec = _ari_response("ari/errors_http.jsonl", 401, "wrong password")
        headers = {k: v for k, v in rec["headers"]
                   if k in ("WWW-Authenticate", "Server", "Cache-Control")}
        return web.Response(status=401, text=rec["body"], headers=headers,
                            content_type="application/json")

    async def info(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._unauthorised()
        rec = _ari_response("ari/asterisk_info.jsonl", 200)
        assert rec["path"] == "/ari/asterisk/info"
        return web.Response(text=rec["body"], content_type="application/json")

    async def events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorised(request):
            return self._unauthorised()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.ws_apps.append(request.query.get("app", ""))
        async for _ in ws:
            pass
        return ws

    async def __aenter__(self) -> FakeAri:
        app = web.Application()
        if self.serve_ari:
            app.router.add_get("/ari/asterisk/info", self.info)
            app.router.add_get("/ari/events", self.events)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


def write_config(tmp_path: Path, *, ami_port: int, ari_port: int, agi_port: int,
                 extra: str = "") -> Path:
    path = tmp_path / "earpiece.toml"
    path.write_text(f"""
[ami]
host = "127.0.0.1"
port = {ami_port}
username = "assist"
connect_timeout_s = 2.0
action_timeout_s = 2.0

[ari]
url = "http://127.0.0.1:{ari_port}"
username = "assist"
app = "assist"
request_timeout_s = 2.0

[agi]
host = "127.0.0.1"
port = {agi_port}

[crm]
url = "sqlite:///{tmp_path}/crm.sqlite3"
{extra}""")
    return path


ENV = {"EARPIECE_AMI_SECRET": SECRET, "EARPIECE_ARI_PASSWORD": PASSWORD}


@pytest.fixture
async def pbx() -> AsyncIterator[tuple[FakeAmi, FakeAri]]:
    async with FakeAmi() as ami, FakeAri() as ari:
        yield ami, ari


def _statuses(report: doctor.DoctorReport) -> dict[str, str]:
    return {c.name: c.status for c in report.checks}


def _no_secret_leak(report: doctor.DoctorReport) -> None:
    text = report.render() + json.dumps(report.to_dict())
    assert SECRET not in text and PASSWORD not in text


# --------------------------------------------------------------------------------------------


async def test_all_checks_pass(tmp_path: Path, pbx: tuple[FakeAmi, FakeAri]) -> None:
    ami, ari = pbx
    cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
    report = await doctor.run_doctor(cfg, env=ENV)
    assert [c.name for c in report.checks] == [
        "config", "ami.connect", "ami.banner", "ami.login", "ami.permissions", "ami.events",
        "ami.logoff", "ari.info", "ari.events", "agi.bind", "crm"]
    assert set(_statuses(report).values()) == {"PASS"}, report.render()
    assert report.ok
    assert report.result("ami.banner").detail == "Asterisk Call Manager/11.0.0"
    assert "Authentication accepted" in report.result("ami.login").detail
    assert report.result("ari.info").detail.startswith("Asterisk 22.10.1")
    # What went over the wire is a real AMI login with the secret from the environment.
    login = ami.received[0]
    assert (login.action_name, login["Username"], login["Secret"]) == ("Login", "assist", SECRET)
    assert [m.action_name for m in ami.received] == ["Login", "ListCommands", "Logoff"]
    assert ari.ws_apps == ["assist-doctor"]
    _no_secret_leak(report)
    assert report.render().splitlines()[-1].startswith("11 passed, 0 failed")


async def test_refused_ami_port(tmp_path: Path, pbx: tuple[FakeAmi, FakeAri]) -> None:
    _, ari = pbx
    dead = free_port()
    cfg = write_config(tmp_path, ami_port=dead, ari_port=ari.port, agi_port=free_port())
    report = await doctor.run_doctor(cfg, env=ENV)
    check = report.result("ami.connect")
    assert check.status == "FAIL"
    assert check.detail == f"127.0.0.1:{dead}: connection refused"
    assert "manager.conf [general] enabled = yes" in check.fix
    assert f"port = {dead}" in check.fix and "bindaddr" in check.fix
    assert [_statuses(report)[n] for n in ("ami.banner", "ami.login", "ami.logoff")] == [
        "SKIP"] * 3
    assert _statuses(report)["ari.info"] == "PASS"  # the other checks still run
    assert not report.ok


async def test_bad_ami_secret(tmp_path: Path, pbx: tuple[FakeAmi, FakeAri]) -> None:
    ami, ari = pbx
    cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
    report = await doctor.run_doctor(cfg, env={**ENV, "EARPIECE_AMI_SECRET": "wrong-secret"})
    check = report.result("ami.login")
    assert check.status == "FAIL"
    assert "Response: Error (Authentication failed)" in check.detail
    assert "manager.conf [assist]" in check.fix and "$EARPIECE_AMI_SECRET" in check.fix
    assert "permit=/deny=" in check.fix
    assert _statuses(report)["ami.logoff"] == "SKIP"
    assert "wrong-secret" not in report.render()


async def test_bad_ami_secret_from_file_names_the_file(tmp_path: Path,
                                                       pbx: tuple[FakeAmi, FakeAri]) -> None:
    ami, ari = pbx
    (tmp_path / "ami.secret").write_text("not-the-secret\n")
    cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
    text = cfg.read_text().replace('username = "assist"\nconnect',
                                   'username = "assist"\nsecret_file = "ami.secret"\nconnect')
    cfg.write_text(text)
    report = await doctor.run_doctor(cfg, env={"EARPIECE_ARI_PASSWORD": PASSWORD})
    check = report.result("ami.login")
    assert check.status == "FAIL"
    assert "ami.secret_file (ami.secret)" in check.fix


async def test_missing_ami_secret(tmp_path: Path, pbx: tuple[FakeAmi, FakeAri]) -> None:
    ami, ari = pbx
    cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
    report = await doctor.run_doctor(cfg, env={"EARPIECE_ARI_PASSWORD": PASSWORD})
    check = report.result("ami.login")
    assert (check.status, check.detail) == ("FAIL", "no AMI secret configured")
    assert ami.received == []  # nothing sent without a secret


async def test_ami_user_without_write_permissions(tmp_path: Path) -> None:
    async with FakeAmi(actions=("Login", "Logoff", "Ping", "ListCommands", "Hangup")) as ami, \
            FakeAri() as ari:
        cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
        report = await doctor.run_doctor(cfg, env=ENV)
    check = report.result("ami.permissions")
    assert check.status == "FAIL"
    assert check.detail == ("user 'assist' may not run: Originate, CoreShowChannels, SendText, "
                            "MessageSend")
    assert "manager.conf [assist]: write = call,reporting,originate,message" in check.fix
    assert "(missing: call,reporting,originate,message)" in check.fix
    assert _statuses(report)["ami.logoff"] == "PASS"


async def test_not_an_ami_port(tmp_path: Path) -> None:
    async with FakeAmi(banner=b"HTTP/1.1 400 Bad Request\r\n") as ami, FakeAri() as ari:
        cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
        report = await doctor.run_doctor(cfg, env=ENV)
    check = report.result("ami.banner")
    assert check.status == "FAIL" and "HTTP/1.1 400" in check.detail
    assert "manager.conf [general] port" in check.fix


async def test_ari_401(tmp_path: Path) -> None:
    async with FakeAmi() as ami, FakeAri(password="other") as ari:
        cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
        report = await doctor.run_doctor(cfg, env=ENV)
    check = report.result("ari.info")
    assert check.status == "FAIL"
    assert check.detail == "GET /ari/asterisk/info: 401 Authentication required"
    assert "ari.conf [assist]" in check.fix and "$EARPIECE_ARI_PASSWORD" in check.fix
    assert _statuses(report)["ari.events"] == "SKIP"
    assert _statuses(report)["ami.login"] == "PASS"
    _no_secret_leak(report)


async def test_ari_404_means_res_ari_missing(tmp_path: Path) -> None:
    async with FakeAmi() as ami, FakeAri(serve_ari=False) as ari:
        cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
        report = await doctor.run_doctor(cfg, env=ENV)
    check = report.result("ari.info")
    assert check.status == "FAIL" and "404" in check.detail
    assert "res_ari" in check.fix and "ari.conf [general] enabled = yes" in check.fix


async def test_ari_refused(tmp_path: Path, pbx: tuple[FakeAmi, FakeAri]) -> None:
    ami, _ = pbx
    dead = free_port()
    cfg = write_config(tmp_path, ami_port=ami.port, ari_port=dead, agi_port=free_port())
    report = await doctor.run_doctor(cfg, env=ENV)
    check = report.result("ari.info")
    assert check.status == "FAIL" and check.detail.endswith("connection refused")
    assert f"http.conf [general] enabled = yes with bindport = {dead}" in check.fix


async def test_fastagi_port_in_use_names_the_owner(tmp_path: Path,
                                                   pbx: tuple[FakeAmi, FakeAri]) -> None:
    ami, ari = pbx
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=port)
        report = await doctor.run_doctor(cfg, env=ENV)
        proc_works = doctor.listener_of(port) is not None
    check = report.result("agi.bind")
    assert check.status == "FAIL"
    assert "address already in use" in check.detail
    if proc_works:  # Linux with a readable /proc names the process
        assert f"in use by pid {os.getpid()} (" in check.detail
    assert f"sport = :{port}" in check.fix and "agi.port" in check.fix


async def test_config_error_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[ami]\nport = \"5038\"\n")
    report = await doctor.run_doctor(cfg, env=ENV)
    check = report.result("config")
    assert check.status == "FAIL"
    assert str(cfg) in check.detail and "ami.port" in check.detail
    assert "fix key 'ami.port'" in check.fix
    assert {c.status for c in report.checks[1:]} == {"SKIP"}


def test_cli_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EARPIECE_AMI_SECRET", SECRET)
    monkeypatch.setenv("EARPIECE_ARI_PASSWORD", PASSWORD)

    async def serve_and_check(as_json: bool) -> int:
        async with FakeAmi() as ami, FakeAri() as ari:
            cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port,
                               agi_port=free_port())
            report = await doctor.run_doctor(cfg)
            assert report.ok
            args = argparse.Namespace(config=str(cfg), json=as_json)
            return await asyncio.to_thread(doctor.main, args)

    assert asyncio.run(serve_and_check(True)) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and len(out["checks"]) == 11
    assert all(c["status"] == "PASS" for c in out["checks"])

    args = argparse.Namespace(config=str(tmp_path / "missing.toml"), json=False)
    assert doctor.main(args) == 1
    text = capsys.readouterr().out
    assert "FAIL  config" in text and "file not found" in text and "NOT READY" in text


def test_cli_registers_doctor() -> None:
    from earpiece.cli import build_parser

    args = build_parser().parse_args(["doctor", "--config", "x.toml", "--json"])
    assert args._module == "earpiece.doctor" and args.json and args.config == "x.toml"


# --------------------------------------------------------------------------------------------
# AMI read=/write= classes: least privilege (earpiece.agi.ami_permissions)
# --------------------------------------------------------------------------------------------


def _old_site_user_actions() -> tuple[str, ...]:
    """What ListCommands listed for the old shipped user (write = system,call,originate,
    reporting,message) in captures/faults/ami/ami_permissions."""
    notes = json.loads((_asterisk_dir() / "captures" / "faults" / "ami"
                        / "ami_permissions.json").read_text())
    return tuple(notes["facts"]["list_commands_user_actions"])


async def _doctor_with(tmp_path: Path, ami: FakeAmi) -> doctor.DoctorReport:
    async with ami, FakeAri() as ari:
        cfg = write_config(tmp_path, ami_port=ami.port, ari_port=ari.port, agi_port=free_port())
        return await doctor.run_doctor(cfg, env=ENV)


async def test_old_shipped_write_classes_warn_about_system(tmp_path: Path) -> None:
    report = await _doctor_with(tmp_path, FakeAmi(actions=_old_site_user_actions()))
    check = report.result("ami.permissions")
    assert check.status == "WARN", report.render()
    assert "GetConfig" in check.detail and "Reload" in check.detail
    assert "write= holds system" in check.detail
    assert "manager.conf [assist]: write = call,reporting,originate,message" in check.fix
    assert "drop system" in check.fix and "manager reload" in check.fix
    assert report.ok  # a warning is not a failure: exit code 0
    assert "1 warned" in report.render().splitlines()[-1]


async def test_write_all_warns_all(tmp_path: Path) -> None:
    report = await _doctor_with(tmp_path, FakeAmi(actions=tuple(ACTION_CLASSES)))
    check = report.result("ami.permissions")
    assert check.status == "WARN"
    assert check.detail.startswith("user 'assist' may also run Command, GetConfig, ")
    assert "write= holds all" in check.detail and "drop all" in check.fix


async def test_read_all_warns_about_extra_event_classes(tmp_path: Path) -> None:
    # login_ok was recorded with read = all: SuccessfulAuth (security) reaches the session
    report = await _doctor_with(tmp_path, FakeAmi(read="all"))
    check = report.result("ami.events")
    assert check.status == "WARN", report.render()
    assert check.detail == ("user 'assist' receives events Earpiece does not need: "
                            "security (SuccessfulAuth)")
    assert check.fix.startswith("manager.conf [assist]: read = system,call,dtmf,dialplan "
                                "(least privilege: drop security, or `all`)")
    assert _statuses(report)["ami.permissions"] == "PASS"


async def test_read_without_system_fails(tmp_path: Path) -> None:
    report = await _doctor_with(tmp_path, FakeAmi(read="call,dialplan,dtmf"))
    check = report.result("ami.events")
    assert check.status == "FAIL"
    assert "no FullyBooted after Login" in check.detail and "system" in check.detail
    assert check.fix.startswith("manager.conf [assist]: read = system,call,dtmf,dialplan; ")
    assert "manager show user assist" in check.fix
    assert not report.ok


async def test_least_privilege_user_passes_and_says_what_it_cannot_see(tmp_path: Path) -> None:
    ami = FakeAmi()
    report = await _doctor_with(tmp_path, ami)
    check = report.result("ami.events")
    assert check.status == "PASS"
    assert check.detail.startswith("reads system (seen); call,dtmf,dialplan only show with ")
    assert ami.received[0]["Events"] == "on"  # FullyBooted only comes with events on

