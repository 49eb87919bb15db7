"""The app_amd re-implementation against Asterisk's own verdicts on the same prompts."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.cpa.amd_baseline import AmdConfig, AppAmd, baseline_result, run_app_amd

SOUNDS = Path("/usr/share/asterisk/sounds/en")
AMD_CONF = Path("/work/shared/asterisk/conf/amd.conf")
needs_sounds = pytest.mark.skipif(not SOUNDS.exists(), reason="asterisk-core-sounds-en-wav")


def _wav(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)


def _tone(ms: int, amp: int = 3000) -> npt.NDArray[np.int16]:
    t = np.arange(ms * 8) / 8000
    return (amp * np.sin(2 * np.pi * 300 * t)).astype(np.int16)


def _silence(ms: int) -> npt.NDArray[np.int16]:
    return np.zeros(ms * 8, dtype=np.int16)


def test_defaults_match_shipped_amd_conf() -> None:
    assert AmdConfig() == AmdConfig(2500, 1500, 800, 5000, 100, 50, 2, 256, 5000)
    if AMD_CONF.exists():
        assert AmdConfig.from_file(AMD_CONF) == AmdConfig()


def test_from_file_overrides(tmp_path: Path) -> None:
    conf = tmp_path / "amd.conf"
    conf.write_text("[general]\ngreeting = 2000 ; longer\nsilence_threshold=300\n")
    cfg = AmdConfig.from_file(conf)
    assert cfg.greeting == 2000 and cfg.silence_threshold == 300 and cfg.initial_silence == 2500


@needs_sounds
def test_hello_is_human_like_asterisk() -> None:
    # Asterisk 22 on Playback(hello&silence/5): AMDSTATUS=HUMAN AMDCAUSE=HUMAN-803-800
    v = run_app_amd(np.concatenate([_wav("hello"), _silence(5000)]))
    assert v.status == "HUMAN"
    assert v.cause == "HUMAN-800-800"


@needs_sounds
def test_vm_intro_is_long_greeting_like_asterisk() -> None:
    # Asterisk 22 on Playback(vm-intro&demo-congrats): MACHINE, LONGGREETING-1500-1500
    v = run_app_amd(np.concatenate([_wav("vm-intro"), _wav("demo-congrats")]))
    assert (v.status, v.cause) == ("MACHINE", "LONGGREETING-1500-1500")


def test_initial_silence_is_machine() -> None:
    v = run_app_amd(_silence(4000))
    assert (v.status, v.cause, v.decision_ms) == ("MACHINE", "INITIALSILENCE-2500-2500", 2500)


def test_three_words_is_machine() -> None:
    words = [_silence(300)]
    for _ in range(3):
        words += [_tone(200), _silence(100)]
    v = run_app_amd(np.concatenate(words))
    assert v.status == "MACHINE" and v.cause == "MAXWORDS-3-2"


def test_first_word_needs_preceding_silence() -> None:
    # currentState starts as STATE_IN_WORD: voice from the first frame is not counted as a word
    amd = AppAmd()
    for _ in range(5):
        amd.feed(_tone(20))
    assert amd._words == 0


def test_too_long_is_notsure() -> None:
    # clicks shorter than a word, never a greeting, never 2.5 s of silence
    x = np.concatenate([_silence(200)] + [np.concatenate([_tone(80), _silence(60)])
                                          for _ in range(60)])
    v = run_app_amd(x)
    assert v.status == "NOTSURE" and v.cause.startswith("TOOLONG-")


def test_threshold_is_mean_absolute_value() -> None:
    quiet = np.full(160 * 200, 255, dtype=np.int16)  # mean |x| 255 < 256: silence
    assert run_app_amd(quiet).cause == "INITIALSILENCE-2500-2500"
    loud = np.full(160 * 200, 256, dtype=np.int16)  # 256: voice, one long word
    assert run_app_amd(np.concatenate([_silence(100), loud])).cause == "LONGGREETING-1500-1500"


def test_baseline_result_maps_labels() -> None:
    r = baseline_result(_silence(3000))
    assert r.label == "machine" and r.decision_s == 2.5
    assert r.evidence["amdcause"] == "INITIALSILENCE-2500-2500"
