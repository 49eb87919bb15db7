"""Turn-taking measures from scripted timings: response speed within 100 ms, overtalk, long
silences (the pure calculator, then the same script through the QC stage)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest

from earpiece.bus import EventBus
from earpiece.crm.backend import open_store
from earpiece.crm.qc import QcStage
from earpiece.crm.qc_rules import empty_rules
from earpiece.crm.qc_timing import Utterance, intersect, measure, merge
from earpiece.crm.writer import CrmWriter
from earpiece.events import CallEnded, CallStarted, CallState, Transcript

# (party, start, end) on the call clock: the agent answers after 0.6, 1.2 and 0.35 s, talks
# over the customer once (1.0 s), and there is one 7 s dead-air gap.
SCRIPT = [
    ("agent", 0.0, 3.0),
    ("customer", 3.4, 6.0),
    ("agent", 6.6, 9.0),       # response 0.6
    ("customer", 9.5, 12.0),
    ("customer", 12.3, 14.0),  # the customer pauses, then goes on: one turn
    ("agent", 15.2, 18.0),     # response 1.2 (from 14.0)
    ("customer", 18.5, 21.0),
    ("agent", 20.0, 23.0),     # starts 1.0 s before the customer stops: overtalk, no response
    ("customer", 30.0, 32.0),  # 7 s of silence before it
    ("agent", 32.35, 34.0),    # response 0.35
]
EXPECTED = [0.6, 1.2, 0.35]


def test_scripted_timings() -> None:
    timing = measure([Utterance(*u) for u in SCRIPT], long_silence_s=5.0)
    assert timing.responses == pytest.approx(EXPECTED, abs=1e-6)
    assert timing.overtalk == ((20.0, 21.0),)
    assert timing.silences == ((23.0, 30.0),)
    assert timing.longest_silence_s == pytest.approx(7.0)
    assert timing.response_mean_s == pytest.approx(sum(EXPECTED) / 3)
    assert timing.response_max_s == pytest.approx(1.2)
    assert timing.agent_talk_s == pytest.approx(3.0 + 2.4 + 2.8 + 3.0 + 1.65)


def test_jittered_recogniser_times_stay_within_100_ms() -> None:
    rng = random.Random(7)
    for _ in range(50):  # recogniser boundaries off by up to +/- 40 ms each
        jittered = [Utterance(p, s + rng.uniform(-0.04, 0.04), e + rng.uniform(-0.04, 0.04))
                    for p, s, e in SCRIPT]
        got = measure(jittered).responses
        assert len(got) == len(EXPECTED)
        assert all(abs(g - x) <= 0.1 for g, x in zip(got, EXPECTED, strict=True))


def test_short_overlaps_are_back_channel_and_edge_cases() -> None:
    utts = [Utterance("customer", 0.0, 5.0), Utterance("agent", 2.0, 2.2),
            Utterance("agent", 5.0, 6.0)]
    timing = measure(utts, min_overtalk_s=0.3)
    assert timing.overtalk == ()  # 0.2 s "mm-hm"
    assert timing.responses == (0.0,)  # the agent picks up exactly at the end
    assert measure([]).responses == () and measure([]).response_mean_s is None
    assert merge([(3.0, 4.0), (1.0, 2.0), (2.0, 3.5), (5.0, 5.0)]) == [(1.0, 4.0)]
    assert intersect([(0.0, 2.0), (3.0, 5.0)], [(1.0, 4.0)]) == [(1.0, 2.0), (3.0, 4.0)]


async def test_timing_row_from_final_transcripts_through_the_stage(tmp_path: Path) -> None:
    bus = EventBus()
    store = await open_store(f"sqlite:///{tmp_path}/crm.sqlite3")
    writer = CrmWriter(bus, store)
    writer.start()
    stage = QcStage(bus, empty_rules(), store=store, flush=writer.flush, settle_s=0)
    stage.start()
    try:
        bus.publish(CallStarted(call_id="t1", direction="outbound", channel="PJSIP/t-1"))
        for party, start, end in SCRIPT:
            bus.publish(Transcript(call_id="t1", party=party, text="words", final=True,  # type: ignore[arg-type]
                                   start_s=start, end_s=end, language="en"))
        bus.publish(CallEnded(call_id="t1", outcome=CallState.ANSWERED))
        await asyncio.sleep(0)
        await stage.drain()
        (row,) = await store.query("SELECT * FROM qc_calls WHERE call_id = 't1'")
    finally:
        await stage.close()
        await writer.close()
        await store.close()
    assert row["responses"] == 3 and row["campaign"] == "default"
    assert row["response_mean_s"] == pytest.approx(sum(EXPECTED) / 3, abs=0.1)
    assert row["response_max_s"] == pytest.approx(1.2, abs=0.1)
    assert (row["overtalks"], row["overtalk_s"]) == (1, pytest.approx(1.0))
    assert (row["silences"], row["longest_silence_s"]) == (1, pytest.approx(7.0))
    assert row["flags"] == 0 and row["missing_required"] == 0
