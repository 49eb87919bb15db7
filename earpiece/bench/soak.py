"""``earpiece bench soak``: the whole service against the simulator for minutes, with faults.

Simulated outbound calls (real recorded speech on both parties; answered by people and by
machines, some busy or unanswered) run through media, CPA and ASR into a SQLite CRM while,
every ``--fault-every-s``, one fault strikes in turn: a PBX restart (``core restart now``), an
Earpiece restart (stop, then a new service on the same database, as SIGTERM and a start do) and
an ARI drop (the PBX's HTTP listener restarts). At the end it counts, per real call (the
customer channel's uniqueid at the PBX), the CRM records: none is a lost call, two or more a
duplicated one; records never ended; and what Earpiece left in the PBX (bridges, snoop and
externalMedia channels). The process's resident memory is sampled all along (the curve and the
slope of its second half are in the JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sqlite3
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FAULTS = ("pbx_restart", "earpiece_restart", "ari_drop")

#: What the scripted customers do (endpoint -> scenario lines); real prompts on both sides.
ENDPOINTS: dict[str, list[str]] = {
    "person": ['answered_by = "human"', "ring_s = 1.0",
               'says = [{wav = "hello", at_s = 0.4}, {wav = "auth-thankyou", at_s = 8.0}]'],
    "machine": ['answered_by = "machine"', "ring_s = 1.5",
                'says = [{wav = "vm-nobodyavail", at_s = 0.3}, {wav = "vm-intro", at_s = 3.2}]'],
    "busy": ['outcome = "busy"', "ring_s = 1.0"],
    "noanswer": ['outcome = "noanswer"', "ring_s = 1.0"],
}
MIX = ["person", "person", "machine", "person", "busy", "person", "machine", "noanswer"]


@dataclass
class SoakResult:
    calls_dialled: int
    real_calls: int  # with a customer channel at the PBX
    records: int
    lost: list[str] = field(default_factory=list)  # customer uniqueids without a record
    duplicated: list[str] = field(default_factory=list)  # ... with more than one
    not_ended: int = 0
    leaked_channels: list[str] = field(default_factory=list)
    leaked_bridges: list[str] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    rss_mb: list[tuple[float, float]] = field(default_factory=list)  # (minutes, MB)
    rss_slope_mb_per_min: float = 0.0  # least squares over the second half
    transcripts: int = 0
    cpa_verdicts: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.not_ended or self.leaked_channels
                    or self.leaked_bridges)


def scenario_text(calls: int, minutes: float, hangup_after_s: float) -> str:
    lines = ['name = "soak"', "[dialplan]", 'agents = ["agent1"]', "dial_timeout_s = 8",
             "[[endpoints]]", 'name = "agent1"', 'role = "agent"', "ring_s = 0.3"]
    for name, extra in ENDPOINTS.items():
        lines += ["[[endpoints]]", f'name = "{name}"', f"hangup_after_s = {hangup_after_s}",
                  'agent_says = [{wav = "one-moment-please", at_s = 1.0},'
                  ' {wav = "demo-moreinfo", at_s = 3.0}]', *extra]
    return "\n".join(lines) + "\n"


def schedule(calls: int, minutes: float, hangup_after_s: float) -> list[tuple[float, str]]:
    """(seconds from the start, endpoint) of every call, the last one ending in time."""
    spacing = max(0.2, (minutes * 60.0 - hangup_after_s - 10.0) / max(1, calls))
    return [(2.0 + i * spacing, MIX[i % len(MIX)]) for i in range(calls)]


def dial(sim: Any, endpoint: str, index: int) -> None:
    """What a dialer does (the scenario's own dialer stops at a PBX restart; this one goes on
    and originates into the dialplan's agent extension)."""
    from earpiece.sim.model import OriginateRequest

    sim.originate(OriginateRequest(
        channel=f"PJSIP/{endpoint}", context=sim.scenario.dialplan.context,
        exten=sim.scenario.dialplan.exten, callerid_name="Dialer", callerid_num="5000",
        timeout_ms=6000, variables=[("SIM_CALL", str(index))], action_id=f"soak-{index}",
        source="dialer"))


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return 0.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope (MB per minute) of the second half of the curve."""
    half = points[len(points) // 2:]
    if len(half) < 2:
        return 0.0
    mx = sum(x for x, _ in half) / len(half)
    my = sum(y for _, y in half) / len(half)
    den = sum((x - mx) ** 2 for x, _ in half)
    return sum((x - mx) * (y - my) for x, y in half) / den if den else 0.0


async def run_soak(calls: int, minutes: float, fault_every_s: float, *, asr: bool = True,
                   workdir: Path | None = None) -> SoakResult:
    from earpiece.app import Service
    from earpiece.asr.settings import AsrSettings
    from earpiece.demo import demo_settings
    from earpiece.sim.scenario import load_scenario
    from earpiece.sim.simulator import Simulator

    tmp = Path(workdir or tempfile.mkdtemp(prefix="earpiece-soak-"))
    scenario_path = tmp / "soak.toml"
    scenario_path.write_text(scenario_text(calls, minutes, hangup_after_s=18.0))
    plan = schedule(calls, minutes, hangup_after_s=18.0)
    db = tmp / "crm.sqlite3"
    sim = Simulator(load_scenario(scenario_path), seed=11)
    await sim.start()
    settings = dataclasses.replace(demo_settings(sim, db=str(db)),
                                   asr=AsrSettings(enabled=asr))
    service = Service(settings)
    result = SoakResult(calls_dialled=calls, real_calls=0, records=0)
    real: set[str] = set()
    t0 = time.monotonic()
    deadline = t0 + minutes * 60.0
    try:
        await service.start()
        next_fault = t0 + fault_every_s
        next_sample = t0
        index = 0
        dialled = 0
        while time.monotonic() < deadline or sim.channels() or dialled < len(plan):
            now = time.monotonic()
            while dialled < len(plan) and now - t0 >= plan[dialled][0]:
                if sim.pbx_state == "up":
                    dial(sim, plan[dialled][1], dialled + 1)
                    dialled += 1
                else:  # the PBX is restarting: the dialer retries when it is back
                    break
            for ch in sim.channels():  # every customer channel the PBX made (real calls)
                if ch.tech == "PJSIP" and ch.endpoint in ENDPOINTS:
                    real.add(ch.id)
            if now >= next_sample:
                result.rss_mb.append((round((now - t0) / 60.0, 3), round(rss_mb(), 1)))
                next_sample = now + 10.0
            if now >= next_fault and now < deadline:
                kind = FAULTS[index % len(FAULTS)]
                index += 1
                live = len(service.registry.calls)
                log.info("soak: fault %s with %d live calls", kind, live)
                if kind == "pbx_restart":
                    await sim.pbx_restart()
                elif kind == "earpiece_restart":
                    await service.stop()
                    service = Service(settings)
                    await service.start()
                else:
                    await sim.restart_ari(delay_s=0.5)
                result.faults.append({"at_s": round(now - t0, 1), "fault": kind,
                                      "live_calls": live})
                next_fault = now + fault_every_s
            if time.monotonic() > deadline + 120.0 and dialled >= len(plan):
                break  # calls that never end are counted below as leaks
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # last teardowns, verdicts and CRM writes
        if service.crm is not None:
            await service.crm.flush()
        result.rss_mb.append((round((time.monotonic() - t0) / 60.0, 3), round(rss_mb(), 1)))
    finally:
        await service.stop()
        ours = [ch.name for ch in sim.channels()]
        bridges = [b.id for b in sim.bridges()]
        await sim.stop()
    result.leaked_channels = ours
    result.leaked_bridges = bridges
    count_records(result, db, sorted(real))
    result.rss_slope_mb_per_min = round(slope(result.rss_mb), 3)
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def count_records(result: SoakResult, db: Path, real: list[str]) -> None:
    with sqlite3.connect(db) as conn:
        result.records = conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]
        result.not_ended = conn.execute(
            "SELECT COUNT(*) FROM calls WHERE ended IS NULL").fetchone()[0]
        per_uid: dict[str, int] = {}
        for uid, n in conn.execute("SELECT uniqueid, COUNT(DISTINCT call_id) FROM legs"
                                   " WHERE role = 'customer' GROUP BY uniqueid"):
            per_uid[uid] = n
        result.transcripts = conn.execute("SELECT COUNT(*) FROM utterances").fetchone()[0]
        result.cpa_verdicts = conn.execute("SELECT COUNT(*) FROM cpa_verdicts").fetchone()[0]
    result.real_calls = len(real)
    result.lost = [uid for uid in real if per_uid.get(uid, 0) == 0]
    result.duplicated = [uid for uid in real if per_uid.get(uid, 0) > 1]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=50, help="calls dialled (default 50)")
    parser.add_argument("--minutes", type=float, default=5.0, help="dialling time (default 5)")
    parser.add_argument("--fault-every-s", type=float, default=60.0,
                        help="seconds between faults, cycling PBX restart, Earpiece restart, "
                             "ARI drop (default 60)")
    parser.add_argument("--no-asr", action="store_true", help="media and CPA only")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def main(args: argparse.Namespace) -> int:
    result = asyncio.run(run_soak(args.calls, args.minutes, args.fault_every_s,
                                  asr=not args.no_asr))
    if args.json:
        print(json.dumps({**asdict(result), "ok": result.ok}, indent=2))
    else:
        print(f"soak: {result.calls_dialled} calls dialled, {result.real_calls} reached the PBX, "
              f"{result.records} records; lost {len(result.lost)}, duplicated "
              f"{len(result.duplicated)}, not ended {result.not_ended}; leaked "
              f"{len(result.leaked_channels)} channels, {len(result.leaked_bridges)} bridges; "
              f"{len(result.faults)} faults; RSS {result.rss_mb[0][1] if result.rss_mb else 0}"
              f" -> {result.rss_mb[-1][1] if result.rss_mb else 0} MB (second half "
              f"{result.rss_slope_mb_per_min:+.2f} MB/min); {result.transcripts} transcripts, "
              f"{result.cpa_verdicts} CPA verdicts; {result.seconds} s")
    return 0 if result.ok else 1
