"""CpaFork: every answered call gets a post-answer verdict, whatever the load (issue #16,
defect 5). The worker thread is stalled with a gate, so nothing depends on machine speed."""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict

import numpy as np
import numpy.typing as npt

from earpiece.bus import EventBus
from earpiece.cpa.fork import STAND_IN_RULE, CpaFork
from earpiece.events import CallEnded, CallState, CallStateChanged, CpaDecision

WAIT_S = 20.0  # generous: only a broken fork waits this long


def answered(bus: EventBus, call_id: str) -> None:
    bus.publish(CallStateChanged(call_id=call_id, old=CallState.RINGING,
                                 new=CallState.ANSWERED, source="test"))


def ended(bus: EventBus, call_id: str, outcome: CallState = CallState.ANSWERED) -> None:
    bus.publish(CallEnded(call_id=call_id, outcome=outcome))


def frames(seconds: float, level: float = 0.0) -> list[npt.NDArray[np.int16]]:
    rng = np.random.default_rng(1)
    pcm = rng.normal(0, level, int(seconds * 8000)).astype(np.int16) if level else \
        np.zeros(int(seconds * 8000), dtype=np.int16)
    return [pcm[i:i + 160] for i in range(0, pcm.size - 159, 160)]


def post_answer(seen: list[CpaDecision]) -> dict[str, list[CpaDecision]]:
    out: dict[str, list[CpaDecision]] = defaultdict(list)
    for d in seen:
        if d.evidence.get("phase") == "post_answer":
            out[d.call_id].append(d)
    return out


def stall(fork: CpaFork) -> threading.Event:
    """Block the fork's worker thread until the returned gate is set."""
    gate = threading.Event()
    assert fork._executor is not None
    fork._executor.submit(gate.wait, WAIT_S)
    return gate


async def catch_up(fork: CpaFork) -> None:
    """Wait until the worker has run everything queued and its results reached the loop."""
    assert fork._executor is not None
    await asyncio.wrap_future(fork._executor.submit(lambda: None))
    for _ in range(3):
        await asyncio.sleep(0)


async def next_decisions(q: asyncio.Queue[CpaDecision], n: int) -> list[CpaDecision]:
    """The next ``n`` decisions published (a broken fork fails after WAIT_S)."""
    async with asyncio.timeout(WAIT_S):
        return [await q.get() for _ in range(n)]


def test_answered_call_with_no_audio_gets_unknown() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    fork = CpaFork(bus)
    fork.start()
    answered(bus, "quiet")  # answered, then no audio frame reached the detector at all
    ended(bus, "quiet")
    assert [(d.label, d.evidence["rule"], d.evidence["phase"]) for d in seen] == [
        ("unknown", "no_audio", "post_answer")]
    fork.stop()


def test_call_ended_answered_without_a_state_change_gets_a_verdict() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    fork = CpaFork(bus)
    fork.start()
    for f in frames(1.0):
        fork.on_frame("lost", "customer", f)
    ended(bus, "lost")  # CallEnded says answered; the CallStateChanged never came
    ended(bus, "never", CallState.NO_ANSWER)  # unanswered: no post-answer verdict
    assert [(d.call_id, d.label, d.evidence["rule"], d.evidence["reason"]) for d in seen] == [
        ("lost", "unknown", STAND_IN_RULE, "call_ended")]
    assert fork.stats.stand_ins == 1
    # frames flushed after the end are not analysed (and create no state)
    fork.on_frame("lost", "customer", frames(0.1)[0])
    assert fork.stats.skipped_frames == 1 and not fork._calls
    fork.stop()


async def test_many_calls_with_a_stalled_worker_all_get_a_verdict() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    q = bus.queue(CpaDecision)
    fork = CpaFork(bus, offload=True, loop=asyncio.get_running_loop(), end_grace_s=0.05,
                   verdict_timeout_s=600.0)
    fork.start()
    gate = stall(fork)
    calls = [f"call-{i}" for i in range(40)]
    try:
        for call in calls:
            answered(bus, call)
        for f in frames(0.5, level=2000.0):
            for call in calls:
                fork.on_frame(call, "customer", f)
        for call in calls:
            ended(bus, call)
        await next_decisions(q, len(calls))
        verdicts = post_answer(seen)
        for call in calls:
            (d,) = verdicts[call]
            assert (d.label, d.evidence["rule"], d.evidence["reason"]) == \
                ("unknown", STAND_IN_RULE, "call_ended")
            assert d.evidence["backlog_frames"] > 0
        assert fork.stats.stand_ins == len(calls)
    finally:
        gate.set()
    await catch_up(fork)
    # the worker caught up: a real verdict may replace a stand-in, nothing else is added
    for call, ds in post_answer(seen).items():
        assert ds[0].evidence["rule"] == STAND_IN_RULE and len(ds) <= 2, call
        assert all(d.label != "unknown" for d in ds[1:]), call
    assert not fork._calls and not fork._awaiting
    fork.stop()


async def test_time_up_with_a_stalled_worker_publishes_one_verdict() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    q = bus.queue(CpaDecision)
    fork = CpaFork(bus, offload=True, loop=asyncio.get_running_loop(), end_grace_s=0.05,
                   verdict_timeout_s=0.1)
    fork.start()
    gate = stall(fork)
    try:
        answered(bus, "long")  # the call goes on; its end does not come
        await next_decisions(q, 1)
        (d,) = seen
        assert (d.call_id, d.label, d.evidence["rule"], d.evidence["reason"]) == \
            ("long", "unknown", STAND_IN_RULE, "time_up")
    finally:
        gate.set()
    await catch_up(fork)
    ended(bus, "long")
    await catch_up(fork)
    assert len(seen) == 1  # the detector's own (unknown) answer and the end add nothing
    assert fork.stats.late_verdicts == 1 and not fork._awaiting
    fork.stop()


async def test_time_up_asks_the_detector_for_its_best_guess() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    q = bus.queue(CpaDecision)
    fork = CpaFork(bus, verdict_timeout_s=0.05)
    fork.start()
    answered(bus, "dead-air")
    for f in frames(0.3):  # not enough for the detector's own silence timeout
        fork.on_frame("dead-air", "customer", f)
    assert seen == []
    await next_decisions(q, 1)
    (d,) = seen
    assert d.label == "silence" and d.evidence["reason"] == "time_up"
    assert fork.is_human("dead-air") is False
    for f in frames(0.1):  # decided: later frames are not analysed
        fork.on_frame("dead-air", "customer", f)
    assert fork.stats.skipped_frames == 5
    ended(bus, "dead-air")
    assert len(seen) == 1
    fork.stop()


async def test_a_decided_call_is_not_overridden_at_its_end() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    fork = CpaFork(bus, offload=True, loop=asyncio.get_running_loop(), end_grace_s=0.05,
                   verdict_timeout_s=600.0)
    fork.start()
    answered(bus, "c")
    for f in frames(6.0):  # dead air past silence_timeout_s: the detector decides itself
        fork.on_frame("c", "customer", f)
    await catch_up(fork)
    ended(bus, "c")
    await catch_up(fork)
    await asyncio.sleep(0.1)  # past end_grace_s: no stand-in follows
    assert [(d.label, d.evidence["rule"]) for d in seen] == [("silence", "no_speech")]
    assert fork.stats.stand_ins == 0 and not fork._awaiting
    fork.stop()
