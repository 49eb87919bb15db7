"""Normalised cross-correlation of a decoded stream against a reference recording.

Used by the capture/simulator acceptance tests and the benchmark's self-check: find the lag
that best aligns ``reference`` inside ``signal`` (FFT cross-correlation), then return the
Pearson correlation of the two over their overlap at that lag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Match:
    corr: float  # Pearson correlation over the overlap at the best lag
    lag: int  # reference sample 0 sits at signal[lag] (may be negative)
    overlap: int  # samples compared


def best_match(
    signal: npt.NDArray[np.int16] | npt.NDArray[np.float64],
    reference: npt.NDArray[np.int16] | npt.NDArray[np.float64],
    *,
    min_overlap: int = 800,
) -> Match:
    x = np.asarray(signal, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    if len(x) == 0 or len(r) == 0:
        return Match(0.0, 0, 0)
    n = len(x) + len(r) - 1
    size = 1 << (n - 1).bit_length()
    cc = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(r, size)), size)
    # cc[k] = sum x[i + k] r[i]; negative lags wrap to the end.
    lags = np.concatenate((np.arange(0, len(x)), np.arange(-(len(r) - 1), 0)))
    vals = np.concatenate((cc[: len(x)], cc[size - (len(r) - 1) :] if len(r) > 1 else []))
    # Normalise by the energy of each window so long silent stretches do not win.
    cx = np.concatenate(([0.0], np.cumsum(x * x)))
    cr = np.concatenate(([0.0], np.cumsum(r * r)))
    lo_x = np.clip(lags, 0, len(x))
    hi_x = np.clip(lags + len(r), 0, len(x))
    lo_r = lo_x - lags
    hi_r = hi_x - lags
    overlap = hi_x - lo_x
    ex = cx[hi_x] - cx[lo_x]
    er = cr[hi_r] - cr[lo_r]
    denom = np.sqrt(ex * er)
    ok = (overlap >= min(min_overlap, len(r), len(x))) & (denom > 0)
    score = np.where(ok, vals / np.where(denom > 0, denom, 1.0), -np.inf)
    best = int(np.argmax(score))
    lag = int(lags[best])
    a = x[lo_x[best] : hi_x[best]]
    b = r[lo_r[best] : hi_r[best]]
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return Match(0.0, lag, len(a))
    return Match(float(np.corrcoef(a, b)[0, 1]), lag, len(a))


def read_wav_int16(path: str) -> tuple[npt.NDArray[np.int16], int]:
    """Read a mono 16-bit PCM WAV (the asterisk-core-sounds prompts)."""
    import wave

    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit WAV, need 16-bit")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        ch = w.getnchannels()
        if ch > 1:
            data = data.reshape(-1, ch)[:, 0].copy()
        return data, w.getframerate()
