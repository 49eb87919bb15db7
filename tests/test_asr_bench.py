"""``earpiece bench asr`` building blocks: the real prompt set, G.711, speech bounds, tracks."""

from __future__ import annotations

import argparse

import numpy as np

from earpiece.asr.metrics import normalize_en
from earpiece.bench import asr as bench_asr


def test_at_least_100_real_prompts_with_words() -> None:
    prompts = bench_asr.load_prompts(120)
    assert len(prompts) == 120
    assert len({p.name for p in prompts}) == 120
    for p in prompts:
        assert normalize_en(p.text), p
        assert 0.25 <= p.duration_s <= 28.0
        assert p.pcm.dtype == np.int16


def test_g711_round_trip_is_lossy_but_close() -> None:
    x = (np.sin(np.arange(8000) / 5) * 10000).astype(np.int16)
    y = bench_asr.g711_round_trip(x)
    assert not np.array_equal(x, y)
    err = np.abs(x.astype(int) - y.astype(int))
    assert err.max() <= 400 and err.mean() < 150


def test_speech_bounds() -> None:
    speech = bench_asr.read_wav_8k(bench_asr.SOUNDS / "hello-world.wav")
    pcm = np.concatenate([np.zeros(8000, np.int16), speech, np.zeros(4000, np.int16)])
    start, end = bench_asr.speech_bounds(pcm)
    assert 1.0 <= start <= 1.3
    assert 1.0 + len(speech) / 8000 - 0.4 <= end <= 1.0 + len(speech) / 8000


def test_duty_cycle_track() -> None:
    prompts = [p for p in bench_asr.load_prompts(30) if p.duration_s <= 8]
    track = bench_asr.build_track(prompts, duty=0.4, gap_s=0.0, lead_s=0.5, seconds=30.0)
    voiced = np.abs(track.pcm.astype(np.int32)) > 300
    share = voiced.mean()
    assert 0.15 <= share <= 0.45  # 40 % speech time; pauses inside prompts count as silence
    assert len(track.speech_ends) >= 3
    assert all(b > a for a, b in zip(track.speech_ends, track.speech_ends[1:], strict=False))


def test_cli_options() -> None:
    parser = argparse.ArgumentParser()
    bench_asr.configure(parser)
    args = parser.parse_args(["--json", "--quick", "--prompts", "100", "--streams-max", "6"])
    assert args.json and args.quick and args.prompts == 100 and args.streams_max == 6
    args = parser.parse_args(["--short-min-window-s", "8", "--short-audio-s", "2.5",
                              "--preroll-s", "0.3", "--short-prompts", "60",
                              "--skip", "short"])
    assert (args.short_min_window_s, args.short_audio_s, args.preroll_s) == (8.0, 2.5, 0.3)
    assert args.short_prompts == 60 and args.skip == "short"


def test_short_utterance_set_is_real_short_and_reproducible() -> None:
    prompts = bench_asr.load_short_prompts(80)
    assert len(prompts) == 80 and len({p.name for p in prompts}) == 80
    names = [p.name for p in prompts]
    assert names[:4] == list(bench_asr.GREETINGS)  # hello, hello-world, goodbye, vm-goodbye
    assert any(n.startswith("digits/") for n in names)
    assert any(n.startswith(("letters/", "phonetic/")) for n in names)
    for p in prompts:
        assert 0.25 <= p.duration_s <= 1.5
        assert normalize_en(p.text) and "..." not in p.text and "<" not in p.text
    assert [p.name for p in bench_asr.load_short_prompts(80)] == names
    assert not {p.name for p in bench_asr.load_prompts(120)} >= set(names)
