"""ASR under overload: admission control keeps whole calls, drops are summarised, not logged
one by one (issue #16, defect 5). A fake runner and an injected clock: no model, no timing."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.asr.admission import Admission
from earpiece.asr.decoder import DecodeOutput
from earpiece.asr.filters import Verdict
from earpiece.asr.service import AsrService, ServiceSettings
from earpiece.asr.settings import STREAMS_PER_WORKER, AsrSettings
from earpiece.asr.stream import DecodeRequest, DecodeResult
from earpiece.bus import EventBus
from earpiece.config import load_settings
from earpiece.errors import ConfigError
from earpiece.events import AsrSkipped, Transcript
from earpiece.logs import CallIdFilter

RATE = 8000
LOGGER = "earpiece.asr.service"


class Runner:
    """Decodes instantly (in the worker thread); records what it ran."""

    def __init__(self) -> None:
        self.ran: list[DecodeRequest] = []
        self._lock = threading.Lock()

    def run(self, request: DecodeRequest) -> DecodeResult:
        with self._lock:
            self.ran.append(request)
        text = f"{request.call_id} {request.party} {request.utterance}"
        out = DecodeOutput(text=text, language="en", language_probability=1.0,
                           no_speech_prob=0.01, avg_logprob=-0.1, compression_ratio=1.0,
                           audio_s=request.duration_s, window_s=4.0, encode_s=0.0,
                           total_s=0.0)
        return DecodeResult(request, out, Verdict(True, text), 0.0)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def noise(seconds: float) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(0)
    return rng.normal(0, 3000, int(seconds * RATE)).astype(np.int16)


AUDIO = noise(1.0)


def say(svc: AsrService, call: str, party: str, i: int) -> None:
    """One complete 1 s utterance of ``party`` (the i-th of the call)."""
    t0 = 2.0 * i
    svc.submit_segment(call, party, AUDIO, RATE, t0, t0 + 1.0, final=True)


def overload_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == LOGGER and r.levelno >= logging.WARNING
            and r.getMessage().startswith("ASR overloaded")]


def dropped_in(messages: list[str]) -> int:
    return sum(int(m.group(1)) for msg in messages
               if (m := re.search(r"dropped (\d+) finals?", msg)))


async def test_capacity_keeps_the_first_calls_whole_and_refuses_the_rest_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    caplog.handler.addFilter(CallIdFilter())
    bus = EventBus()
    finals = bus.queue(Transcript)
    skipped = bus.queue(AsrSkipped)
    runner = Runner()
    # capacity 4 streams = 2 calls; 10 calls x 2 parties = 20 streams offered
    svc = AsrService(runner, bus=bus, settings=ServiceSettings(workers=1, max_streams=4))
    await svc.start()
    try:
        calls = [f"c{i}" for i in range(10)]
        for i in range(5):  # five utterances per party, interleaved across every call
            for call in calls:
                say(svc, call, "customer", i)
                say(svc, call, "agent", i)
        await svc.drain()
        published: list[Transcript] = []
        while not finals.empty():
            published.append(finals.get_nowait())
        # the first two calls keep every final of both parties; the rest are not transcribed
        assert {(t.call_id, t.party) for t in published} == {
            (c, p) for c in ("c0", "c1") for p in ("customer", "agent")}
        assert len(published) == 2 * 2 * 5 and all(t.final for t in published)
        assert {r.call_id for r in runner.ran} == {"c0", "c1"}
        m = svc.metrics()
        assert (m.dropped_finals, m.calls_refused, m.admitted_calls, m.max_streams) == \
            (0, 8, 2, 4)
        assert m.streams == 4
        # each refused call is reported once: one event, one INFO line with its call id
        events = [skipped.get_nowait() for _ in range(skipped.qsize())]
        assert sorted(e.call_id for e in events) == sorted(calls[2:])
        assert {e.reason for e in events} == {"capacity"}
        refusals = [r for r in caplog.records if "is not transcribed" in r.getMessage()]
        assert sorted(r.call_id for r in refusals) == sorted(calls[2:])  # type: ignore[attr-defined]
        assert all(r.levelno == logging.INFO for r in refusals)
        # one WARNING summary for the eight refusals (the first one at once)
        summaries = overload_warnings(caplog)
        assert len(summaries) == 1 and "refused 1 new call" in summaries[0]

        # a call that ends frees its slot: the next new call is transcribed; c2 stays out
        svc.close_call("c0")
        assert svc.metrics().admitted_calls == 1
        say(svc, "c2", "customer", 9)
        say(svc, "new", "customer", 0)
        say(svc, "c3", "customer", 9)  # refused before: no second report
        await svc.drain()
        late = [finals.get_nowait() for _ in range(finals.qsize())]
        assert [(t.call_id, t.final) for t in late] == [("new", True)]
        m = svc.metrics()
        assert (m.admitted_calls, m.calls_refused) == (2, 8)
        assert skipped.empty()
    finally:
        await svc.stop()


def test_frames_of_a_refused_call_open_no_stream() -> None:
    svc = AsrService(Runner(), settings=ServiceSettings(max_streams=2))
    frame = AUDIO[:160]
    svc.feed_frame("a", "customer", frame, RATE, 0.0, speech=True)
    svc.feed_frame("a", "agent", frame, RATE, 0.0, speech=True)  # the admitted call's 2nd party
    svc.feed_frame("b", "customer", frame, RATE, 0.0, speech=True)
    m = svc.metrics()
    assert (m.streams, m.admitted_calls, m.calls_refused) == (2, 1, 1)
    svc.close_call("a")
    svc.feed_frame("c", "customer", frame, RATE, 0.0, speech=True)
    assert svc.metrics().admitted_calls == 1 and svc.metrics().streams == 1


async def test_hundreds_of_drops_give_a_bounded_number_of_warnings(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = Clock()
    # no admission limit, a tiny queue and no worker running: every final past 4 is a drop
    svc = AsrService(Runner(), settings=ServiceSettings(workers=1, max_pending_finals=4),
                     clock=clock)
    for i in range(10):
        for c in range(30):
            say(svc, f"c{c}", "customer", i)
    assert svc.metrics().dropped_finals == 296
    first = overload_warnings(caplog)
    assert len(first) == 1  # at once, then nothing for 10 s
    assert "dropped 1 final of 1 call in the last 10 s" in first[0]
    clock.t += 5.0
    for c in range(30):
        say(svc, f"c{c}", "customer", 10)
    assert len(overload_warnings(caplog)) == 1
    clock.t += 5.0  # 10 s after the first summary: the next drop reports the lot
    for c in range(30):
        say(svc, f"c{c}", "customer", 11)
    summaries = overload_warnings(caplog)
    assert len(summaries) == 2
    assert re.search(r"dropped \d+ finals of 30 calls in the last 10 s", summaries[1])
    await svc.stop()  # what is left is reported on stop
    summaries = overload_warnings(caplog)
    m = svc.metrics()
    assert m.dropped_finals == 356 and len(summaries) == 3
    assert dropped_in(summaries) == m.dropped_finals  # every drop is in some summary
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) <= 4  # (+ at most one rate-limited "ASR lagging")
    assert sum("dropped a" in r.getMessage() for r in caplog.records
               if r.levelno == logging.DEBUG) == 356


def test_summaries_resume_after_a_quiet_spell(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    clock = Clock()
    svc = AsrService(Runner(), settings=ServiceSettings(max_pending_finals=1), clock=clock)
    say(svc, "a", "customer", 0)
    say(svc, "a", "customer", 1)  # drop 1: reported at once
    clock.t += 60.0
    say(svc, "a", "customer", 2)  # drop 2, a minute later: reported at once too
    assert len(overload_warnings(caplog)) == 2
    assert "in the last 60 s" in overload_warnings(caplog)[1]


def test_admission_counts_two_streams_per_call() -> None:
    adm = Admission(5)
    assert adm.max_calls == 2
    assert [adm.decide(c) for c in ("a", "b", "c", "c", "a")] == [
        "admitted", "admitted", "refused_now", "refused", "admitted"]
    adm.release("a")
    assert adm.decide("d") == "admitted" and adm.decide("c") == "refused"
    assert adm.refused_total == 1
    unlimited = Admission(0)
    assert all(unlimited.decide(str(i)) == "admitted" for i in range(1000))


def test_max_streams_setting(tmp_path: Path) -> None:
    assert AsrSettings().stream_capacity(2) == 2 * STREAMS_PER_WORKER == 12
    assert AsrSettings().stream_capacity(4) == 24
    assert AsrSettings().stream_capacity(2, "cuda") == 0
    assert AsrSettings(max_streams=0).stream_capacity(2) == 0
    assert AsrSettings(max_streams=7).stream_capacity(2, "cuda") == 7
    for bad in (1, -1):
        with pytest.raises(ConfigError) as info:
            AsrSettings(max_streams=bad)
        assert info.value.key == "max_streams"
    path = tmp_path / "e.toml"
    path.write_text("[asr]\nmax_streams = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.key == "asr.max_streams" and str(path) in str(info.value)
    path.write_text("[asr]\nmax_streams = 20\n")
    assert load_settings(path, {}).asr.max_streams == 20
