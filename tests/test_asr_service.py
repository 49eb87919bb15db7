"""ASR scheduling with a fake decoder: finals first, fairness, overload, bounds, bus events."""

from __future__ import annotations

import asyncio
import threading
import time
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from earpiece.asr.decoder import DecodedWord, DecodeOutput
from earpiece.asr.filters import Verdict
from earpiece.asr.service import AsrService, ServiceSettings
from earpiece.asr.stream import DecodeRequest, DecodeResult, StreamSettings
from earpiece.bus import EventBus
from earpiece.events import Transcript

SOUNDS = Path("/usr/share/asterisk/sounds/en")
RATE = 8000


def read(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


class FakeRunner:
    """Sleeps ``delay`` seconds in the worker thread; records what it ran, in order."""

    def __init__(self, delay: float = 0.05, gate: threading.Event | None = None) -> None:
        self.delay = delay
        self.gate = gate
        self.ran: list[DecodeRequest] = []
        self.concurrent = 0
        self.max_concurrent = 0
        self.partials = 0
        self.max_partials = 0
        self._lock = threading.Lock()

    def run(self, request: DecodeRequest) -> DecodeResult:
        with self._lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            self.partials += not request.final
            self.max_partials = max(self.max_partials, self.partials)
            self.ran.append(request)
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.delay)
        with self._lock:
            self.concurrent -= 1
            self.partials -= not request.final
        text = f"{request.call_id} {'final' if request.final else 'partial'} {request.utterance}"
        out = DecodeOutput(text=text, language="en", language_probability=1.0,
                           no_speech_prob=0.01, avg_logprob=-0.1, compression_ratio=1.0,
                           audio_s=request.duration_s, window_s=4.0, encode_s=0.0,
                           total_s=self.delay,
                           words=(DecodedWord(word=" x", start_s=0.1, end_s=0.3,
                                              probability=0.9),) if request.final else ())
        return DecodeResult(request, out, Verdict(True, text), self.delay)


def utterance(seconds: float) -> npt.NDArray[np.int16]:
    speech = read("demo-congrats")
    return speech[int(0.6 * RATE): int((0.6 + seconds) * RATE)]


def segment(svc: AsrService, call: str, seconds: float, t0: float = 0.0) -> None:
    svc.submit_segment(call, "customer", utterance(seconds), RATE, t0, t0 + seconds, final=True)


async def test_bus_gets_final_transcripts_with_offset_words() -> None:
    bus = EventBus()
    q = bus.queue(Transcript)
    runner = FakeRunner()
    svc = AsrService(runner, bus=bus, settings=ServiceSettings(workers=2))
    await svc.start()
    try:
        svc.open_stream("call-1", "agent", offset_s=2.0, internal_vad=False)
        svc.submit_segment("call-1", "agent", utterance(1.0), RATE, 5.0, 6.0, final=True)
        await svc.drain()
        ev = q.get_nowait()
        assert ev.final and ev.party == "agent" and ev.call_id == "call-1"
        assert ev.start_s == 7.0 and ev.words[0].start_s == 7.1
    finally:
        await svc.stop()


async def test_finals_before_partials_and_fair_round_robin() -> None:
    gate = threading.Event()
    runner = FakeRunner(delay=0.0, gate=gate)
    svc = AsrService(runner, settings=ServiceSettings(workers=1))
    await svc.start()
    try:
        segment(svc, "a", 1.0)  # occupies the only worker until the gate opens
        await asyncio.sleep(0.05)
        for i in range(3):
            segment(svc, "a", 1.0, t0=2.0 + 2 * i)
        segment(svc, "b", 1.0)
        segment(svc, "c", 1.0)
        # a long utterance in progress on call "p": a partial is due
        svc.submit_segment("p", "customer", utterance(3.0), RATE, 0.0, 3.0, final=False)
        gate.set()
        await svc.drain()
        order = [(r.call_id, r.final) for r in runner.ran]
        finals = [c for c, f in order if f]
        assert finals[0] == "a"
        # after the first "a", calls b and c are served before a's backlog
        assert finals[1:3] == ["b", "c"] and finals[3:] == ["a", "a", "a"]
        # the partial ran only after every final
        assert order.index(("p", False)) == len(order) - 1
    finally:
        await svc.stop()


