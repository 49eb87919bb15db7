"""Settings and metrics of the ASR service (:mod:`earpiece.asr.service` re-exports both)."""

from __future__ import annotations

from dataclasses import dataclass, field

from earpiece.asr.stream import StreamSettings


@dataclass(frozen=True)
class ServiceSettings:
    workers: int = 2
    language: str = "en"  # or "auto": detected once per speaker
    internal_vad: bool = True  # feed_frame without a speech flag runs the stream's own VAD
    segments_from_bus: bool = False  # close utterances on SpeechSegment events from the bus
    max_pending_finals: int = 32
    overload_lag_s: float = 1.0
    latency_window: int = 2000
    idle_close_s: float = 300.0  # a stream not fed this long is closed (a lost CallEnded)
    # CallEnded -> close the call's streams this much later, so that the media fork's flush
    # (jitter buffer drain, last VAD segment), which follows CallEnded, still reaches them.
    end_grace_s: float = 0.5
    # admission control: at most this many streams (2 reserved per call); 0 = unlimited
    max_streams: int = 0
    stream: StreamSettings = field(default_factory=StreamSettings)


@dataclass(frozen=True)
class AsrMetrics:
    streams: int
    workers: int
    busy_workers: int
    pending_finals: int
    lag_s: float  # age of the oldest waiting final (0 when none waits)
    max_lag_s: float
    final_decodes: int
    partial_decodes: int
    finals_published: int
    partials_published: int
    dropped_finals: int
    partials_skipped: int  # partials due but not decoded (overload or no spare worker)
    filtered: dict[str, int]
    final_latency_p50_s: float  # end-of-speech decision -> final published
    final_latency_p95_s: float
    decode_s: float  # worker seconds spent decoding
    audio_s: float  # seconds of audio decoded by finals
    max_streams: int = 0  # admission capacity in streams (0 = unlimited)
    admitted_calls: int = 0  # calls being transcribed now
    calls_refused: int = 0  # calls not transcribed because the capacity was full
