"""``earpiece bench crm``: CRM write throughput and event-loop stalls, SQLite or PostgreSQL.

Synthetic calls (five events each: started, customer leg, answered, one final utterance, a
tag) go through :func:`~earpiece.crm.writer.statements_for` and
:meth:`~earpiece.crm.backend.CrmBackend.execute_many` in writer-sized batches, while a
heartbeat task measures how long the event loop goes without running it. A PostgreSQL URL is
written into a schema created for the run and dropped after it (the URL must not already set
``options``); SQLite into a temporary file. The password comes from ``$EARPIECE_CRM_PASSWORD``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class CrmBenchResult:
    backend: str
    calls: int
    events: int
    statements: int
    batch_events: int
    seconds: float
    events_per_s: float
    statements_per_s: float
    loop_stall_p50_ms: float
    loop_stall_p99_ms: float
    loop_stall_max_ms: float
    read_all_calls_ms: float
    gc_off: bool


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="sqlite:///:memory:",
                        help="crm.url to measure (sqlite:///path or postgresql://user@host/db)")
    parser.add_argument("--calls", type=int, default=4000, help="synthetic calls (5 events each)")
    parser.add_argument("--batch", type=int, default=500, help="events per transaction")
    parser.add_argument("--gc-off", action="store_true",
                        help="disable Python's garbage collector while measuring (separates the "
                             "store's own loop stalls from GC pauses of the process heap)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def main(args: argparse.Namespace) -> int:
    import asyncio

    result = asyncio.run(run_bench(args.url, args.calls, args.batch, gc_off=args.gc_off))
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        print(f"{result.backend}: {result.events} events ({result.statements} statements) in "
              f"{result.seconds:.2f} s = {result.events_per_s:,.0f} events/s, "
              f"{result.statements_per_s:,.0f} statements/s in batches of "
              f"{result.batch_events}; loop stalls p50 {result.loop_stall_p50_ms:.1f} / p99 "
              f"{result.loop_stall_p99_ms:.1f} / max {result.loop_stall_max_ms:.1f} ms"
              f"{' (gc off)' if result.gc_off else ''}; reading all {result.calls} calls "
              f"{result.read_all_calls_ms:.0f} ms")
    return 0


def synthetic_events(calls: int) -> list[Any]:
    from earpiece.events import (
        CallStarted,
        CallState,
        CallStateChanged,
        CallTagged,
        ChannelJoined,
        ChannelRole,
        Transcript,
    )

    out: list[Any] = []
    for i in range(calls):
        cid = f"bench-{i:07d}"
        at = 1_763_900_000.0 + i
        out += [
            CallStarted(call_id=cid, direction="outbound", channel=f"PJSIP/c{i}-1", at=at),
            ChannelJoined(call_id=cid, channel=f"PJSIP/c{i}-1", uniqueid=f"u{i}",
                          role=ChannelRole.CUSTOMER, at=at),
            CallStateChanged(call_id=cid, old=CallState.DIALING, new=CallState.ANSWERED,
                             source="bench", at=at + 1),
            Transcript(call_id=cid, party="customer", text="hello, is this a good time?",
                       final=True, start_s=0.2, end_s=1.9, language="en", at=at + 2),
            CallTagged(call_id=cid, tags={"campaign": "bench"}, at=at + 2),
        ]
    return out


async def run_bench(url: str, calls: int, batch: int, *, gc_off: bool = False) -> CrmBenchResult:
    import asyncio
    import gc
    import tempfile
    import time
    import uuid

    from earpiece.crm.backend import CrmBackend, make_store, url_scheme
    from earpiece.crm.writer import statements_for
    from earpiece.secret import Secret

    password = Secret(os.environ.get("EARPIECE_CRM_PASSWORD", ""))
    events = synthetic_events(calls)
    admin: CrmBackend | None = None
    schema = ""
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if url_scheme(url) == "sqlite":
        if url in ("sqlite:///:memory:", "sqlite://:memory:"):
            tmp = tempfile.TemporaryDirectory(prefix="earpiece-bench-crm-")
            url = f"sqlite:///{tmp.name}/crm.sqlite3"
    else:
        admin = make_store(url, password=password)
        await admin.open()
        schema = f"earpiece_bench_{uuid.uuid4().hex[:10]}"
        await admin.execute_many([(f'CREATE SCHEMA "{schema}"', ())])
        url += ("&" if "?" in url else "?") + f"options=-csearch_path%3D{schema}"
    store = make_store(url, password=password)
    stalls: list[float] = []
    stop = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    try:
        await store.open()
        if gc_off:
            gc.disable()
        beat = asyncio.create_task(heartbeat())
        n_statements = 0
        t0 = time.perf_counter()
        for k in range(0, len(events), batch):
            statements = [s for ev in events[k:k + batch]
                          for s in statements_for(ev, store.dialect)]
            n_statements += len(statements)
            await store.execute_many(statements)
        seconds = time.perf_counter() - t0
        stop.set()
        await beat
        t1 = time.perf_counter()
        rows = await store.calls()
        read_ms = 1000 * (time.perf_counter() - t1)
        assert len(rows) == calls, (len(rows), calls)
    finally:
        gc.enable()
        await store.close()
        if admin is not None:
            await admin.execute_many([(f'DROP SCHEMA "{schema}" CASCADE', ())])
            await admin.close()
        if tmp is not None:
            tmp.cleanup()
    stalls.sort()
    return CrmBenchResult(
        backend=store.dialect.name, calls=calls, events=len(events), statements=n_statements,
        batch_events=batch, seconds=seconds, events_per_s=len(events) / seconds,
        statements_per_s=n_statements / seconds,
        loop_stall_p50_ms=1000 * stalls[len(stalls) // 2],
        loop_stall_p99_ms=1000 * stalls[int(len(stalls) * 0.99)],
        loop_stall_max_ms=1000 * stalls[-1], read_all_calls_ms=read_ms, gc_off=gc_off,
    )
