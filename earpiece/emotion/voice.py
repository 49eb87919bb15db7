"""Voice parameters of one utterance ("preset parameters" of the design brief), numpy/scipy only.

:func:`voice_features` turns a VAD-bounded utterance (8 kHz G.711-decoded PCM works; any rate
from 8 kHz up is taken) into a fixed vector, named by :data:`FEATURE_NAMES`:

* pitch: F0 mean / std / range (semitones re 100 Hz), slope (semitones per second) and the
  voiced ratio, from a normalised autocorrelation pitch track (60-400 Hz, 40 ms windows,
  20 ms hop);
* energy: frame level mean / std (dB) and dynamics (95th - 10th percentile);
* speaking rate: syllable nuclei (peaks of the smoothed voiced-frame energy envelope) per
  second of speech, and the pause ratio (frames 25 dB below the utterance's loud frames);
* jitter and shimmer: the frame-level forms (mean absolute difference of consecutive pitch
  periods / frame peak amplitudes in voiced runs, relative to their mean);
* spectrum: centroid (Hz), tilt (dB of 0-1 kHz over 1-4 kHz) and flux;
* MFCC 1-8 mean and standard deviation (20 mel bands up to 4 kHz).

Every value is finite for any input (silence, clipping, DC, a single sample): the property
test in ``tests/test_emotion_voice.py`` holds it to that. :class:`SpeakerBaseline` keeps one
speaker's running mean and spread within a call, so that models see how this person departs
from how they usually speak (agitation is relative to the person).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import scipy.fft

FloatArray = npt.NDArray[np.float64]

RATE = 8000
HOP_S = 0.010
_N_MEL = 20
_N_MFCC = 8

FEATURE_NAMES: tuple[str, ...] = (
    "f0_mean", "f0_std", "f0_range", "f0_slope", "voiced_ratio",
    "energy_mean", "energy_std", "energy_dyn",
    "rate", "pause_ratio", "jitter", "shimmer",
    "centroid", "tilt", "flux",
    *(f"mfcc{i}_mean" for i in range(1, _N_MFCC + 1)),
    *(f"mfcc{i}_std" for i in range(1, _N_MFCC + 1)),
)
N_FEATURES = len(FEATURE_NAMES)
INDEX = {name: i for i, name in enumerate(FEATURE_NAMES)}


def _frames(x: FloatArray, size: int, hop: int) -> FloatArray:
    if len(x) < size:
        x = np.concatenate((x, np.zeros(size - len(x))))
    return np.lib.stride_tricks.sliding_window_view(x, size)[::hop]


def _to_8k(pcm: npt.ArrayLike, rate: int) -> FloatArray:
    x = np.asarray(pcm, dtype=np.float64).ravel()
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    if rate != RATE and len(x) > 1:
        from scipy.signal import resample_poly

        g = int(np.gcd(int(rate), RATE))
        x = np.asarray(resample_poly(x, RATE // g, int(rate) // g), dtype=np.float64)
    if np.issubdtype(np.asarray(pcm).dtype, np.integer):
        x = x / 32768.0
    return np.clip(x, -4.0, 4.0)


def _mel_matrix(nfft: int) -> FloatArray:
    def mel(f: FloatArray | float) -> FloatArray:
        return np.asarray(2595.0 * np.log10(1.0 + np.asarray(f) / 700.0))

    pts = 700.0 * (10 ** (np.linspace(mel(60.0), mel(3900.0), _N_MEL + 2) / 2595.0) - 1.0)
    freqs = np.fft.rfftfreq(nfft, 1.0 / RATE)
    fb = np.zeros((_N_MEL, len(freqs)))
    for i in range(_N_MEL):
        lo, mid, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[i] = np.clip(np.minimum(up, down), 0.0, None)
    return fb


_NFFT = 256
_MEL = _mel_matrix(_NFFT)
_K = np.arange(_N_MEL)
_DCT = np.cos(np.pi / _N_MEL * (_K[None, :] + 0.5) * np.arange(1, _N_MFCC + 1)[:, None])
_FREQS = np.fft.rfftfreq(_NFFT, 1.0 / RATE)
_LOW = _FREQS < 1000.0
_HIGH = _FREQS >= 1000.0
_WIN = np.hanning(200)
_PWIN = np.hanning(320)
_PITCH_HOP = 160  # 20 ms


def _pitch(x: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per 20 ms hop: F0 in Hz (0 = unvoiced) and the frame's peak amplitude."""
    fr = _frames(x, 320, _PITCH_HOP)
    fr = fr - fr.mean(axis=1, keepdims=True)
    peak = np.abs(fr).max(axis=1)
    w = fr * _PWIN
    spec = scipy.fft.rfft(w, 640, axis=1)
    ac = scipy.fft.irfft(np.abs(spec) ** 2, 640, axis=1)[:, :160]
    e0 = ac[:, :1]
    norm = ac / np.maximum(e0, 1e-12)
    lo, hi = RATE // 400, RATE // 60  # 20..133 samples
    seg = norm[:, lo:hi]
    k = np.argmax(seg, axis=1)
    best = seg[np.arange(len(seg)), k]
    lag = (k + lo).astype(np.float64)
    # parabolic refinement
    km = np.clip(k + lo - 1, 0, 159)
    kp = np.clip(k + lo + 1, 0, 159)
    a, b, c = norm[np.arange(len(seg)), km], best, norm[np.arange(len(seg)), kp]
    den = a - 2 * b + c
    shift = np.where(np.abs(den) > 1e-9, 0.5 * (a - c) / np.where(den == 0, 1, den), 0.0)
    lag = lag + np.clip(shift, -0.5, 0.5)
    level = 10 * np.log10(e0[:, 0] / 320 + 1e-12)
    loud = level > max(float(np.max(level, initial=-120.0)) - 35.0, -65.0)
    voiced = (best > 0.45) & loud
    f0 = np.where(voiced, RATE / np.maximum(lag, 1.0), 0.0)
    return f0, peak


