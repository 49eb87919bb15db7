"""Lexical AMD evidence: the phrase scorer, its fusion with the timing model, timed decodes."""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from earpiece.bus import EventBus
from earpiece.cpa.amd_words import word_evidence
from earpiece.cpa.amd_words_run import WordsOptions, analyze_with_words
from earpiece.cpa.detector import CallProgressDetector, CpaOptions
from earpiece.cpa.fork import CpaFork
from earpiece.events import CallState, CallStateChanged, CpaDecision, Transcript

SOUNDS = Path("/usr/share/asterisk/sounds/en")
needs_sounds = pytest.mark.skipif(not SOUNDS.exists(), reason="asterisk-core-sounds-en-wav")


def _wav(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy()


def _call(*parts: npt.NDArray[np.int16], lead_s: float = 0.4) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(1)
    x = np.concatenate([np.zeros(int(lead_s * 8000), dtype=np.int16), *parts,
                        np.zeros(3 * 8000, dtype=np.int16)]).astype(np.float64)
    return np.clip(x + rng.normal(0, 20, x.size), -32768, 32767).astype(np.int16)


@pytest.mark.parametrize("text", [
    "Hi, you've reached the voicemail of", "The person you are calling is not avail",
    "Please leave a message after the tone.", "Hello, you reach the gate.",
    "您拨打的用户暂时无法接通", "您好，我现在不方便接听电话",
])
def test_machine_wording_is_strong_machine_evidence(text: str) -> None:
    ev = word_evidence(text)
    assert ev.strong_machine and ev.cues


@pytest.mark.parametrize("text", [
    "Good afternoon, Peter speaking.", "Hi, who is this?",
    "Hello? Who's calling, please?", "Hello, yes, this is she.", "喂，哪位？", "喂，请讲。",
])
def test_live_wording_is_strong_human_evidence(text: str) -> None:
    assert word_evidence(text).strong_human


@pytest.mark.parametrize("text", ["Hello?", "Yes?", "喂？"])
def test_a_bare_greeting_leans_human_but_weakly(text: str) -> None:
    ev = word_evidence(text)
    assert -3.0 < ev.log_odds < 0 and ev.cues


@pytest.mark.parametrize("text", ["", "Hi, this is Mary", "Hello, this is Sarah.",
                                  "以下是普通话的句子。", "Thank you."])
def test_ambiguous_or_noise_text_is_weak(text: str) -> None:
    assert abs(word_evidence(text).log_odds) < 3.0


@given(st.text(max_size=80))
def test_word_evidence_is_bounded_for_any_text(text: str) -> None:
    ev = word_evidence(text)
    assert -8.0 <= ev.log_odds <= 8.0


@needs_sounds
def test_human_words_overrule_a_long_greeting_and_machine_words_decide_early() -> None:
    # vm-intro is a recorded greeting: timing alone calls it machine
    x = _call(_wav("vm-intro"))
    opts = CpaOptions(words_wait_s=1.6)
    def silent(_x: npt.NDArray[np.int16], _s: int, _e: int) -> tuple[str, float]:
        return "", 0.4
    timing, log0 = analyze_with_words(x, 8000, silent, options=opts)
    assert timing.label == "machine" and log0 and float(log0[0]["decode_s"]) == 0.4

    def machine(_x: npt.NDArray[np.int16], _s: int, _e: int) -> tuple[str, float]:
        return "Please leave your message", 0.5
    r, log_ = analyze_with_words(x, 8000, machine, options=opts)
    assert r.label == "machine" and r.evidence["rule"] in ("machine_words", "model+words")
    # the verdict exists only once the decode has finished: snapshot + decode time
    assert r.decision_s == pytest.approx(float(log_[0]["available_s"]), abs=0.021)
    assert float(log_[0]["snapshot_s"]) >= 1.0

    # the same audio with a live answer's words: the person is believed, not the timing
    def human(_x: npt.NDArray[np.int16], _s: int, _e: int) -> tuple[str, float]:
        return "Good afternoon, Peter speaking.", 0.4
    cut = _call(_wav("vm-intro")[: int(8000 * 2.0)])
    assert analyze_with_words(cut, 8000, silent, options=opts)[0].label == "machine"
    r2, _ = analyze_with_words(cut, 8000, human, options=opts, words=WordsOptions(first_s=0.8))
    assert r2.label == "human" and r2.evidence["rule"] == "model+words"


@needs_sounds
def test_words_wait_holds_the_timing_machine_verdict() -> None:
    x = _call(_wav("vm-intro"))
    fast = analyze_with_words(x, 8000, lambda *_: ("", 5.0), options=CpaOptions())[0]
    held = analyze_with_words(x, 8000, lambda *_: ("", 5.0),
                              options=CpaOptions(words_wait_s=2.2))[0]
    assert fast.label == held.label == "machine"
    assert held.decision_s > fast.decision_s


def test_transcript_before_answer_does_not_count_after_it() -> None:
    det = CallProgressDetector(CpaOptions(phase="pre_answer"))
    det.add_transcript("hello")
    det.answer()
    assert not det.words_heard and det.first_speech_s is None


@needs_sounds
def test_fork_hands_customer_transcripts_to_the_detector() -> None:
    bus = EventBus()
    seen: list[CpaDecision] = []
    bus.subscribe(CpaDecision, seen.append)
    fork = CpaFork(bus)
    fork.start()
    bus.publish(CallStateChanged(call_id="w1", old=CallState.RINGING, new=CallState.ANSWERED,
                                 source="test"))
    x = _call(_wav("vm-intro"))
    frames = [x[i:i + 160] for i in range(0, 8000, 160)]  # the first second only
    for f in frames:
        fork.on_frame("w1", "customer", f)
    assert seen == []
    bus.publish(Transcript(call_id="w1", party="agent", text="leave a message", final=True,
                           start_s=0.0, end_s=1.0, language="en"))
    assert seen == [] and fork.stats.transcripts == 0
    bus.publish(Transcript(call_id="w1", party="customer", text="Please leave a message",
                           final=False, start_s=0.4, end_s=1.0, language="en"))
    assert [d.label for d in seen] == ["machine"]
    assert seen[0].evidence["rule"] == "machine_words" and fork.stats.transcripts == 1
    assert fork.is_human("w1") is False
    fork.stop()


def test_snapshots_wait_for_the_previous_decode() -> None:
    rng = np.random.default_rng(3)
    # 3 s of steady babble-like noise bursts: a long "greeting" nobody decides early
    x = np.zeros(8000 * 5)
    for k in range(12):
        a = int((0.3 + 0.25 * k) * 8000)
        x[a:a + 1400] = rng.normal(0, 3000, 1400)
    calls: list[tuple[int, int]] = []

    def slow(_x: npt.NDArray[np.int16], s: int, e: int) -> tuple[str, float]:
        calls.append((s, e))
        return "", 0.9
    _, log_ = analyze_with_words(np.clip(x, -32768, 32767).astype(np.int16), 8000, slow,
                                 options=CpaOptions(amd="off"),
                                 words=WordsOptions(first_s=0.5, step_s=0.2, max_snapshots=3))
    assert len(log_) == 3
    for prev, nxt in itertools.pairwise(log_):
        assert float(nxt["snapshot_s"]) >= float(prev["available_s"]) - 1e-6
    assert all(s == calls[0][0] for s, _ in calls) and calls[0][1] < calls[-1][1]


def test_greeting_transcripts_are_replayed_from_the_cache(tmp_path: Path) -> None:
    from earpiece.cpa.amd_words_run import WhisperGreetings

    cache = tmp_path / "words.jsonl"
    cache.write_text('{"key": "a.wav|0|8000|en|base", "text": "Leave a message", '
                     '"decode_s": 0.42}\n', encoding="utf-8")
    g = WhisperGreetings(cache, model="base")
    t = g.for_item("a.wav", "en")
    assert t(np.zeros(8000, dtype=np.int16), 0, 8000) == ("Leave a message", 0.42)
    assert g.decodes == 0 and not g._transcribers  # no model was loaded
    assert WhisperGreetings(cache).model_for("en") == "tiny.en"  # "auto", as live
    assert WhisperGreetings(cache).model_for("zh") == "base"


@needs_sounds
def test_real_whisper_hears_a_recorded_greeting_early(tmp_path: Path) -> None:
    from earpiece.cpa.amd_words_run import WhisperGreetings

    x = _call(_wav("vm-intro"))  # "Please leave your message after the tone..."
    opts = CpaOptions(human_p=0.12)
    timing = analyze_with_words(x, 8000, lambda *_: ("", 0.0),
                                options=CpaOptions(words_weight=0.0))[0]
    g = WhisperGreetings(tmp_path / "words.jsonl")
    r, log_ = analyze_with_words(x, 8000, g.for_item("vm-intro", "en"), options=opts)
    assert g.decodes >= 1 and "leave" in str(log_[0]["text"]).lower()
    assert r.label == "machine" and r.evidence["rule"] in ("machine_words", "model+words")
    assert r.decision_s == pytest.approx(float(log_[0]["available_s"]), abs=0.021)
    assert r.decision_s < timing.decision_s or float(log_[0]["decode_s"]) > 0.7
    again = WhisperGreetings(tmp_path / "words.jsonl")
    r2, _ = analyze_with_words(x, 8000, again.for_item("vm-intro", "en"), options=opts)
    assert again.decodes == 0 and r2 == r
