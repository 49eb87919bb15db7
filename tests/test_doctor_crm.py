"""``earpiece doctor``'s CRM check (``crm``) on SQLite and on the local PostgreSQL server.

PostgreSQL tests use the fixtures of ``test_crm`` (127.0.0.1:5432, database ``test``, trust
auth, a fresh schema per test; ``$EARPIECE_TEST_POSTGRES_URL`` overrides) and skip, saying why,
only when no server is reachable. The closed-port and silent-port tests need no server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from test_crm import pg_admin_url, pg_url  # noqa: F401  (fixtures, used by name)

from earpiece import doctor
from earpiece.checks import CheckResult
from earpiece.config import CrmSettings, Settings
from earpiece.crm.backend import open_store
from earpiece.crm.dialect import SQLITE
from earpiece.crm.health import check_crm
from earpiece.secret import Secret

REPO = Path(__file__).resolve().parents[1]
CRM_PASSWORD = "hunter2-crm-doctor-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def crm_settings(url: str, password: str = "") -> Settings:
    return Settings(crm=CrmSettings(url=url, password=Secret(password)))


def write_config(tmp_path: Path, crm_url: str) -> Path:
    """A config whose PBX ports are closed (those checks fail fast) and whose CRM is crm_url."""
    path = tmp_path / "earpiece.toml"
    path.write_text(f"""
[ami]
host = "127.0.0.1"
port = {free_port()}
username = "assist"
connect_timeout_s = 1.0

[ari]
url = "http://127.0.0.1:{free_port()}"
username = "assist"
request_timeout_s = 1.0

[agi]
host = "127.0.0.1"
port = {free_port()}

