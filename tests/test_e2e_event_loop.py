"""The event loop never blocks: a whole call through the service (AMI, ARI, RTP receive,
jitter buffer, VAD, call-progress detection, streaming Whisper, CRM writes) in asyncio debug
mode, where any callback or task step that runs longer than the threshold is logged by asyncio
as "Executing <...> took N seconds". The PBX simulator runs in its own process (``earpiece
sim``), as Asterisk would, so only Earpiece's loop is judged.

Wall time alone misjudges a busy machine (a 5 ms step that waits 300 ms for a core looks
slow), so every loop step is also timed in CPU time of the loop's thread: a step that computes
for more than ``CPU_LIMIT_S`` fails the test, and so does any step (blocking I/O included) that
takes more than ``WALL_LIMIT_S`` of wall time."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from earpiece.app import Service
from earpiece.demo import demo_settings
from earpiece.events import CallEnded, CpaDecision, EmotionScored, Transcript
from earpiece.sim.scenario import load_scenario

CPU_LIMIT_S = 0.1
WALL_LIMIT_S = 1.0


class StepMeter:
    """Times every event-loop step (callback or task step) in the loop thread's CPU time."""

    def __init__(self) -> None:
        self.heavy: list[tuple[str, float, float]] = []
        self.steps = 0

    @classmethod
    def install(cls, monkeypatch: pytest.MonkeyPatch) -> StepMeter:
        meter = cls()
        run = asyncio.events.Handle._run

        def timed_run(handle: asyncio.events.Handle) -> None:
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            try:
                run(handle)
            finally:
                meter.steps += 1
                cpu = time.thread_time() - cpu0
                if cpu > CPU_LIMIT_S:
                    meter.heavy.append((repr(handle)[:300], cpu, time.perf_counter() - wall0))

        monkeypatch.setattr(asyncio.events.Handle, "_run", timed_run)
        return meter


async def test_step_meter_catches_a_computing_callback(monkeypatch: pytest.MonkeyPatch) -> None:
    meter = StepMeter.install(monkeypatch)

    def compute() -> None:
        end = time.thread_time() + 2 * CPU_LIMIT_S
        while time.thread_time() < end:
            pass

    asyncio.get_running_loop().call_soon(compute)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert len(meter.heavy) == 1 and "compute" in meter.heavy[0][0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def one_call(tmp_path: Path) -> Path:
    path = tmp_path / "one.toml"
    path.write_text("""
name = "one"
[dialplan]
agents = ["agent1"]
[[endpoints]]
name = "agent1"
role = "agent"
ring_s = 0.3
[[endpoints]]
name = "cust1"
ring_s = 0.5
hangup_after_s = 7.0
says = [{wav = "hello", at_s = 0.3}, {wav = "auth-thankyou", at_s = 3.5}]
agent_says = [{wav = "one-moment-please", at_s = 1.0}]
[dialer]
enabled = true
start_after_s = 1.5
calls = ["cust1"]
""")
    return path


@pytest.mark.slow
async def test_no_slow_callbacks_during_a_call(tmp_path: Path,
                                               caplog: pytest.LogCaptureFixture,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = WALL_LIMIT_S
    caplog.set_level(logging.WARNING, logger="asyncio")
    meter = StepMeter.install(monkeypatch)
    scenario_file = one_call(tmp_path)
    ami_port, ari_port = free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "earpiece.cli", "sim", "--scenario", str(scenario_file),
        "--ami-port", str(ami_port), "--ari-port", str(ari_port), "--duration", "60",
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        first = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert first.startswith(b"scenario one"), first
        sim = SimpleNamespace(scenario=load_scenario(scenario_file), host="127.0.0.1",
                              ami_port=ami_port, ari_url=f"http://127.0.0.1:{ari_port}")
        settings = demo_settings(sim, db=str(tmp_path / "crm.sqlite3"))
        settings = dataclasses.replace(  # the stage that once cost the agent's transcript
            settings, emotion=dataclasses.replace(settings.emotion, enabled=True))
        service = Service(settings)
        ended = asyncio.Event()
        finals: list[Transcript] = []
        verdicts: list[CpaDecision] = []
        service.bus.subscribe(CallEnded, lambda ev: ended.set())
        service.bus.subscribe(Transcript, lambda ev: finals.append(ev) if ev.final else None)
        service.bus.subscribe(CpaDecision, verdicts.append)
        emotions: list[EmotionScored] = []
        service.bus.subscribe(EmotionScored, emotions.append)
        async with service:
            # model loading and the first call's set-up happen with debug mode on, too
            async with asyncio.timeout(60):
                await ended.wait()
            await asyncio.sleep(1.5)  # last decodes
    finally:
        proc.terminate()
        await proc.communicate()
    slow = [r.getMessage() for r in caplog.records
            if r.name == "asyncio" and "took" in r.getMessage()]
    assert slow == []
    assert meter.heavy == []
    assert meter.steps > 1000  # the instrumentation saw the loop's work
    # the stages really ran: both parties were transcribed and the customer was judged
    assert {t.party for t in finals} == {"customer", "agent"}, finals
    assert verdicts and verdicts[0].label == "human"
    # the emotion stage ran beside them, under the same step meter
    assert service.settings.emotion.enabled
    assert {e.party for e in emotions} == {"customer", "agent"}, emotions
