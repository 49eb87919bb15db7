"""Connect detection, second round (issue #18): tones after answer, SIT first, revisions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.bench.amd_score import score
from earpiece.cpa.amd_words_run import analyze_revised
from earpiece.cpa.detector import CallProgressDetector, CpaOptions, CpaResult, analyze_audio
from earpiece.cpa.evalset import Item, bandpass, ulaw_roundtrip
from earpiece.cpa.tones import SIT_FIRST, SIT_SECOND, SIT_THIRD, SitMatcher, synth_tone
from earpiece.crm.writer import statements_for
from earpiece.events import CpaDecision

SOUNDS = Path("/usr/share/asterisk/sounds/en")
needs_sounds = pytest.mark.skipif(not SOUNDS.exists(), reason="asterisk-core-sounds-en-wav")


def _line(x: npt.NDArray[np.float64], seed: int = 0) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    y = bandpass(x)
    n = bandpass(rng.standard_normal(y.size)) * 3.0
    return np.clip(ulaw_roundtrip(y + n), -32768, 32767).astype(np.int16)


def _prompt(name: str) -> npt.NDArray[np.float64]:
    from earpiece.asr.wav import read_wav

    x, _, _ = read_wav(SOUNDS / f"{name}.wav")
    idx = np.nonzero(np.abs(x) > 100)[0]
    return x[idx[0]:idx[-1] + 1].astype(np.float64)


def _sit(level: float = -15.0) -> npt.NDArray[np.float64]:
    return np.concatenate([synth_tone([SIT_FIRST[0]], 0.274, level_dbfs=level),
                           synth_tone([SIT_SECOND[0]], 0.274, level_dbfs=level),
                           synth_tone([SIT_THIRD[0]], 0.380, level_dbfs=level)])


def _z(s: float) -> npt.NDArray[np.float64]:
    return np.zeros(int(s * 8000))


def test_sit_right_after_answer_is_sit_with_segments_not_a_beep() -> None:
    r = analyze_audio(_line(np.concatenate([_z(0.4), _sit(), _z(3.0)])), 8000)
    assert r.label == "sit"
    segs = r.evidence["sit_segments"]
    assert [s["hz"] for s in segs] == [SIT_FIRST[0], SIT_SECOND[0], SIT_THIRD[0]]
    assert all(0.17 <= s["dur_s"] <= 0.5 for s in segs)


@needs_sounds
def test_sit_then_intercept_message_after_answer_is_sit() -> None:
    x = np.concatenate([_z(0.3), _sit(), _z(0.2), _prompt("ss-noservice") * 0.5, _z(1.0)])
    r, late, _ = analyze_revised(_line(x), 8000, None)
    assert r.label == "sit"
    assert late is None  # SIT is final: no watch after it


def test_sit_matcher_partial_only_while_a_sit_may_be_under_way() -> None:
    m = SitMatcher([0], [1], [2])
    assert not m.partial()
    for _ in range(10):
        m.update(0)
    assert m.partial()  # first segment sounding
    for _ in range(30):
        m.update(0)
    assert not m.partial()  # too long for a SIT segment: a beep
    m.reset()
    for _ in range(14):
        m.update(0)
    for _ in range(10):
        m.update(-1)
    assert not m.partial()  # the gap after it is too long


def test_us_reorder_after_answer_is_congestion() -> None:
    on = synth_tone([480.0, 620.0], 0.25, level_dbfs=-22)
    cycle = np.concatenate([on, _z(0.25)])
    x = np.concatenate([_z(0.5)] + [cycle] * 12)
    assert analyze_audio(_line(x, seed=3), 8000).label == "congestion"


def _hello_then(tail: npt.NDArray[np.float64]) -> tuple[CpaResult, CpaResult | None]:
    x = np.concatenate([_z(0.4), _prompt("hello"), _z(0.9), tail, _z(1.5)])
    r, late, _ = analyze_revised(_line(x), 8000, None)
    return r, late


@needs_sounds
def test_human_then_silence_is_not_revised() -> None:
    r, late = _hello_then(_z(1.0))
    assert r.label == "human"
    assert late is None


@needs_sounds
def test_one_word_greeting_then_late_beep_is_machine_late() -> None:
    r, late = _hello_then(synth_tone([1000.0], 0.6, level_dbfs=-12))
    assert r.label == "human"
    assert late is not None and late.label == "machine_late"
    assert late.evidence["rule"] == "late_beep"
    assert late.evidence["revises"] == "human" and late.evidence["phase"] == "after_verdict"
    assert 0 < late.evidence["after_s"] < 3.0 and late.decision_s > r.decision_s


@needs_sounds
def test_hello_pause_then_recorded_message_is_machine_late() -> None:
    msg = np.concatenate([_prompt("vm-nobodyavail"), _z(0.15), _prompt("vm-intro")])
    r, late = _hello_then(msg)
    assert r.label == "human"
    assert late is not None and late.label == "machine_late"
    assert late.evidence["rule"] == "late_monologue"
    assert late.evidence["monologue_s"] >= CpaOptions().late_monologue_s


@needs_sounds
def test_sit_after_a_human_verdict_revises_to_sit() -> None:
    r, late = _hello_then(_sit())
    assert r.label == "human"
    assert late is not None and late.label == "sit"


@needs_sounds
def test_revision_off_and_window() -> None:
    x = np.concatenate([_z(0.4), _prompt("hello"), _z(0.9), synth_tone([1000.0], 0.6), _z(1.0)])
    _, late, _ = analyze_revised(_line(x), 8000, None, options=CpaOptions(revise_s=0.0))
    assert late is None
    # the agent spoke and the customer answered: the watch is over, a beep no longer revises
    det = CallProgressDetector()
    det.answer()
    y = _line(np.concatenate([_z(0.4), _prompt("hello"), _z(0.9)]))
    for i in range(0, y.size - 159, 160):
        det.feed(y[i:i + 160])
    assert det.result is not None and det.result.label == "human" and det.watching
    for _ in range(40):  # the agent talks 0.8 s while the customer listens
        det.feed(np.zeros(160, dtype=np.int16))
        det.agent_activity(True)
    det.feed(np.zeros(160, dtype=np.int16))
    det.agent_activity(False)
    reply = _line(_prompt("hello"), seed=5)
    for i in range(0, reply.size - 159, 160):
        det.feed(reply[i:i + 160])
    assert not det.watching and det.late is None


def test_words_after_answer_intercept_and_late_machine_wording() -> None:
    det = CallProgressDetector()
    det.answer()
    r = det.add_transcript("The number you have dialed is not in service")
    assert r is not None and r.label == "sit" and r.evidence["rule"] == "intercept_words"
    det = CallProgressDetector()
    det.answer()
    det._decide("human", 0.9, "model")  # opens the watch as a model verdict would
    late = det.add_transcript("hi, please leave a message after the tone")
    assert late is not None and late.label == "machine_late"
    assert late.evidence["rule"] == "late_machine_words"


def _item(label: str, group: str = "amd") -> Item:
    return Item(f"{label}.wav", label, group, "test", "t")


def _r(label: str, t: float, **ev: Any) -> CpaResult:
    return CpaResult(label, 0.9, t, ev)


def test_score_counts_late_revisions_within_3_s_and_people_revised() -> None:
    items = [_item("human"), _item("human"), _item("machine"), _item("machine"),
             _item("sit", "answer_tone")]
    first = [_r("human", 1.0), _r("human", 1.2), _r("human", 1.1), _r("human", 1.3),
             _r("machine", 0.9)]
    late = [None, _r("machine_late", 3.0, after_s=1.8), _r("machine_late", 2.0, after_s=0.9),
            _r("machine_late", 5.0, after_s=3.7), _r("sit", 1.5, after_s=0.6)]
    s = score(items, first, late)
    assert s["accuracy_human_machine"] == 0.5
    assert s["accuracy_human_machine_revised"] == 0.5  # one machine caught, one person lost
    assert s["after_answer_tone_accuracy"] == 0.0
    assert s["after_answer_tone_accuracy_revised"] == 1.0
    h, m = s["by_truth"]["human"], s["by_truth"]["machine"]
    assert h["recall"] == 1.0 and h["revised_to_machine"] == 1
    assert m["recall"] == 0.0 and m["caught_late"] == 2 and m["recall_revised"] == 0.5
    assert m["release_median_s"] == 2.0 and m["late_after_max_s"] == 3.7


def test_crm_writes_invalid_number_for_sit_after_answer_only() -> None:
    def stmts(phase: str) -> list[str]:
        ev = CpaDecision(call_id="c1", label="sit", confidence=0.95, decision_s=1.2,
                         evidence={"rule": "tone_cadence", "phase": phase,
                                   "sit_segments": [{"hz": 913.8, "dur_s": 0.27}]})
        return [sql for sql, _ in statements_for(ev)]

    assert any("invalid_number" in str(p) for _, p in statements_for(CpaDecision(
        call_id="c1", label="sit", confidence=0.9, decision_s=1.0,
        evidence={"rule": "tone_cadence", "phase": "post_answer"})))
    assert len(stmts("post_answer")) == 2 and len(stmts("pre_answer")) == 1
