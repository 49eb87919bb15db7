"""``earpiece analyze FILE... [--json]``: per-file analysis of recorded calls.

Each WAV is mono (the far end, from answer) or stereo (channel 0 = customer, channel 1 =
agent). For every file one JSON line is printed with ``file`` plus one key per analyser.
Analysers are plain functions ``(AudioInput, argparse.Namespace) -> (key, value)`` listed in
:data:`ANALYSERS`; adding one (transcript, emotion) is appending a function to that list.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from earpiece.cpa.words import GreetingTranscriber

log = logging.getLogger(__name__)


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


Analyser = Callable[[AudioInput, argparse.Namespace], tuple[str, Any]]


def load(path: str) -> AudioInput:
    """Read a 16-bit PCM WAV (mono or stereo)."""
    from earpiece.cpa.evalset import read_wav

    data, rate, channels = read_wav(path)
    if channels == 1:
        return AudioInput(path, rate, data)
    frames = data.reshape(-1, channels)
    return AudioInput(path, rate, frames[:, 0].copy(), frames[:, 1].copy())


def cpa_analyser(audio: AudioInput, args: argparse.Namespace) -> tuple[str, Any]:
    """Call progress / answering machine detection on the customer channel.

    After answer it uses the greeting's first recognised words on the service's schedule
    (:mod:`earpiece.cpa.words`), as ``earpiece run`` does by default, unless
    ``--no-words`` / ``--no-transcript``; the verdict then also lists the snapshots
    (``words``: when each was taken, its decode time and text).
    """
    from earpiece.cpa.detector import CpaOptions, analyze_audio

    pre_answer = bool(getattr(args, "pre_answer", False))
    options = CpaOptions(tone_plan=getattr(args, "tone_plan", "all"),
                         phase="pre_answer" if pre_answer else "post_answer")
    if pre_answer or getattr(args, "no_words", False) or getattr(args, "no_transcript", False):
        return "cpa", analyze_audio(audio.customer, audio.rate, options=options).as_dict()
    from earpiece.cpa.amd_words_run import analyze_with_words
    from earpiece.cpa.words import words_model_for

    language = getattr(args, "language", None) or "en"
    asr_model = getattr(args, "asr_model", None)
    model = words_model_for("auto" if asr_model is None else asr_model, "base", language)
    result, snapshots = analyze_with_words(audio.customer, audio.rate,
                                           whisper_transcribe(model, language), options=options)
    return "cpa", {**result.as_dict(), "words": {"model": model, "snapshots": snapshots}}


_TRANSCRIBERS: dict[str, GreetingTranscriber] = {}


def greeting_transcriber(model: str) -> GreetingTranscriber:
    """One loaded recogniser per model for the whole run (loading takes a second or more)."""
    if model not in _TRANSCRIBERS:
        from earpiece.cpa.words import GreetingTranscriber

        _TRANSCRIBERS[model] = GreetingTranscriber(model)
    return _TRANSCRIBERS[model]


def whisper_transcribe(model: str, language: str
                       ) -> Callable[[npt.NDArray[np.int16], int, int], tuple[str, float]]:
    """``(audio_8k, start, end) -> (text, decode s)`` with ``model`` for ``language``.

    The shape :func:`earpiece.cpa.amd_words_run.analyze_with_words` takes; ``"auto"``
    lets Whisper detect the language per snapshot.
    """
    recogniser = greeting_transcriber(model)
    lang = None if language == "auto" else language

    def transcribe(x: npt.NDArray[np.int16], start: int, end: int) -> tuple[str, float]:
        return recogniser.transcribe(x[start:end], lang)

    return transcribe


def transcript_analyser(audio: AudioInput, args: argparse.Namespace) -> tuple[str, Any]:
    """Per-party transcript (faster-whisper, the streaming pipeline's filters)."""
    if getattr(args, "no_transcript", False):
        return "transcript", None
    from earpiece.asr.file import transcript_analyser as run

    return run(audio, args)


#: Per-file analysers, run in order; each contributes one key to the file's JSON line.
ANALYSERS: list[Analyser] = [cpa_analyser, transcript_analyser]


def analyse_file(path: str, args: argparse.Namespace,
                 analysers: list[Analyser] | None = None) -> dict[str, Any]:
    audio = load(path)
    out: dict[str, Any] = {"file": path, "duration_s": round(audio.duration_s, 3),
                           "channels": 1 if audio.agent is None else 2}
    for fn in analysers if analysers is not None else ANALYSERS:
        key, value = fn(audio, args)
        out[key] = value
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="WAV files (16-bit PCM)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument("--tone-plan", default="all",
                        help="call-progress tone plans: us, cn, uk, eu (comma separated) or all")
    parser.add_argument("--pre-answer", action="store_true",
                        help="the audio is early media (before answer): tones only")
    parser.add_argument("--no-transcript", action="store_true",
                        help="skip speech recognition (also the greeting words of cpa)")
    parser.add_argument("--no-words", action="store_true",
                        help="cpa from timing alone (no greeting words): deterministic times")
    parser.add_argument("--asr-model", default=None,
                        help='Whisper model: "base", "tiny.en" or a CTranslate2 directory')
    parser.add_argument("--language", default=None, help='"en", "zh", ... or "auto"')


def main(args: argparse.Namespace) -> int:
    status = 0
    for path in args.files:
        try:
            row = analyse_file(path, args)
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            log.error("cannot analyse %s: %s", path, exc)
            row = {"file": path, "error": str(exc)}
            status = 1
        if args.json:
            print(json.dumps(row, ensure_ascii=False), flush=True)
        elif "error" in row:
            print(f"{path}: error: {row['error']}", file=sys.stderr)
        else:
            cpa = row.get("cpa", {})
            print(f"{path}: {cpa.get('label')} (confidence {cpa.get('confidence')}, "
                  f"after {cpa.get('decision_s')} s, rule {cpa.get('evidence', {}).get('rule')})")
    return status
