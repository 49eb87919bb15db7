"""The work done in a decoding worker thread for one :class:`DecodeRequest`.

resample to 16 kHz (polyphase, ``scipy.signal.resample_poly``) -> tone/DTMF and broadband
noise checks -> Whisper
decode -> filters (no-speech, log-prob, compression ratio, script, blocklist) -> simplified
Chinese. Everything here is synchronous and CPU-bound; CTranslate2 releases the GIL.
"""

from __future__ import annotations

import time
from typing import Protocol

import numpy as np
import numpy.typing as npt

from earpiece.asr.decoder import SAMPLE_RATE, DecodeOutput, WhisperDecoder
from earpiece.asr.filters import FilterSettings, Verdict, is_noise, is_tonal, judge
from earpiece.asr.stream import DecodeRequest, DecodeResult
from earpiece.asr.zh import to_simplified


class Runner(Protocol):
    """Anything that turns a request into a result, synchronously (called from a thread)."""

    def run(self, request: DecodeRequest) -> DecodeResult: ...


def to_16k_float(audio: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.float32]:
    x = audio.astype(np.float32) / 32768.0
    if rate == SAMPLE_RATE:
        return x
    from scipy.signal import resample_poly

    g = int(np.gcd(rate, SAMPLE_RATE))
    y: npt.NDArray[np.float32] = resample_poly(x, SAMPLE_RATE // g, rate // g).astype(
        np.float32)
    return y


class WhisperRunner:
    """:class:`Runner` on a shared :class:`WhisperDecoder`."""

    def __init__(self, decoder: WhisperDecoder, filters: FilterSettings | None = None,
                 *, partial_beam_size: int = 1, final_beam_size: int | None = None) -> None:
        self.decoder = decoder
        self.filters = filters or FilterSettings()
        self.partial_beam_size = partial_beam_size
        self.final_beam_size = final_beam_size

    def run(self, request: DecodeRequest) -> DecodeResult:
        started = time.monotonic()
        x = to_16k_float(request.audio, request.rate)
        if is_tonal(x, SAMPLE_RATE, self.filters):
            return DecodeResult(request, None, Verdict(False, "", "tonal"),
                                time.monotonic() - started)
        if is_noise(x, SAMPLE_RATE, self.filters):
            return DecodeResult(request, None, Verdict(False, "", "noise"),
                                time.monotonic() - started)
        out = self.decoder.decode(
            x,
            language=request.language,
            word_timestamps=request.word_timestamps,
            beam_size=self.final_beam_size if request.final else self.partial_beam_size,
        )
        verdict = judge(out, self.filters)
        if out.language == "zh" and verdict.accepted:
            verdict = Verdict(True, to_simplified(verdict.text), verdict.reason)
            out = _simplified_words(out)
        return DecodeResult(request, out, verdict, time.monotonic() - started)


def _simplified_words(out: DecodeOutput) -> DecodeOutput:
    from dataclasses import replace

    from earpiece.asr.decoder import DecodedWord

    words = tuple(DecodedWord(word=to_simplified(w.word), start_s=w.start_s, end_s=w.end_s,
                              probability=w.probability) for w in out.words)
    return replace(out, text=to_simplified(out.text), words=words)
