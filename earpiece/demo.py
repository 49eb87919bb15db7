"""``earpiece demo``: the built-in PBX simulator, the Earpiece service and SQLite in one command.

The simulator plays a dialer that originates scripted outbound calls (real recorded speech from
``asterisk-core-sounds-en-wav``); Earpiece attaches to it over real AMI/ARI/RTP exactly as it
would to Asterisk, and the demo prints a live log of calls, outcomes (and, when those stages
are enabled, call-progress verdicts and transcripts). ``--headless --json`` prints one JSON
array with one object per call when every call has ended.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from earpiece.errors import EarpieceError

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="demo",
                        help="scenario name (packaged) or TOML file (default: demo)")
    parser.add_argument("--calls", type=int, default=None,
                        help="number of outbound calls (default: the scenario's dialer list)")
    parser.add_argument("--headless", action="store_true", help="no live log on stdout")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON array of the calls when done")
    parser.add_argument("--db", default="var/demo.sqlite3", help="SQLite CRM file")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="give up after this many seconds")
    parser.add_argument("--no-media", action="store_true", help="do not fork call audio")
    parser.add_argument("--emotion", action=argparse.BooleanOptionalAction, default=None,
                        help="run the emotion stage (default: on unless --headless)")
    parser.add_argument("--stay", action="store_true",
                        help="keep the service and its dashboard up after the calls (Ctrl-C)")


def main(args: argparse.Namespace) -> int:
    from earpiece.logs import setup_logging

    setup_logging(args.log_level or "WARNING")
    emotion = not args.headless if args.emotion is None else args.emotion
    try:
        calls = asyncio.run(run_demo(
            scenario=args.scenario, calls=args.calls, db=args.db, timeout_s=args.timeout,
            media=not args.no_media, live=None if args.headless else sys.stdout,
            emotion=emotion, stay=args.stay,
        ))
    except KeyboardInterrupt:
        return 0
    except EarpieceError as exc:
        print(f"earpiece demo: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"earpiece demo: {exc}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(calls, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    elif not args.headless:
        _summary(calls, sys.stdout)
    return 0


def scenario_with_calls(scenario: Any, calls: int | None) -> Any:
    """The scenario with its dialer enabled and ``calls`` calls (cycling its list)."""
    dialer = scenario.dialer
    targets = tuple(dialer.calls) or tuple(
        e.name for e in scenario.endpoints if e.role == "customer"
    )
    if not targets:
        raise EarpieceError(f"scenario {scenario.name!r} has no customer endpoint to call")
    if calls is not None:
        targets = tuple(targets[i % len(targets)] for i in range(calls))
    return dataclasses.replace(
        scenario, dialer=dataclasses.replace(dialer, enabled=True, calls=targets)
    )


async def run_demo(*, scenario: str, calls: int | None, db: str, timeout_s: float,
                   media: bool, live: TextIO | None, emotion: bool = False,
                   stay: bool = False) -> list[dict[str, Any]]:
    from earpiece.app import Service
    from earpiece.events import CallEnded
    from earpiece.sim.scenario import load_scenario
    from earpiece.sim.simulator import Simulator

    scen = scenario_with_calls(load_scenario(scenario), calls)
    expected = len(scen.dialer.calls)
    async with Simulator(scen) as sim:
        settings = demo_settings(sim, db=db)
        users, logins = demo_users(scen.agents)
        settings = dataclasses.replace(
            settings, http=dataclasses.replace(settings.http, users=users),
            emotion=dataclasses.replace(settings.emotion, enabled=emotion))
        service = Service(settings, media=media)
        ended: set[str] = set()
        done = asyncio.Event()

        def on_ended(ev: CallEnded) -> None:
            ended.add(ev.call_id)
            if len(ended) >= expected:
                done.set()

        service.bus.subscribe(CallEnded, on_ended)
        if live is not None:
            LiveLog(live).attach(service.bus)
        async with service:
            if service.ops is not None and service.ops.port is not None:
                print_dashboard(live or sys.stderr, service.ops.port, logins)
            try:
                async with asyncio.timeout(timeout_s):
                    await done.wait()
            except TimeoutError:
                raise TimeoutError(
                    f"only {len(ended)} of {expected} calls ended within {timeout_s:g} s"
                ) from None
            assert service.crm is not None
            await service.crm.flush()
            report = await call_report(service)
            if stay:
                print("calls done; the dashboard stays up (Ctrl-C to stop)",
                      file=live or sys.stderr, flush=True)
                await asyncio.Event().wait()
            return report


def demo_users(agents: tuple[str, ...]) -> tuple[list[Any], list[tuple[str, str, str]]]:
    """Dashboard users for a demo run: ``supervisor`` and one agent per agent endpoint, with
    random passwords (only their hashes go into the settings); (users, [(name, password,
    what they see)])."""
    import secrets

    from earpiece.config import DashboardUser
    from earpiece.web.auth import hash_password

    users: list[Any] = []
    logins: list[tuple[str, str, str]] = []
    for name, role, endpoint in [("supervisor", "supervisor", ""),
                                 *((a, "agent", a) for a in agents)]:
        password = secrets.token_urlsafe(9)
        users.append(DashboardUser(name=name, role=role, endpoint=endpoint,  # type: ignore[arg-type]
                                   password_hash=hash_password(password, iterations=100_000)))
        logins.append((name, password, "every call" if role == "supervisor"
                       else f"calls of endpoint {endpoint}"))
    return users, logins


def print_dashboard(out: TextIO, port: int, logins: list[tuple[str, str, str]]) -> None:
    print(f"dashboard: http://127.0.0.1:{port}/login  (this run's users; passwords change "
          "every run)", file=out)
    for name, password, sees in logins:
        print(f"  user {name:<12} password {password:<14} sees {sees}", file=out)
    out.flush()


def demo_settings(sim: Any, *, db: str) -> Any:
    """Settings pointing at a running simulator."""
    from earpiece.agi.settings import AgiSettings, AmiSettings, AriSettings
    from earpiece.config import CrmSettings, HttpSettings, Settings
    from earpiece.media.settings import MediaSettings, RecordingSettings
    from earpiece.secret import Secret

    cred = sim.scenario.credentials
    return Settings(
        ami=AmiSettings(host=sim.host, port=sim.ami_port, username=cred.ami_username,
                        secret=Secret(cred.ami_secret), reconnect_initial_s=0.2,
                        reconnect_max_s=3.0),
        ari=AriSettings(url=sim.ari_url, username=cred.ari_username,
                        password=Secret(cred.ari_password), subscribe_all=True,
                        reconnect_initial_s=0.2, reconnect_max_s=3.0),
        agi=AgiSettings(host="127.0.0.1", port=0),
        media=MediaSettings(bind_host="127.0.0.1", rtp_port_min=42000, rtp_port_max=42999),
        recordings=RecordingSettings(directory=Path(db).parent / "recordings"),
        crm=CrmSettings(url=f"sqlite:///{db}"),
        http=HttpSettings(host="127.0.0.1", port=0),  # any free port: demos and tests side by side
    )


async def call_report(service: Any) -> list[dict[str, Any]]:
    """One dict per call: the registry snapshot plus what the CRM holds about it."""
    calls: list[dict[str, Any]] = service.registry.snapshot()
    store = service.store
    for call in calls:
        rows = await store.query(
            "SELECT label, confidence, decision_s FROM cpa_verdicts WHERE call_id = ?"
            " ORDER BY at", (call["id"],))
        if rows:
            call["cpa"] = rows[-1]
        utts = await store.query(
            "SELECT party, start_s, end_s, text FROM utterances WHERE call_id = ?"
            " ORDER BY start_s", (call["id"],))
        if utts:
            call["transcript"] = utts
        emotion = await store.query(
            "SELECT party, state, emotion_index, utterances, changes FROM emotion_calls"
            " WHERE call_id = ? ORDER BY party", (call["id"],))
        if emotion:  # the per-call emotion index of each party (the emotion stage)
            call["emotion"] = {r["party"]: {"index": round(float(r["emotion_index"]), 4),
                                            "state": r["state"],
                                            "utterances": r["utterances"],
                                            "changes": r["changes"]} for r in emotion}
    return calls


class LiveLog:
    """Prints one line per call event."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.t0 = time.time()

    def attach(self, bus: Any) -> None:
        from earpiece.events import CallEvent

        bus.subscribe(CallEvent, self.on_event)

    def on_event(self, ev: Any) -> None:
        from earpiece.events import (
            CallEnded,
            CallOutcome,
            CallStarted,
            CallStateChanged,
            ChannelJoined,
            CpaDecision,
            Transcript,
        )

        t = f"{ev.at - self.t0:7.2f}s"
        cid = ev.call_id[:8]
        line: str | None = None
        match ev:
            case CallStarted():
                line = f"call {cid} started   {ev.direction} {ev.channel}"
            case ChannelJoined():
                line = f"call {cid} + {ev.role:<8} {ev.channel}"
            case CallStateChanged():
                line = f"call {cid} {ev.old} -> {ev.new}  ({ev.source})"
            case CallOutcome():
                line = f"call {cid} OUTCOME {ev.outcome}  ({ev.source})"
            case CpaDecision():
                line = (f"call {cid} audio: {ev.label} ({ev.confidence:.2f})"
                        f" after {ev.decision_s:.2f} s")
            case Transcript() if ev.final:
                line = f"call {cid} {ev.party:>8}: {ev.text}"
            case CallEnded():
                line = f"call {cid} ended     outcome={ev.outcome} cause={ev.hangup_cause}"
        if line is not None:
            print(f"{t} {line}", file=self.out, flush=True)


def _summary(calls: list[dict[str, Any]], out: TextIO) -> None:
    print(f"\n{len(calls)} calls:", file=out)
    for c in calls:
        dur = (c["ended"] - c["started"]) if c.get("ended") and c.get("started") else 0.0
        print(f"  {c['id'][:8]} {c['direction']:<8} {c['outcome'] or '-':<11} {dur:6.1f} s",
              file=out)
