"""One recorded call as analysed offline: :class:`AudioInput` (the customer's and, for stereo
files, the agent's int16 samples) and :func:`load`, which reads it from a WAV file.

Each WAV is mono (the far end, from answer) or stereo (channel 0 = customer, channel 1 =
agent). ``earpiece analyze`` and :mod:`earpiece.asr.file` share it; cheap to import (numpy is
loaded by :func:`load`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@dataclass(frozen=True)
class AudioInput:
    """One decoded file: ``customer`` (and ``agent`` for stereo) as int16 at ``rate``."""

    path: str
    rate: int
    customer: npt.NDArray[np.int16]
    agent: npt.NDArray[np.int16] | None = None

    @property
    def duration_s(self) -> float:
        return float(self.customer.size) / self.rate if self.rate else 0.0


def load(path: str) -> AudioInput:
    """Read a 16-bit PCM WAV (mono or stereo)."""
    from earpiece.asr.wav import read_wav

    data, rate, channels = read_wav(path)
    if channels == 1:
        return AudioInput(path, rate, data)
    frames = data.reshape(-1, channels)
    return AudioInput(path, rate, frames[:, 0].copy(), frames[:, 1].copy())
