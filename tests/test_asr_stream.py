"""The per-party ASR state machine: VAD gating, finals, bounded partials, local agreement."""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.asr.decoder import DecodedWord, DecodeOutput
from earpiece.asr.filters import Verdict
from earpiece.asr.stream import (
    AsrStream,
    DecodeRequest,
    DecodeResult,
    StreamSettings,
    _Ring,
)

SOUNDS = Path("/usr/share/asterisk/sounds/en")
RATE = 8000


def read(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def silence(s: float) -> npt.NDArray[np.int16]:
    return np.zeros(int(s * RATE), dtype=np.int16)


def feed_all(stream: AsrStream, pcm: npt.NDArray[np.int16], *, chunk: int = 160,
             t0: float = 0.0) -> tuple[list[DecodeRequest], list[DecodeRequest]]:
    """Feed in chunks; return (finals, partials that were due along the way)."""
    finals: list[DecodeRequest] = []
    partials: list[DecodeRequest] = []
    for i in range(0, len(pcm), chunk):
        finals.extend(stream.feed(pcm[i: i + chunk], RATE, t0 + i / RATE))
        p = stream.partial_request()
        if p is not None:
            partials.append(p)
    return finals, partials


def result(req: DecodeRequest, text: str, words: tuple[DecodedWord, ...] = ()) -> DecodeResult:
    out = DecodeOutput(text=text, language="en", language_probability=0.99, no_speech_prob=0.01,
                       avg_logprob=-0.1, compression_ratio=1.0, audio_s=req.duration_s,
                       window_s=4.0, encode_s=0.0, total_s=0.0, words=words)
    return DecodeResult(req, out, Verdict(True, text))


def test_one_final_per_utterance_covering_the_speech() -> None:
    speech = read("vm-review")  # 7.7 s, one utterance with short pauses
    pcm = np.concatenate([silence(1.0), speech, silence(1.0)])
    s = AsrStream("c", "customer", language="en")
    finals, _ = feed_all(s, pcm)
    assert len(finals) == 1
    f = finals[0]
    assert f.final and f.word_timestamps and f.rate == RATE
    assert 0.6 <= f.start_s <= 1.5  # the prompt's own leading silence, less the pre-roll
    assert 1.0 + len(speech) / RATE - 0.6 <= f.end_s <= 1.0 + len(speech) / RATE + 0.3
    assert len(f.audio) == round((f.end_s - f.start_s) * RATE)


def test_silence_and_noise_give_no_request() -> None:
    s = AsrStream("c", "customer", language="en")
    finals, partials = feed_all(s, silence(5.0))
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 30, 5 * RATE).astype(np.int16)  # about -60 dBFS line noise
    f2, p2 = feed_all(s, noise, t0=5.0)
    assert finals == partials == f2 == p2 == []


def test_partials_are_bounded_and_one_in_flight() -> None:
    settings = StreamSettings(min_partial_s=1.5, partial_step_s=1.0)
    s = AsrStream("c", "agent", language="en", settings=settings)
    speech = read("dir-intro")  # 12 s
    pcm = np.concatenate([silence(0.5), speech[: 6 * RATE]])
    finals, partials = feed_all(s, pcm)
    # the first partial only once the utterance is 1.5 s long, then none while it is in flight
    assert len(partials) == 1 and not finals
    assert partials[0].duration_s >= 1.5 and not partials[0].final
    assert not partials[0].word_timestamps
    assert s.partial_request() is None
    assert s.on_result(result(partials[0], "Welcome to")) is not None
    assert s.partial_request() is not None  # >= 1 s of new audio since the last snapshot


def test_local_agreement_commits_common_prefix() -> None:
    s = AsrStream("c", "agent", language="en", settings=StreamSettings(partial_step_s=0.2))
    _, partials = feed_all(s, np.concatenate([silence(0.3), read("dir-intro")[: 3 * RATE]]))
    r1 = partials[-1]
    h1 = s.on_result(result(r1, "Welcome to the direct"))
    assert h1 is not None and h1.committed_words == 0 and h1.text == "Welcome to the direct"
    r2 = _next_partial(s)
    h2 = s.on_result(result(r2, "Welcome to the directory. Please"))
    assert h2 is not None and h2.committed_words == 3
    assert h2.text == "Welcome to the directory. Please"
    r3 = _next_partial(s)
    # a later hypothesis that contradicts committed words does not un-commit them
    h3 = s.on_result(result(r3, "Welcome to a directory. Please enter"))
    assert h3 is not None and h3.text.startswith("Welcome to the")


