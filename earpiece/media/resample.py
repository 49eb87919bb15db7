"""Streaming rational resampling of int16 PCM (e.g. slin16 16 kHz -> 8 kHz for call-progress,
8 kHz G.711 -> 16 kHz for ASR).

A windowed-sinc low-pass FIR (Kaiser, cut-off at the lower Nyquist) is applied at the
up-sampled rate; state (the last ``taps-1`` up-sampled inputs and the decimation phase) is kept
between calls, so feeding a stream frame by frame gives exactly the same output as feeding it
at once. Nothing here is "drop every other sample": that would alias 4-8 kHz speech energy
into the telephone band.
"""

from __future__ import annotations

from math import gcd

import numpy as np
import numpy.typing as npt


def _design(up: int, down: int, taps_per_phase: int) -> npt.NDArray[np.float64]:
    from scipy.signal import firwin

    numtaps = taps_per_phase * max(up, down) + 1
    cutoff = 0.95 / max(up, down)  # fraction of the up-sampled Nyquist
    h: npt.NDArray[np.float64] = firwin(numtaps, cutoff, window=("kaiser", 8.0)) * up
    return h


class Resampler:
    """Stateful ``in_rate`` -> ``out_rate`` converter for a single stream."""

    def __init__(self, in_rate: int, out_rate: int, *, taps_per_phase: int = 24) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("rates must be positive")
        g = gcd(in_rate, out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.up = out_rate // g
        self.down = in_rate // g
        self.identity = self.up == self.down == 1
        self._h = _design(self.up, self.down, taps_per_phase) if not self.identity else None
        ntaps = 0 if self._h is None else len(self._h)
        self._hist = np.zeros(max(ntaps - 1, 0), dtype=np.float64)
        self._phase = 0  # index (in up-sampled samples) of the next output sample to take
        #: Group delay in output samples.
        self.delay = 0.0 if self._h is None else (ntaps - 1) / 2 / self.down

    def process(self, x: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
        if self._h is None:
            return x
        up, down = self.up, self.down
        if up > 1:
            xu = np.zeros(len(x) * up, dtype=np.float64)
            xu[::up] = x
        else:
            xu = x.astype(np.float64)
        buf = np.concatenate((self._hist, xu))
        y = np.convolve(buf, self._h, mode="valid")  # len == len(xu)
        nh = len(self._hist)
        if nh:
            self._hist = buf[-nh:]
        out = y[self._phase :: down]
        self._phase = (self._phase - len(xu)) % down
        return np.clip(np.rint(out), -32768, 32767).astype(np.int16)


def resample(x: npt.NDArray[np.int16], in_rate: int, out_rate: int) -> npt.NDArray[np.int16]:
    """One-shot resampling of a whole signal (delay-compensated, same filter family)."""
    if in_rate == out_rate:
        return x
    from scipy.signal import resample_poly

    g = gcd(in_rate, out_rate)
    y: npt.NDArray[np.float64] = resample_poly(x.astype(np.float64), out_rate // g, in_rate // g)
    return np.clip(np.rint(y), -32768, 32767).astype(np.int16)
