"""End to end through the command line, as a site would run it.

``earpiece sim --scenario twenty`` (the packaged scenario: 20 outbound calls with mixed scripted
outcomes, placed by the simulator's own dialer) in one process, ``earpiece run --config FILE``
attached to it over real AMI/ARI/RTP in another; the CRM (SQLite) must end up with exactly the
scripted outcomes, one row per call.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from earpiece.sim.scenario import load_scenario

EXPECTED = {
    "answer": "answered",
    "busy": "busy",
    "decline": "rejected",
    "unavailable": "no_answer",
    "noanswer": "no_answer",
    "congestion": "congestion",
    "offline": "failed",
    "sit": "failed",  # 404 after the intercept: Q.850 cause 1, unallocated number
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_earpiece_run_against_earpiece_sim_gives_scripted_outcomes(tmp_path: Path) -> None:
    scenario = load_scenario("twenty")
    scripted = {e.name: EXPECTED[e.outcome] for e in scenario.endpoints if e.role == "customer"}
    calls = list(scenario.dialer.calls)
    assert len(calls) == 20
    ami_port, ari_port = free_port(), free_port()
    db = tmp_path / "crm.sqlite3"
    config = tmp_path / "earpiece.toml"
    config.write_text(f"""
[ami]
host = "127.0.0.1"
port = {ami_port}
username = "assist"
[ari]
url = "http://127.0.0.1:{ari_port}"
username = "assist"
[agi]
port = 0
[media]
rtp_port_min = 0
rtp_port_max = 0
[recordings]
directory = "{tmp_path / 'recordings'}"
[asr]
enabled = false
[crm]
url = "sqlite:///{db}"
""")
    secret = "s3cret-7f2a9"
    env = dict(os.environ, EARPIECE_AMI_SECRET=secret, EARPIECE_ARI_PASSWORD=secret)
    duration = scenario.dialer.start_after_s + scenario.dialer.spacing_s * len(calls) + 20
    sim = subprocess.Popen(
        [sys.executable, "-m", "earpiece.cli", "sim", "--scenario", "twenty", "--ami-port",
         str(ami_port), "--ari-port", str(ari_port), "--duration", str(duration),
         "--secret", secret],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    run: subprocess.Popen[str] | None = None
    try:
        assert sim.stdout is not None
        first = sim.stdout.readline()  # the simulator is listening once it prints
        assert first.startswith("scenario twenty"), first
        run = subprocess.Popen(
            [sys.executable, "-m", "earpiece.cli", "run", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )
        sim_out, _ = sim.communicate(timeout=duration + 60)
        time.sleep(1.0)  # last teardown and CRM writes
        assert run.poll() is None, run.communicate()[0][-3000:]
        run.send_signal(signal.SIGTERM)
        run_out, _ = run.communicate(timeout=30)
        assert run.returncode == 0, run_out[-3000:]
    finally:
        for proc in (sim, run):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert "logged in" in run_out and secret not in run_out  # the secret is never logged

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, channel, outcome, ended FROM calls").fetchall()
    assert len(rows) == 20, (rows, sim_out[-2000:])
    got: dict[str, list[str]] = {}
    for _id, channel, outcome, ended in rows:
        assert ended is not None
        endpoint = channel.split("/")[1].split("-")[0]
        got.setdefault(endpoint, []).append(outcome)
    want: dict[str, list[str]] = {}
    for endpoint in calls:
        want.setdefault(endpoint, []).append(scripted[endpoint])
    assert got == want, sim_out[-3000:]
