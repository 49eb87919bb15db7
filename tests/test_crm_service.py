"""The Earpiece service with its CRM on PostgreSQL: calls through the PBX simulator end up as
rows in the PostgreSQL server (not in a SQLite file), also when the database connection is
killed while calls are live. Skips, saying why, only when no PostgreSQL server is reachable
(see ``tests/test_crm.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from test_crm import pg_admin_url, pg_url  # noqa: F401  (fixtures, used by name)

from earpiece.app import Service
from earpiece.config import CrmSettings
from earpiece.crm.postgres import PostgresStore
from earpiece.demo import demo_settings
from earpiece.events import CallEnded
from earpiece.secret import Secret
from earpiece.sim.scenario import load_scenario
from earpiece.sim.simulator import Simulator

ENDPOINTS = {"p_ans1": "answer", "p_busy": "busy", "p_ans2": "answer", "p_decl": "decline",
             "p_cong": "congestion", "p_ans3": "answer"}
EXPECTED = {"answer": "answered", "busy": "busy", "decline": "rejected",
            "congestion": "congestion"}


def scenario_file(tmp_path: Path) -> Path:
    lines = ['name = "crm-postgres"', "[dialplan]", 'agents = ["agent1"]', "dial_timeout_s = 10",
             "[[endpoints]]", 'name = "agent1"', 'role = "agent"']
    for name, outcome in ENDPOINTS.items():
        lines += ["[[endpoints]]", f'name = "{name}"', f'outcome = "{outcome}"', "ring_s = 0.4",
                  "hangup_after_s = 1.5"]
    calls = ", ".join(f'"{n}"' for n in ENDPOINTS)
    lines += ["[dialer]", "enabled = true", "start_after_s = 0.3", "spacing_s = 0.4",
              "timeout_ms = 2500", f"calls = [{calls}]"]
    path = tmp_path / "crm.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.02)


async def test_service_writes_its_calls_to_postgresql(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url: str = request.getfixturevalue("pg_url")
    admin: str = request.getfixturevalue("pg_admin_url")
    sim = Simulator(load_scenario(scenario_file(tmp_path)), seed=3)
    await sim.start()
    settings = demo_settings(sim, db=str(tmp_path / "not-used.sqlite3"))
    settings = dataclasses.replace(
        settings, crm=CrmSettings(url=url, password=Secret("sent-but-trusted")))
    service = Service(settings, media=False)
    ended: list[str] = []
    service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
    try:
        await service.start()
        store = service.store
        assert isinstance(store, PostgresStore)
        # Kill the CRM's database connection while the first calls are live.
        await wait_until(lambda: len(service.registry.calls) >= 2)
        (row,) = await store.query("SELECT pg_backend_pid() AS pid")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (row["pid"],))
        await wait_until(lambda: len(ended) >= len(ENDPOINTS))
        assert service.crm is not None
        await service.crm.flush()
        assert service.crm.failed_batches == 0 and store.reconnects == 1
        snapshot = {c["id"]: c["outcome"] for c in service.registry.snapshot()}
    finally:
        await service.stop()
        await sim.stop()
    assert not (tmp_path / "not-used.sqlite3").exists()
    # Read back over an independent connection: the rows are in PostgreSQL.
    schema = url.rsplit("%3D", 1)[1]
    with psycopg.connect(admin, autocommit=True) as conn:
        rows = conn.execute(
            f'SELECT c.id, c.outcome, c.ended, l.channel FROM "{schema}".calls c'
            f' JOIN "{schema}".legs l ON l.call_id = c.id AND l.role = %s', ("customer",)
        ).fetchall()
        changes = conn.execute(f'SELECT count(*) FROM "{schema}".state_changes').fetchone()
    assert len(rows) == len(ENDPOINTS)
    assert {r[0]: r[1] for r in rows} == snapshot
    by_endpoint = {r[3].split("/")[1].split("-")[0]: r[1] for r in rows}
    assert by_endpoint == {n: EXPECTED[o] for n, o in ENDPOINTS.items()}
    assert all(r[2] is not None for r in rows)
    assert changes is not None and changes[0] >= len(ENDPOINTS)
