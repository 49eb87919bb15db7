"""Live greeting snapshots: the schedule, the fork's decode path, the settings that turn it on."""

from __future__ import annotations

import asyncio
import threading
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.asr.settings import AsrSettings
from earpiece.bus import EventBus
from earpiece.cpa.detector import CallProgressDetector, CpaOptions
from earpiece.cpa.fork import CpaFork, words_from_settings
from earpiece.cpa.settings import CpaSettings
from earpiece.cpa.words import (
    GreetingSnapshots,
    GreetingTranscriber,
    GreetingWords,
    SnapshotOptions,
    words_model_for,
)
from earpiece.events import CallEnded, CallState, CallStateChanged, CpaDecision, Transcript

SOUNDS = Path("/usr/share/asterisk/sounds/en")
needs_sounds = pytest.mark.skipif(not SOUNDS.exists(), reason="asterisk-core-sounds-en-wav")


def _wav(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def _babble(seconds: float = 5.0, lead_s: float = 0.4) -> npt.NDArray[np.int16]:
    """A long run of speech-like noise bursts: a greeting timing alone decides late."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 20, int(seconds * 8000))
    k = 0
    while (a := int((lead_s + 0.25 * k) * 8000)) + 1400 < x.size - 8000:
        x[a:a + 1400] += rng.normal(0, 3000, 1400)
        k += 1
    return np.clip(x, -32768, 32767).astype(np.int16)


def _frames(x: npt.NDArray[np.int16]) -> list[npt.NDArray[np.int16]]:
    return [x[i:i + 160] for i in range(0, x.size - 159, 160)]


def test_schedule_first_after_onset_then_steps_only_when_the_decode_is_done() -> None:
    det = CallProgressDetector(CpaOptions(amd="off", phase="pre_answer"))
    snaps = GreetingSnapshots(SnapshotOptions(first_s=0.7, step_s=0.3, max_snapshots=3))
    x = _babble()
    taken: list[tuple[float, int, float | None]] = []
    for i, f in enumerate(_frames(x)):
        if i == 10:  # answered 0.2 s into the stream: earlier audio is early media
            det.answer()
            snaps.answer()
        det.feed(f)
        audio = snaps.push(f, det)
        if audio is not None:
            taken.append((det.t, audio.size, det.first_speech_s))
            if len(taken) == 2:
                snaps_busy_at = det.t
            else:
                snaps.done()
        if len(taken) == 2 and det.t >= snaps_busy_at + 1.0:
            snaps.done()  # the second decode took a whole second
    onset = det.first_speech_s
    assert onset is not None
    assert len(taken) == 3 and snaps.taken == 3
    assert taken[0][0] == pytest.approx(onset + 0.7, abs=0.021)
    assert taken[1][0] == pytest.approx(taken[0][0] + 0.3, abs=0.021)
    assert taken[1][0] + 1.0 <= taken[2][0] <= taken[1][0] + 1.05  # waited for done()
    for t, n, first in taken:  # from lead_s before the first speech (or the answer) to now
        assert first is not None
        assert n == pytest.approx((t - max(0.0, first - 0.3)) * 8000, abs=160)


def test_no_snapshot_before_answer_before_speech_or_after_a_verdict() -> None:
    det = CallProgressDetector(CpaOptions())
    snaps = GreetingSnapshots()
    x = _babble()
    for f in _frames(x)[:100]:  # not answered: early media is never transcribed
        det.feed(f)
        assert snaps.push(f, det) is None
    det2 = CallProgressDetector(CpaOptions())
    det2.answer()
    snaps.answer()
    quiet = np.zeros(160, dtype=np.int16)
    for _ in range(100):  # answered, but nobody speaks
        det2.feed(quiet)
        assert snaps.push(quiet, det2) is None
    det3 = CallProgressDetector(CpaOptions())
    det3.answer()
    s3 = GreetingSnapshots()
    s3.answer()
    n = 0
    for f in _frames(_babble(8.0)):
        if det3.feed(f) is not None or det3.result is not None:
            assert s3.push(f, det3) is None
        elif s3.push(f, det3) is not None:
            n += 1
            s3.done()
    assert det3.result is not None and 1 <= n <= 3


def test_snapshot_options_are_validated() -> None:
    with pytest.raises(ValueError):
        SnapshotOptions(step_s=0)
    with pytest.raises(ValueError):
        SnapshotOptions(first_s=-1)
    with pytest.raises(ValueError):
        SnapshotOptions(first_s=9.0, max_buffer_s=8.0)


class _FakeTranscriber:
    """Answers with a fixed text; records the audio it was given and the thread it ran on."""

    def __init__(self, text: str, *, fail: bool = False) -> None:
        self.text = text
        self.fail = fail
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.loaded = threading.Event()

    def load(self) -> None:
        self.threads.add(threading.current_thread().name)
        self.loaded.set()

    def transcribe(self, audio8k: npt.NDArray[np.int16],
                   language: str | None) -> tuple[str, float]:
        self.threads.add(threading.current_thread().name)
        self.calls.append(audio8k.size)
        if self.fail:
            raise RuntimeError("decoder exploded")
        return self.text, 0.05


async def _run_call(fake: _FakeTranscriber, x: npt.NDArray[np.int16],
                    transcripts: list[str] = ()) -> tuple[CpaFork, list[CpaDecision]]:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    fork = CpaFork(bus, offload=True, loop=asyncio.get_running_loop(),
                   words=GreetingWords(fake, language="en"))
    fork.start()
    bus.publish(CallStateChanged(call_id="c1", old=CallState.RINGING, new=CallState.ANSWERED,
                                 source="test"))
    for i, f in enumerate(_frames(x)):
        fork.on_frame("c1", "customer", f)
        if i % 5 == 4:  # 0.1 s of audio, delivered in real time / 10
            await asyncio.sleep(0.01)
        for text in transcripts:
            if i == 60:
                bus.publish(Transcript(call_id="c1", party="customer", text=text, final=False,
                                       start_s=0.4, end_s=1.2, language="en"))
        if seen:
            break
    for _ in range(100):
        if seen:
            break
        await asyncio.sleep(0.01)
    bus.publish(CallEnded(call_id="c1", outcome=CallState.ANSWERED))
    await asyncio.sleep(0.05)
    fork.stop()
    return fork, seen


def test_fork_transcribes_the_greeting_and_machine_words_decide() -> None:
    fake = _FakeTranscriber("Hi, you've reached the voicemail of John")

    async def main() -> tuple[CpaFork, list[CpaDecision]]:
        return await _run_call(fake, _babble())

    fork, seen = asyncio.run(main())
    assert fake.loaded.is_set() and fake.calls
    assert all(name.startswith("earpiece-cpa-words") for name in fake.threads)
    assert [d.label for d in seen] == ["machine"]
    assert seen[0].evidence["rule"] == "machine_words"
    # timing alone decides this babble much later (or not before the hard limit)
    timing = CallProgressDetector(CpaOptions())
    timing.answer()
    t_timing = next(r.decision_s for f in _frames(_babble()) if (r := timing.feed(f)))
    assert seen[0].decision_s < t_timing
    assert fork.stats.words_snapshots >= 1 and fork.stats.words_errors == 0


def test_fork_ignores_asr_partials_after_answer_when_snapshots_run() -> None:
    fake = _FakeTranscriber("")  # the snapshots hear nothing useful

    async def main() -> tuple[CpaFork, list[CpaDecision]]:
        return await _run_call(fake, _babble(), transcripts=["Please leave a message"])

    fork, seen = asyncio.run(main())
    assert fork.stats.transcripts == 1
    assert seen and seen[0].evidence["rule"] != "machine_words"


def test_a_failing_decoder_is_counted_and_timing_still_decides() -> None:
    fake = _FakeTranscriber("", fail=True)

    async def main() -> tuple[CpaFork, list[CpaDecision]]:
        return await _run_call(fake, _babble(8.0))

    fork, seen = asyncio.run(main())
    assert fork.stats.words_errors >= 1
    assert len(fake.calls) == fork.stats.words_errors  # each failure freed the schedule
    assert [d.label for d in seen] == ["machine"] and seen[0].evidence["rule"] != "machine_words"


def test_settings_turn_snapshots_on_and_pick_the_model() -> None:
    asr = AsrSettings()
    words = words_from_settings(CpaSettings(), asr)
    assert words is not None and words.language == "en"
    assert isinstance(words.transcriber, GreetingTranscriber)
    assert words.transcriber.model == "tiny.en"
    assert words.options == SnapshotOptions(first_s=0.7, step_s=0.3, max_snapshots=3)
    assert words_from_settings(CpaSettings(words=False), asr) is None
    assert words_from_settings(CpaSettings(words_max_snapshots=0), asr) is None
    assert words_from_settings(CpaSettings(), AsrSettings(enabled=False)) is None
    zh = words_from_settings(CpaSettings(), AsrSettings(language="zh"))
    assert zh is not None and isinstance(zh.transcriber, GreetingTranscriber)
    assert zh.transcriber.model == "base" and zh.language == "zh"
    auto = words_from_settings(CpaSettings(words_model="/opt/ct2-small"),
                               AsrSettings(language="auto"))
    assert auto is not None and auto.language is None
    assert isinstance(auto.transcriber, GreetingTranscriber)
    assert auto.transcriber.model == "/opt/ct2-small"
    assert words_model_for("auto", "base", "en") == "tiny.en"
    assert words_model_for("auto", "/m", "de") == "/m"


@needs_sounds
@pytest.mark.slow
def test_real_tiny_en_hears_a_recorded_voicemail_prompt() -> None:
    t = GreetingTranscriber("tiny.en", cpu_threads=2)
    x = np.concatenate([np.zeros(2400, dtype=np.int16), _wav("vm-intro")[:int(1.6 * 8000)]])
    text, took = t.transcribe(x, "en")
    assert "leave" in text.lower() and took > 0 and t.decodes == 1


def test_audio_is_cut_right_when_the_schedule_starts_after_the_detector_clock() -> None:
    det = CallProgressDetector(CpaOptions(amd="off"))  # answered from its first frame
    snaps = GreetingSnapshots()
    x = _babble()
    got = None
    for i, f in enumerate(_frames(x)):
        if i == 10:
            snaps.answer()  # 0.2 s of the detector's post-answer audio was never kept
        det.feed(f)
        got = snaps.push(f, det)
        if got is not None:
            break
    assert got is not None and det.first_speech_s is not None
    start_s = max(0.2, det.first_speech_s - 0.3)
    assert got.size == pytest.approx((det.t - start_s) * 8000, abs=160)
    np.testing.assert_array_equal(got[-160:], x[round(det.t * 8000) - 160:round(det.t * 8000)])


def test_a_recogniser_that_cannot_load_leaves_timing_alone() -> None:
    class Broken(_FakeTranscriber):
        def load(self) -> None:
            raise FileNotFoundError("no such model: /nowhere")

    fake = Broken("Hi, you've reached the voicemail of John")

    async def main() -> tuple[CpaFork, list[CpaDecision]]:
        await asyncio.sleep(0)
        return await _run_call(fake, _babble(8.0))

    fork, seen = asyncio.run(main())
    assert fork.stats.words_errors == 1 and fake.calls == []
    assert [d.label for d in seen] == ["machine"] and seen[0].evidence["rule"] != "machine_words"


def test_the_kept_audio_is_freed_once_nothing_more_will_be_transcribed() -> None:
    det = CallProgressDetector(CpaOptions(amd="off"))
    snaps = GreetingSnapshots(SnapshotOptions(max_snapshots=1))
    snaps.answer()
    got = None
    for f in _frames(_babble()):
        det.feed(f)
        out = snaps.push(f, det)
        if out is not None:
            got = out
            assert snaps._chunks  # kept while the decode runs
            snaps.done()
    assert got is not None and got.size > 0  # the snapshot's audio outlives the buffer
    assert snaps.taken == 1 and snaps._chunks == []


def test_more_answers_than_the_recogniser_keeps_up_with_are_skipped_not_queued() -> None:
    class Slow(_FakeTranscriber):
        def transcribe(self, audio8k: npt.NDArray[np.int16],
                       language: str | None) -> tuple[str, float]:
            out = super().transcribe(audio8k, language)
            threading.Event().wait(0.15)  # a loaded machine: 0.15 s a decode
            return out

    fake = Slow("")  # words that settle nothing: timing decides every call

    async def main() -> tuple[CpaFork, list[CpaDecision]]:
        bus = EventBus()
        seen: list[CpaDecision] = []
        bus.subscribe(CpaDecision, seen.append)
        fork = CpaFork(bus, offload=True, loop=asyncio.get_running_loop(),
                       words=GreetingWords(fake, language="en"))
        fork.start()
        calls = [f"c{k}" for k in range(12)]
        for cid in calls:
            bus.publish(CallStateChanged(call_id=cid, old=CallState.RINGING,
                                         new=CallState.ANSWERED, source="test"))
        for i, f in enumerate(_frames(_babble(8.0))):  # 12 calls answered at the same moment
            for cid in calls:
                fork.on_frame(cid, "customer", f)
            if i % 5 == 4:
                await asyncio.sleep(0.02)
        for _ in range(200):
            if len(seen) == len(calls):
                break
            await asyncio.sleep(0.01)
        fork.stop()
        return fork, seen

    fork, seen = asyncio.run(main())
    assert sorted(d.call_id for d in seen) == sorted(f"c{k}" for k in range(12))
    s = fork.stats
    assert s.words_skipped > 0 and s.words_errors == 0
    # every call asked at least once; each request was decoded or skipped, none is lost
    assert len(fake.calls) + s.words_skipped >= 12
    assert len(fake.calls) < 36  # 12 calls x 3 snapshots were never all decoded
