"""Settings of streaming speech recognition (``[asr]``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from earpiece.errors import ConfigError

#: Real-time streams one CPU decoding worker keeps up with: Whisper base int8 with 2 workers
#: on 2 cores held 12 streams at a final-latency p95 of 0.94 s (docs/benchmarks/asr.md).
#: ``max_streams`` unset means this many per worker on CPU.
STREAMS_PER_WORKER = 6
#: Streams an admitted call reserves: the customer's and the agent's.
STREAMS_PER_CALL = 2


@dataclass(frozen=True)
class AsrSettings:
    enabled: bool = True
    # "base" (multilingual, assembled from PyPI packages), "tiny.en", or a CTranslate2 directory.
    model: str = "base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "int8"
    language: str = "en"  # "auto" detects once per speaker then fixes it
    workers: int = 2
    cache_dir: Path = Path("~/.cache/earpiece/models")
    # Admission control: at most this many streams (2 per call) are transcribed; a call whose
    # audio begins while the admitted calls fill it is not transcribed at all (AsrSkipped),
    # so admitted calls keep every final. Unset: STREAMS_PER_WORKER per worker on CPU,
    # unlimited on CUDA; 0: unlimited (overload then drops the oldest finals).
    max_streams: int | None = None

    def __post_init__(self) -> None:
        if self.max_streams is not None and not (
                self.max_streams == 0 or self.max_streams >= STREAMS_PER_CALL):
            raise ConfigError(f"must be 0 (unlimited) or at least {STREAMS_PER_CALL} (one "
                              f"call's two parties), got {self.max_streams!r}",
                              key="max_streams")

    def stream_capacity(self, workers: int, device: str = "cpu") -> int:
        """``max_streams`` resolved for ``workers`` decoding workers on ``device`` (0 =
        unlimited)."""
        if self.max_streams is not None:
            return self.max_streams
        if device == "cuda":
            return 0
        return STREAMS_PER_WORKER * max(1, workers)