async def test_partials_leave_a_worker_for_finals() -> None:
    runner = FakeRunner(delay=0.2)
    svc = AsrService(runner, settings=ServiceSettings(workers=2))
    await svc.start()
    try:
        for call in ("a", "b", "c"):
            svc.submit_segment(call, "customer", utterance(3.0), RATE, 0.0, 3.0, final=False)
        await asyncio.sleep(0.05)
        assert runner.concurrent == 1  # only workers - 1 decode partials
        segment(svc, "d", 1.0)
        await asyncio.sleep(0.05)
        assert runner.ran[-1].call_id == "d" and runner.ran[-1].final
        await svc.drain()
        assert svc.metrics().partials_skipped >= 1
    finally:
        await svc.stop()


async def test_overload_drops_partials_then_oldest_finals_and_stays_bounded() -> None:
    runner = FakeRunner(delay=0.02)
    settings = ServiceSettings(workers=1, max_pending_finals=5, overload_lag_s=0.01)
    svc = AsrService(runner, settings=settings)
    await svc.start()
    try:
        for i in range(3):
            svc.submit_segment(f"p{i}", "customer", utterance(3.0), RATE, 0.0, 3.0, final=False)
        for i in range(20):
            segment(svc, f"c{i % 4}", 0.5, t0=float(i))
        m = svc.metrics()
        assert m.pending_finals <= 5 and m.dropped_finals >= 14
        assert m.lag_s >= 0.0
        await svc.drain()
        m = svc.metrics()
        assert m.partial_decodes == 0 or runner.ran[-1].final is False
        assert m.partials_skipped >= 1
        assert m.final_decodes + m.dropped_finals == 20
        assert m.finals_published == m.final_decodes
        assert m.max_lag_s > 0.0
    finally:
        await svc.stop()


async def test_partials_run_and_respect_one_in_flight() -> None:
    runner = FakeRunner(delay=0.05)
    got = []
    settings = ServiceSettings(workers=2, stream=StreamSettings(partial_step_s=0.2))
    svc = AsrService(runner, settings=settings, on_hypothesis=got.append)
    await svc.start()
    try:
        speech = utterance(4.0)
        for i in range(0, len(speech), 160):
            svc.feed_frame("x", "customer", speech[i: i + 160], RATE, i / RATE, speech=True)
            await asyncio.sleep(0.003)
        svc.end_of_speech("x", "customer")
        await svc.drain()
        partial_reqs = [r for r in runner.ran if not r.final]
        assert len(partial_reqs) >= 2
        assert runner.max_partials == 1  # one stream: never two of its partials at once
        assert got[-1].final and any(not h.final for h in got)
    finally:
        await svc.stop()


async def test_memory_bounded_for_a_long_call() -> None:
    runner = FakeRunner(delay=0.0)
    svc = AsrService(runner, settings=ServiceSettings(workers=1))
    await svc.start()
    try:
        stream = svc.open_stream("long", "customer")
        speech = read("vm-review")
        pcm = np.concatenate([np.zeros(RATE, dtype=np.int16), speech])
        t = 0.0
        for _ in range(12):  # ~2 minutes of audio
            for i in range(0, len(pcm), 160):
                svc.feed_frame("long", "customer", pcm[i: i + 160], RATE, t)
                t += 0.02
            await asyncio.sleep(0)
        await svc.drain()
        ring = stream._ring
        assert ring is not None and ring.buf.nbytes <= 40 * RATE * 2
        assert svc.metrics().final_decodes >= 12
        svc.close_call("long")
        assert svc.metrics().streams == 0
    finally:
        await svc.stop()


async def test_decoder_errors_are_counted_not_fatal() -> None:
    class Broken(FakeRunner):
        def run(self, request: DecodeRequest) -> DecodeResult:
            raise RuntimeError("boom")

    svc = AsrService(Broken(), settings=ServiceSettings(workers=1))
    await svc.start()
    try:
        segment(svc, "e", 1.0)
        await svc.drain()
        assert svc.metrics().filtered == {"error": 1}
        segment(svc, "e", 1.0, t0=3.0)
        await svc.drain()
        assert svc.metrics().final_decodes == 2
    finally:
        await svc.stop()


