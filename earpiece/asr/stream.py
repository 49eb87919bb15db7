"""Per-party streaming recognition state machine (synchronous, no I/O, no threads).

An :class:`AsrStream` holds one party's recent audio in a ring buffer and knows where the
current utterance started. Its inputs are audio frames (with or without a VAD verdict) and
utterance boundaries; its outputs are :class:`DecodeRequest` objects (audio snapshots to
decode) and, given decode results, :class:`Hypothesis` objects (partial or final text).

* **Segmentation.** Either the stream runs its own :class:`earpiece.media.vad.VadSegmenter`
  over the frames it is fed (``internal_vad=True``), or the caller supplies boundaries: the
  ``speech`` flag of each frame (the media pipeline's VAD verdict) opens an utterance and
  :meth:`AsrStream.segment` / :meth:`AsrStream.end_of_speech` close it.
* **Finals.** Closing an utterance returns a final request for its audio (pre-roll and
  hangover included). Utterances longer than ``max_utterance_s`` are cut (at the quietest
  100 ms of the last second) into several finals, so the decode window stays bounded.
* **Partials.** During an utterance longer than ``min_partial_s``, :meth:`partial_request`
  returns a snapshot of the utterance so far, at most one in flight per stream and only when
  ``partial_step_s`` of new audio arrived since the last one. The scheduler asks for it lazily,
  when a worker is free, so partial requests are never queued and never stale.
* **Local agreement.** As in whisper_streaming's ``OnlineASRProcessor`` (LocalAgreement-2),
  the words on which two consecutive partial hypotheses of the same utterance agree (longest
  common prefix) are committed; a partial's text is the committed words followed by the
  newest hypothesis' tail, and committed words never change until the final replaces them.

Times are seconds on the party's stream clock (``t_s`` of the frames); ``offset_s`` is added
to everything published, so that with ``offset_s`` = (stream start - call start) the words of
a transcript are timed relative to the call start.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from earpiece.asr.decoder import DecodeOutput
from earpiece.asr.filters import Verdict, normalize_phrase
from earpiece.events import Word
from earpiece.media.settings import VadSettings

log = logging.getLogger(__name__)

FRAME_MS = 20
_ids = itertools.count(1)


@dataclass(frozen=True)
class StreamSettings:
    min_partial_s: float = 1.5  # no partial for utterances shorter than this
    partial_step_s: float = 1.0  # new audio needed between two partial decodes
    max_utterance_s: float = 20.0  # longer utterances are cut into several finals
    min_utterance_s: float = 0.2
    ring_s: float = 40.0  # audio kept per party (bounds memory)
    preroll_s: float = 0.35  # before the first voiced frame: 0.2 s garbles short words
    tail_s: float = 0.15  # audio kept after the last voiced frame in a final
    abandon_after_s: float = 1.0  # external VAD: non-speech this long without a segment
    vad: VadSettings = field(default_factory=VadSettings)

    def __post_init__(self) -> None:
        if self.max_utterance_s > 28.0:
            raise ValueError("max_utterance_s must leave room in Whisper's 30 s window")
        if self.ring_s < self.max_utterance_s + 2.0:
            raise ValueError("ring_s must exceed max_utterance_s")


@dataclass(frozen=True)
class DecodeRequest:
    """A snapshot of audio to decode, as the stream asked for it."""

    call_id: str
    party: str
    utterance: int  # utterance number within the stream
    final: bool
    audio: npt.NDArray[np.int16]  # at ``rate``; resampled to 16 kHz by the worker
    rate: int
    start_s: float  # stream time of audio[0]
    end_s: float
    language: str | None  # None: detect
    word_timestamps: bool
    created: float  # monotonic
    request_id: int = field(default_factory=lambda: next(_ids))

    @property
    def key(self) -> tuple[str, str]:
        return (self.call_id, self.party)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / self.rate


@dataclass(frozen=True)
class DecodeResult:
    """What a worker made of a request: the raw decode (if any) and the filters' verdict."""

    request: DecodeRequest
    output: DecodeOutput | None
    verdict: Verdict
    worker_s: float = 0.0


@dataclass(frozen=True)
class Hypothesis:
    call_id: str
    party: str
    utterance: int
    final: bool
    text: str
    start_s: float  # offset applied
    end_s: float
    language: str
    words: tuple[Word, ...] = ()
    committed_words: int = 0  # partials: how many leading words are settled


