"""Answering-machine detection with the first recognised words, as it would run in real time.

:func:`analyze_with_words` streams a post-answer recording through
:class:`~earpiece.cpa.detector.CallProgressDetector` and, like the live path (ASR beside the
detector), asks for a transcript of the greeting ``first_s`` seconds after its first speech and
again every ``step_s`` while no verdict exists. Each transcript reaches the detector only when
its decode would have finished: at the snapshot time plus the decode's measured wall time (one
decoder, so a snapshot waits for the previous decode). The verdict's ``decision_s`` therefore
includes the ASR latency.

:class:`WhisperGreetings` decodes such snapshots with the project's Whisper
(:mod:`earpiece.asr.decoder`, 10 s windows: shorter windows garble one-word greetings)
and caches text and decode time per (file, span, language) in a JSON-lines file, so a benchmark
re-run costs no decoding and reproduces the same timeline.

:class:`OracleGreetings` is a perfect recogniser for the evaluation set: it answers each snapshot
with the words of the item's known text spoken so far, after a fixed decode delay. It bounds
what words can buy ("how much faster would AMD be with perfect ASR?").
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from earpiece.cpa.detector import CallProgressDetector, CpaOptions, CpaResult, resample_to_8k
from earpiece.cpa.tones import FRAME, RATE
from earpiece.cpa.words import (
    GreetingSnapshots,
    GreetingTranscriber,
    SnapshotOptions,
    words_model_for,
)

if TYPE_CHECKING:
    from earpiece.cpa.evalset import Item

log = logging.getLogger(__name__)

#: transcribe(audio_8k, start_sample, end_sample) -> (text, decode seconds)
Transcriber = Callable[[npt.NDArray[np.int16], int, int], tuple[str, float]]

#: The live schedule's options (first_s, step_s, lead_s, max_snapshots): one definition.
WordsOptions = SnapshotOptions


def analyze_with_words(samples: npt.NDArray[np.int16], rate: int, transcribe: Transcriber, *,
                       options: CpaOptions | None = None,
                       words: WordsOptions | None = None) -> tuple[CpaResult, list[dict[str, float
                                                                                        | str]]]:
    """Post-answer verdict of ``samples`` with timed transcripts; (result, transcript log).

    The snapshots follow :class:`~earpiece.cpa.words.GreetingSnapshots`, the schedule the
    live path runs; ``transcribe`` gets the whole recording and the snapshot's sample span.
    """
    result, _, log_ = analyze_revised(samples, rate, transcribe, options=options, words=words,
                                      revise=False)
    return result, log_


def analyze_revised(samples: npt.NDArray[np.int16], rate: int, transcribe: Transcriber | None,
                    *, options: CpaOptions | None = None, words: WordsOptions | None = None,
                    revise: bool = True) -> tuple[CpaResult, CpaResult | None,
                                                  list[dict[str, float | str]]]:
    """(first verdict, its revision or None, transcript log) of a post-answer recording.

    Like :func:`analyze_with_words` (no words when ``transcribe`` is None); with ``revise``
    the recording runs on after the first verdict while the detector watches
    (:mod:`earpiece.cpa.late`), transcripts already under way still arriving.
    """
    x = resample_to_8k(np.asarray(samples, dtype=np.int16).ravel(), rate)
    det = CallProgressDetector(options)
    det.answer()
    w = words or WordsOptions()
    snaps = GreetingSnapshots(dataclasses.replace(
        w, max_buffer_s=max(w.max_buffer_s, x.size / RATE + 1.0)))
    snaps.answer()
    log_: list[dict[str, float | str]] = []
    pending: list[tuple[float, str]] = []  # (available at, text)
    for i in range(0, x.size - FRAME + 1, FRAME):
        frame = x[i:i + FRAME]
        det.feed(frame)
        t = det.t
        while pending and pending[0][0] <= t + 1e-9 and det.late is None:
            _, text = pending.pop(0)
            snaps.done()
            det.add_transcript(text)
        if det.result is not None and not (revise and det.watching):
            break
        audio = snaps.push(frame, det) if transcribe is not None else None
        if audio is not None and transcribe is not None:
            start, end = snaps.last_span
            text, decode_s = transcribe(x, start, end)
            pending.append((t + decode_s, text))
            log_.append({"snapshot_s": round(t, 3), "decode_s": round(decode_s, 3),
                         "available_s": round(t + decode_s, 3), "text": text})
    result = det.result if det.result is not None else det.finish()
    return result, det.late if revise else None, log_


class WhisperGreetings:
    """Transcriber backed by Whisper with an on-disk cache (see module docstring).

    ``model="auto"`` picks per language as the live path does
    (:func:`~earpiece.cpa.words.words_model_for`: tiny.en for English, ``base`` else).
    """

    def __init__(self, cache_file: Path, *, model: str = "auto", cpu_threads: int = 2,
                 models_dir: Path | None = None) -> None:
        self.cache_file = cache_file
        self.model = model
        self.models_dir = models_dir
        self.cpu_threads = cpu_threads
        self._cache: dict[str, tuple[str, float]] = {}
        self._transcribers: dict[str, GreetingTranscriber] = {}
        self._lock = threading.Lock()
        self.decodes = 0
        self.decode_s: list[float] = []
        if cache_file.exists():
            for line in cache_file.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    self._cache[str(row["key"])] = (str(row["text"]), float(row["decode_s"]))

    def model_for(self, language: str) -> str:
        return words_model_for(self.model, "base", language)

    def for_item(self, name: str, language: str) -> Transcriber:
        """A :data:`Transcriber` for one recording called ``name`` in ``language``."""
        model = self.model_for(language)

        def transcribe(x: npt.NDArray[np.int16], start: int, end: int) -> tuple[str, float]:
            key = f"{name}|{start}|{end}|{language}|{model}"
            hit = self._cache.get(key)
            if hit is not None:
                return hit
            out = self.decode(x[start:end], language, model=model)
            self._cache[key] = out
            with self._lock, open(self.cache_file, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"key": key, "text": out[0], "decode_s": out[1]},
                                    ensure_ascii=False) + "\n")
            return out

        return transcribe

    def decode(self, audio8k: npt.NDArray[np.int16], language: str, *,
               model: str | None = None) -> tuple[str, float]:
        """(text, wall seconds including resampling) for 8 kHz audio."""
        name = model or self.model_for(language)
        tr = self._transcribers.get(name)
        if tr is None:
            tr = self._transcribers[name] = GreetingTranscriber(
                name, cache_dir=self.models_dir, cpu_threads=self.cpu_threads)
        text, took = tr.transcribe(audio8k, language)
        self.decodes += 1
        self.decode_s.append(took)
        return text, took


#: Words of the Asterisk core prompts (``name: words`` lines), from asterisk-core-sounds-en.
CORE_SOUNDS_TEXT = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
#: A spoken unit: one CJK character, or a run of letters/digits (with inner apostrophes).
_UNIT = re.compile(r"[\u3400-\u9fff]|[A-Za-z0-9]+(?:['\u2019][A-Za-z0-9]+)*")
#: Stage directions in the prompt list, e.g. "(simple tone sound plays)": not words.
_NOTE = re.compile(r"\([^)]*\)|\[[^\]]*\]")


def load_prompt_words(path: Path = CORE_SOUNDS_TEXT) -> dict[str, str]:
    """``{prompt name: words}`` from a core-sounds list (gzip or plain text)."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.strip() or line.lstrip().startswith(";") or ":" not in line:
            continue
        name, _, words = line.partition(":")
        text = re.sub(r"\s+", " ", _NOTE.sub(" ", words)).strip()
        if name.strip() and text:
            out[name.strip()] = text
    return out


