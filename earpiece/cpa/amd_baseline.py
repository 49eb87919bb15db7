"""A re-implementation of Asterisk's ``app_amd`` decision loop, as the benchmark baseline.

It follows ``isAnsweringMachine()`` of app_amd.c (Asterisk 11 and later) frame by frame:
every 20 ms voice frame goes through ``ast_dsp_silence()`` (mean absolute sample value below
``silence_threshold`` = silent; the DSP accumulates consecutive silent milliseconds), then the
same counters and the same order of checks: TOOLONG (total analysis time), INITIALSILENCE,
HUMAN (after-greeting silence), word counting (``min_word_length`` of consecutive voice after
at least ``between_words_silence`` of silence starts a word), MAXWORDLENGTH, MAXWORDS (more
than ``maximum_number_of_words``) and LONGGREETING. Defaults are those of the shipped
``amd.conf``. Timing is the only evidence it uses; it never sees tones.
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import numpy.typing as npt

from earpiece.cpa.detector import CpaResult, resample_to_8k

FRAME = 160
FRAME_MS = 20


@dataclass(frozen=True)
class AmdConfig:
    """amd.conf ``[general]`` parameters (milliseconds, threshold on a 0..32767 scale)."""

    initial_silence: int = 2500
    greeting: int = 1500
    after_greeting_silence: int = 800
    total_analysis_time: int = 5000
    min_word_length: int = 100
    between_words_silence: int = 50
    maximum_number_of_words: int = 2
    silence_threshold: int = 256
    maximum_word_length: int = 5000

    @classmethod
    def from_file(cls, path: str | Path) -> AmdConfig:
        """Read the ``[general]`` section of an amd.conf (``;`` comments allowed)."""
        parser = configparser.ConfigParser(inline_comment_prefixes=(";",),
                                           comment_prefixes=(";", "#"))
        text = Path(path).read_text(encoding="utf-8")
        parser.read_string(text)
        if not parser.has_section("general"):
            return cls()
        known = {f.name for f in fields(cls)}
        values: dict[str, int] = {}
        for key, value in parser.items("general"):
            if key in known and value.strip():
                values[key] = int(value.strip())
        return cls(**values)


@dataclass(frozen=True)
class AmdVerdict:
    status: str  # HUMAN, MACHINE, NOTSURE
    cause: str  # e.g. HUMAN-800-800, LONGGREETING-1500-1500, TOOLONG-5000
    decision_ms: int  # iTotalTime when the loop ended


class AppAmd:
    """Streaming app_amd: call :meth:`feed` with 20 ms frames until it returns a verdict."""

    def __init__(self, config: AmdConfig | None = None) -> None:
        self.config = config or AmdConfig()
        self.total_ms = 0
        self._dsp_silence = 0  # ast_dsp's totalsilence
        self._silence = 0
        self._voice = 0
        self._consecutive_voice = 0
        self._words = 0
        self._in_initial_silence = True
        self._in_greeting = False
        self._in_word = True  # currentState starts as STATE_IN_WORD in app_amd.c
        self.verdict: AmdVerdict | None = None

    def _end(self, status: str, cause: str) -> AmdVerdict:
        self.verdict = AmdVerdict(status, cause, self.total_ms)
        return self.verdict

    def feed(self, frame: npt.NDArray[np.int16]) -> AmdVerdict | None:
        if self.verdict is not None:
            return self.verdict
        c = self.config
        framelength = len(frame) * 1000 // 8000
        self.total_ms += framelength
        if self.total_ms >= c.total_analysis_time:
            return self._end("NOTSURE", f"TOOLONG-{self.total_ms}")
        # ast_dsp_silence(): mean absolute value against the threshold
        accum = int(np.abs(frame.astype(np.int32)).sum()) // max(len(frame), 1)
        if accum < c.silence_threshold:
            self._dsp_silence += framelength
            dspsilence = self._dsp_silence
        else:
            self._dsp_silence = 0
            dspsilence = 0
        if dspsilence > 0:
            self._silence = dspsilence
            if self._silence >= c.between_words_silence:
                self._in_word = False
                self._consecutive_voice = 0
            if self._in_initial_silence and self._silence >= c.initial_silence:
                return self._end("MACHINE", f"INITIALSILENCE-{self._silence}-{c.initial_silence}")
            if self._silence >= c.after_greeting_silence and self._in_greeting:
                return self._end("HUMAN", f"HUMAN-{self._silence}-{c.after_greeting_silence}")
            return None
        self._consecutive_voice += framelength
        self._voice += framelength
        if self._consecutive_voice >= c.min_word_length and not self._in_word:
            self._words += 1
            self._in_word = True
        if self._consecutive_voice >= c.maximum_word_length:
            return self._end("MACHINE", f"MAXWORDLENGTH-{self._consecutive_voice}")
        if self._words > c.maximum_number_of_words:
            return self._end("MACHINE", f"MAXWORDS-{self._words}-{c.maximum_number_of_words}")
        if self._in_greeting and self._voice >= c.greeting:
            return self._end("MACHINE", f"LONGGREETING-{self._voice}-{c.greeting}")
        if self._voice >= c.min_word_length:
            self._silence = 0
        if self._consecutive_voice >= c.min_word_length and not self._in_greeting:
            self._in_initial_silence = False
            self._in_greeting = True
        return None


def run_app_amd(samples: npt.NDArray[np.int16], rate: int = 8000,
                config: AmdConfig | None = None) -> AmdVerdict:
    """Run :class:`AppAmd` over a recording; NOTSURE/TOOLONG if it ends undecided."""
    x = resample_to_8k(np.asarray(samples, dtype=np.int16).ravel(), rate)
    amd = AppAmd(config)
    for i in range(0, x.size - FRAME + 1, FRAME):
        v = amd.feed(x[i:i + FRAME])
        if v is not None:
            return v
    return AmdVerdict("NOTSURE", f"TOOLONG-{amd.total_ms}", amd.total_ms)


_LABELS = {"HUMAN": "human", "MACHINE": "machine", "NOTSURE": "unknown", "HANGUP": "unknown"}


def baseline_result(samples: npt.NDArray[np.int16], rate: int = 8000,
                    config: AmdConfig | None = None) -> CpaResult:
    """The app_amd verdict as a :class:`CpaResult` (for side-by-side benchmarks)."""
    v = run_app_amd(samples, rate, config)
    return CpaResult(_LABELS.get(v.status, "unknown"), 1.0 if v.status != "NOTSURE" else 0.0,
                     v.decision_ms / 1000.0,
                     {"rule": v.cause.split("-")[0].lower(), "amdstatus": v.status,
                      "amdcause": v.cause})