class _Ring:
    """The last ``capacity`` samples of a stream, addressed by absolute sample number."""

    def __init__(self, capacity: int) -> None:
        self.buf = np.zeros(capacity, dtype=np.int16)
        self.capacity = capacity
        self.total = 0  # samples written so far

    def write(self, pcm: npt.NDArray[np.int16]) -> None:
        n = len(pcm)
        if n > self.capacity:
            self.total += n - self.capacity  # only the newest ``capacity`` samples are kept
            pcm = pcm[-self.capacity:]
            n = self.capacity
        pos = self.total % self.capacity
        first = min(n, self.capacity - pos)
        self.buf[pos: pos + first] = pcm[:first]
        if first < n:
            self.buf[: n - first] = pcm[first:]
        self.total += n

    def read(self, start: int, end: int) -> npt.NDArray[np.int16]:
        """Samples [start, end), clamped to what is still held."""
        start = max(start, self.total - self.capacity, 0)
        end = min(end, self.total)
        if end <= start:
            return np.zeros(0, dtype=np.int16)
        a, b = start % self.capacity, end % self.capacity
        if a < b or (b == 0 and end - start == self.capacity - a):
            return self.buf[a: a + (end - start)].copy()
        return np.concatenate((self.buf[a:], self.buf[:b]))


