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
from typing import Any

from earpiece.asr.audio import AudioInput, load

log = logging.getLogger(__name__)

Analyser = Callable[[AudioInput, argparse.Namespace], tuple[str, Any]]


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
    from earpiece.cpa.amd_words_run import analyze_with_words, whisper_transcribe
    from earpiece.cpa.words import words_model_for

    language = getattr(args, "language", None) or "en"
    asr_model = getattr(args, "asr_model", None)
    model = words_model_for("auto" if asr_model is None else asr_model, "base", language)
    result, snapshots = analyze_with_words(audio.customer, audio.rate,
                                           whisper_transcribe(model, language), options=options)
    return "cpa", {**result.as_dict(), "words": {"model": model, "snapshots": snapshots}}


def transcript_analyser(audio: AudioInput, args: argparse.Namespace) -> tuple[str, Any]:
    """Per-party transcript (faster-whisper, the streaming pipeline's filters)."""
    if getattr(args, "no_transcript", False):
        return "transcript", None
    from earpiece.asr.file import transcript_analyser as run

    return run(audio, args)


def emotion_analyser(audio: AudioInput, args: argparse.Namespace) -> tuple[str, Any]:
    """Emotion per party: each utterance's ``label`` / ``valence`` / ``confidence`` (voice
    parameters against the speaker's baseline, fused with the text emotion of the
    ``transcript`` key when speech was recognised) and the call-level ``index`` / ``state``
    (top level: the customer's); see :mod:`earpiece.emotion.analysis`."""
    if getattr(args, "no_emotion", False):
        return "emotion", None
    from earpiece.emotion.analysis import analyse_emotion

    results = getattr(args, "results", None) or {}
    transcript = results.get("transcript")
    if isinstance(transcript, dict) and "error" in transcript:
        transcript = None
    return "emotion", analyse_emotion(audio, transcript, language=getattr(args, "language", None))


#: Per-file analysers, run in order; each contributes one key to the file's JSON line. An
#: analyser sees the keys written before it as ``args.results`` (emotion reads the transcript).
ANALYSERS: list[Analyser] = [cpa_analyser, transcript_analyser, emotion_analyser]


def analyse_file(path: str, args: argparse.Namespace,
                 analysers: list[Analyser] | None = None) -> dict[str, Any]:
    audio = load(path)
    out: dict[str, Any] = {"file": path, "duration_s": round(audio.duration_s, 3),
                           "channels": 1 if audio.agent is None else 2}
    for fn in analysers if analysers is not None else ANALYSERS:
        key, value = fn(audio, argparse.Namespace(**{**vars(args), "results": dict(out)}))
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
    parser.add_argument("--no-emotion", action="store_true",
                        help="skip the emotion analysis (voice parameters, text emotion)")
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


__all__ = [
    "ANALYSERS",
    "Analyser",
    "AudioInput",
    "analyse_file",
    "configure",
    "cpa_analyser",
    "emotion_analyser",
    "load",
    "main",
    "transcript_analyser",
]
