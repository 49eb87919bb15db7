"""Earpiece's own lifecycle against the PBX simulator: a restart (SIGTERM) during live calls,
calls that end while it is down, a second instance on the same ARI app, and kill -9.

Whatever happens to the Earpiece process, the CRM holds exactly one record per real call, every
record ends, tags are kept, every leg (helpers included) gets ``left_at``, and nothing of
Earpiece's is left in the PBX after the calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from earpiece.app import Service
from earpiece.asr.settings import AsrSettings
from earpiece.crm.lock import InstanceLockedError
from earpiece.demo import demo_settings
from earpiece.sim.scenario import load_scenario
from earpiece.sim.simulator import Simulator


def scenario_file(tmp_path: Path, calls: int, hangup_after_s: float) -> Path:
    lines = [
        'name = "lifecycle"',
        "[dialplan]", 'agents = ["agent1"]', "dial_timeout_s = 10",
        "[[endpoints]]", 'name = "agent1"', 'role = "agent"',
    ]
    names = [f"cust{i}" for i in range(calls)]
    for name in names:
        lines += ["[[endpoints]]", f'name = "{name}"', 'outcome = "answer"', "ring_s = 0.3",
                  f"hangup_after_s = {hangup_after_s}",
                  'says = [{wav = "demo-congrats", at_s = 0.2}]',
                  'agent_says = [{wav = "demo-echotest", at_s = 0.3}]']
    lines += ["[dialer]", "enabled = true", "start_after_s = 0.3", "spacing_s = 0.2",
              "timeout_ms = 5000", f"calls = {json.dumps(names)}"]
    path = tmp_path / "lifecycle.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def settings_for(sim: Simulator, db: Path) -> Any:
    s = demo_settings(sim, db=str(db))
    return dataclasses.replace(s, asr=AsrSettings(enabled=False))


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 15.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.05)


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def answered_calls(service: Service) -> list[dict[str, Any]]:
    return [c for c in service.registry.snapshot() if c["outcome"] == "answered"]


def check_one_record_per_call(db: Path, calls: int, *,
                              direction: str | None = "outbound") -> list[tuple[Any, ...]]:
    got = rows(db, "SELECT id, channel, direction, outcome, ended, tags, end_reason FROM calls")
    customers = sorted(r[1].split("/")[1].split("-")[0] for r in got)
    assert customers == sorted(f"cust{i}" for i in range(calls)), got  # one record each
    for _id, _channel, got_direction, outcome, ended, _tags, _reason in got:
        assert ended is not None and outcome == "answered"
        assert direction is None or got_direction == direction
    open_legs = rows(db, "SELECT call_id, channel, role FROM legs WHERE left_at IS NULL")
    assert open_legs == []  # helpers (snoop, externalMedia) too
    agents_as_customer = rows(db, "SELECT channel FROM legs WHERE role = 'customer'"
                                  " AND channel LIKE '%agent%'")
    assert agents_as_customer == []
    return got


@pytest.mark.slow
async def test_sigterm_restart_during_live_calls_keeps_one_record_per_call(
        tmp_path: Path) -> None:
    calls = 3
    sim = Simulator(load_scenario(scenario_file(tmp_path, calls, hangup_after_s=8.0)), seed=3)
    await sim.start()
    db = tmp_path / "crm.sqlite3"
    first = Service(settings_for(sim, db))
    second: Service | None = None
    try:
        await first.start()
        await wait_until(lambda: len(answered_calls(first)) == calls)
        ids = {c["id"] for c in answered_calls(first)}
        for call in answered_calls(first):
            customer = next(ch for ch in call["channels"] if ch["role"] == "customer")
            first.registry.tag(customer["uniqueid"], {"campaign": "spring"})
        await wait_until(lambda: first.media is not None and first.media.stats.attached >= calls)
        await first.stop()  # what SIGTERM does
        assert sim.channels()  # the calls go on without Earpiece

        second = Service(settings_for(sim, db))
        await second.start()
        await wait_until(lambda: second is not None and second.registry.stats.calls_adopted
                         == calls)
        assert set(second.registry.calls) == ids  # the same ids, no new records
        await wait_until(lambda: second is not None and not second.registry.calls, 30)
        await asyncio.sleep(0.5)  # teardown of the forks and the last CRM writes
        assert second.crm is not None
        await second.crm.flush()
        got = check_one_record_per_call(db, calls)
        assert {r[0] for r in got} == ids
        assert all(json.loads(r[5]) == {"campaign": "spring"} for r in got)  # tags kept
        assert all(r[6] is None for r in got)  # they ended by their own hangup
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
        leftovers = [ch.name for ch in sim.channels()], [b.id for b in sim.bridges()]
        await sim.stop()
    assert leftovers == ([], [])


@pytest.mark.slow
async def test_calls_that_end_while_earpiece_is_down_are_closed_with_a_reason(
        tmp_path: Path) -> None:
    calls = 2
    sim = Simulator(load_scenario(scenario_file(tmp_path, calls, hangup_after_s=3.0)), seed=4)
    await sim.start()
    db = tmp_path / "crm.sqlite3"
    first = Service(settings_for(sim, db))
    second: Service | None = None
    try:
        await first.start()
        await wait_until(lambda: len(answered_calls(first)) == calls)
        await first.stop()
        await wait_until(lambda: not [ch for ch in sim.channels()
                                      if ch.name.startswith("PJSIP/")], 30)
        assert len(rows(db, "SELECT id FROM calls WHERE ended IS NULL")) == calls
        second = Service(settings_for(sim, db))
        await second.start()
        await wait_until(lambda: second is not None
                         and second.registry.stats.calls_closed_at_start == calls)
        assert second.crm is not None
        await second.crm.flush()
        got = rows(db, "SELECT ended, end_reason, outcome FROM calls")
        assert len(got) == calls
        assert all(e is not None and r == "ended while Earpiece was down" and o == "answered"
                   for e, r, o in got)
        assert rows(db, "SELECT channel FROM legs WHERE left_at IS NULL") == []
    finally:
        if second is not None:
            await second.stop()
        await first.stop()
        await sim.stop()


async def test_a_second_instance_on_the_same_app_refuses_to_start(tmp_path: Path) -> None:
    sim = Simulator(load_scenario(scenario_file(tmp_path, 1, hangup_after_s=2.0)), seed=5)
    await sim.start()
    db = tmp_path / "crm.sqlite3"
    first = Service(settings_for(sim, db), media=False, agi=False)
    second = Service(settings_for(sim, db), media=False, agi=False)
    try:
        await first.start()
        with pytest.raises(InstanceLockedError, match="another Earpiece is active"):
            await second.start()
        assert second.ari is None  # refused before touching the PBX
        assert first.ari is not None and first.ari.connected
    finally:
        await second.stop()
        await first.stop()
        await sim.stop()


RUN_CONFIG = """
[ami]
host = "127.0.0.1"
port = {ami_port}
username = "{ami_user}"
reconnect_initial_s = 0.2
[ari]
url = "{ari_url}"
username = "{ari_user}"
[agi]
port = 0
[media]
bind_host = "127.0.0.1"
rtp_port_min = 43000
rtp_port_max = 43999
[recordings]
directory = "{recordings}"
[asr]
enabled = false
[http]
port = 0
[crm]
url = "sqlite:///{db}"
"""


@pytest.mark.slow
async def test_kill_9_during_live_calls_leaves_nothing_behind(tmp_path: Path) -> None:
    """``earpiece run`` is killed with SIGKILL while calls are forked; a new instance removes
    the dead one's bridges and externalMedia channels, re-adopts the calls (agent legs stay
    agents) and, once the calls end, the PBX holds nothing of Earpiece's."""
    calls = 2
    # long calls: a cold `earpiece run` takes a while to import on a loaded machine
    sim = Simulator(load_scenario(scenario_file(tmp_path, calls, hangup_after_s=45.0)), seed=6)
    await sim.start()
    db = tmp_path / "crm.sqlite3"
    cred = sim.scenario.credentials
    config = tmp_path / "earpiece.toml"
    config.write_text(RUN_CONFIG.format(
        ami_port=sim.ami_port, ami_user=cred.ami_username, ari_url=sim.ari_url,
        ari_user=cred.ari_username, recordings=tmp_path / "rec", db=db))
    env = dict(os.environ, EARPIECE_AMI_SECRET=cred.ami_secret,
               EARPIECE_ARI_PASSWORD=cred.ari_password)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "earpiece.cli", "run", "--config", str(config), env=env,
            stdout=out, stderr=subprocess.STDOUT)
    second: Service | None = None
    try:
        def forked() -> bool:
            ours = [b for b in sim.bridges() if b.id.startswith("ep-")]
            return len(ours) >= 2 * calls  # customer and agent of every call

        try:
            await wait_until(forked, 40)
        except TimeoutError:
            raise AssertionError(f"{[(b.id, b.name) for b in sim.bridges()]}\n"
                                 + log.read_text()[-3000:]) from None
        run.send_signal(signal.SIGKILL)
        await run.wait()
        assert forked()  # the dead instance's bridges are still there

        second = Service(settings_for(sim, db))
        await second.start()
        await wait_until(lambda: second is not None and second.registry.stats.calls_adopted
                         == calls)
        await wait_until(lambda: second is not None and not second.registry.calls, 60)
        await asyncio.sleep(0.5)
        assert second.crm is not None
        await second.crm.flush()
        # the calls were dialled before the cold `earpiece run` attached: their direction is
        # unknown to it, and kept as it was
        check_one_record_per_call(db, calls, direction=None)
        leftovers = [ch.name for ch in sim.channels()], [b.id for b in sim.bridges()]
        assert leftovers == ([], [])
    finally:
        if run.returncode is None:
            run.kill()
            await run.wait()
        if second is not None:
            await second.stop()
        await sim.stop()
