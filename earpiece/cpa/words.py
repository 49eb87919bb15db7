"""The greeting's first recognised words for answering-machine detection, live and in benchmarks.

After answer, while the call-progress detector (:class:`~earpiece.cpa.detector.
CallProgressDetector`) has no verdict yet, the greeting is transcribed ``first_s`` seconds
after its first speech and again every ``step_s`` (at most ``max_snapshots`` times, one decode
at a time), always from ``lead_s`` before the first speech up to now. The text goes to
:meth:`~earpiece.cpa.detector.CallProgressDetector.add_transcript`: machine wording decides
"machine" at once, other words shift the timing model's score (:mod:`earpiece.cpa.amd_words`).

* :class:`GreetingSnapshots` is the per-call schedule: a synchronous state machine with no I/O,
  fed the same frames as the detector; it returns the audio to transcribe when a snapshot is
  due. The live path (:class:`~earpiece.cpa.fork.CpaFork`) and the benchmark
  (:mod:`earpiece.cpa.amd_words_run`) both use it, so the benchmark measures the schedule
  that runs in production.
* :class:`GreetingTranscriber` decodes a snapshot with the project's Whisper
  (:mod:`earpiece.asr.decoder`, 10 s encoder windows: shorter ones garble one-word
  greetings). The model is loaded on first use, on the calling (worker) thread.
* :func:`words_model_for` picks the model: ``"auto"`` takes English-only ``tiny.en`` for an
  English campaign (measured on the tune split: decode median 0.10 s against 0.24 s for
  ``base``, and it hears the greetings at least as well) and the ASR's own model otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from earpiece.asr.decoder import WhisperDecoder
    from earpiece.cpa.detector import CallProgressDetector

log = logging.getLogger(__name__)

RATE = 8000


@dataclass(frozen=True)
class SnapshotOptions:
    """When the greeting is transcribed (seconds; see module docstring)."""

    first_s: float = 0.7  # first snapshot this long after the greeting's first speech
    step_s: float = 0.3  # later snapshots, while undecided and no decode is running
    lead_s: float = 0.3  # audio kept before the first speech
    max_snapshots: int = 3
    max_buffer_s: float = 8.0  # post-answer audio kept for snapshots

    def __post_init__(self) -> None:
        if self.first_s < 0 or self.step_s <= 0 or self.lead_s < 0:
            raise ValueError("snapshot times must be >= 0 (step_s > 0)")
        if self.max_snapshots < 0:
            raise ValueError("max_snapshots must be >= 0")
        if self.max_buffer_s <= self.first_s:
            raise ValueError("max_buffer_s must be longer than first_s")


@dataclass
class GreetingSnapshots:
    """Per-call snapshot schedule (see module docstring). Not thread-safe: one owner."""

    options: SnapshotOptions = field(default_factory=SnapshotOptions)
    taken: int = 0
    busy: bool = False  # a snapshot is being decoded
    _next_s: float | None = None
    _chunks: list[npt.NDArray[np.int16]] = field(default_factory=list)
    _samples: int = 0
    last_span: tuple[int, int] = (0, 0)  # the last snapshot's samples in the kept audio
    _t0: float = 0.0  # detector time (s after answer) at the start of the kept audio
    _answered: bool = False

    def answer(self) -> None:
        """The call was answered: the schedule starts afresh (early media is not kept)."""
        self._answered = True
        self._chunks = []
        self._samples = 0
        self._t0 = 0.0
        self._next_s = None
        self.taken = 0

    def push(self, frame: npt.NDArray[np.int16],
             detector: CallProgressDetector) -> npt.NDArray[np.int16] | None:
        """Keep ``frame`` (already fed to ``detector``); the audio to transcribe if one is due."""
        if not self._answered or not detector.answered:
            return None
        if detector.result is not None or self.taken >= self.options.max_snapshots:
            if self._chunks and not self.busy:  # nothing more to transcribe: free the audio
                self._chunks = []
            return None
        if self._samples < round(self.options.max_buffer_s * RATE):
            chunk = np.asarray(frame, dtype=np.int16).ravel().copy()
            if not self._chunks:
                self._t0 = detector.t - chunk.size / RATE
            self._chunks.append(chunk)
            self._samples += chunk.size
        onset = detector.first_speech_s
        if self.busy or onset is None:
            return None
        if self._next_s is None:
            self._next_s = onset + self.options.first_s
        t = detector.t
        if t < self._next_s - 1e-9:
            return None
        audio = np.concatenate(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks = [audio]
        start = max(0, round((onset - self.options.lead_s - self._t0) * RATE))
        end = min(audio.size, round((t - self._t0) * RATE))
        self.last_span = (start, end)
        self.taken += 1
        self.busy = True
        self._next_s = t + self.options.step_s
        return audio[start:end]

    def done(self) -> None:
        """The running decode finished (its text was handed to the detector)."""
        self.busy = False


def words_model_for(words_model: str, asr_model: str, language: str) -> str:
    """The Whisper model for greeting snapshots (``"auto"``: see module docstring)."""
    if words_model != "auto":
        return words_model
    return "tiny.en" if language == "en" else asr_model


class GreetingTranscriber:
    """Whisper for greeting snapshots: ``transcribe(audio_8k, language) -> (text, seconds)``."""

    def __init__(self, model: str = "tiny.en", *, cache_dir: Path | None = None,
                 cpu_threads: int = 2, device: Literal["auto", "cpu", "cuda"] = "cpu",
                 compute_type: str = "int8") -> None:
        self.model = model
        self.cache_dir = cache_dir
        self.cpu_threads = cpu_threads
        self.device = device
        self.compute_type = compute_type
        self._decoder: WhisperDecoder | None = None
        self._lock = threading.Lock()
        self.decodes = 0

    def load(self) -> WhisperDecoder:
        """Load the model now (idempotent; call it from a worker thread, it takes seconds)."""
        with self._lock:
            if self._decoder is None:
                from earpiece.asr.decoder import DecodeOptions, WhisperDecoder
                from earpiece.asr.model import load_model
                from earpiece.asr.settings import AsrSettings

                settings = AsrSettings(model=self.model, device=self.device,
                                       compute_type=self.compute_type, workers=1)
                if self.cache_dir is not None:
                    settings = dataclasses.replace(settings, cache_dir=self.cache_dir)
                loaded = load_model(settings, cpu_threads=self.cpu_threads)
                self._decoder = WhisperDecoder(loaded, DecodeOptions(min_window_s=10.0))
                log.info("greeting words: Whisper %s loaded", self.model)
            return self._decoder

    def transcribe(self, audio8k: npt.NDArray[np.int16], language: str | None) -> tuple[str, float]:
        """(text, wall seconds including resampling) of 8 kHz int16 audio."""
        from scipy.signal import resample_poly

        dec = self.load()
        t0 = time.monotonic()
        a = (resample_poly(np.asarray(audio8k, dtype=np.float64), 2, 1) / 32768.0).astype(
            np.float32)
        out = dec.decode(a, language=language)
        took = time.monotonic() - t0
        self.decodes += 1
        return out.text, round(took, 3)


class SnapshotTranscriber(Protocol):
    """What :class:`GreetingWords` needs of a recogniser (:class:`GreetingTranscriber`)."""

    def transcribe(self, audio8k: npt.NDArray[np.int16],
                   language: str | None) -> tuple[str, float]: ...


@dataclass(frozen=True)
class GreetingWords:
    """Live greeting words for :class:`~earpiece.cpa.fork.CpaFork`: who transcribes, in
    which language (None: detected per snapshot), on which schedule."""

    transcriber: SnapshotTranscriber
    language: str | None = "en"
    options: SnapshotOptions = field(default_factory=SnapshotOptions)