async def test_idle_streams_are_closed() -> None:
    now = [0.0]
    runner = FakeRunner(delay=0.0)
    svc = AsrService(runner, settings=ServiceSettings(workers=1, idle_close_s=60.0),
                     clock=lambda: now[0])
    await svc.start()
    try:
        speech = utterance(1.0)
        svc.feed_frame("gone", "customer", speech[:160], RATE, 0.0)
        svc.feed_frame("alive", "customer", speech[:160], RATE, 0.0)
        now[0] = 50.0
        svc.feed_frame("alive", "customer", speech[160:320], RATE, 0.02)
        assert svc.sweep_idle() == 0
        now[0] = 70.0
        assert svc.sweep_idle() == 1
        assert svc.metrics().streams == 1
    finally:
        await svc.stop()


async def test_language_per_call() -> None:
    runner = FakeRunner(delay=0.0)
    svc = AsrService(runner, settings=ServiceSettings(workers=1, language="en"))
    await svc.start()
    try:
        svc.set_call_language("cn-call", "zh")
        segment(svc, "cn-call", 1.0)
        segment(svc, "en-call", 1.0)
        await svc.drain()
        langs = {r.call_id: r.language for r in runner.ran}
        assert langs == {"cn-call": "zh", "en-call": "en"}
        svc.close_call("cn-call")
        assert "cn-call" not in svc._call_language
    finally:
        await svc.stop()


async def test_call_ended_mid_utterance_decodes_what_was_heard() -> None:
    """Internal VAD: the caller is still talking when the call ends; closing the call turns
    the open utterance into a final covering the audio up to the end."""
    bus = EventBus()
    q = bus.queue(Transcript)
    runner = FakeRunner(delay=0.0)
    svc = AsrService(runner, bus=bus, settings=ServiceSettings(workers=1))
    await svc.start()
    try:
        speech = read("demo-congrats")[: int(1.6 * RATE)]  # cut mid-sentence
        pcm = np.concatenate([np.zeros(RATE // 2, np.int16), speech])
        for i in range(0, len(pcm) - 159, 160):
            svc.feed_frame("hangup", "customer", pcm[i: i + 160], RATE, i / RATE)
        assert runner.ran == [] or not any(r.final for r in runner.ran)
        svc.close_call("hangup")
        await svc.drain()
        finals = [r for r in runner.ran if r.final]
        assert len(finals) == 1
        assert finals[0].start_s <= 1.0 and finals[0].end_s >= len(pcm) / RATE - 0.03
        ev = q.get_nowait()
        assert ev.final and ev.call_id == "hangup"
        assert svc.metrics().streams == 0
    finally:
        await svc.stop()


async def test_call_ended_event_keeps_the_media_flush_in_the_last_final() -> None:
    """Hub path, in the order a live call produces it: CallEnded, then the media fork drains
    the party's jitter buffer and closes its VAD segment. The flushed tail belongs to the
    call's last final (one final, up to the last packet); frames after the close are dropped
    and open no new stream."""
    from earpiece.media.frames import FrameHub, PartyStream
    from earpiece.media.g711 import encode_ulaw

    bus = EventBus()
    hub = FrameHub(bus=bus)
    runner = FakeRunner(delay=0.0)
    svc = AsrService(runner, bus=bus, settings=ServiceSettings(workers=1, end_grace_s=0.2))
    await svc.start()
    detach = svc.attach_hub(hub)
    try:
        stream = PartyStream("c1", "customer", "ulaw", hub, clock=lambda: 0.0)
        pcm = np.concatenate([np.zeros(RATE // 2, np.int16),
                              read("demo-congrats")[: int(1.6 * RATE)]])
        payload = encode_ulaw(pcm)
        packets = len(payload) // 160
        for seq in range(packets):
            if seq != packets - 3:  # lost: the jitter buffer holds the last two packets
                stream.on_rtp(seq, payload[seq * 160: (seq + 1) * 160], 0.0)
        svc.end_call("c1")  # CallEnded: not closed yet
        assert svc.metrics().streams == 1
        stream.close()  # the fork's flush, after CallEnded
        await asyncio.sleep(0.3)
        await svc.drain()
        finals = [r for r in runner.ran if r.final]
        assert len(finals) == 1, [(r.start_s, r.end_s) for r in finals]
        assert finals[0].end_s >= packets * 0.02 - 0.01  # the held packets are in it
        assert svc.metrics().streams == 0
        late = PartyStream("c1", "customer", "ulaw", hub, clock=lambda: 0.0)
        for seq in range(10):
            late.on_rtp(seq, payload[-1600:][seq * 160: (seq + 1) * 160], 0.0)
        late.close()
        assert svc.metrics().streams == 0
    finally:
        detach()
        await svc.stop()
