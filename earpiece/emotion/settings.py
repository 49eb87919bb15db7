"""Settings of the emotion stage (``[emotion]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from earpiece.errors import ConfigError

ModelKind = Literal["zscore", "gmm", "mlp", "onnx"]


@dataclass(frozen=True)
class EmotionSettings:
    enabled: bool = False  # opt-in until `earpiece demo --calls 5` never hangs with it on
    # Voice model: "zscore" needs no training (arousal from the speaker's own baseline);
    # "gmm" (PCA + Gaussian mixtures) and "mlp" (torch) are files written by
    # `earpiece train emotion`; "onnx" is a deployer's ONNX export with its label map.
    model: ModelKind = "zscore"
    model_path: str = ""
    # Text language when the transcript does not say: "auto" (CJK characters -> zh), en, zh.
    language: Literal["auto", "en", "zh"] = "auto"
    # Call-centre phrases added to the built-in lists (lower-case substrings).
    negative_phrases: tuple[str, ...] = ()
    positive_phrases: tuple[str, ...] = ()
    # Fusion: how much voice arousal pulls a neutral-sounding text towards negative.
    arousal_weight: float = 0.35
    # Call index: exponential smoothing per utterance, and the hysteresis thresholds.
    smoothing: float = 0.6
    enter: float = 0.3  # the index must pass +/- this to become positive / negative
    exit: float = 0.15  # ...and come back inside +/- this to leave the state
    neutral_dwell: int = 2  # utterances inside the neutral band before "neutral" is declared
    workers: int = 1  # threads for features and models (off the event loop)

    def __post_init__(self) -> None:
        if self.model != "zscore" and not self.model_path:
            raise ConfigError(f"model {self.model!r} needs model_path", key="model_path")
        if not 0.0 < self.smoothing <= 1.0:
            raise ConfigError(f"must be in (0, 1], got {self.smoothing!r}", key="smoothing")
        if not 0.0 <= self.exit < self.enter <= 1.0:
            raise ConfigError(f"need 0 <= exit < enter <= 1, got enter={self.enter!r} "
                              f"exit={self.exit!r}", key="enter")
        if not 0.0 <= self.arousal_weight <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {self.arousal_weight!r}",
                              key="arousal_weight")
        if self.neutral_dwell < 1:
            raise ConfigError(f"must be at least 1, got {self.neutral_dwell!r}",
                              key="neutral_dwell")
        if self.workers < 1:
            raise ConfigError(f"must be at least 1, got {self.workers!r}", key="workers")
