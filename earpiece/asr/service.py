"""Streaming speech recognition service: the async shell around :class:`AsrStream`.

One shared model, ``workers`` decoding threads (CTranslate2 releases the GIL, so threads run
decodes in parallel), and a scheduler that decides what a free worker decodes next:

1. **Finals first.** Finished utterances wait in per-stream FIFO queues; a free worker takes
   the head of the stream served least recently (round robin across calls, so one talkative
   call cannot starve the others); a stream has at most one final in flight, so each party's
   finals are published in order.
2. **Partials only with spare capacity.** A partial is decoded only when no final waits, when
   at least one other worker stays free for finals (with one worker: when it is idle), and
   when the oldest final is not older than ``overload_lag_s``. The partial's audio is taken
   from the stream at that moment (never queued, never stale), at most one per stream in
   flight; streams are served round robin. Under overload partials are therefore the first
   thing dropped (counted in :attr:`AsrMetrics.partials_skipped`).
3. **Bounded.** At most ``max_pending_finals`` finals wait; beyond that the oldest final of the
   stream with the most waiting ones is dropped and counted. Streams keep a bounded ring of
   audio; latency samples are kept in a bounded window. Nothing grows with call length.
4. **Whole calls, not random finals.** With ``max_streams`` (``[asr] max_streams``; 0 =
   unlimited) a call is admitted when its first audio arrives if the admitted calls leave room
   for its two streams; a call that does not fit is not transcribed at all: one INFO line with
   its call id, one :class:`~earpiece.events.AsrSkipped` event, counted in
   :attr:`AsrMetrics.calls_refused`. A call that ends frees its slot. Drops and refusals are
   logged as at most one WARNING summary per 10 s (see :mod:`earpiece.asr.admission`).

Inputs (all synchronous, cheap, called on the event loop):

* :meth:`AsrService.feed_frame` (audio; internal VAD by default, or the caller's ``speech``
  flag) + :meth:`AsrService.end_of_speech` / :meth:`AsrService.segment`;
* :meth:`AsrService.submit_segment` (a VAD segment with its audio);
* :meth:`AsrService.attach_hub` (the media fork's :class:`~earpiece.media.frames.FrameHub`:
  frames with their VAD verdict and closed segments).

Outputs: :class:`~earpiece.events.Transcript` events on the bus (partial and final) and an
optional ``on_hypothesis`` callback; :meth:`AsrService.metrics` for lag/drops/latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt

from earpiece.asr.admission import Admission, OverloadReport
from earpiece.asr.filters import Verdict
from earpiece.asr.runner import Runner
from earpiece.asr.service_types import AsrMetrics as AsrMetrics
from earpiece.asr.service_types import ServiceSettings as ServiceSettings
from earpiece.asr.stream import (
    AsrStream,
    DecodeRequest,
    DecodeResult,
    Hypothesis,
)
from earpiece.bus import EventBus
from earpiece.events import AsrSkipped, Party, SpeechSegment, Transcript
from earpiece.logs import call_id_var

if TYPE_CHECKING:
    from earpiece.media.frames import AudioFrame, FrameHub
    from earpiece.media.vad import Segment

log = logging.getLogger(__name__)

Key = tuple[str, str]


@dataclass
class _StreamState:
    stream: AsrStream
    finals: deque[DecodeRequest] = field(default_factory=deque)
    served: int = 0  # scheduler clock of the last final served
    partial_served: int = 0
    skipped_utterance: int = -1
    final_in_flight: bool = False
    fed_at: float = 0.0


class AsrService:
    """Shared-model, multi-worker streaming recognition for every (call, party)."""

    def __init__(
        self,
        runner: Runner,
        *,
        bus: EventBus | None = None,
        settings: ServiceSettings | None = None,
        on_hypothesis: Callable[[Hypothesis], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.runner = runner
        self.clock = clock
        self._last_sweep = clock()
        self.bus = bus
        self.settings = settings or ServiceSettings()
        self.on_hypothesis = on_hypothesis
        self._streams: dict[Key, _StreamState] = {}
        self._closing: list[_StreamState] = []  # closed streams whose finals still wait
        self._call_language: dict[str, str] = {}
        self._call_started: dict[str, float] = {}
        self._ended: dict[str, None] = {}  # calls closed: late frames are ignored (bounded)
        self._pending = 0
        self._busy = 0
        self._clock = 0
        self._wake: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._latencies: deque[float] = deque(maxlen=self.settings.latency_window)
        self._max_lag = 0.0
        self._lag_warned = 0.0
        self._counts: dict[str, int] = {
            "final_decodes": 0, "partial_decodes": 0, "finals_published": 0,
            "partials_published": 0, "dropped_finals": 0, "partials_skipped": 0,
        }
        self._filtered: dict[str, int] = {}
        self._decode_s = 0.0
        self._audio_s = 0.0
        self._admission = Admission(self.settings.max_streams)
        self._report = OverloadReport(log)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        n = max(1, self.settings.workers)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="asr")
        self._tasks = [asyncio.create_task(self._worker(i), name=f"asr-worker-{i}")
                       for i in range(n)]
        if self.bus is not None and self.settings.segments_from_bus:
            self._unsubscribe.append(self.bus.subscribe(SpeechSegment, self._on_bus_segment))

    async def stop(self) -> None:
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe.clear()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._report_overload(force=True)

    async def drain(self) -> None:
        """Wait until no final waits and no decode runs."""
        while self._pending or self._busy:
            assert self._idle is not None
            self._idle.clear()
            await self._idle.wait()

    # -- inputs --------------------------------------------------------------------------------

    def open_stream(self, call_id: str, party: str, *, language: str | None = None,
                    offset_s: float = 0.0, internal_vad: bool | None = None) -> AsrStream:
        """Create (or return) the stream of (call, party); ``offset_s`` = stream start - call
        start, added to every published time. An explicit open admits the call whatever the
        load (audio alone goes through :meth:`admit`)."""
        key = (call_id, party)
        st = self._streams.get(key)
        if st is None:
            stream = AsrStream(
                call_id, party,
                language=language or self._call_language.get(call_id) or self.settings.language,
                settings=self.settings.stream,
                internal_vad=self.settings.internal_vad if internal_vad is None
                else internal_vad,
                offset_s=offset_s,
            )
            st = self._streams[key] = _StreamState(stream, fed_at=self.clock())
            self._admission.force(call_id)
        return st.stream

    def feed_frame(self, call_id: str, party: str, frame: npt.NDArray[np.int16], rate: int,
                   t_s: float, speech: bool | None = None) -> None:
        """Audio of one party (8 or 16 kHz int16) starting at stream time ``t_s``.

        With the internal VAD, utterances are found here; otherwise pass the caller's VAD
        verdict as ``speech`` and close utterances with :meth:`end_of_speech`/:meth:`segment`.
        """
        st = self._streams.get((call_id, party))
        if st is None:
            if not self.admit(call_id):
                return
            self.open_stream(call_id, party, internal_vad=speech is None)
            st = self._streams[(call_id, party)]
        for req in st.stream.feed(frame, rate, t_s, speech):
            self._enqueue_final(st, req)
        st.fed_at = now = self.clock()
        if st.stream.in_speech and st.stream.wants_partial():
            self._kick()
        if now - self._last_sweep >= 10.0:
            self.sweep_idle(now)
        if self._report.due(now):
            self._report_overload(now)

    def admit(self, call_id: str) -> bool:
        """Whether ``call_id`` is transcribed: admitted now or before, or refused because the
        admitted calls fill ``max_streams`` (reported once per call: an INFO line with its
        call id, an :class:`~earpiece.events.AsrSkipped` event, the overload summary)."""
        decision = self._admission.decide(call_id)
        if decision == "refused_now":
            token = call_id_var.set(call_id)
            try:
                log.info("ASR at capacity (%d calls admitted, max_streams %d): call %s is not "
                         "transcribed",
                         self._admission.admitted, self._admission.max_streams, call_id)
            finally:
                call_id_var.reset(token)
            self._report.refused(call_id)
            if self.bus is not None:
                self.bus.publish(AsrSkipped(call_id=call_id, reason="capacity"))
            self._report_overload()
        return decision == "admitted"

    def _report_overload(self, now: float | None = None, *, force: bool = False) -> None:
        now = self.clock() if now is None else now
        if force or self._report.due(now):
            self._report.report(now, capacity=self._admission.max_streams,
                                waiting=self._pending)

    def sweep_idle(self, now: float | None = None) -> int:
        """Close streams that were not fed for ``idle_close_s``; returns how many."""
        now = self.clock() if now is None else now
        self._last_sweep = now
        idle = [k for k, st in self._streams.items()
                if now - st.fed_at > self.settings.idle_close_s]
        for key in idle:
            log.warning("ASR stream %s/%s idle for %.0f s: closed", key[0], key[1],
                        now - self._streams[key].fed_at)
            self.close_stream(*key)
        return len(idle)

    def end_of_speech(self, call_id: str, party: str, t_s: float | None = None) -> None:
        st = self._streams.get((call_id, party))
        if st is not None:
            req = st.stream.end_of_speech(t_s)
            if req is not None:
                self._enqueue_final(st, req)

    def segment(self, call_id: str, party: str, start_s: float, end_s: float) -> None:
        """An external VAD closed the segment [start_s, end_s] (stream times)."""
        st = self._streams.get((call_id, party))
        if st is not None:
            req = st.stream.segment(start_s, end_s)
            if req is not None:
                self._enqueue_final(st, req)

    def submit_segment(self, call_id: str, party: str, audio: npt.NDArray[np.int16], rate: int,
                       start_s: float, end_s: float, final: bool) -> None:
        """A VAD segment with its audio: ``final=False`` while it grows (partials may follow),
        ``final=True`` when it is complete (a final transcript follows)."""
        st = self._streams.get((call_id, party))
        if st is None:
            if not self.admit(call_id):
                return
            self.open_stream(call_id, party, internal_vad=False)
            st = self._streams[(call_id, party)]
        st.stream.feed(audio, rate, start_s, speech=True)
        if final:
            self.segment(call_id, party, start_s, end_s)
        elif st.stream.wants_partial():
            self._kick()

    def close_stream(self, call_id: str, party: str) -> None:
        """The party's audio ended: finish its open utterance and forget the stream."""
        st = self._streams.pop((call_id, party), None)
        if st is not None:
            req = st.stream.end_of_speech()
            if req is not None:
                self._enqueue_final(st, req)
            if st.finals:
                self._closing.append(st)
            if not any(k[0] == call_id for k in self._streams):
                self._admission.release(call_id)  # its waiting finals are still decoded

    def close_call(self, call_id: str) -> None:
        """The call ended: an utterance still open on any of its streams is decoded as a final
        (what was heard up to now), then the streams are forgotten. Frames that the media
        fork delivers for the call afterwards are ignored (see :meth:`attach_hub`)."""
        self._call_language.pop(call_id, None)
        self._call_started.pop(call_id, None)
        self._ended[call_id] = None
        while len(self._ended) > 10_000:
            self._ended.pop(next(iter(self._ended)))
        for key in [k for k in self._streams if k[0] == call_id]:
            self.close_stream(*key)
        self._admission.release(call_id)

    def end_call(self, call_id: str) -> None:
        """``CallEnded``: close the call after ``end_grace_s`` (at once without a running
        event loop), so that audio and segments the media fork flushes on the same event are
        still part of the call's last final."""
        grace = self.settings.end_grace_s
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or grace <= 0:
            self.close_call(call_id)
            return
        loop.call_later(grace, self.close_call, call_id)

    def close_all(self) -> None:
        """Close every call (shutdown): open utterances become finals."""
        for call_id in {k[0] for k in self._streams}:
            self.close_call(call_id)

    def set_call_started(self, call_id: str, at: float) -> None:
        """Wall-clock start of a call: published times of its streams opened from the hub are
        then relative to it (``offset_s`` = stream start - call start)."""
        self._call_started[call_id] = at
        while len(self._call_started) > 10_000:
            self._call_started.pop(next(iter(self._call_started)))

    def set_call_language(self, call_id: str, language: str) -> None:
        """Language of a call's streams opened from now on ("en", "zh", ... or "auto")."""
        self._call_language[call_id] = language
        while len(self._call_language) > 10_000:  # bounded even if CallEnded is lost
            self._call_language.pop(next(iter(self._call_language)))

    def attach_hub(self, hub: FrameHub) -> Callable[[], None]:
        """Take frames (with their VAD verdict) and closed segments from the media fork."""
        def on_frame(frame: AudioFrame) -> None:
            if frame.call_id in self._ended:
                return  # a frame flushed after the call was closed
            if (frame.call_id, frame.party) not in self._streams:
                if not self.admit(frame.call_id):
                    return  # over capacity: the call is not transcribed
                # Party stream time -> call time: the stream started (now - timestamp) ago.
                started = self._call_started.get(frame.call_id)
                offset = 0.0 if started is None else max(
                    0.0, time.time() - frame.timestamp - started)
                self.open_stream(frame.call_id, frame.party, offset_s=round(offset, 3),
                                 internal_vad=False)
            self.feed_frame(frame.call_id, frame.party, frame.pcm, frame.rate,
                            frame.timestamp, speech=frame.speech)

        def on_segment(call_id: str, party: Party, seg: Segment) -> None:
            self.segment(call_id, party, seg.start_s, (seg.last_frame + 1) * 0.02)

        unsubs = [hub.subscribe(on_frame), hub.subscribe_segments(on_segment)]

        def detach() -> None:
            for u in unsubs:
                u()
        return detach

    def _on_bus_segment(self, ev: SpeechSegment) -> None:
        self.segment(ev.call_id, ev.party, ev.start_s, ev.end_s)

    # -- scheduling ----------------------------------------------------------------------------

    def _kick(self) -> None:
        if self._wake is not None and self._busy < max(1, self.settings.workers):
            self._wake.set()

    def _enqueue_final(self, st: _StreamState, req: DecodeRequest) -> None:
        if self._pending >= self.settings.max_pending_finals:
            victim = max(self._all_states(), key=lambda s: len(s.finals))
            if victim.finals:
                dropped = victim.finals.popleft()
                self._pending -= 1
                self._counts["dropped_finals"] += 1
                log.debug("ASR overloaded: dropped a %.1f s final of %s/%s",
                          dropped.duration_s, dropped.call_id, dropped.party)
                self._report.dropped(dropped.call_id)
                self._report_overload()
        st.finals.append(req)
        self._pending += 1
        if self._idle is not None:
            self._idle.clear()
        self._kick()

    def _all_states(self) -> list[_StreamState]:
        if self._closing:
            self._closing = [s for s in self._closing if s.finals]
        return [*self._streams.values(), *self._closing]

    def lag_s(self) -> float:
        now = time.monotonic()
        oldest = min((s.finals[0].created for s in self._all_states() if s.finals),
                     default=now)
        return now - oldest

    def _next_job(self) -> tuple[_StreamState, DecodeRequest] | None:
        states = self._all_states()
        # one final per stream at a time, so a party's finals are published in order
        waiting = [s for s in states if s.finals and not s.final_in_flight]
        if waiting:
            self._count_skipped(s for s in self._streams.values() if s.stream.wants_partial())
            st = min(waiting, key=lambda s: (s.served, s.finals[0].created))
            self._clock += 1
            st.served = self._clock
            self._pending -= 1
            lag = time.monotonic() - st.finals[0].created
            self._max_lag = max(self._max_lag, lag)
            if lag > self.settings.overload_lag_s and time.monotonic() - self._lag_warned > 10:
                self._lag_warned = time.monotonic()
                log.warning("ASR lagging: a final waited %.2f s (%d waiting, %d streams)",
                            lag, self._pending, len(self._streams))
            st.final_in_flight = True
            return st, st.finals.popleft()
        workers = max(1, self.settings.workers)
        spare = self._busy == 0 if workers == 1 else self._busy < workers - 1
        due = [s for s in self._streams.values() if s.stream.wants_partial()]
        if not due:
            return None
        if not spare or self.lag_s() > self.settings.overload_lag_s:
            self._count_skipped(due)
            return None
        st = min(due, key=lambda s: s.partial_served)
        req = st.stream.partial_request()
        if req is None:
            return None
        self._clock += 1
        st.partial_served = self._clock
        return st, req

    def _count_skipped(self, due: Iterable[_StreamState]) -> None:
        """Count (once per utterance) partials that were due but yielded to finals/overload."""
        for s in due:
            if s.skipped_utterance != s.stream.utterance:
                s.skipped_utterance = s.stream.utterance
                self._counts["partials_skipped"] += 1

    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        assert self._wake is not None and self._idle is not None
        while True:
            job = self._next_job()
            if job is None:
                if not self._pending and not self._busy:
                    self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            st, req = job
            self._busy += 1
            try:
                result = await loop.run_in_executor(self._pool, self.runner.run, req)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ASR decode failed for %s/%s", req.call_id, req.party)
                result = DecodeResult(req, None, Verdict(False, "", "error"))
            finally:
                self._busy -= 1
            self._deliver(st, result)
            if not self._pending and not self._busy:
                self._idle.set()

    def _deliver(self, st: _StreamState, result: DecodeResult) -> None:
        req = result.request
        self._decode_s += result.worker_s
        if req.final:
            st.final_in_flight = False
            self._counts["final_decodes"] += 1
            self._audio_s += req.duration_s
        else:
            self._counts["partial_decodes"] += 1
        if not result.verdict.accepted:
            reason = result.verdict.reason or "rejected"
            self._filtered[reason] = self._filtered.get(reason, 0) + 1
        hyp = st.stream.on_result(result)
        if req.final:
            self._latencies.append(time.monotonic() - req.created)
        if hyp is None:
            if not st.stream.in_speech:
                self._kick()
            return
        self._counts["finals_published" if hyp.final else "partials_published"] += 1
        if self.on_hypothesis is not None:
            try:
                self.on_hypothesis(hyp)
            except Exception:
                log.exception("ASR hypothesis callback failed")
        if self.bus is not None:
            self.bus.publish(Transcript(
                call_id=hyp.call_id, party=cast(Party, hyp.party), text=hyp.text,
                final=hyp.final, start_s=hyp.start_s, end_s=hyp.end_s,
                language=hyp.language, words=hyp.words,
            ))
        self._kick()

    # -- metrics -------------------------------------------------------------------------------

    def metrics(self) -> AsrMetrics:
        lat = np.array(self._latencies, dtype=np.float64)
        p50 = float(np.percentile(lat, 50)) if len(lat) else 0.0
        p95 = float(np.percentile(lat, 95)) if len(lat) else 0.0
        c = self._counts
        return AsrMetrics(
            streams=len(self._streams), workers=max(1, self.settings.workers),
            busy_workers=self._busy, pending_finals=self._pending, lag_s=self.lag_s(),
            max_lag_s=self._max_lag, final_decodes=c["final_decodes"],
            partial_decodes=c["partial_decodes"], finals_published=c["finals_published"],
            partials_published=c["partials_published"], dropped_finals=c["dropped_finals"],
            partials_skipped=c["partials_skipped"], filtered=dict(self._filtered),
            final_latency_p50_s=p50, final_latency_p95_s=p95, decode_s=self._decode_s,
            audio_s=self._audio_s, max_streams=self._admission.max_streams,
            admitted_calls=self._admission.admitted,
            calls_refused=self._admission.refused_total,
        )


