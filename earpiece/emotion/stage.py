"""The live emotion stage: per-party audio and final transcripts -> emotion events.

Inputs: the media fork's :class:`~earpiece.media.frames.FrameHub` (8 kHz frames of each party
are kept in a bounded per-party ring; a closed VAD segment cuts its audio out and its voice
parameters are computed on a worker thread) and final :class:`~earpiece.events.Transcript`
events from the bus (each is scored with the text model on a worker thread, then fused with
the voice of the segments it overlaps). Without speech recognition the segments alone are
scored (voice only). Outputs: :class:`~earpiece.events.EmotionScored` per utterance and
:class:`~earpiece.events.EmotionChanged` when a party's smoothed state changes. The event
loop only appends frames and hands work to the executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from earpiece.bus import EventBus
from earpiece.emotion.fusion import CallIndex, fuse
from earpiece.emotion.loader import load_model
from earpiece.emotion.models import VoiceInput, VoiceModel, VoiceResult
from earpiece.emotion.settings import EmotionSettings
from earpiece.emotion.text import TextScore, default_text_model, language_of
from earpiece.emotion.voice import RATE, SpeakerBaseline, voice_features
from earpiece.events import CallEnded, EmotionChanged, EmotionScored, Party, Transcript

if TYPE_CHECKING:
    from earpiece.media.frames import AudioFrame, FrameHub
    from earpiece.media.vad import Segment

log = logging.getLogger(__name__)
RING_S = 30.0
FRAME_S = 0.02


@dataclass
class _Party:
    frames: deque[tuple[int, Any]] = field(
        default_factory=lambda: deque(maxlen=int(RING_S / FRAME_S)))
    baseline: SpeakerBaseline = field(default_factory=SpeakerBaseline)
    index: CallIndex | None = None
    voices: deque[tuple[float, float, asyncio.Future[VoiceResult]]] = field(
        default_factory=lambda: deque(maxlen=64))


class EmotionStage:
    def __init__(self, bus: EventBus, settings: EmotionSettings | None = None, *,
                 model: VoiceModel | None = None, voice_only: bool = False) -> None:
        self.bus = bus
        self.settings = settings or EmotionSettings()
        s = self.settings
        self.model = model or load_model(s.model, s.model_path)
        self.voice_only = voice_only
        self._pool = ThreadPoolExecutor(s.workers, thread_name_prefix="emotion")
        self._parties: dict[tuple[str, str], _Party] = {}
        self._queue: asyncio.Queue[Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._warm: asyncio.Task[None] | None = None
        self._unsub: list[Callable[[], None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.scored = 0
        self.errors = 0

    # -- wiring ------------------------------------------------------------------------------
    async def start(self, hub: FrameHub | None = None) -> None:
        """Subscribe to ``hub`` and the bus at once and return; the text models are trained /
        loaded on a worker meanwhile (:meth:`wait_ready`), and transcripts published before
        they are ready wait in the stage's bus queue. Returning at once matters: the service
        starts speech recognition after this stage, and a warm-up of seconds here would keep
        the calls already under way from being transcribed (#15: the lost agent transcript).
        """
        self._queue = self.bus.queue(Transcript)
        self._unsub.append(self.bus.subscribe(CallEnded, self._on_call_ended))
        if hub is not None:
            self._unsub.append(hub.subscribe(self.on_frame, rate=RATE))
            self._unsub.append(hub.subscribe_segments(self.on_segment))
        self._warm = asyncio.create_task(self._warm_up(), name="emotion-warm-up")
        self._task = asyncio.create_task(self._run(), name="emotion")

    async def _warm_up(self) -> None:
        """Train / load the text models off the loop before the first transcript needs them."""
        loop = asyncio.get_running_loop()
        try:
            for lang in ("en", "zh"):
                await loop.run_in_executor(self._pool, self._text_model, lang)
        except Exception:
            self.errors += 1
            log.exception("emotion: text models could not be prepared")

    async def wait_ready(self) -> None:
        """Wait until the text models are prepared (or failed: see the log)."""
        if self._warm is not None:
            await asyncio.shield(self._warm)

    async def stop(self) -> None:
        for u in self._unsub:
            u()
        self._unsub.clear()
        if self._queue is not None:
            self.bus.unsubscribe_queue(self._queue)
        for task in (self._task, self._warm):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _text_model(self, lang: str) -> Any:
        s = self.settings
        return default_text_model(lang, tuple(s.negative_phrases), tuple(s.positive_phrases))

    def _party(self, call_id: str, party: str) -> _Party:
        st = self._parties.get((call_id, party))
        if st is None:
            st = self._parties[(call_id, party)] = _Party(index=CallIndex(self.settings))
        return st

    def _on_call_ended(self, ev: CallEnded) -> None:
        for key in [k for k in self._parties if k[0] == ev.call_id]:
            del self._parties[key]

    # -- audio (called on the loop by the frame hub: cheap) ----------------------------------
    def on_frame(self, frame: AudioFrame) -> None:
        self._party(frame.call_id, frame.party).frames.append((frame.index, frame.pcm))

    def on_segment(self, call_id: str, party: Party, seg: Segment) -> None:
        self.submit_audio(call_id, party, seg.start_s, seg.end_s)

    def submit_audio(self, call_id: str, party: str, start_s: float, end_s: float,
                     pcm: Any = None) -> asyncio.Future[VoiceResult]:
        """Voice parameters of ``[start_s, end_s]`` (from the ring, or ``pcm``) on a worker."""
        st = self._party(call_id, party)
        if pcm is None:
            lo, hi = int(start_s / FRAME_S), int(np.ceil(end_s / FRAME_S))
            chunks = [p for i, p in st.frames if lo <= i < hi]
            pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[VoiceResult] = loop.run_in_executor(
            self._pool, self._voice, st.baseline, np.asarray(pcm))
        st.voices.append((start_s, end_s, fut))
        if self.voice_only:
            task = loop.create_task(self._score_voice_only(call_id, party, start_s, end_s, fut))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return fut

    def _voice(self, baseline: SpeakerBaseline, pcm: Any) -> VoiceResult:
        feats = voice_features(pcm, RATE)
        z = baseline.observe(feats)
        x = pcm.astype(np.float64) / 32768.0 if pcm.dtype == np.int16 else pcm
        return self.model.predict(VoiceInput(feats, z, x))

    async def _score_voice_only(self, call_id: str, party: str, start_s: float, end_s: float,
                                fut: asyncio.Future[VoiceResult]) -> None:
        try:
            voice = await fut
        except Exception:
            self.errors += 1
            log.exception("emotion: voice features failed")
            return
        self._publish(call_id, party, start_s, end_s, "", None, voice)

    # -- transcripts -------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._queue is not None
        await self.wait_ready()  # transcripts wait in the queue meanwhile
        while True:
            ev = await self._queue.get()
            if not ev.final or not ev.text.strip():
                continue
            try:
                await self.score_transcript(ev)
            except Exception:
                self.errors += 1
                log.exception("emotion scoring failed for call %s", ev.call_id)

    async def score_transcript(self, ev: Transcript) -> EmotionScored:
        loop = asyncio.get_running_loop()
        hint = ev.language if self.settings.language == "auto" else self.settings.language
        lang = language_of(ev.text, hint)
        text: TextScore = await loop.run_in_executor(
            self._pool, lambda: self._text_model(lang).score(ev.text))
        st = self._party(ev.call_id, ev.party)
        voice = None
        overlapping = [f for a, b, f in st.voices if a < ev.end_s + 0.3 and b > ev.start_s - 0.3]
        results = []
        for f in overlapping:
            with contextlib.suppress(Exception):
                results.append(await asyncio.wait_for(asyncio.shield(f), 2.0))
        if results:
            voice = VoiceResult(float(np.mean([r.arousal for r in results])))
        return self._publish(ev.call_id, ev.party, ev.start_s, ev.end_s, ev.text, text, voice)

    def _publish(self, call_id: str, party: str, start_s: float, end_s: float, text: str,
                 tscore: TextScore | None, voice: VoiceResult | None) -> EmotionScored:
        valence = tscore.valence if tscore is not None else (
            voice.valence if voice is not None else None)
        fused = fuse(valence, voice.arousal if voice is not None else None,
                     tscore.confidence if tscore is not None else None,
                     arousal_weight=self.settings.arousal_weight)
        st = self._party(call_id, party)
        assert st.index is not None
        old = st.index.state
        changed = st.index.update(fused.score)
        p: Party = "agent" if party == "agent" else "customer"
        scored = EmotionScored(
            call_id=call_id, party=p, label=fused.label, valence=fused.score,
            arousal=voice.arousal if voice is not None else None, confidence=fused.confidence,
            start_s=start_s, end_s=end_s, text=text, index=st.index.index, state=st.index.state)
        self.scored += 1
        self.bus.publish(scored)
        if changed is not None:
            self.bus.publish(EmotionChanged(call_id=call_id, party=p, old=old, new=changed,
                                            index=st.index.index,
                                            utterance=st.index.utterances))
        return scored
