"""Settings of the media path (RTP, VAD, recordings), call-progress analysis and ASR."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class VadSettings:
    aggressiveness: int = 2
    preroll_ms: int = 200
    hangover_ms: int = 300
    min_speech_ms: int = 120
    # webrtcvad pitfalls (measured): a fresh instance, and one fed after digital silence, flag
    # the first 80-160 ms of low noise as speech. Decisions are ignored for settle_ms after
    # either; frames quieter than silence_dbfs are digital silence and are not fed at all;
    # frames quieter than min_dbfs are never speech.
    settle_ms: int = 160
    silence_dbfs: float = -72.0
    min_dbfs: float = -55.0

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError("vad.aggressiveness must be 0..3")


@dataclass(frozen=True)
class MediaSettings:
    transport: Literal["rtp", "audiosocket"] = "rtp"
    format: Literal["ulaw", "alaw", "slin16"] = "ulaw"
    bind_host: str = "127.0.0.1"
    # Address Asterisk sends RTP to (externalMedia external_host); defaults to bind_host.
    advertise_host: str = ""
    rtp_port_min: int = 40000
    rtp_port_max: int = 40999
    audiosocket_port: int = 9092
    jitter_ms: int = 60
    # Outbound calls: fork the customer from channel creation (early media: ringback, busy,
    # SIT/intercept before any answer); false: only after the answer.
    early_media: bool = True
    vad: VadSettings = field(default_factory=VadSettings)

    def __post_init__(self) -> None:
        if self.rtp_port_min > self.rtp_port_max:
            raise ValueError("rtp_port_min must not exceed rtp_port_max")


@dataclass(frozen=True)
class RecordingSettings:
    enabled: bool = True
    directory: Path = Path("var/recordings")
    stereo: bool = True
    retention_days: int = 30


@dataclass(frozen=True)
class CpaSettings:
    enabled: bool = True
    tone_plan: str = "us"
    amd_max_s: float = 4.0


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
