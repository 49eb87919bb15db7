"""VAD segmentation on real recorded speech, and the two measured webrtcvad pitfalls."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from earpiece.media.settings import VadSettings
from earpiece.media.vad import VadSegmenter, frame_dbfs
from earpiece.media.xcorr import read_wav_int16

SOUNDS = Path("/usr/share/asterisk/sounds/en")
needs_sounds = pytest.mark.skipif(not (SOUNDS / "demo-congrats.wav").exists(),
                                  reason="asterisk-core-sounds-en-wav not installed")


def frames(x: np.ndarray, n: int = 160) -> list[np.ndarray]:
    x = np.clip(x, -32768, 32767).astype(np.int16)
    return [x[i : i + n] for i in range(0, len(x) - n + 1, n)]


def noise(rms: float, seconds: float, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, rms, int(8000 * seconds))


def feed(seg: VadSegmenter, x: np.ndarray, start: int = 0) -> tuple[list[bool], list]:
    voiced, closed = [], []
    for i, f in enumerate(frames(x)):
        v, c = seg.process(f, start + i)
        voiced.append(v)
        if c is not None:
            closed.append(c)
    return voiced, closed


@pytest.mark.parametrize("rms", [30, 100, 300])
def test_fresh_instance_pitfall_is_real_and_handled(rms: float) -> None:
    import webrtcvad

    raw = webrtcvad.Vad(2)
    flags = [raw.is_speech(f.tobytes(), 8000) for f in frames(noise(rms, 1.0))]
    assert any(flags[:4]) and not any(flags[10:])  # the pitfall: first ~80 ms flagged
    voiced, closed = feed(VadSegmenter(VadSettings(aggressiveness=2), 8000), noise(rms, 1.0))
    assert not any(voiced) and not closed


@pytest.mark.parametrize("rms", [1, 3, 10])
def test_low_noise_after_digital_silence_is_not_speech(rms: float) -> None:
    import webrtcvad

    x = np.concatenate([noise(300, 2.0), np.zeros(8000 * 10), noise(rms, 3.0, seed=2)])
    raw = webrtcvad.Vad(0)
    flags = [raw.is_speech(f.tobytes(), 8000) for f in frames(x)]
    tail = flags[-150:]
    assert any(tail[:10])  # the pitfall, as measured (aggressiveness 0)
    for aggr in (0, 2):
        voiced, closed = feed(VadSegmenter(VadSettings(aggressiveness=aggr), 8000), x)
        assert not any(voiced), aggr
        assert not closed


def test_digital_silence_is_not_fed() -> None:
    seg = VadSegmenter(VadSettings(), 8000)
    feed(seg, np.zeros(8000))
    assert seg.fed_frames == 0 and seg.frames == 50
    assert frame_dbfs(np.zeros(160, np.int16)) == -120.0
    assert abs(frame_dbfs(np.full(160, 32767, np.int16))) < 0.01


@needs_sounds
def test_real_speech_segment_with_preroll_and_hangover() -> None:
    speech, rate = read_wav_int16(str(SOUNDS / "demo-congrats.wav"))
    assert rate == 8000
    x = np.concatenate([noise(20, 1.0), speech.astype(float), noise(20, 1.5, seed=3)])
    s = VadSettings(aggressiveness=2, preroll_ms=200, hangover_ms=300)
    seg = VadSegmenter(s, 8000)
    _, closed = feed(seg, x)
    last = seg.finish()
    segs = closed + ([last] if last else [])
    assert segs
    # energy-based truth: where the prompt has sound
    e = np.array([frame_dbfs(f) for f in frames(speech)])
    loud = np.nonzero(e > -45)[0]
    onset = 1.0 + loud[0] * 0.02
    offset = 1.0 + (loud[-1] + 1) * 0.02
    assert onset - 0.2 - 0.05 <= segs[0].start_s <= onset - 0.1  # pre-roll covers the onset
    assert abs(segs[-1].end_s - (offset + 0.3)) <= 0.15
    # segments are ordered and do not overlap
    for a, b in itertools.pairwise(segs):
        assert a.end_s <= b.start_s
    covered = sum(sg.end_s - sg.start_s for sg in segs)
    assert covered > 0.7 * (offset - onset)


@needs_sounds
def test_short_burst_below_min_speech_is_dropped() -> None:
    speech, _ = read_wav_int16(str(SOUNDS / "demo-congrats.wav"))
    e = np.array([frame_dbfs(f) for f in frames(speech)])
    start = int(np.nonzero(e > -30)[0][0]) * 160
    burst = speech[start : start + 480].astype(float)  # 60 ms
    x = np.concatenate([noise(20, 1.0), burst, noise(20, 1.0, seed=4)])
    seg = VadSegmenter(VadSettings(min_speech_ms=200), 8000)
    _, closed = feed(seg, x)
    assert not closed and seg.finish() is None


def test_settings_validation_and_rates() -> None:
    with pytest.raises(ValueError):
        VadSettings(aggressiveness=4)
    with pytest.raises(ValueError):
        VadSegmenter(VadSettings(), 11025)
    VadSegmenter(VadSettings(), 16000)