[crm]
url = "{crm_url}"
""")
    return path


async def add_calls(url: str, n: int) -> None:
    store = await open_store(url)
    await store.execute_many([
        ("INSERT INTO calls (id, direction, channel, started) VALUES (?, ?, ?, ?)",
         (f"c{i}", "outbound", f"PJSIP/c{i}", 10.0 + i)) for i in range(n)])
    await store.close()


@pytest.fixture
async def silent_port() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never says anything (a black-holed server)."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for w in held:
            w.transport.abort()
        server.close()
        await server.wait_closed()


# --------------------------------------------------------------------------------------------
# SQLite
# --------------------------------------------------------------------------------------------


async def test_sqlite_database_passes_and_counts_calls(tmp_path: Path) -> None:
    db = tmp_path / "crm.sqlite3"
    await add_calls(f"sqlite:///{db}", 3)
    cfg = write_config(tmp_path, f"sqlite:///{db}")
    report = await doctor.run_doctor(cfg, env={})
    assert report.checks[-1].name == "crm"
    check = report.result("crm")
    assert check.status == "PASS", check
    tables = SQLITE.schema().count("CREATE TABLE")
    assert check.detail == (f"SQLite {db}: {tables} tables ok, write ok (probe row inserted and "
                            f"deleted), 3 calls stored")
    assert check.fix == ""
    assert "PASS  crm" in report.render()
    # The probe row is gone and the calls are untouched.
    conn = sqlite3.connect(db)
    try:
        ids = [r[0] for r in conn.execute("SELECT id FROM calls ORDER BY id")]
    finally:
        conn.close()
    assert ids == ["c0", "c1", "c2"]


async def test_sqlite_not_created_yet_passes_and_leaves_nothing(tmp_path: Path) -> None:
    db = tmp_path / "var" / "lib" / "crm.sqlite3"
    check = await check_crm(crm_settings(f"sqlite:///{db}"), "e.toml")
    assert check.status == "PASS", check
    assert f"SQLite {db} does not exist yet, the service will create it" in check.detail
    assert f"in a scratch database in {tmp_path}:" in check.detail
    tables = SQLITE.schema().count("CREATE TABLE")
    assert check.detail.endswith(f"{tables} tables ok, write ok (probe row inserted and "
                                 "deleted), 0 calls stored")
    assert os.listdir(tmp_path) == []  # no database, no directories, no scratch files


async def test_sqlite_relative_url_is_resolved_like_the_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    await add_calls("sqlite:///data/crm.sqlite3", 1)
    check = await check_crm(crm_settings("sqlite:///data/crm.sqlite3"), "e.toml")
    assert check.status == "PASS", check
    assert check.detail.startswith(f"SQLite {tmp_path}/data/crm.sqlite3 (crm.url is relative "
                                   f"to the working directory): ")
    assert check.detail.endswith("1 call stored")


async def test_sqlite_path_under_a_file_fails_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    db = tmp_path / "afile" / "crm.sqlite3"
    check = await check_crm(crm_settings(f"sqlite:///{db}"), "e.toml")
    assert check.status == "FAIL"
    assert check.detail == f"SQLite {db}: cannot create {db}: {tmp_path}/afile is not a directory"
    assert "crm.url" in check.fix


async def test_sqlite_file_that_is_not_a_database_fails(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database, just text that is long enough to fill a header " * 4)
    check = await check_crm(crm_settings(f"sqlite:///{db}"), "e.toml")
    assert check.status == "FAIL"
    assert check.detail == f"SQLite {db}: cannot create the CRM schema: file is not a database"
    assert "not an SQLite database" in check.fix and "e.toml" in check.fix


async def test_sqlite_schema_mismatch_names_the_missing_columns(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE calls (id TEXT PRIMARY KEY, direction TEXT, channel TEXT, "
                 "started REAL)")
    conn.commit()
    conn.close()
    check = await check_crm(crm_settings(f"sqlite:///{db}"), "e.toml")
    assert check.status == "FAIL"
    assert check.detail == (f"SQLite {db}: schema mismatch: table calls lacks columns answered, "
                            f"ended, hangup_cause, outcome, outcome_source, state, tags")
    assert "another version of Earpiece" in check.fix and "e.toml" in check.fix


def test_unsupported_url_names_the_key(tmp_path: Path) -> None:
    check = asyncio.run(check_crm(crm_settings("mysql://db/crm"), "e.toml"))
    assert check.status == "FAIL"
    assert check.detail.startswith("crm.url: unsupported database URL scheme 'mysql'")
    assert check.fix.startswith("edit e.toml: set crm.url to")


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory any user may enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="earpiece-doctor-crm-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(path)


UNPRIVILEGED_CHECK = """
import asyncio, json, sys
from earpiece.config import CrmSettings, Settings
from earpiece.crm.health import check_crm
out = [asyncio.run(check_crm(Settings(crm=CrmSettings(url=u)), "e.toml")).__dict__
       for u in sys.argv[1:]]