def _slope(y: FloatArray, t: FloatArray) -> float:
    if len(y) < 2:
        return 0.0
    tc = t - t.mean()
    den = float(np.dot(tc, tc))
    return float(np.dot(tc, y - y.mean()) / den) if den > 0 else 0.0


def _rel_diff(v: FloatArray, runs: npt.NDArray[np.bool_]) -> float:
    """Mean |v[i+1] - v[i]| over consecutive pairs inside runs, over the mean of v there."""
    pair = runs[1:] & runs[:-1]
    if not pair.any():
        return 0.0
    d = np.abs(np.diff(v))[pair]
    m = float(np.mean(v[1:][pair]))
    return float(np.mean(d) / m) if m > 1e-9 else 0.0


def voice_features(pcm: npt.ArrayLike, rate: int = RATE) -> FloatArray:
    """The :data:`FEATURE_NAMES` vector of one utterance (finite for any input)."""
    x = _to_8k(pcm, rate)
    out = np.zeros(N_FEATURES)
    if len(x) == 0:
        out[INDEX["energy_mean"]] = -120.0
        out[INDEX["pause_ratio"]] = 1.0
        return out
    x = x - float(np.mean(x))
    # spectral frames: 25 ms, 10 ms hop
    fr = _frames(x, 200, 80) * _WIN
    pw = np.abs(scipy.fft.rfft(fr, _NFFT, axis=1)) ** 2 + 1e-12
    e_db = 10 * np.log10(pw.sum(axis=1) / 200 + 1e-12)
    top = float(np.percentile(e_db, 95))
    active = e_db > top - 25.0
    if top < -70.0:  # digital silence or near it: nothing is speech
        active[:] = False
    act = active if active.any() else np.ones(len(e_db), dtype=bool)
    out[INDEX["energy_mean"]] = float(np.mean(e_db[act]))
    out[INDEX["energy_std"]] = float(np.std(e_db[act]))
    out[INDEX["energy_dyn"]] = top - float(np.percentile(e_db, 10))
    out[INDEX["pause_ratio"]] = 1.0 - float(np.mean(active))
    p = pw[act]
    tot = p.sum(axis=1)
    out[INDEX["centroid"]] = float(np.mean((p * _FREQS).sum(axis=1) / tot))
    out[INDEX["tilt"]] = float(np.mean(10 * np.log10(p[:, _LOW].sum(axis=1)
                                                     / p[:, _HIGH].sum(axis=1))))
    if len(pw) > 1:
        s = np.sqrt(pw)
        s = s / np.maximum(s.sum(axis=1, keepdims=True), 1e-12)
        out[INDEX["flux"]] = float(np.mean(np.sqrt((np.diff(s, axis=0) ** 2).sum(axis=1))))
    mfcc = np.log(pw @ _MEL.T + 1e-10) @ _DCT.T
    m = mfcc[act]
    base = INDEX["mfcc1_mean"]
    out[base:base + _N_MFCC] = m.mean(axis=0)
    out[base + _N_MFCC:base + 2 * _N_MFCC] = m.std(axis=0)
    # pitch
    f0, peak = _pitch(x)
    voiced = f0 > 0
    out[INDEX["voiced_ratio"]] = float(np.mean(voiced))
    if voiced.sum() >= 2:
        st = 12 * np.log2(f0[voiced] / 100.0)
        out[INDEX["f0_mean"]] = float(np.mean(st))
        out[INDEX["f0_std"]] = float(np.std(st))
        out[INDEX["f0_range"]] = float(np.percentile(st, 95) - np.percentile(st, 5))
        out[INDEX["f0_slope"]] = _slope(st, np.flatnonzero(voiced) * _PITCH_HOP / RATE)
        out[INDEX["jitter"]] = _rel_diff(np.where(voiced, 1.0 / np.maximum(f0, 1.0), 0.0),
                                         voiced)
        out[INDEX["shimmer"]] = _rel_diff(peak, voiced)
    # speaking rate: peaks of the smoothed energy envelope in the active frames
    n = len(e_db)
    env = np.convolve(e_db, np.ones(5) / 5, mode="same")
    ok = act
    if n >= 3:
        pk = (env[1:-1] > env[:-2]) & (env[1:-1] >= env[2:]) & ok[1:-1]
        pk &= env[1:-1] > top - 15.0
        idx = np.flatnonzero(pk) + 1
        kept: list[int] = []
        for i in idx:  # at least 80 ms between nuclei, with a dip of 2 dB between them
            if not kept or (i - kept[-1] >= 8 and
                            float(env[kept[-1]:i + 1].min()) < min(env[i], env[kept[-1]]) - 2):
                kept.append(int(i))
        speech_s = max(float(ok.sum()) * HOP_S, 0.2)
        out[INDEX["rate"]] = len(kept) / speech_s
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)


