"""End to end: the Earpiece service attached to the PBX simulator over real AMI/ARI/RTP.

20 scripted outbound calls with mixed outcomes must give exactly the scripted outcomes, also
while the simulator's AMI and ARI interfaces restart five times during live calls (no call
lost, none duplicated), and every snoop/bridge the media fork made must be gone at the end.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from earpiece.app import Service
from earpiece.demo import demo_settings
from earpiece.events import CallEnded
from earpiece.sim.scenario import load_scenario
from earpiece.sim.simulator import Simulator

# scripted endpoint behaviour -> the outcome Earpiece must report
EXPECTED = {
    "answer": "answered",
    "busy": "busy",
    "decline": "rejected",
    "unavailable": "no_answer",
    "noanswer": "no_answer",
    "congestion": "congestion",
    "offline": "failed",
}

ENDPOINTS = [
    ("c_ans1", "answer"), ("c_busy", "busy"), ("c_ans2", "answer"), ("c_decl", "decline"),
    ("c_unav", "unavailable"), ("c_noans", "noanswer"), ("c_off", "offline"),
    ("c_cong", "congestion"), ("c_ans3", "answer"), ("c_ans4", "answer"),
]


# For the restart test every call gets a channel: a dial that fails before any channel exists
# (an offline endpoint) leaves no trace at the PBX but one OriginateResponse event, so if that
# event is sent while AMI is down no resynchronisation can find it (Earpiece's own originates
# get a PbxConnectionError instead).
ENDPOINTS_WITH_CHANNELS = [e for e in ENDPOINTS if e[1] != "offline"] + [("c_ans5", "answer")]


def twenty_calls_scenario(tmp_path: Path, endpoints: list[tuple[str, str]]) -> Path:
    lines = [
        'name = "e2e-twenty"',
        "[dialplan]", 'agents = ["agent1"]', "dial_timeout_s = 10",
        "[[endpoints]]", 'name = "agent1"', 'role = "agent"',
    ]
    for name, outcome in endpoints:
        lines += ["[[endpoints]]", f'name = "{name}"', f'outcome = "{outcome}"', "ring_s = 0.6",
                  "hangup_after_s = 10.0",
                  'says = [{wav = "demo-congrats", at_s = 0.2}]',
                  'agent_says = [{wav = "demo-echotest", at_s = 0.3}]']
        if outcome == "offline":
            lines.append("registered = false")
    calls = [name for name, _ in endpoints] * 2
    lines += ["[dialer]", "enabled = true", "start_after_s = 0.3", "spacing_s = 0.5",
              "timeout_ms = 2500", f"calls = {json.dumps(calls)}"]
    path = tmp_path / "twenty.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def run_calls(tmp_path: Path, *, restarts: int) -> tuple[Service, Simulator, list[str]]:
    endpoints = ENDPOINTS_WITH_CHANNELS if restarts else ENDPOINTS
    scenario = load_scenario(twenty_calls_scenario(tmp_path, endpoints))
    expected_total = len(scenario.dialer.calls)
    sim = Simulator(scenario, seed=7)
    await sim.start()
    service = Service(demo_settings(sim, db=str(tmp_path / "crm.sqlite3")))
    ended: list[str] = []
    done = asyncio.Event()

    def on_ended(ev: CallEnded) -> None:
        ended.append(ev.call_id)
        if len(ended) >= expected_total:
            done.set()

    service.bus.subscribe(CallEnded, on_ended)
    try:
        await service.start()
        for _ in range(restarts):
            # AMI and ARI restart independently (as `manager reload` / an HTTP restart do),
            # while calls are live; each interface waits for the other one to be back first.
            await asyncio.sleep(0.3)
            await wait_until(lambda: bool(service.registry.calls))  # during live calls
            await sim.restart_ami(delay_s=0.3)
            await wait_until(lambda: service.ami is not None and service.ami.connected)
            await asyncio.sleep(0.3)
            await sim.restart_ari(delay_s=0.3)
            await wait_until(lambda: service.ari is not None and service.ari.connected)
        try:
            async with asyncio.timeout(60):
                await done.wait()
        except TimeoutError:
            summary = "\n".join(
                f"{c['id'][:8]} {c['state']} {c['outcome']} {c['outcome_source']} "
                f"{[ch['name'] for ch in c['channels']]}"
                for c in service.registry.snapshot()
            )
            raise AssertionError(
                f"{len(ended)} of {expected_total} calls ended:\n{summary}"
            ) from None
        await asyncio.sleep(0.5)  # let teardown requests of the last calls finish
        return service, sim, ended
    except BaseException:
        await service.stop()
        await sim.stop()
        raise


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.02)


def check_outcomes(
    service: Service, ended: list[str], endpoints: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    calls = service.registry.snapshot()
    assert len(calls) == 20, [c["channels"] for c in calls]
    assert len(ended) == 20 and len(set(ended)) == 20  # one CallEnded per call
    assert len({c["id"] for c in calls}) == 20
    by_endpoint: dict[str, list[str]] = {}
    for call in calls:
        customer = [ch for ch in call["channels"] if ch["role"] == "customer"]
        channel = customer[0]["name"] if customer else call["dial_string"]
        name = channel.split("/")[1].split("-")[0]
        by_endpoint.setdefault(name, []).append(call["outcome"])
        assert call["direction"] == "outbound"
        assert call["started"] is not None and call["ended"] is not None
    for name, outcome in endpoints:
        assert by_endpoint.get(name) == [EXPECTED[outcome]] * 2, (name, by_endpoint.get(name))
    return calls


@pytest.mark.slow
async def test_twenty_scripted_calls_give_scripted_outcomes(tmp_path: Path) -> None:
    service, sim, ended = await run_calls(tmp_path, restarts=0)
    try:
        calls = check_outcomes(service, ended, ENDPOINTS)
        answered = [c for c in calls if c["outcome"] == "answered"]
        assert all(c["answered"] is not None for c in answered)
        assert service.media is not None and service.media.stats.attached >= 2 * 8
        assert service.crm is not None
        await service.crm.flush()
        assert service.store is not None
        rows = await service.store.calls()
        assert sorted(r["outcome"] for r in rows) == sorted(c["outcome"] for c in calls)
    finally:
        await service.stop()
        leftover = [ch.name for ch in sim.channels()]
        bridges = [b.id for b in sim.bridges()]
        await sim.stop()
    assert leftover == [] and bridges == []


@pytest.mark.slow
async def test_restarts_during_live_calls_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    service, sim, ended = await run_calls(tmp_path, restarts=5)
    try:
        check_outcomes(service, ended, ENDPOINTS_WITH_CHANNELS)
        assert service.resyncs["ami"] >= 6 and service.resyncs["ari"] >= 6
        assert service.ami is not None and service.ami.stats.reconnects >= 5
    finally:
        await service.stop()
        await sim.stop()


@pytest.mark.slow
def test_demo_headless_json(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "earpiece.cli", "demo", "--headless", "--calls", "5", "--json",
         "--db", str(tmp_path / "demo.sqlite3")],
        capture_output=True, text=True, timeout=240, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    calls = json.loads(proc.stdout)
    assert isinstance(calls, list) and len(calls) == 5
    for call in calls:
        for key in ("id", "direction", "outcome", "started", "answered", "ended"):
            assert key in call
        assert call["direction"] == "outbound" and call["ended"] is not None