def _next_partial(s: AsrStream) -> DecodeRequest:
    speech = read("demo-congrats")  # continuous speech
    t = s.now_s
    pos = int(t * RATE) % (len(speech) - 4000)
    for _ in range(200):
        s.feed(speech[pos: pos + 160], RATE, t)
        pos += 160
        t += 0.02
        r = s.partial_request()
        if r is not None:
            return r
    raise AssertionError("no partial became due")


def test_stale_partial_is_discarded_after_final() -> None:
    s = AsrStream("c", "agent", language="en")
    speech = read("vm-review")
    _, partials = feed_all(s, np.concatenate([silence(0.3), speech[: 3 * RATE]]))
    assert partials
    finals, _ = feed_all(s, np.concatenate([speech[3 * RATE:], silence(1.0)]), t0=s.now_s)
    assert len(finals) == 1
    assert s.on_result(result(partials[0], "Press one")) is None  # utterance already final
    hyp = s.on_result(result(finals[0], "Press 1 to accept this recording.",
                             (DecodedWord(word=" Press", start_s=0.1, end_s=0.4,
                                          probability=0.9),)))
    assert hyp is not None and hyp.final and hyp.words[0].start_s == pytest.approx(
        finals[0].start_s + 0.1, abs=1e-3)


def test_long_speech_is_cut_into_bounded_finals() -> None:
    settings = StreamSettings(max_utterance_s=5.0, ring_s=10.0)
    s = AsrStream("c", "agent", language="en", settings=settings)
    speech = np.concatenate([read("demo-congrats")])  # 30 s of continuous reading
    finals, _ = feed_all(s, speech)
    finals += [r for r in [s.end_of_speech()] if r is not None]
    assert len(finals) >= 5
    assert all(f.duration_s <= 5.3 for f in finals)
    # consecutive pieces do not overlap
    for a, b in itertools.pairwise(finals):
        assert b.start_s >= a.end_s - 0.2


def test_external_segmentation_and_offset() -> None:
    s = AsrStream("c", "customer", language="en", internal_vad=False, offset_s=10.0)
    speech = read("hello-world")
    s.feed(silence(1.0), RATE, 0.0, speech=False)
    s.feed(speech, RATE, 1.0, speech=True)
    s.feed(silence(0.5), RATE, 1.0 + len(speech) / RATE, speech=False)
    req = s.segment(0.8, 1.0 + len(speech) / RATE)
    assert req is not None and req.start_s == pytest.approx(0.8, abs=0.01)
    hyp = s.on_result(result(req, "Hello world."))
    assert hyp is not None and hyp.start_s == pytest.approx(10.8, abs=0.01)


def test_auto_language_is_detected_once() -> None:
    s = AsrStream("c", "customer", language="auto")
    finals, _ = feed_all(s, np.concatenate([silence(0.5), read("vm-review"), silence(1.0)]))
    assert finals[0].language is None
    r = result(finals[0], "你好")
    assert r.output is not None
    zh = DecodeResult(finals[0], DecodeOutput(**{**r.output.__dict__, "language": "zh"}),
                      r.verdict)
    s.on_result(zh)
    assert s.language == "zh"


def test_ring_buffer_wraps() -> None:
    ring = _Ring(10)
    ring.write(np.arange(7, dtype=np.int16))
    ring.write(np.arange(7, 14, dtype=np.int16))
    assert ring.read(4, 14).tolist() == list(range(4, 14))
    assert ring.read(0, 6).tolist() == [4, 5]  # older samples are gone
    ring.write(np.arange(100, 125, dtype=np.int16))
    assert ring.read(0, 10_000).tolist() == list(range(115, 125))


def test_rejects_unsupported_rate() -> None:
    s = AsrStream("c", "customer", language="en")
    with pytest.raises(ValueError):
        s.feed(np.zeros(441, dtype=np.int16), 44100, 0.0)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=40))
def test_chunking_does_not_change_the_finals(sizes: list[int]) -> None:
    """However the audio is chopped into frames, the same utterances come out."""
    pcm = np.concatenate([silence(0.4), read("hello-world"), silence(0.8),
                          read("auth-thankyou"), silence(0.8)])
    ref = AsrStream("c", "customer", language="en")
    expected, _ = feed_all(ref, pcm)
    s = AsrStream("c", "customer", language="en")
    got: list[DecodeRequest] = []
    i = k = 0
    while i < len(pcm):
        n = sizes[k % len(sizes)]
        got.extend(s.feed(pcm[i: i + n], RATE, i / RATE))
        i += n
        k += 1
    assert [(r.start_s, r.end_s) for r in got] == [(r.start_s, r.end_s) for r in expected]
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(got, expected, strict=True))
