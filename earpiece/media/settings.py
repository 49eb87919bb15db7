"""Settings of the media path (RTP, VAD, recordings)."""

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
