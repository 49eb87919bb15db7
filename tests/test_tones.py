"""Tone plans, tone bank and cadence matchers on synthetic tones (drift, jitter, G.711)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.cpa.evalset import ulaw_roundtrip
from earpiece.cpa.tones import (
    PLANS,
    WINDOW,
    CadenceMatcher,
    ToneBank,
    TonePlan,
    frequency_sets,
    plans_for,
    synth_tone,
)

BANK = ToneBank(frequency_sets(plans_for("all")))


def _identify(freqs: tuple[float, ...], level: float = -20.0) -> tuple[float, ...] | None:
    x = ulaw_roundtrip(synth_tone(freqs, WINDOW / 8000, level_dbfs=level))
    r = BANK.analyse(x[:WINDOW])
    return BANK.freq_sets[r.tone] if r.tone >= 0 else None


def test_plans_for_selects_countries_and_always_fax() -> None:
    names = {p.name for p in plans_for("us")}
    assert {"us.ringback", "us.busy", "us.congestion", "fax.cng", "fax.ced"} == names
    assert len(plans_for("all")) == sum(len(v) for v in PLANS.values())
    with pytest.raises(ValueError, match="unknown tone plan"):
        plans_for("xx")


def test_plan_validation() -> None:
    with pytest.raises(ValueError):
        TonePlan("bad", "busy", (480.0,), (0.5,))
    with pytest.raises(ValueError):
        TonePlan("bad", "busy", ())


@pytest.mark.parametrize("drift", [-0.015, 0.0, 0.015])
@pytest.mark.parametrize("level", [-10.0, -35.0])
@pytest.mark.parametrize("freqs", sorted({p.freqs for ps in PLANS.values() for p in ps}))
def test_bank_identifies_every_plan_frequency_set(freqs: tuple[float, ...], drift: float,
                                                  level: float) -> None:
    shifted = tuple(f * (1 + drift) for f in freqs)
    assert _identify(shifted, level) == freqs


def test_bank_separates_close_sets() -> None:
    assert _identify((425.0,)) == (425.0,)
    assert _identify((450.0,)) == (450.0,)
    assert _identify((400.0, 450.0)) == (400.0, 450.0)
    assert _identify((440.0, 480.0)) == (440.0, 480.0)


def test_near_miss_speech_like_held_vowel_is_not_a_tone() -> None:
    # a held vowel: 140 Hz voice with many harmonics shaped by formants at 700 and 1200 Hz
    t = np.arange(WINDOW) / 8000
    x = np.zeros(WINDOW)
    for h in range(1, 25):
        f = 140.0 * h
        gain = np.exp(-((f - 700) / 200) ** 2) + 0.6 * np.exp(-((f - 1200) / 250) ** 2) + 0.05
        x += gain * np.sin(2 * np.pi * f * t)
    x *= 3000 / np.sqrt((x**2).mean())
    r = BANK.analyse(x)
    assert r.tone == -1
    assert r.pure_fraction < 0.8


def test_silence_and_noise_are_not_tones() -> None:
    rng = np.random.default_rng(1)
    assert BANK.analyse(np.zeros(WINDOW)).tone == -1
    assert BANK.analyse(rng.normal(0, 2000, WINDOW)).tone == -1


def _run_cadence(plan: TonePlan, cadence: list[float], lead_s: float = 0.3) -> bool:
    m = CadenceMatcher(plan)
    seq = [False] * round(lead_s / 0.02)
    for i, d in enumerate(cadence):
        seq += [i % 2 == 0] * round(d / 0.02)
    return any(m.update(on) for on in seq)


@given(st.lists(st.floats(-0.1, 0.1), min_size=6, max_size=6))
@settings(max_examples=60, deadline=None)
def test_busy_cadence_survives_ten_percent_jitter(jitter: list[float]) -> None:
    busy = next(p for p in PLANS["us"] if p.label == "busy")
    assert _run_cadence(busy, [0.5 * (1 + j) for j in jitter])


def test_busy_and_congestion_cadences_are_told_apart() -> None:
    busy = next(p for p in PLANS["us"] if p.label == "busy")
    cong = next(p for p in PLANS["us"] if p.label == "congestion")
    assert _run_cadence(busy, [0.5] * 6) and not _run_cadence(cong, [0.5] * 6)
    assert _run_cadence(cong, [0.25] * 8) and not _run_cadence(busy, [0.25] * 8)


def test_one_long_tone_is_not_a_cadence() -> None:
    busy = next(p for p in PLANS["us"] if p.label == "busy")
    assert not _run_cadence(busy, [3.0, 1.0])


def test_ringback_needs_its_pause_and_ignores_truncated_first_tone() -> None:
    ring = next(p for p in PLANS["us"] if p.label == "ringback")
    assert _run_cadence(ring, [2.0, 1.2])
    assert not _run_cadence(ring, [2.0, 0.5])
    m = CadenceMatcher(ring)  # stream starts inside a tone: that run's length is unknown
    assert not any(m.update(on) for on in [True] * 100 + [False] * 60)


def test_single_frame_glitch_is_merged() -> None:
    busy = next(p for p in PLANS["us"] if p.label == "busy")
    m = CadenceMatcher(busy)
    seq = [False] * 10 + [True] * 25 + [False] * 12 + [True] + [False] * 12 + [True] * 25
    assert any(m.update(on) for on in seq)

