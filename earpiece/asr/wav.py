"""Reading 16-bit PCM WAV files (mono or interleaved stereo) as int16 samples.

:mod:`earpiece.cpa.evalset` re-exports :func:`read_wav`.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt


def read_wav(path: str | Path) -> tuple[npt.NDArray[np.int16], int, int]:
    """(samples interleaved int16, rate, channels) of a 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16)
        return data, w.getframerate(), w.getnchannels()
