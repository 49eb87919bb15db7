"""``earpiece sim``: run the PBX simulator alone until Ctrl-C.

It prints where to connect (AMI port, ARI URL, credentials) and, at the end, what each
originated call was scripted to do and what happened.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from earpiece.sim.simulator import Simulator


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default="demo",
                        help="scenario TOML file, or the name of a packaged one (demo, twenty)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--ami-port", type=int, default=5038, help="AMI TCP port (0: any)")
    parser.add_argument("--ari-port", type=int, default=8088, help="ARI HTTP port (0: any)")
    parser.add_argument("--username", default=None,
                        help="AMI username and ARI user (default: the scenario's, assist)")
    parser.add_argument("--secret", default=None,
                        help="AMI secret and ARI password (default: the scenario's, assist)")
    parser.add_argument("--no-dialer", action="store_true",
                        help="do not originate the scenario's dialer calls; wait for clients")
    parser.add_argument("--duration", type=float, default=0.0,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (ids, SSRCs)")
    faults = parser.add_argument_group("fault injection")
    faults.add_argument("--rtp-loss", type=float, default=0.0, help="RTP loss probability")
    faults.add_argument("--rtp-reorder", type=float, default=0.0,
                        help="probability a packet is sent after the next one")
    faults.add_argument("--rtp-duplicate", type=float, default=0.0,
                        help="probability a packet is sent twice")
    faults.add_argument("--rtp-jitter-ms", type=float, default=0.0,
                        help="extra send delay, uniform in [0, N] ms")
    faults.add_argument("--rogue-rtp", choices=("", "address", "ssrc"), default="",
                        help="also send RTP from another port, or with another SSRC")
    faults.add_argument("--restart-every", type=float, default=0.0,
                        help="restart the AMI and ARI listeners every N seconds (alternating)")


def main(args: argparse.Namespace) -> int:
    from earpiece.errors import ConfigError

    try:
        return asyncio.run(run(args, sys.stdout))
    except (ConfigError, ValueError) as exc:
        print(f"earpiece sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"earpiece sim: cannot listen: {exc}", file=sys.stderr)
        return 1


async def run(args: argparse.Namespace, out: TextIO) -> int:
    from earpiece.sim.scenario import load_scenario
    from earpiece.sim.simulator import Simulator

    scenario = load_scenario(args.scenario)
    cred = scenario.credentials
    if args.username is not None:
        cred = dataclasses.replace(cred, ami_username=args.username,
                                   ari_username=args.username)
    if args.secret is not None:
        cred = dataclasses.replace(cred, ami_secret=args.secret, ari_password=args.secret)
    dialer = scenario.dialer
    if args.no_dialer:
        dialer = dataclasses.replace(dialer, enabled=False)
    scenario = dataclasses.replace(scenario, credentials=cred, dialer=dialer)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    from earpiece.sim.faults import Faults

    faults = Faults(rtp_loss=args.rtp_loss, rtp_reorder=args.rtp_reorder,
                    rtp_duplicate=args.rtp_duplicate, rtp_jitter_ms=args.rtp_jitter_ms,
                    rogue_rtp=args.rogue_rtp, seed=args.seed)
    async with Simulator(scenario, host=args.host, ami_port=args.ami_port,
                         ari_port=args.ari_port, seed=args.seed, faults=faults) as sim:
        print(f"scenario {scenario.name}: {len(scenario.endpoints)} endpoints, "
              f"{len(dialer.calls) if dialer.enabled else 0} dialer calls", file=out)
        print(f"AMI {args.host}:{sim.ami_port} user {cred.ami_username}", file=out)
        print(f"ARI {sim.ari_url}/ari user {cred.ari_username} app: any", file=out)
        print("Ctrl-C to stop", file=out, flush=True)
        restarter = None
        if args.restart_every > 0:
            restarter = asyncio.get_running_loop().create_task(
                _restart_loop(sim, args.restart_every, out))
        try:
            if args.duration > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), args.duration)
            else:
                await stop.wait()
        finally:
            if restarter is not None:
                restarter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await restarter
            for o in sim.originated_outcomes:
                happened = (f"{o.response or 'pending'}/{o.reason}" if o.response
                            else "pending")
                print(f"{o.action_id or '-'} {o.dial_string}: scripted {o.scripted}"
                      f"{' (' + o.answered_by + ')' if o.scripted == 'answer' else ''}, "
                      f"OriginateResponse {happened}, DialEnd {o.dial_status or '-'}, "
                      f"hangup cause {o.hangup_cause if o.hangup_cause is not None else '-'}",
                      file=out)
    return 0


async def _restart_loop(sim: Simulator, every_s: float, out: TextIO) -> None:
    n = 0
    while True:
        await asyncio.sleep(every_s)
        n += 1
        which = "AMI" if n % 2 else "ARI"
        print(f"restarting the {which} listener ({len(sim.channels())} live channels)",
              file=out, flush=True)
        await (sim.restart_ami() if n % 2 else sim.restart_ari())