def _common_prefix(a: list[str], b: list[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalize_phrase(x) != normalize_phrase(y):
            break
        n += 1
    return n


class AsrStream:
    """Streaming recognition state for one party of one call (see the module docstring)."""

    def __init__(
        self,
        call_id: str,
        party: str,
        *,
        language: str,
        settings: StreamSettings | None = None,
        internal_vad: bool = True,
        offset_s: float = 0.0,
        final_word_timestamps: bool = True,
    ) -> None:
        self.call_id = call_id
        self.party = party
        self.settings = settings or StreamSettings()
        self.language: str | None = None if language == "auto" else language
        self.internal_vad = internal_vad
        self.offset_s = offset_s
        self.final_word_timestamps = final_word_timestamps
        self.rate = 0
        self._ring: _Ring | None = None
        self._t0 = 0.0  # stream time of sample 0
        self._rest = np.zeros(0, dtype=np.int16)
        self._vad: object = None
        self._frame_index = 0
        # current utterance
        self.utterance = 0
        self._utt_start: int | None = None  # sample number, None when not in speech
        self._utt_voiced = 0
        self._unclosed = 0
        self._partial_in_flight = False
        self._last_partial_end = 0
        self._prev_words: list[str] = []
        self._committed: list[str] = []
        self._last_partial_text = ""
        self.partials_wanted_not_run = 0
        self.partial_decodes = 0
        self.finals_requested = 0
        self.dropped_short = 0

    # -- time helpers --------------------------------------------------------------------------

    def _sample(self, t_s: float) -> int:
        return round((t_s - self._t0) * self.rate)

    def _time(self, sample: int) -> float:
        return self._t0 + sample / self.rate

    @property
    def now_s(self) -> float:
        return self._time(self._ring.total) if self._ring is not None else 0.0

    @property
    def in_speech(self) -> bool:
        return self._utt_start is not None

    # -- input ---------------------------------------------------------------------------------

    def _init(self, rate: int, t_s: float) -> None:
        if rate not in (8000, 16000):
            raise ValueError(f"ASR streams take 8 or 16 kHz audio, not {rate} Hz")
        self.rate = rate
        self._t0 = t_s
        self._ring = _Ring(int(self.settings.ring_s * rate))
        if self.internal_vad:
            from earpiece.media.vad import VadSegmenter

            self._vad = VadSegmenter(self.settings.vad, rate)

    def feed(self, pcm: npt.NDArray[np.int16], rate: int, t_s: float,
             speech: bool | None = None) -> list[DecodeRequest]:
        """Append audio that starts at stream time ``t_s``; returns final requests to decode.

        ``speech`` is the caller's VAD verdict for this audio (external segmentation); with
        the internal VAD it is ignored. Gaps in ``t_s`` are filled with silence (up to the
        ring size); overlapping audio is dropped.
        """
        if self._ring is None:
            self._init(rate, t_s)
        elif rate != self.rate:
            raise ValueError(f"stream {self.call_id}/{self.party} is {self.rate} Hz, got {rate}")
        ring = self._ring
        assert ring is not None
        expected = ring.total + len(self._rest)  # samples received so far
        at = self._sample(t_s)
        if at > expected + self.rate // 100:  # a gap of more than 10 ms
            gap = min(at - expected, ring.capacity)
            self._append(np.zeros(gap, dtype=np.int16), None)
        elif at < expected - self.rate // 100:
            skip = expected - at
            if skip >= len(pcm):
                return []
            pcm = pcm[skip:]
        return self._append(pcm.astype(np.int16, copy=False), speech)

    def _append(self, pcm: npt.NDArray[np.int16],
                speech: bool | None) -> list[DecodeRequest]:
        ring = self._ring
        assert ring is not None
        out: list[DecodeRequest] = []
        if not self.internal_vad:
            start = ring.total
            ring.write(pcm)
            if speech and self._utt_start is None:
                self._open(max(0, start - int(self.settings.preroll_s * self.rate)))
            if speech:
                self._utt_voiced += len(pcm)
                self._unclosed = 0
            elif self._utt_start is not None:
                # The external VAD went quiet without closing a segment (too short for it):
                # give its segment callback a grace period, then abandon the utterance.
                self._unclosed += len(pcm)
                if self._unclosed > self.settings.abandon_after_s * self.rate:
                    self._utt_start = None
                    self._partial_in_flight = False
                    self._unclosed = 0
                    self.dropped_short += 1
            cut = self._maybe_cut()
            if cut is not None:
                out.append(cut)
            return out
        n = self.rate * FRAME_MS // 1000
        if len(self._rest):
            pcm = np.concatenate((self._rest, pcm))
        i = 0
        from earpiece.media.vad import VadSegmenter

        vad = self._vad
        assert isinstance(vad, VadSegmenter)
        while len(pcm) - i >= n:
            frame = pcm[i: i + n]
            i += n
            ring.write(frame)
            voiced, closed = vad.process(frame, self._frame_index)
            self._frame_index += 1
            if voiced:
                if self._utt_start is None:
                    start = max(0, ring.total - n - int(self.settings.preroll_s * self.rate))
                    self._open(start)
                self._utt_voiced += n
            if closed is not None:
                # Close at the end of the last voiced frame (the hangover is not speech).
                req = self.end_of_speech(self._t0 + (closed.last_frame + 1) * FRAME_MS / 1000)
                if req is not None:
                    out.append(req)
            else:
                cut = self._maybe_cut()
                if cut is not None:
                    out.append(cut)
        self._rest = pcm[i:].copy()
        return out

    def _open(self, start_sample: int) -> None:
        self.utterance += 1
        self._utt_start = start_sample
        self._utt_voiced = 0
        self._last_partial_end = start_sample
        self._prev_words = []
        self._committed = []
        self._last_partial_text = ""

    def _maybe_cut(self) -> DecodeRequest | None:
        """Cut an over-long utterance at its quietest 100 ms in the last second."""
        ring = self._ring
        if self._utt_start is None or ring is None:
            return None
        length = ring.total - self._utt_start
        if length < self.settings.max_utterance_s * self.rate:
            return None
        look = ring.read(ring.total - self.rate, ring.total).astype(np.float32)
        hop = self.rate // 10
        energies = [float(np.mean(look[j: j + hop] ** 2)) for j in range(0, len(look) - hop + 1,
                                                                          hop // 2)]
        quiet = int(np.argmin(energies)) * (hop // 2) + hop // 2
        cut_at = ring.total - len(look) + quiet
        req = self._request(self._utt_start, cut_at, final=True)
        utterance_voiced = self._utt_voiced
        self._open(cut_at)
        self._utt_voiced = utterance_voiced  # the speech goes on
        return req

    def segment(self, start_s: float, end_s: float) -> DecodeRequest | None:
        """External VAD: the segment [start_s, end_s] (stream times) has ended."""
        if self._ring is None:
            return None
        start = self._sample(start_s)
        if self._utt_start is not None:
            start = max(start, self._utt_start) if self._utt_start <= self._sample(end_s) \
                else start
        return self._close(start, self._sample(end_s))

    def end_of_speech(self, t_s: float | None = None) -> DecodeRequest | None:
        """Close the current utterance at ``t_s`` (default: now); returns its final request."""
        if self._ring is None or self._utt_start is None:
            return None
        end = self._ring.total if t_s is None else self._sample(t_s)
        return self._close(self._utt_start, end)

    def _close(self, start: int, end: int) -> DecodeRequest | None:
        ring = self._ring
        assert ring is not None
        end = min(end + int(self.settings.tail_s * self.rate), ring.total)
        voiced = self._utt_voiced
        if self.wants_partial():
            self.partials_wanted_not_run += 1  # a partial was due but no worker ran it
        self._utt_start = None
        self._utt_voiced = 0
        self._partial_in_flight = False
        if end - start < self.settings.min_utterance_s * self.rate or (
            self.internal_vad and voiced == 0
        ):
            self.dropped_short += 1
            return None
        return self._request(start, end, final=True)

    def _request(self, start: int, end: int, *, final: bool) -> DecodeRequest:
        ring = self._ring
        assert ring is not None
        audio = ring.read(start, end)
        start = end - len(audio)
        if final:
            self.finals_requested += 1
        return DecodeRequest(
            call_id=self.call_id,
            party=self.party,
            utterance=self.utterance,
            final=final,
            audio=audio,
            rate=self.rate,
            start_s=self._time(start),
            end_s=self._time(end),
            language=self.language,
            word_timestamps=final and self.final_word_timestamps,
            created=time.monotonic(),
        )

    # -- partials ------------------------------------------------------------------------------

    def wants_partial(self) -> bool:
        ring = self._ring
        if ring is None or self._utt_start is None or self._partial_in_flight:
            return False
        s = self.settings
        if ring.total - self._utt_start < s.min_partial_s * self.rate:
            return False
        return ring.total - self._last_partial_end >= s.partial_step_s * self.rate

    def partial_request(self) -> DecodeRequest | None:
        """A snapshot of the utterance so far, if a partial decode is due (see module doc)."""
        if not self.wants_partial():
            return None
        ring = self._ring
        assert ring is not None and self._utt_start is not None
        self._partial_in_flight = True
        self._last_partial_end = ring.total
        self.partial_decodes += 1
        return self._request(self._utt_start, ring.total, final=False)

    # -- results -------------------------------------------------------------------------------

    def on_result(self, result: DecodeResult) -> Hypothesis | None:
        """Turn a decode result into a hypothesis to publish (None: nothing new or stale)."""
        req = result.request
        out = result.output
        if not req.final:
            if req.utterance == self.utterance:
                self._partial_in_flight = False
            if req.utterance != self.utterance or self._utt_start is None:
                return None  # the utterance ended meanwhile: its final supersedes this
        if out is not None and self.language is None and out.language_probability >= 0.5 \
                and req.duration_s >= 1.0 and result.verdict.accepted:
            self.language = out.language  # detected once per speaker, then fixed
            log.info("%s/%s: language %s (p=%.2f)", self.call_id, self.party, out.language,
                     out.language_probability)
        if not result.verdict.accepted or out is None:
            return None
        text = result.verdict.text
        language = out.language
        if req.final:
            words = tuple(
                Word(word=w.word, start_s=round(req.start_s + w.start_s + self.offset_s, 3),
                     end_s=round(req.start_s + w.end_s + self.offset_s, 3),
                     probability=round(w.probability, 3))
                for w in out.words
            )
            return Hypothesis(
                call_id=self.call_id, party=self.party, utterance=req.utterance, final=True,
                text=text, start_s=round(req.start_s + self.offset_s, 3),
                end_s=round(req.end_s + self.offset_s, 3), language=language, words=words,
                committed_words=len(text.split()),
            )
        new_words = text.split()
        agreed = _common_prefix(self._prev_words, new_words)
        if agreed > len(self._committed):
            self._committed = new_words[:agreed]
        self._prev_words = new_words
        tail = new_words[_common_prefix(self._committed, new_words):]
        if len(self._committed) and _common_prefix(self._committed, new_words) < len(
                self._committed):
            tail = []  # the newest hypothesis contradicts settled words: show settled only
        shown = " ".join([*self._committed, *tail])
        if not shown or shown == self._last_partial_text:
            return None
        self._last_partial_text = shown
        return Hypothesis(
            call_id=self.call_id, party=self.party, utterance=req.utterance, final=False,
            text=shown, start_s=round(req.start_s + self.offset_s, 3),
            end_s=round(req.end_s + self.offset_s, 3), language=language,
            committed_words=len(self._committed),
        )
