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

**Every answered call gets a post-answer verdict, whatever the load.** The event loop keeps the
answered calls whose verdict is not published yet. When such a call ends, the detector's best
guess (:meth:`~earpiece.cpa.detector.CallProgressDetector.finish`; ``unknown`` with rule
``no_audio`` when no audio came after answer) is asked for; when its time is up
(``verdict_timeout_s`` after answer: the detector's own longest wait plus a margin) the same is
asked with ``reason`` ``time_up`` in the evidence. If the worker thread is behind (a stalled or
overloaded detector, a queue of frames) and that answer does not arrive within
``end_grace_s``, a stand-in ``CpaDecision`` is published at once: label ``unknown``, rule
``no_verdict``, ``reason`` ``call_ended``/``time_up`` and the worker's ``backlog_frames``. A real
verdict arriving later still replaces a stand-in (it is published too); any other second
post-answer verdict is dropped (``stats.late_verdicts``). A call that ended or was decided feeds
no more frames to the worker, and at most ``MAX_BACKLOG`` frames wait for it (more are dropped
and counted), so an overloaded worker catches up instead of falling further behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from earpiece.cpa.detector import CallProgressDetector, CpaOptions, CpaResult
from earpiece.cpa.words import GreetingSnapshots, GreetingWords
from earpiece.events import CallEnded, CallState, CallStateChanged, CpaDecision, Transcript
from earpiece.logs import call_id_var

if TYPE_CHECKING:
    from earpiece.asr.settings import AsrSettings
    from earpiece.bus import EventBus
    from earpiece.cpa.settings import CpaSettings
    from earpiece.media.frames import AudioFrame

log = logging.getLogger(__name__)

VerdictSink = Callable[[str, str, str], bool]

#: Rule of the stand-in verdict published when the detector did not answer in time.
STAND_IN_RULE = "no_verdict"
#: Seconds beyond the detector's own longest wait after answer before its time is up.
VERDICT_MARGIN_S = 3.0


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
class _Awaiting:
    """Event-loop side: an answered call whose post-answer verdict is not published yet."""

    since: float  # time.monotonic() at answer (or at the end, if the answer was not seen)
    timer: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


@dataclass
class CpaStats:
    frames: int = 0
    skipped_frames: int = 0  # not analysed: the call ended or its verdict is in
    dropped_frames: int = 0  # not analysed: MAX_BACKLOG frames already waited for the worker
    stand_ins: int = 0  # "unknown" verdicts published because the detector did not answer
    late_verdicts: int = 0  # a second post-answer verdict (after a real one), not published
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
    #: frames waiting for the worker thread at most (~30 s of 20 calls); more are dropped
    MAX_BACKLOG = 30_000

    def __init__(self, bus: EventBus, *, options: CpaOptions | None = None,
                 record_audio_verdict: VerdictSink | None = None, offload: bool = False,
                 loop: asyncio.AbstractEventLoop | None = None,
                 words: GreetingWords | None = None, end_grace_s: float = 1.0,
                 verdict_timeout_s: float | None = None) -> None:
        self.bus = bus
        base = options or CpaOptions()
        self.options = CpaOptions(**{**base.__dict__, "phase": "pre_answer"})
        o = self.options
        #: seconds after answer until an undecided call's verdict is forced
        self.verdict_timeout_s = verdict_timeout_s if verdict_timeout_s is not None else (
            max(o.max_s + o.human_silence_s, o.silence_timeout_s, o.tone_max_s)
            + VERDICT_MARGIN_S)
        #: seconds the worker thread gets to answer before a stand-in verdict is published
        self.end_grace_s = end_grace_s
        self._awaiting: dict[str, _Awaiting] = {}  # event loop only
        self._final: dict[str, bool] = {}  # post-answer verdict published: True = stand-in
        self._ended: dict[str, None] = {}  # calls ended: later frames are not analysed
        self._backlog = 0  # frames submitted to the worker and not started
        self._backlog_lock = threading.Lock()
        self._backlog_warned = False
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
        for waiting in self._awaiting.values():
            waiting.cancel()
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
        st = self._calls.get(call_id)
        if call_id in self._ended or (self._final.get(call_id) is False and not (
                self._human.get(call_id) and st is not None and st.detector.watching)):
            self.stats.skipped_frames += 1  # nothing left to decide (or to revise)
            return
        self.stats.frames += 1
        if self._executor is None:
            self._process(call_id, frame)
            return
        with self._backlog_lock:
            full = self._backlog >= self.MAX_BACKLOG
            if not full:
                self._backlog += 1
        if full:
            self.stats.dropped_frames += 1
            if not self._backlog_warned:
                self._backlog_warned = True
                log.warning("CPA worker %d frames behind: frames are dropped until it catches "
                            "up (undecided calls get their verdict when time is up)",
                            self.MAX_BACKLOG)
            return
        self._executor.submit(self._process_offloaded, call_id, frame.copy())

    def _on_state(self, ev: CallStateChanged) -> None:
        if ev.new != CallState.ANSWERED or ev.call_id in self._ended:
            return
        self._answered.add(ev.call_id)
        self._await_verdict(ev.call_id)
        self._run(self._answer, ev.call_id)

    def _on_ended(self, ev: CallEnded) -> None:
        call_id = ev.call_id
        self._ended[call_id] = None
        while len(self._ended) > self.MAX_REMEMBERED:
            del self._ended[next(iter(self._ended))]
        if ev.outcome == CallState.ANSWERED:  # answered, even if the state change was missed
            self._await_verdict(call_id)
        self._settle(call_id, "call_ended", self._end)

    # ---- every answered call gets a verdict (event loop side) --------------------------------
    @staticmethod
    def _timer_loop() -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    def _await_verdict(self, call_id: str) -> None:
        """Track the answered ``call_id`` until its post-answer verdict is published."""
        if call_id in self._final or call_id in self._awaiting:
            return
        waiting = self._awaiting[call_id] = _Awaiting(time.monotonic())
        loop = self._timer_loop()
        if loop is not None:
            waiting.timer = loop.call_later(self.verdict_timeout_s, self._time_up, call_id)
        while len(self._awaiting) > self.MAX_REMEMBERED:
            self._awaiting.pop(next(iter(self._awaiting))).cancel()

    def _time_up(self, call_id: str) -> None:
        waiting = self._awaiting.get(call_id)
        if waiting is None or self._stopped:
            return
        waiting.timer = None
        self._settle(call_id, "time_up",
                     lambda cid: self._finish(cid, "time_up"))

    def _settle(self, call_id: str, reason: str,
                job: Callable[[str], list[tuple[str, CpaResult]]]) -> None:
        """Run ``job`` (the call's end, or its time being up) on the worker; if the call is
        still undecided after it (synchronous) or ``end_grace_s`` later (offloaded), publish a
        stand-in verdict."""
        waiting = self._awaiting.get(call_id)
        if waiting is not None:
            waiting.cancel()
        try:
            self._run(job, call_id)
        except RuntimeError:  # the worker was shut down: the stand-in below still comes
            pass
        waiting = self._awaiting.get(call_id)
        if waiting is None:
            return  # decided (synchronously), or not an answered call
        loop = self._timer_loop()
        if self._executor is None or loop is None or self._stopped:
            self._stand_in(call_id, reason)
        else:
            waiting.timer = loop.call_later(self.end_grace_s, self._stand_in, call_id, reason)

    def _stand_in(self, call_id: str, reason: str) -> None:
        waiting = self._awaiting.get(call_id)
        if waiting is None:
            return
        waiting.timer = None
        self.stats.stand_ins += 1
        with self._backlog_lock:
            backlog = self._backlog
        token = call_id_var.set(call_id)
        try:
            log.info("CPA: no verdict for answered call %s (%s, %d frames waiting for the "
                     "detector): published unknown", call_id, reason, backlog)
        finally:
            call_id_var.reset(token)
        r = CpaResult("unknown", 0.0, round(time.monotonic() - waiting.since, 3),
                      {"rule": STAND_IN_RULE, "phase": "post_answer", "reason": reason,
                       "backlog_frames": backlog})
        self._emit([(call_id, r)])

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
        if fut.cancelled():
            return
        try:
            out = fut.result()
        except (ValueError, TypeError, IndexError) as exc:
            self.stats.malformed += 1
            log.warning("CPA failed: %s", exc)
            return
        except Exception:  # the call's stand-in verdict still comes when it ends or times out
            log.exception("CPA failed")
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
        with self._backlog_lock:
            self._backlog -= 1
            if self._backlog_warned and self._backlog < self.MAX_BACKLOG // 2:
                self._backlog_warned = False
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
        answered = call_id in self._answered
        self._answered.discard(call_id)
        if st is None or not st.answered:
            # answered but no audio reached the detector: say so (the loop side publishes a
            # stand-in for a call whose answer the detector never heard)
            return [(call_id, _no_audio(0.0, "call_ended"))] if answered and st is None else []
        det = st.detector
        if det.result is not None:
            return []
        if det.t <= 0.0:  # answered, then nothing more came
            return [(call_id, _no_audio(0.0, "call_ended"))]
        return [(call_id, det.finish())]

    def _finish(self, call_id: str, reason: str) -> list[tuple[str, CpaResult]]:
        """Time is up for an answered call: the detector's best guess now."""
        st = self._calls.get(call_id)
        if st is None or not st.answered or st.detector.result is not None:
            return []  # decided meanwhile, or nothing to ask: the stand-in follows
        det = st.detector
        r = _no_audio(det.t, reason) if det.t <= 0.0 else det.finish()
        det.result = r = CpaResult(r.label, r.confidence, r.decision_s,
                                   {**r.evidence, "reason": reason})
        return [(call_id, r)]

    # ---- outputs (on the event loop) ---------------------------------------------------------
    def _emit(self, out: list[tuple[str, CpaResult]]) -> None:
        for call_id, r in out:
            rule = str(r.evidence.get("rule", ""))
            phase = str(r.evidence.get("phase", ""))
            if phase == "post_answer":
                stand_in = self._final.get(call_id)
                if stand_in is False or (stand_in and r.label == "unknown"):
                    self.stats.late_verdicts += 1  # one verdict per call (a stand-in may be
                    continue  # replaced by a real one)
                self._final[call_id] = rule == STAND_IN_RULE
                while len(self._final) > self.MAX_REMEMBERED:
                    del self._final[next(iter(self._final))]
                waiting = self._awaiting.pop(call_id, None)
                if waiting is not None:
                    waiting.cancel()
            self.stats.decisions += 1
            if (phase == "post_answer" and r.label in ("human", "machine", "fax", "silence")) \
                    or phase == "after_verdict":  # a revision (machine_late, a tone)
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


def _no_audio(t: float, reason: str) -> CpaResult:
    """The verdict of an answered call whose audio never reached the detector after answer."""
    return CpaResult("unknown", 0.0, round(t, 3),
                     {"rule": "no_audio", "phase": "post_answer", "reason": reason})