#: Typical spread of each feature across utterances of one speaker: the floor of the
#: running standard deviation, so that a speaker with a few near-identical utterances does
#: not turn a small change into a huge z-score.
_SPREAD_FLOOR = np.array(
    [1.0, 0.5, 1.0, 2.0, 0.05, 2.0, 1.0, 2.0, 0.5, 0.05, 0.005, 0.02, 60.0, 1.5, 0.01]
    + [1.0] * _N_MFCC + [0.5] * _N_MFCC
)


@dataclass
class SpeakerBaseline:
    """One speaker's running mean and variance of the features within a call.

    :meth:`zscores` measures an utterance against the baseline *before* it is folded in; the
    first utterance therefore scores 0 everywhere (nothing to compare with yet). The mean
    follows the speaker with weight ``1/n`` up to ``window`` utterances, then as an
    exponential average over about ``window`` utterances.
    """

    window: int = 20
    n: int = 0
    mean: FloatArray = field(default_factory=lambda: np.zeros(N_FEATURES))
    var: FloatArray = field(default_factory=lambda: np.zeros(N_FEATURES))

    def zscores(self, x: FloatArray) -> FloatArray:
        if self.n == 0:
            return np.zeros(N_FEATURES)
        sd = np.sqrt(np.maximum(self.var, _SPREAD_FLOOR ** 2))
        return np.asarray(np.clip((x - self.mean) / sd, -6.0, 6.0), dtype=np.float64)

    def update(self, x: FloatArray) -> None:
        self.n += 1
        a = 1.0 / min(self.n, self.window)
        d = x - self.mean
        self.mean = self.mean + a * d
        self.var = (1 - a) * (self.var + a * d * d)

    def observe(self, x: FloatArray) -> FloatArray:
        """z-scores of ``x`` against the baseline so far, then fold ``x`` in."""
        z = self.zscores(x)
        self.update(x)
        return z