print(json.dumps(out))
"""


def test_sqlite_without_write_permission_fails_with_the_reason(world_dir: Path) -> None:
    """A directory and a database this user may not write: permission denied, not a traceback.

    As root (who may write anywhere) the check runs in a child process as ``nobody``."""
    locked = world_dir / "locked"
    locked.mkdir()
    db = world_dir / "ro.sqlite3"
    sqlite3.connect(db).close()
    urls = [f"sqlite:///{locked}/crm.sqlite3", f"sqlite:///{db}"]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and setpriv(1) is missing: cannot drop privileges")
        locked.chmod(0o755)  # root's, so read-only for nobody
        cmd = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
               "-c", UNPRIVILEGED_CHECK, *urls]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=world_dir,
                              env=env, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        results = [CheckResult(**r) for r in json.loads(proc.stdout)]
    else:
        locked.chmod(0o555)
        db.chmod(0o444)
        results = [asyncio.run(check_crm(crm_settings(u), "e.toml")) for u in urls]
    new_db, ro_db = results
    assert new_db.status == "FAIL"
    assert new_db.detail == (f"SQLite {locked}/crm.sqlite3: permission denied: cannot create "
                             f"{locked}/crm.sqlite3: directory {locked} is not writable")
    assert f"make {locked} writable for the user that runs earpiece" in new_db.fix
    assert ro_db.status == "FAIL"
    assert ro_db.detail == f"SQLite {db}: permission denied: {db} is not readable and writable"
    assert list(locked.iterdir()) == []


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


async def test_postgresql_passes_and_counts_calls(request: pytest.FixtureRequest) -> None:
    url: str = request.getfixturevalue("pg_url")
    await add_calls(url, 2)
    check = await check_crm(crm_settings(url), "e.toml")
    assert check.status == "PASS", check
    schema = url.rsplit("%3D", 1)[1]
    user = url.split("//", 1)[1].split("@", 1)[0]
    assert check.detail.startswith("PostgreSQL ")
    tables = SQLITE.schema().count("CREATE TABLE")
    assert f" at {user}@127.0.0.1:5432/test (schema {schema}): {tables} tables ok, write ok " \
           f"(probe row inserted and deleted), 2 calls stored" in check.detail
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM calls ORDER BY id")]
    assert ids == ["c0", "c1"]  # the probe row was deleted in its own transaction


async def test_postgresql_closed_port_fails_fast(tmp_path: Path) -> None:
    port = free_port()
    url = f"postgresql://earpiece@127.0.0.1:{port}/crm"
    start = time.monotonic()
    report = await doctor.run_doctor(write_config(tmp_path, url), env={})
    elapsed = time.monotonic() - start
    check = report.result("crm")
    assert check.status == "FAIL"
    assert check.detail == f"PostgreSQL earpiece@127.0.0.1:{port}/crm: connection refused"
    assert f"listening on 127.0.0.1:{port}" in check.fix and "crm.url" in check.fix
    assert elapsed < 3.0  # the whole doctor, every port closed


async def test_postgresql_silent_server_times_out(silent_port: int) -> None:
    url = f"postgresql://earpiece@127.0.0.1:{silent_port}/crm"
    start = time.monotonic()
    check = await check_crm(crm_settings(url), "e.toml", connect_timeout_s=2.0)
    elapsed = time.monotonic() - start
    assert check.status == "FAIL"
    assert check.detail == (f"PostgreSQL earpiece@127.0.0.1:{silent_port}/crm: no answer "
                            f"within 2 s (connect timeout)")
    assert "firewall" in check.fix
    assert 1.5 < elapsed < 4.0


async def test_postgresql_overall_timeout_is_a_failed_check(silent_port: int) -> None:
    url = f"postgresql://earpiece@127.0.0.1:{silent_port}/crm"
    start = time.monotonic()
    check = await check_crm(crm_settings(url), "e.toml", connect_timeout_s=10.0,
                            timeout_s=0.5)
    assert time.monotonic() - start < 2.0
    assert (check.status, check.detail) == (
        "FAIL", f"PostgreSQL earpiece@127.0.0.1:{silent_port}/crm: no answer within 0.5 s")


def test_password_never_in_the_output_or_the_logs(
    request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """$EARPIECE_CRM_PASSWORD set: a server that accepts (trust auth: the password is sent but
    not needed), a closed port, and a database named like the password (the server's error
    then quotes it): never printed, never logged."""
    pg: str = request.getfixturevalue("pg_url")
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("EARPIECE_CRM_PASSWORD", CRM_PASSWORD)
    admin = pg.split("?", 1)[0].rsplit("/", 1)[0]
    urls = [pg, f"postgresql://earpiece@127.0.0.1:{free_port()}/crm",
            f"{admin}/{CRM_PASSWORD}"]
    outputs = []
    for i, url in enumerate(urls):
        (tmp_path / str(i)).mkdir()
        cfg = write_config(tmp_path / str(i), url)
        for as_json in (False, True):
            assert doctor.main(argparse.Namespace(config=str(cfg), json=as_json)) == 1
            outputs.append(capsys.readouterr().out)
    checks = [json.loads(out)["checks"][-1] for out in outputs[1::2]]
    assert [(c["name"], c["status"]) for c in checks] == [
        ("crm", "PASS"), ("crm", "FAIL"), ("crm", "FAIL")]
    assert "does not exist" in checks[2]["detail"] and "********" in checks[2]["detail"]
    assert "PASS  crm" in outputs[0] and "FAIL  crm" in outputs[2]
    text = "".join(outputs) + caplog.text
    assert CRM_PASSWORD not in text
    assert "hunter2" not in text