def spoken_words(text: str, lo: float, hi: float) -> str:
    """The whole words of ``text`` said between fractions ``lo`` and ``hi`` of its duration.

    Time is taken as proportional to characters (spaces and punctuation included). A word
    (a run of letters/digits, or one CJK character) counts when its characters lie entirely
    inside ``[lo, hi]``; the punctuation right after the last word is kept, as a recogniser
    would write it. Empty when no whole word fits.
    """
    n = len(text)
    a = max(0.0, min(1.0, lo)) * n - 1e-9
    b = max(0.0, min(1.0, hi)) * n + 1e-9
    units = [m for m in _UNIT.finditer(text) if m.start() >= a and m.end() <= b]
    if not units:
        return ""
    end = units[-1].end()
    while end < n and not text[end].isspace() and _UNIT.match(text, end) is None:
        end += 1
    return text[units[0].start():end]


class OracleGreetings:
    """A perfect recogniser for evaluation items: the known words said so far, ``delay_s`` late.

    Same interface as :class:`WhisperGreetings` (:meth:`for_item` by the item's file name).
    The set stores each greeting's text (espeak-ng items: ``params["text"]``; items built from
    Asterisk prompts: ``params["prompts"]``, whose words come from :data:`CORE_SOUNDS_TEXT`),
    its start in the recording (``params["lead_s"]``) and its duration (``params["greeting_s"]``,
    one saying of it: a person who says it twice is credited with the words once), but no word
    timing, so the words are placed evenly by characters: at a snapshot covering the
    recording up to ``t``, the fraction ``(t - lead_s) / greeting_s`` of the text is spoken
    (cut back to whole words). A snapshot that starts after the greeting did (the detector
    found its first speech late) loses the words before its start. Items with no known text
    (music on hold, silence, fax) get an empty transcript: nothing was said.
    """

    model = "oracle"

    def __init__(self, items: Iterable[Item], *, delay_s: float = 0.15,
                 lead_s: float = WordsOptions.lead_s,
                 prompt_words: Mapping[str, str] | None = None,
                 sounds_text: Path = CORE_SOUNDS_TEXT) -> None:
        if delay_s < 0:
            raise ValueError(f"oracle delay_s must be >= 0, not {delay_s}")
        self.delay_s = delay_s
        self.lead_s = lead_s
        self.sounds_text = sounds_text
        self._items = {it.file: it for it in items}
        self._prompt_words = dict(prompt_words) if prompt_words is not None else None
        self._missing_logged: set[str] = set()
        self.snapshots = 0
        self.with_words = 0
        self.decodes = 0  # a perfect recogniser decodes nothing

    def _prompts(self) -> Mapping[str, str]:
        if self._prompt_words is None:
            try:
                self._prompt_words = load_prompt_words(self.sounds_text)
            except OSError as exc:
                log.warning("oracle: no prompt words (%s): prompt items get no words", exc)
                self._prompt_words = {}
        return self._prompt_words

    def text_of(self, item: Item) -> str | None:
        """The words of ``item``'s greeting, or None when the set does not know them."""
        text = item.params.get("text")
        if isinstance(text, str) and text.strip():
            return text.strip()
        prompts = item.params.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            return None
        table = self._prompts()
        words = [table.get(str(p)) for p in prompts]
        missing = [str(p) for p, w in zip(prompts, words, strict=True) if w is None]
        if missing:
            if item.file not in self._missing_logged:
                self._missing_logged.add(item.file)
                log.warning("oracle: %s: no words for prompts %s in %s", item.file, missing,
                            self.sounds_text)
            return None
        return " ".join(w for w in words if w)

    def words_at(self, item: Item, start_s: float, end_s: float) -> str:
        """What a perfect recogniser hears in ``item``'s recording from ``start_s`` to ``end_s``."""
        text = self.text_of(item)
        duration = item.params.get("greeting_s")
        if text is None or not isinstance(duration, (int, float)) or duration <= 0:
            return ""
        lead = item.params.get("lead_s")
        onset = float(lead) if isinstance(lead, (int, float)) else start_s + self.lead_s
        return spoken_words(text, (start_s - onset) / float(duration),
                            (end_s - onset) / float(duration))

    def for_item(self, name: str, language: str) -> Transcriber:
        """A :data:`Transcriber` for the item whose file is ``name`` (``language`` unused)."""
        item = self._items.get(name)
        if item is None:
            raise KeyError(f"oracle: no item {name!r} in the evaluation set")

        def transcribe(x: npt.NDArray[np.int16], start: int, end: int) -> tuple[str, float]:
            text = self.words_at(item, start / RATE, end / RATE)
            self.snapshots += 1
            self.with_words += bool(text)
            return text, self.delay_s

        return transcribe


_TRANSCRIBERS: dict[str, GreetingTranscriber] = {}


def greeting_transcriber(model: str) -> GreetingTranscriber:
    """One loaded recogniser per model for the whole run (loading takes a second or more)."""
    if model not in _TRANSCRIBERS:
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
