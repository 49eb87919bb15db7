"""Runs a :class:`~earpiece.cpa.detector.CallProgressDetector` per call on the customer's audio.

Entry points:

* :meth:`CpaFork.on_frame` ``(call_id, party, pcm)``: plain callback for 20 ms int16 frames at
  8 kHz; only ``party == "customer"`` is analysed. :meth:`CpaFork.on_audio_frame` adapts a
  :class:`~earpiece.media.frames.AudioFrame` (subscribe it with ``hub.subscribe(fork.
  on_audio_frame, rate=8000, party="customer")``).
* Bus events: :class:`~earpiece.events.CallStateChanged` to ``answered`` switches the call's
  detector from early media to answering-machine detection (the decision clock restarts);
  :class:`~earpiece.events.CallEnded` flushes it (an undecided answered call still gets a
  verdict) and forgets the call. :class:`~earpiece.events.Transcript` events of the customer
  (the ASR service's partials and finals) hand the recognised words to the call's detector
  (:meth:`~earpiece.cpa.detector.CallProgressDetector.add_transcript`): machine wording decides
  "machine" at once, other words shift the timing model's score (see
  :mod:`earpiece.cpa.amd_words`); a verdict they complete is published like any other.

Every verdict is published as :class:`~earpiece.events.CpaDecision` and handed to the call
registry through ``record_audio_verdict(call_id, label, source)``, which keeps it beside the
signalling outcome (see :mod:`earpiece.agi.calls.outcome`: audio evidence is ranked, disagreements
are kept with the rule that decided). :meth:`CpaFork.is_human` tells later stages (emotion,
strategy) whether a call was judged answered by a human.

The DSP costs ~0.1 ms per frame; with ``offload=True`` frames are analysed on one worker thread
and results are published back on the event loop, so the loop never runs the FFTs itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from earpiece.cpa.detector import CallProgressDetector, CpaOptions, CpaResult
from earpiece.cpa.words import GreetingSnapshots, GreetingWords
from earpiece.events import CallEnded, CallState, CallStateChanged, CpaDecision, Transcript

if TYPE_CHECKING:
    from earpiece.asr.settings import AsrSettings
    from earpiece.bus import EventBus
    from earpiece.cpa.settings import CpaSettings
    from earpiece.media.frames import AudioFrame

log = logging.getLogger(__name__)

VerdictSink = Callable[[str, str, str], bool]


def options_from_settings(settings: CpaSettings) -> CpaOptions:
    """CpaOptions for the analysis configured in ``[cpa]``.

    The AMD operating point is the ``amd_profile`` (:data:`~earpiece.cpa.profiles.
    AMD_PROFILES`) with the explicit ``machine_p`` / ``human_p`` / ``min_silence_s`` overrides
    applied; ``words = false`` sets ``words_weight`` 0 (machine phrases still decide).
    """
    point = settings.operating_point()
    return CpaOptions(tone_plan=settings.tone_plan, phase="pre_answer",
                      max_s=settings.amd_max_s, silence_timeout_s=settings.silence_timeout_s,
                      machine_p=point.machine_p, human_p=point.human_p,
                      min_silence_s=point.min_silence_s,
                      words_weight=1.0 if settings.words else 0.0)


def words_from_settings(cpa: CpaSettings, asr: AsrSettings) -> GreetingWords | None:
    """Live greeting snapshots as configured (None: off, or speech recognition disabled)."""
    if not (cpa.words and asr.enabled and cpa.words_max_snapshots > 0):
        return None
    from earpiece.cpa.words import GreetingTranscriber, SnapshotOptions, words_model_for

    model = words_model_for(cpa.words_model, asr.model, asr.language)
    transcriber = GreetingTranscriber(model, cache_dir=asr.cache_dir, cpu_threads=2,
                                      device=asr.device, compute_type=asr.compute_type)
    return GreetingWords(transcriber=transcriber,
                         language=None if asr.language == "auto" else asr.language,
                         options=SnapshotOptions(first_s=cpa.words_first_s,
                                                 step_s=cpa.words_step_s,
                                                 max_snapshots=cpa.words_max_snapshots))


@dataclass
class _CallCpa:
    detector: CallProgressDetector
    snapshots: GreetingSnapshots | None = None
    answered: bool = False
    results: list[CpaResult] = field(default_factory=list)


@dataclass
class CpaStats:
    frames: int = 0
    ignored_frames: int = 0
    decisions: int = 0
    malformed: int = 0
    transcripts: int = 0
    words_snapshots: int = 0  # greeting snapshots transcribed
    words_errors: int = 0
    words_skipped: int = 0  # snapshots not decoded: queue full, or the call decided meanwhile


class CpaFork:
    """Per-call call-progress analysis of the customer's stream (see module docstring)."""

    MAX_REMEMBERED = 10_000  # verdicts kept for is_human() after the call ended
    #: greeting snapshots waiting for the recogniser at most; more calls answered at once than
    #: it keeps up with get their later snapshots skipped (timing decides them), not queued
    MAX_WORDS_QUEUE = 4

    def __init__(self, bus: EventBus, *, options: CpaOptions | None = None,
                 record_audio_verdict: VerdictSink | None = None, offload: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None,
                 words: GreetingWords | None = None) -> None:
        self.bus = bus
        base = options or CpaOptions()
        self.options = CpaOptions(**{**base.__dict__, "phase": "pre_answer"})
        self.record_audio_verdict = record_audio_verdict
        self.stats = CpaStats()
        self._calls: dict[str, _CallCpa] = {}
        self._answered: set[str] = set()
        self._human: dict[str, bool] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop = loop
        self.words = words
        self._words_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._words_broken = False  # the recogniser failed to load: timing alone
        # snapshots submitted and not yet started; the CPA and words threads both change it
        self._words_queued = 0
        self._words_lock = threading.Lock()
        self._stopped = False
        if offload:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="earpiece-cpa")

    def start(self) -> None:
        self._stopped = False
        if self.words is not None and self._words_executor is None:
            self._words_executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="earpiece-cpa-words")
            load = getattr(self.words.transcriber, "load", None)
            if callable(load):  # load the model now, not on the first answered call
                self._words_executor.submit(load).add_done_callback(self._loaded)
        self._unsubscribe = [self.bus.subscribe(CallStateChanged, self._on_state),
                             self.bus.subscribe(CallEnded, self._on_ended),
                             self.bus.subscribe(Transcript, self._on_transcript)]

    def stop(self) -> None:
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe = []
        self._stopped = True
        if self._words_executor is not None:  # a running decode ends on its own, unheard
            self._words_executor.shutdown(wait=False, cancel_futures=True)
            self._words_executor = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _loaded(self, fut: concurrent.futures.Future[object]) -> None:
        exc = fut.exception() if not fut.cancelled() else None
        if exc is not None:
            self.stats.words_errors += 1
            self._words_broken = True
            log.error("greeting words: the recogniser failed to load (%s); AMD goes on from "
                      "timing alone", exc)

    # ---- inputs ------------------------------------------------------------------------------
    def on_audio_frame(self, frame: AudioFrame) -> None:
        if frame.rate != 8000:
            self.stats.malformed += 1
            return
        self.on_frame(frame.call_id, frame.party, frame.pcm)

    def on_frame(self, call_id: str, party: str, frame: npt.NDArray[np.int16]) -> None:
        """Feed one frame of ``party``'s audio (only the customer's is analysed)."""
        if party != "customer":
            self.stats.ignored_frames += 1
            return
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            self.stats.malformed += 1
            return
        self.stats.frames += 1
        if self._executor is None:
            self._process(call_id, frame)
        else:
            self._executor.submit(self._process_offloaded, call_id, frame.copy())

    def _on_state(self, ev: CallStateChanged) -> None:
        if ev.new != CallState.ANSWERED:
            return
        self._answered.add(ev.call_id)
        self._run(self._answer, ev.call_id)

    def _on_ended(self, ev: CallEnded) -> None:
        self._run(self._end, ev.call_id)

    def _on_transcript(self, ev: Transcript) -> None:
        if ev.party != "customer" or not ev.text.strip():
            return
        self.stats.transcripts += 1
        text = ev.text
        self._run(lambda call_id: self._words(call_id, text), ev.call_id)

    # ---- work (on the worker thread when offloaded) ------------------------------------------
    def _run(self, fn: Callable[[str], list[tuple[str, CpaResult]]], call_id: str) -> None:
        if self._executor is None:
            self._emit(fn(call_id))
        else:
            fut = self._executor.submit(fn, call_id)
            fut.add_done_callback(self._done)

    def _done(self, fut: concurrent.futures.Future[list[tuple[str, CpaResult]]]) -> None:
        try:
            out = fut.result()
        except (ValueError, TypeError, IndexError) as exc:
            self.stats.malformed += 1
            log.warning("CPA failed: %s", exc)
            return
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._emit, out)
        else:
            self._emit(out)

    def _state(self, call_id: str) -> _CallCpa:
        st = self._calls.get(call_id)
        if st is None:
            snapshots = GreetingSnapshots(self.words.options) if self.words is not None else None
            st = self._calls[call_id] = _CallCpa(CallProgressDetector(self.options), snapshots)
            if call_id in self._answered:
                st.detector.answer()
                st.answered = True
                if snapshots is not None:
                    snapshots.answer()
        return st

    def _process(self, call_id: str, frame: npt.NDArray[np.int16]) -> None:
        self._emit(self._feed(call_id, frame))

    def _process_offloaded(self, call_id: str, frame: npt.NDArray[np.int16]) -> None:
        out = self._feed(call_id, frame)
        if out:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._emit, out)
            else:
                self._emit(out)

    def _feed(self, call_id: str, frame: npt.NDArray[np.int16]) -> list[tuple[str, CpaResult]]:
        st = self._state(call_id)
        r = st.detector.feed(frame)
        if r is None and st.snapshots is not None:
            audio = st.snapshots.push(frame, st.detector)
            if audio is not None:
                self._transcribe(call_id, st.snapshots, audio)
        return [(call_id, r)] if r is not None else []

    def _words(self, call_id: str, text: str) -> list[tuple[str, CpaResult]]:
        st = self._calls.get(call_id)
        if st is None:  # no audio seen (or the call ended): nothing to decide about
            return []
        if st.answered and st.snapshots is not None:
            # the greeting snapshots carry the words after answer (the schedule the benchmark
            # measures); the ASR's utterance partials would replace them with less context
            return []
        r = st.detector.add_transcript(text)
        return [(call_id, r)] if r is not None else []

    # ---- greeting words ----------------------------------------------------------------------
    def _transcribe(self, call_id: str, snapshots: GreetingSnapshots,
                    audio: npt.NDArray[np.int16]) -> None:
        words, pool = self.words, self._words_executor
        if words is None or pool is None or self._stopped or self._words_broken:
            snapshots.done()
            return
        with self._words_lock:
            full = self._words_queued >= self.MAX_WORDS_QUEUE
            if not full:
                self._words_queued += 1
        if full:
            self.stats.words_skipped += 1
            snapshots.done()  # the schedule tries again one step later
            return
        try:
            fut = pool.submit(self._decode, call_id, snapshots, audio)
        except RuntimeError:  # shut down meanwhile
            snapshots.done()
            return
        fut.add_done_callback(lambda f: self._transcribed(call_id, snapshots, f))

    def _decode(self, call_id: str, snapshots: GreetingSnapshots,
                audio: npt.NDArray[np.int16]) -> tuple[str, float] | None:
        """On the words thread: the snapshot's text, or None when it is no longer needed."""
        with self._words_lock:
            self._words_queued -= 1
        st = self._calls.get(call_id)
        words = self.words
        if words is None or st is None or st.snapshots is not snapshots \
                or st.detector.result is not None:
            self.stats.words_skipped += 1
            return None
        return words.transcriber.transcribe(audio, words.language)

    def _transcribed(self, call_id: str, snapshots: GreetingSnapshots,
                     fut: concurrent.futures.Future[tuple[str, float] | None]) -> None:
        """On the words thread: hand the text to the call's detector in its own context."""
        text = ""
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.stats.words_errors += 1
            log.warning("greeting words: decode failed: %s", exc)
        else:
            out = fut.result()
            if out is None:  # skipped: the call decided or ended before its turn
                return
            text = out[0]

        def deliver(cid: str) -> list[tuple[str, CpaResult]]:
            st = self._calls.get(cid)
            if st is None or st.snapshots is not snapshots:  # the call ended meanwhile
                return []
            snapshots.done()
            self.stats.words_snapshots += 1
            if not text.strip():
                return []
            r = st.detector.add_transcript(text)
            return [(cid, r)] if r is not None else []

        if self._stopped:
            return
        if self._executor is None and self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._run, deliver, call_id)
            except RuntimeError:  # the loop closed: the service is going down
                return
        else:
            self._run(deliver, call_id)

    def _answer(self, call_id: str) -> list[tuple[str, CpaResult]]:
        st = self._state(call_id)
        if not st.answered:
            st.answered = True
            st.detector.answer()
            if st.snapshots is not None:
                st.snapshots.answer()
        return []

    def _end(self, call_id: str) -> list[tuple[str, CpaResult]]:
        st = self._calls.pop(call_id, None)
        self._answered.discard(call_id)
        if st is None:
            return []
        det = st.detector
        if st.answered and det.result is None and det.frames > 0:
            return [(call_id, det.finish())]
        return []

    # ---- outputs (on the event loop) ---------------------------------------------------------
    def _emit(self, out: list[tuple[str, CpaResult]]) -> None:
        for call_id, r in out:
            self.stats.decisions += 1
            rule = str(r.evidence.get("rule", ""))
            phase = str(r.evidence.get("phase", ""))
            if phase == "post_answer" and r.label in ("human", "machine", "fax", "silence"):
                self._human[call_id] = r.label == "human"
                while len(self._human) > self.MAX_REMEMBERED:
                    del self._human[next(iter(self._human))]
            self.bus.publish(CpaDecision(call_id=call_id, label=r.label,
                                         confidence=r.confidence, decision_s=r.decision_s,
                                         evidence=r.evidence))
            if self.record_audio_verdict is not None and r.label != "unknown":
                self.record_audio_verdict(call_id, r.label, f"audio:cpa {phase} {rule}")

    def is_human(self, call_id: str) -> bool | None:
        """True/False once the call's answer was judged; None while unknown."""
        return self._human.get(call_id)

    def forget(self, call_id: str) -> None:
        self._human.pop(call_id, None)
