"""Transcribe recorded calls (WAV files) per party, through the streaming pipeline's parts.

The same :class:`AsrStream` (VAD gating, utterance cuts), decoder, tone check and
hallucination filters as live calls, run offline: each party's audio is fed in 20 ms frames,
every closed utterance is decoded once (finals only, with word timestamps).

Mono files are one party, ``"far"`` (the far end); stereo files are ``"customer"`` (channel 0)
and ``"agent"`` (channel 1), as the recorder writes them.
"""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from earpiece.asr.runner import Runner, WhisperRunner
from earpiece.asr.settings import AsrSettings
from earpiece.asr.stream import AsrStream, Hypothesis, StreamSettings

if TYPE_CHECKING:
    from earpiece.asr.audio import AudioInput

log = logging.getLogger(__name__)

_runners: dict[tuple[str, str, str, str], WhisperRunner] = {}
_lock = threading.Lock()


def shared_runner(settings: AsrSettings) -> WhisperRunner:
    """A runner on the configured model, loaded once per process and reused."""
    from earpiece.asr.decoder import WhisperDecoder
    from earpiece.asr.model import load_model

    key = (settings.model, settings.device, settings.compute_type, str(settings.cache_dir))
    with _lock:
        runner = _runners.get(key)
        if runner is None:
            runner = WhisperRunner(WhisperDecoder(load_model(settings)))
            _runners[key] = runner
        return runner


def _to_supported_rate(pcm: npt.NDArray[np.int16], rate: int) -> tuple[npt.NDArray[np.int16],
                                                                          int]:
    if rate in (8000, 16000):
        return pcm, rate
    from scipy.signal import resample_poly

    g = int(np.gcd(rate, 16000))
    y = resample_poly(pcm.astype(np.float32), 16000 // g, rate // g)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16), 16000


def transcribe_party(pcm: npt.NDArray[np.int16], rate: int, runner: Runner, *,
                     language: str = "en", party: str = "far",
                     settings: StreamSettings | None = None) -> dict[str, Any]:
    """Transcribe one party's audio; returns text, utterances (with words) and filter counts."""
    pcm, rate = _to_supported_rate(pcm, rate)
    stream = AsrStream("file", party, language=language, settings=settings,
                       internal_vad=True)
    frame = rate // 50
    requests = []
    for i in range(0, len(pcm) - frame + 1, frame):
        requests.extend(stream.feed(pcm[i: i + frame], rate, i / rate))
    last = stream.end_of_speech()
    if last is not None:
        requests.append(last)
    hyps: list[Hypothesis] = []
    filtered: dict[str, int] = {}
    decode_s = 0.0
    for req in requests:
        if stream.language is not None and req.language is None:
            req = _with_language(req, stream.language)
        result = runner.run(req)
        decode_s += result.worker_s
        if not result.verdict.accepted:
            reason = result.verdict.reason or "rejected"
            filtered[reason] = filtered.get(reason, 0) + 1
        hyp = stream.on_result(result)
        if hyp is not None:
            hyps.append(hyp)
    langs = [h.language for h in hyps]
    return {
        "language": max(set(langs), key=langs.count) if langs else stream.language,
        "text": " ".join(h.text for h in hyps),
        "utterances": [
            {"start_s": h.start_s, "end_s": h.end_s, "text": h.text, "language": h.language,
             "words": [asdict(w) for w in h.words]}
            for h in hyps
        ],
        "filtered": filtered,
        "decode_s": round(decode_s, 3),
    }


def _with_language(req: Any, language: str) -> Any:
    from dataclasses import replace

    return replace(req, language=language)


def transcribe_channels(channels: Mapping[str, npt.NDArray[np.int16]], rate: int,
                        settings: AsrSettings | None = None, *,
                        runner: Runner | None = None) -> dict[str, Any]:
    """Transcribe each named channel (party) of one recording."""
    asr = settings or AsrSettings()
    run = runner if runner is not None else shared_runner(asr)
    started = time.monotonic()
    parties = {name: transcribe_party(pcm, rate, run, language=asr.language, party=name)
               for name, pcm in channels.items()}
    duration = max((len(p) for p in channels.values()), default=0) / rate if rate else 0.0
    elapsed = time.monotonic() - started
    return {
        "model": asr.model,
        "parties": parties,
        "elapsed_s": round(elapsed, 3),
        "rtf": round(elapsed / duration, 4) if duration else None,
    }


def transcribe_file(path: str | Path, settings: AsrSettings | None = None, *,
                    runner: Runner | None = None) -> dict[str, Any]:
    """Transcribe a 16-bit PCM WAV: mono = party ``"far"``, stereo = customer/agent."""
    from earpiece.asr.audio import load

    audio = load(str(path))
    return transcribe_input(audio, settings, runner=runner)


def transcribe_input(audio: AudioInput, settings: AsrSettings | None = None, *,
                     runner: Runner | None = None) -> dict[str, Any]:
    channels: dict[str, npt.NDArray[np.int16]]
    if audio.agent is None:
        channels = {"far": audio.customer}
    else:
        channels = {"customer": audio.customer, "agent": audio.agent}
    return transcribe_channels(channels, audio.rate, settings, runner=runner)


def transcript_analyser(audio: AudioInput, args: argparse.Namespace) -> tuple[str, Any]:
    """``earpiece analyze`` analyser: the ``transcript`` key (per party)."""
    from earpiece.errors import ModelError

    base = AsrSettings()
    settings = AsrSettings(
        model=getattr(args, "asr_model", None) or base.model,
        language=getattr(args, "language", None) or base.language,
        device=getattr(args, "asr_device", None) or base.device,
    )
    try:
        return "transcript", transcribe_input(audio, settings)
    except ModelError as exc:
        log.error("transcript unavailable: %s", exc)
        return "transcript", {"error": str(exc)}