def build_service(settings: Any = None, *, bus: EventBus | None = None,
                  service: ServiceSettings | None = None,
                  on_hypothesis: Callable[[Hypothesis], None] | None = None) -> AsrService:
    """Load the configured Whisper model and return a service on it (blocking: call before
    the event loop is busy, or in an executor)."""
    from earpiece.asr.decoder import WhisperDecoder
    from earpiece.asr.model import load_model
    from earpiece.asr.runner import WhisperRunner
    from earpiece.asr.settings import AsrSettings

    asr: AsrSettings = settings if settings is not None else AsrSettings()
    loaded = load_model(asr)
    svc = service or ServiceSettings(
        workers=loaded.num_workers, language=asr.language,
        max_streams=asr.stream_capacity(loaded.num_workers, loaded.device))
    if svc.max_streams:
        log.info("ASR admits %d calls at once (max_streams %d); later calls are not "
                 "transcribed until one ends", max(1, svc.max_streams // 2), svc.max_streams)
    return AsrService(WhisperRunner(WhisperDecoder(loaded)), bus=bus, settings=svc,
                      on_hypothesis=on_hypothesis)


async def start_asr(bus: EventBus, hub: FrameHub, settings: Any = None, *,
                    stop_drain_s: float = 5.0,
                    on_started: Callable[[AsrService], None] | None = None,
                    ) -> Callable[[], Awaitable[None]]:
    """Wire streaming recognition into a running service; returns an async ``stop``.

    Loads the configured model in a thread (the loop stays free), starts the workers, takes
    every party's frames (with the media VAD's verdicts) and closed segments from ``hub``,
    publishes :class:`~earpiece.events.Transcript` events on ``bus``, and closes a call's
    streams on its :class:`~earpiece.events.CallEnded` (after ``end_grace_s``; an utterance
    still open is decoded as a final). ``stop`` decodes open utterances too, waiting at most
    ``stop_drain_s`` for the finals; ``on_started`` gets the running :class:`AsrService`.
    Word times are relative to the call's :class:`~earpiece.events.CallStarted` (to the
    party's stream start if that was not seen). A call tagged ``language=zh`` (on
    ``CallStarted`` or ``CallTagged``, e.g. from the dialplan hook) is recognised in that
    language instead of the configured one.
    """
    from earpiece.events import CallEnded, CallStarted, CallTagged

    svc = await asyncio.to_thread(build_service, settings, bus=bus)
    await svc.start()
    if on_started is not None:  # e.g. the service's metrics read svc.metrics()
        on_started(svc)
    detach = svc.attach_hub(hub)

    def on_tags(ev: CallStarted | CallTagged) -> None:
        if isinstance(ev, CallStarted):
            svc.set_call_started(ev.call_id, ev.at)
        language = ev.tags.get("language")
        if language:
            svc.set_call_language(ev.call_id, language)

    unsubs = [bus.subscribe(CallEnded, lambda ev: svc.end_call(ev.call_id)),
              bus.subscribe(CallStarted, on_tags), bus.subscribe(CallTagged, on_tags)]

    async def stop() -> None:
        for unsub in unsubs:
            unsub()
        detach()
        svc.close_all()  # what callers said last is still decoded (bounded wait)
        try:
            await asyncio.wait_for(svc.drain(), timeout=stop_drain_s)
        except TimeoutError:
            log.warning("ASR stopped with %d finals undecoded", svc.metrics().pending_finals)
        await svc.stop()

    return stop
