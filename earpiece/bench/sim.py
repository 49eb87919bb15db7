"""``earpiece bench sim``: throughput of the simulator's RTP sender.

N externalMedia streams (real speech, ``ulaw`` or ``slin16``) are sent by the one
:class:`~earpiece.sim.rtp_sender.RtpSender` loop for ``--seconds`` towards a UDP sink in a
separate process (so receiving does not share the sender's CPU). Reported: packets/s against
the 50 per stream per second due, CPU of the sender process as a share of one core, late ticks
and frames skipped.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class RtpBenchResult:
    streams: int
    fmt: str
    seconds: float
    packets_sent: int
    packets_received: int
    packets_per_s: float
    due_per_s: float
    cpu_share_of_one_core: float
    late_ticks: int
    ticks: int
    skipped_frames: int


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--streams", type=int, default=300, help="concurrent RTP streams")
    parser.add_argument("--seconds", type=float, default=10.0, help="measurement length")
    parser.add_argument("--format", default="ulaw", choices=("ulaw", "alaw", "slin16"))
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    import asyncio

    result = asyncio.run(run_bench(args.streams, args.seconds, args.format))
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"{result.streams} {result.fmt} streams for {result.seconds:.1f} s: "
              f"{result.packets_per_s:.0f} packets/s sent ({result.due_per_s:.0f} due), "
              f"{result.packets_received} received (incl. 1 s warm-up), sender CPU "
              f"{100 * result.cpu_share_of_one_core:.0f}% of one core, late ticks "
              f"{result.late_ticks}/{result.ticks}, skipped frames {result.skipped_frames}")
    return 0


def _sink(port_q: Any, stop: Any, count_q: Any) -> None:
    import socket

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    port_q.put(sock.getsockname()[1])
    n = 0
    while not stop.is_set():
        try:
            sock.recv(4096)
            n += 1
        except TimeoutError:
            continue
    count_q.put(n)


async def run_bench(streams: int, seconds: float, fmt: str) -> RtpBenchResult:
    import asyncio
    import resource
    import time

    from earpiece.sim.audio import load_sound
    from earpiece.sim.model import Channel
    from earpiece.sim.rtp_sender import RtpSender

    ctx = multiprocessing.get_context("spawn")
    port_q, count_q, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=_sink, args=(port_q, stop, count_q), daemon=True)
    proc.start()
    port = port_q.get(timeout=30)
    speech = load_sound("demo-congrats")
    t0 = time.monotonic()
    sender = RtpSender()
    sender.clock = lambda: round((time.monotonic() - t0) * 8000)

    def source(start: int, n: int) -> Any:
        i = start % (len(speech) - n)
        return speech[i:i + n]

    for k in range(streams):
        ch = Channel(id=f"bench-{k}", name=f"UnicastRTP/127.0.0.1:{port}-{k:x}",
                     tech="UnicastRTP", media_format=fmt, external_host=f"127.0.0.1:{port}")
        sender.open_stream(ch, source)
    await sender.start()
    await asyncio.sleep(1.0)  # warm-up
    sent0 = sum(s.packets for s in sender.streams.values())
    ticks0, late0 = sender.ticks, sender.late_ticks
    r0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await asyncio.sleep(seconds)
    r1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    sent = sum(s.packets for s in sender.streams.values()) - sent0
    await sender.stop()
    stop.set()
    received = int(count_q.get(timeout=10))
    proc.join(timeout=5)
    wall = w1 - w0
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return RtpBenchResult(
        streams=streams, fmt=fmt, seconds=wall, packets_sent=sent, packets_received=received,
        packets_per_s=sent / wall, due_per_s=50.0 * streams, cpu_share_of_one_core=cpu / wall,
        late_ticks=sender.late_ticks - late0, ticks=sender.ticks - ticks0,
        skipped_frames=sender.skipped_frames)


if __name__ == "__main__":
    _parser = argparse.ArgumentParser(prog="python -m earpiece.bench.sim")
    configure(_parser)
    sys.exit(main(_parser.parse_args()))
