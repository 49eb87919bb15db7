"""CpaFork: per-call detectors on the bus, early media then answer, verdicts to the registry."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.bus import EventBus
from earpiece.cpa.fork import CpaFork
from earpiece.cpa.tones import synth_tone
from earpiece.events import CallEnded, CallState, CallStateChanged, CpaDecision

SOUNDS = Path("/usr/share/asterisk/sounds/en")


def _frames(x: npt.NDArray[np.float64]) -> list[npt.NDArray[np.int16]]:
    pcm = np.clip(x, -32768, 32767).astype(np.int16)
    return [pcm[i:i + 160] for i in range(0, pcm.size - 159, 160)]


def _ringback() -> npt.NDArray[np.float64]:
    return np.concatenate([np.zeros(4000), synth_tone([440, 480], 2.0, level_dbfs=-20),
                           np.zeros(12000)])


def _hello() -> npt.NDArray[np.float64]:
    with wave.open(str(SOUNDS / "hello.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    rng = np.random.default_rng(0)
    out = rng.normal(0, 20, 8000 * 3)
    out[3200:3200 + x.size] += x
    return out


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, call_id: str, label: str, source: str) -> bool:
        self.calls.append((call_id, label, source))
        return True


@pytest.mark.skipif(not SOUNDS.exists(), reason="asterisk-core-sounds-en-wav")
def test_early_media_then_answer_then_human() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    sink = Sink()
    fork = CpaFork(bus, record_audio_verdict=sink)
    fork.start()
    for f in _frames(_ringback()):
        fork.on_frame("c1", "customer", f)
        fork.on_frame("c1", "agent", np.zeros(160, dtype=np.int16))  # ignored
    assert [d.label for d in seen] == ["ringback"]
    assert seen[0].evidence["phase"] == "pre_answer"
    assert fork.is_human("c1") is None
    bus.publish(CallStateChanged(call_id="c1", old=CallState.RINGING, new=CallState.ANSWERED,
                                 source="test"))
    for f in _frames(_hello()):
        fork.on_frame("c1", "customer", f)
    assert [d.label for d in seen] == ["ringback", "human"]
    assert seen[1].evidence["phase"] == "post_answer" and seen[1].decision_s < 2.0
    assert fork.is_human("c1") is True
    assert [c[1] for c in sink.calls] == ["ringback", "human"]
    assert sink.calls[1][2].startswith("audio:cpa post_answer")
    assert fork.stats.ignored_frames > 0
    fork.stop()


def test_undecided_answered_call_gets_a_verdict_at_end() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    fork = CpaFork(bus)
    fork.start()
    bus.publish(CallStateChanged(call_id="c2", old=CallState.RINGING, new=CallState.ANSWERED,
                                 source="test"))
    for f in _frames(np.zeros(8000)):  # 1 s of dead air, then hang-up
        fork.on_frame("c2", "customer", f)
    assert seen == []
    bus.publish(CallEnded(call_id="c2", outcome=CallState.ANSWERED))
    assert len(seen) == 1 and seen[0].label == "silence"
    assert fork.is_human("c2") is False
    fork.on_frame("c2", "customer", np.zeros(160, dtype=np.float64))  # type: ignore[arg-type]
    assert fork.stats.malformed == 1


async def test_offloaded_processing_publishes_on_the_loop() -> None:
    bus = EventBus()
    q = bus.queue(CpaDecision)
    fork = CpaFork(bus, offload=True, loop=asyncio.get_running_loop())
    fork.start()
    for f in _frames(_ringback()):
        fork.on_frame("c3", "customer", f)
    ev = await asyncio.wait_for(q.get(), timeout=10)
    assert ev.label == "ringback" and ev.call_id == "c3"
    fork.stop()
