"""``earpiece bench media``: the media path under load.

N simulated calls x 2 parties of real recorded speech (asterisk-core-sounds-en-wav prompts,
G.711 as Asterisk's externalMedia sends it) are streamed at real time over UDP from a
separate sender process (so it does not share the receiver's event loop) into the real
receiver: per-port demultiplexing, source/SSRC validation, jitter buffer, decode and VAD.
A few spoofed packets (wrong source address, or right source and wrong SSRC) are mixed in and
must all be dropped.

Reported (one JSON object with ``--json``): CPU seconds of the receiver process per call-second,
packets/s, frame-delivery lateness (delivery time minus the packet's scheduled send time, so
sender lateness counts against us too), packets dropped and why, resident memory per call.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SOUNDS = Path("/usr/share/asterisk/sounds/en")
PROMPTS = (
    "demo-congrats", "demo-echotest", "vm-intro", "hello-world", "ss-noservice",
    "demo-thanks", "demo-instruct", "demo-moreinfo", "vm-options", "tt-monkeys",
)
SPREAD_S = 0.02  # stream start offsets are spread over one packet interval


@dataclass
class BenchOptions:
    calls: int = 200
    seconds: float = 60.0
    codec: str = "ulaw"
    jitter_ms: int = 60
    spoof_per_s: float = 20.0
    warmup_s: float = 1.0


@dataclass
class BenchResult:
    calls: int
    seconds: float
    streams: int
    cpu_s_per_call_s: float
    cpu_s_receiver: float
    cpu_util_receiver: float
    packets_per_s: float
    frames: int
    speech_segments: int
    lateness_p50_ms: float
    lateness_p99_ms: float
    lateness_max_ms: float
    dropped_late: int
    dropped_other: int
    dropped: dict[str, int] = field(default_factory=dict)
    spoofed_sent: int = 0
    spoofed_dropped: int = 0
    sender_late_p99_ms: float = 0.0
    sender_cpu_util: float = 0.0
    rss_mb_per_call: float = 0.0
    rss_mb_total: float = 0.0
    # Time the receiver was runnable but waiting for a CPU (Linux schedstat): when this is a
    # large share of the run, lateness measures the machine's other load, not the media path.
    receiver_runqueue_wait_s: float = 0.0
    cores: int = 0
    loadavg_1m: float = 0.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--codec", choices=("ulaw", "alaw", "slin16"), default="ulaw",
                        help="slin16: 16 kHz big-endian, PT 118, as Asterisk sends it")
    parser.add_argument("--jitter-ms", type=int, default=60)
    parser.add_argument("--spoof-per-s", type=float, default=20.0,
                        help="spoofed packets per second (wrong source or SSRC)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    import asyncio

    opts = BenchOptions(
        calls=args.calls, seconds=args.seconds, codec=args.codec, jitter_ms=args.jitter_ms,
        spoof_per_s=args.spoof_per_s,
    )
    result = asyncio.run(run_bench(opts))
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        for k, v in asdict(result).items():
            print(f"{k:>22}: {v}")
    return 0


def load_speech(rate: int = 8000) -> Any:
    """Concatenate the benchmark's prompts (real recorded speech) into one int16 signal."""
    import numpy as np

    from earpiece.media.xcorr import read_wav_int16

    parts = []
    for name in PROMPTS:
        path = SOUNDS / f"{name}.wav"
        if not path.exists():
            continue
        pcm, r = read_wav_int16(str(path))
        if r != rate:
            from earpiece.media.resample import resample

            pcm = resample(pcm, r, rate)
        parts.append(pcm)
        parts.append(np.zeros(rate // 2, dtype=np.int16))
    if not parts:
        raise FileNotFoundError(
            f"no prompts under {SOUNDS} (apt install asterisk-core-sounds-en-wav)"
        )
    return np.concatenate(parts)


# -- sender process ----------------------------------------------------------------------------


def _sender(conn: Any, host: str, ports: list[int], codec: str, seconds: float,
            spoof_per_s: float) -> None:
    """Child process: bind one socket per stream, report them, wait for T0, send in real time."""
    import random
    import socket
    import struct
    import time

    import numpy as np

    from earpiece.media.g711 import encode_alaw, encode_ulaw

    speech = load_speech()
    if codec == "slin16":
        from earpiece.media.resample import resample

        enc = resample(speech, 8000, 16000).astype(">i2").tobytes()
        pt, fb, step = 118, 640, 320  # payload bytes and timestamp step per 20 ms
    else:
        enc = encode_ulaw(speech) if codec == "ulaw" else encode_alaw(speech)
        pt, fb, step = (0 if codec == "ulaw" else 8), 160, 160
    n = len(ports)
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.connect((host, port))
        s.setblocking(False)
        socks.append(s)
    spoof = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    spoof.bind((host, 0))
    conn.send([s.getsockname()[1] for s in socks])
    t0: float = conn.recv()
    rng = random.Random(7)
    ssrcs = [rng.getrandbits(32) for _ in range(n)]
    seqs = [rng.getrandbits(16) for _ in range(n)]
    offsets_b = [rng.randrange(0, len(enc) - fb) // fb * fb for _ in range(n)]
    hdr = struct.Struct("!BBHII")
    total = len(enc)
    packets = int(seconds / 0.02)
    # streams sorted by their start offset within the 20 ms interval
    order = sorted(range(n), key=lambda i: (i * SPREAD_S / n))
    groups = 10
    per_group = [order[g::groups] for g in range(groups)]
    late: list[float] = []
    spoof_sent = 0
    spoof_every = max(1, int(n * 50 / spoof_per_s)) if spoof_per_s > 0 else 0
    sent = 0
    for k in range(packets):
        for g in range(groups):
            target = t0 + k * 0.02 + g * SPREAD_S / groups
            d = target - time.monotonic()
            if d > 0:
                time.sleep(d)
            late.append(max(0.0, time.monotonic() - target))
            for i in per_group[g]:
                off = (offsets_b[i] + k * fb) % (total - fb) // fb * fb
                pkt = hdr.pack(0x80, pt, (seqs[i] + k) & 0xFFFF, (step + k * step) & 0xFFFFFFFF,
                               ssrcs[i]) + enc[off : off + fb]
                try:
                    socks[i].send(pkt)
                except BlockingIOError:
                    pass
                sent += 1
                if spoof_every and sent % spoof_every == 0:
                    j = rng.randrange(n)
                    bad = hdr.pack(0x80, pt, (seqs[j] + k) & 0xFFFF, 0, ssrcs[j]) + bytes(fb)
                    if spoof_sent % 2 == 0:  # foreign source address, right SSRC
                        spoof.sendto(bad, (host, ports[j]))
                    else:  # right source, foreign SSRC
                        bad = hdr.pack(0x80, pt, (seqs[j] + k) & 0xFFFF, 0,
                                       ssrcs[j] ^ 0x5A5A5A5A) + bytes(fb)
                        socks[j].send(bad)
                    spoof_sent += 1
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    arr = np.array(late) if late else np.zeros(1)
    conn.send({"spoof_sent": spoof_sent, "sent": sent,
               "cpu_util": (ru.ru_utime + ru.ru_stime) / max(time.monotonic() - t0, 1e-9),
               "late_p99_ms": float(np.percentile(arr, 99) * 1000) if late else 0.0})
    for s in socks:
        s.close()
    spoof.close()


# -- receiver ----------------------------------------------------------------------------------


def _recv(conn: Any, proc: Any, timeout_s: float) -> Any:
    """Receive from the sender, failing (not hanging) if it died or went silent."""
    import time

    deadline = time.monotonic() + timeout_s
    while not conn.poll(0.5):
        if not proc.is_alive():
            raise RuntimeError(f"benchmark sender exited with code {proc.exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark sender did not answer")
    return conn.recv()


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def run_bench(opts: BenchOptions) -> BenchResult:
    import asyncio
    import multiprocessing as mp
    import resource
    import time
    from array import array

    import numpy as np

    from earpiece.media.frames import AudioFrame, Codec, FrameHub
    from earpiece.media.receiver import RtpReceiver
    from earpiece.media.settings import MediaSettings

    host = "127.0.0.1"
    settings = MediaSettings(rtp_port_min=0, rtp_port_max=0, bind_host=host,
                             jitter_ms=opts.jitter_ms)
    hub = FrameHub()
    receiver = RtpReceiver(settings, hub, rcvbuf=1 << 20)
    load_speech()  # warm the page cache / imports outside the measured window
    n = opts.calls * 2
    rss0 = _rss_mb()
    ports = [await receiver.allocate_port() for _ in range(n)]
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(
        target=_sender, args=(child, host, ports, opts.codec, opts.seconds, opts.spoof_per_s),
        daemon=True,
    )
    proc.start()
    loop = asyncio.get_running_loop()
    src_ports: list[int] = await loop.run_in_executor(None, _recv, parent, proc, 60.0)
    codecs: dict[str, Codec] = {"ulaw": "ulaw", "alaw": "alaw", "slin16": "slin16"}
    codec = codecs[opts.codec]
    streams: dict[tuple[str, str], int] = {}
    for i, (port, sport) in enumerate(zip(ports, src_ports, strict=True)):
        call, party = divmod(i, 2)
        st = receiver.register(port, f"call-{call}", "customer" if party == 0 else "agent",
                               codec, source=(host, sport))
        streams[(st.call_id, st.party)] = i
    t0 = time.monotonic() + opts.warmup_s
    offs: dict[tuple[str, str], float] = dict.fromkeys(streams, t0)
    groups = 10
    order = sorted(range(n), key=lambda i: (i * SPREAD_S / n))
    for g in range(groups):
        for i in order[g::groups]:
            key = (f"call-{i // 2}", "customer" if i % 2 == 0 else "agent")
            offs[key] = t0 + g * SPREAD_S / groups
    lateness = array("d")

    def on_frame(fr: AudioFrame) -> None:
        lateness.append(fr.delivered_at - (offs[(fr.call_id, fr.party)] + fr.timestamp))

    hub.subscribe(on_frame)
    snmp0 = _udp_rcvbuf_errors()
    await receiver.start()
    parent.send(t0)
    await asyncio.sleep(max(0.0, t0 - time.monotonic()))
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    rq0 = _runqueue_wait_s()
    w0 = time.monotonic()
    sender_report: dict[str, Any] = await loop.run_in_executor(
        None, _recv, parent, proc, opts.seconds + opts.warmup_s + 60.0
    )
    await asyncio.sleep(opts.jitter_ms / 1000.0 + 0.1)  # let the last packets drain
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    rq1 = _runqueue_wait_s()
    log.info("receiver user %.2f s, system %.2f s", ru1.ru_utime - ru0.ru_utime,
             ru1.ru_stime - ru0.ru_stime)
    wall = time.monotonic() - w0
    rss1 = _rss_mb()
    snmp1 = _udp_rcvbuf_errors()
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    live = receiver.streams()
    packets = sum(s.stats.packets for s in live)
    late = sum(s.jitter.stats.late for s in live)
    lost = sum(s.jitter.stats.lost for s in live)
    dup = sum(s.jitter.stats.duplicate for s in live)
    frames = sum(s.stats.frames for s in live)
    await receiver.close()
    segs = sum(s.stats.segments for s in receiver.finished)
    proc.join(5)
    d = receiver.drops
    dropped = {
        "late": late, "lost_never_arrived": lost, "duplicate": dup,
        "bad_source": d.bad_source, "bad_ssrc": d.bad_ssrc,
        "bad_payload_type": d.bad_payload_type, "malformed": d.malformed,
        "no_stream": d.no_stream, "kernel_rcvbuf_errors": snmp1 - snmp0,
    }
    lat = np.frombuffer(lateness, dtype=np.float64) * 1000.0 if len(lateness) else np.zeros(1)
    spoof_sent = int(sender_report.get("spoof_sent", 0))
    return BenchResult(
        calls=opts.calls,
        seconds=opts.seconds,
        streams=n,
        cpu_s_per_call_s=round(cpu / (opts.calls * opts.seconds), 6),
        cpu_s_receiver=round(cpu, 3),
        cpu_util_receiver=round(cpu / wall, 3),
        packets_per_s=round(packets / opts.seconds, 1),
        frames=frames,
        speech_segments=segs,
        lateness_p50_ms=round(float(np.percentile(lat, 50)), 3),
        lateness_p99_ms=round(float(np.percentile(lat, 99)), 3),
        lateness_max_ms=round(float(lat.max()), 3),
        dropped_late=late,
        dropped_other=lost + dup + d.total(),
        dropped=dropped,
        spoofed_sent=spoof_sent,
        spoofed_dropped=d.bad_source + d.bad_ssrc,
        sender_late_p99_ms=round(float(sender_report.get("late_p99_ms", 0.0)), 3),
        sender_cpu_util=round(float(sender_report.get("cpu_util", 0.0)), 3),
        rss_mb_per_call=round((rss1 - rss0) / opts.calls, 4),
        rss_mb_total=round(rss1, 1),
        receiver_runqueue_wait_s=round(rq1 - rq0, 3),
        cores=os.cpu_count() or 0,
        loadavg_1m=os.getloadavg()[0],
    )


def _runqueue_wait_s() -> float:
    """Seconds this process's threads spent runnable but not running (all threads)."""
    total = 0
    try:
        import glob

        for path in glob.glob(f"/proc/{os.getpid()}/task/*/schedstat"):
            with open(path) as fh:
                total += int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return total / 1e9


def _udp_rcvbuf_errors() -> int:
    try:
        with open("/proc/net/snmp") as fh:
            lines = [ln.split() for ln in fh if ln.startswith("Udp:")]
        head, vals = lines[0], lines[1]
        return int(vals[head.index("RcvbufErrors")])
    except (OSError, IndexError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main(argparse.Namespace(calls=10, seconds=5.0, codec="ulaw", jitter_ms=60,
                                     spoof_per_s=20.0, json=True)))
