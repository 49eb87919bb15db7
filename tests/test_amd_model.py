"""The learned AMD scorer: fitting, the model file, and the trainer's replay of the detector."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.cpa.amd_model import FEATURES, AmdModel, fit, load_default
from earpiece.cpa.amd_train import choose_operating_point, simulate, trace
from earpiece.cpa.detector import CpaOptions, analyze_audio
from earpiece.cpa.evalset import bandpass, ulaw_roundtrip
from earpiece.cpa.tones import synth_tone

SOUNDS = Path("/usr/share/asterisk/sounds/en")
needs_sounds = pytest.mark.skipif(not SOUNDS.exists(), reason="asterisk-core-sounds-en-wav")


def _toy(n: int = 400, seed: int = 0) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Machines have long spans, humans short ones; other columns are noise."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) % 2).astype(np.float64)
    x = rng.normal(0, 1, (n, len(FEATURES)))
    x[:, 0] = np.where(y == 1, rng.normal(2.5, 0.4, n), rng.normal(0.8, 0.4, n))
    return x, y


def test_fit_learns_the_direction_and_is_deterministic() -> None:
    x, y = _toy()
    m = fit(x, y)
    m2 = fit(x, y)
    assert m == m2  # no randomness anywhere
    assert m.weights[0] > 0  # longer span -> machine
    row = np.zeros(len(FEATURES))
    row[0] = 3.0
    assert m.probability(row) > 0.95
    row[0] = 0.5
    assert m.probability(row) < 0.05
    # near miss: half-way between the two classes the model is unsure
    row[0] = 1.65
    assert 0.2 < m.probability(row) < 0.8


def test_fit_uses_only_the_named_features_and_the_weights() -> None:
    x, y = _toy()
    m = fit(x, y, features=("span", "silence"))
    assert m.features == ("span", "silence")
    row = np.zeros(len(FEATURES))
    row[0] = 3.0
    other = row.copy()
    other[2] = 100.0  # "bursts" is not in the model
    assert m.probability(row) == m.probability(other)
    # weighting the humans up moves the boundary towards the machines
    w = np.where(y == 0, 5.0, 1.0)
    mw = fit(x, y, w, features=("span", "silence"))
    row[0] = 1.65
    assert mw.probability(row) < m.probability(row)


def test_fit_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        fit(np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError):
        fit(np.zeros((3, len(FEATURES))), np.zeros(2))


def test_model_validation_and_json_roundtrip(tmp_path: Path) -> None:
    x, y = _toy()
    m = replace(fit(x, y), meta={"trained_on": "toy"})
    p = tmp_path / "m.json"
    p.write_text(m.to_json(), encoding="utf-8")
    assert AmdModel.load(p) == m
    base = json.loads(m.to_json())
    with pytest.raises(ValueError):
        AmdModel.from_dict({k: v for k, v in base.items() if k != "bias"})
    with pytest.raises(ValueError):
        AmdModel.from_dict({**base, "scale": [0.0] * len(base["scale"])})
    with pytest.raises(ValueError):
        AmdModel.from_dict({**base, "human_p": 0.95, "machine_p": 0.9})
    with pytest.raises(ValueError):
        AmdModel.from_dict({**base, "features": ["pitch"], "mean": [0.0], "scale": [1.0],
                            "weights": [1.0]})
    with pytest.raises(ValueError):
        AmdModel.from_dict({**base, "weights": base["weights"][:-1]})
    with pytest.raises(ValueError):
        AmdModel.from_dict({**base, "bias": float("nan")})


def test_packaged_model_was_trained_on_the_tune_split() -> None:
    m = load_default()
    assert set(m.features) <= set(FEATURES)
    assert m.meta["trained_on"].startswith("tune split")
    assert 0.0 < m.human_p < 0.5 < m.machine_p < 1.0
    assert m.meta["tune_simulated"]["accuracy"] >= m.meta["target_accuracy"]
    # the timing story it learnt: a long greeting still going is a machine, a short one
    # followed by silence a person
    going = dict.fromkeys(FEATURES, 0.0)
    going.update(span=2.4, speech=2.0, bursts=6, since_first=2.4, total_speech=2.0,
                 density=0.83, span_sq=2.4 * 2.4, max_pause=0.2)
    short = dict.fromkeys(FEATURES, 0.0)
    short.update(span=0.5, speech=0.45, bursts=1, silence=0.6, since_first=1.1,
                 total_speech=0.45, density=0.9, span_x_silence=0.3, span_sq=0.25,
                 silence_capped=0.6)
    assert m.probability(np.array([going[f] for f in FEATURES])) >= m.machine_p
    assert m.probability(np.array([short[f] for f in FEATURES])) <= m.human_p


def _wav(name: str) -> npt.NDArray[np.float64]:
    import wave

    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    idx = np.nonzero(np.abs(x) > 100)[0]
    return x[idx[0]:idx[-1] + 1]


def _call(body: npt.NDArray[np.float64], lead_s: float, seed: int) -> npt.NDArray[np.int16]:
    rng = np.random.default_rng(seed)
    x = np.zeros(int(6.0 * 8000))
    s = int(lead_s * 8000)
    x[s:s + body.size] = body[: x.size - s]
    y = bandpass(x)
    n = bandpass(rng.standard_normal(y.size)) * 30.0
    return np.clip(ulaw_roundtrip(y + n), -32768, 32767).astype(np.int16)


@needs_sounds
def test_trainer_replays_the_detector_exactly() -> None:
    # the operating point is chosen by replaying recorded frames; the replay must give the
    # detector's own verdicts and times, or the tuning would optimise something else
    clips = [
        ("human", _call(_wav("hello"), 0.5, 1)),
        ("human", _call(_wav("hello-world"), 0.3, 2)),
        ("machine", _call(_wav("vm-intro"), 0.2, 3)),
        ("machine", _call(np.concatenate([_wav("hello"), np.zeros(800),
                                          synth_tone([1000.0], 0.5, level_dbfs=-12)]),
                          0.4, 4)),
    ]
    model = load_default()
    opts = CpaOptions()
    traces = []
    for label, pcm in clips:
        tr = trace(pcm, 8000, label)
        traces.append(tr)
        probs = np.array([model.probability(r) if not np.isnan(r[0]) else np.nan
                          for r in tr.x])
        got_label, got_t = simulate(tr, model, probs, opts)
        r = analyze_audio(pcm, 8000)
        assert (got_label, round(got_t, 2)) == (r.label, round(r.decision_s, 2)), label
        assert r.label == label, (label, r.evidence)
    chosen, grid = choose_operating_point(traces, model, opts, target=1.0)
    best = min((g for g in grid if g["accuracy"] >= 1.0),
               key=lambda g: (g["median_s"], g["p95_s"], -g["accuracy"]))
    assert (chosen.machine_p, chosen.human_p, chosen.min_silence_s) == (
        best["machine_p"], best["human_p"], best["min_silence_s"])


def test_no_machine_verdict_on_a_greeting_onset(tmp_path: Path) -> None:
    # a model that always says "machine" still needs min_machine_span_s of greeting
    sure = AmdModel(features=("span",), mean=(0.0,), scale=(1.0,), weights=(0.0,), bias=12.0,
                    machine_p=0.9, human_p=0.1, min_silence_s=0.25)
    path = tmp_path / "sure.json"
    path.write_text(sure.to_json(), encoding="utf-8")
    opts = CpaOptions(model_path=str(path))
    rng = np.random.default_rng(7)
    body = rng.normal(0, 2500, int(1.5 * 8000))
    r = analyze_audio(_call(body, 0.5, 5), 8000, options=opts)
    assert r.label == "machine" and r.evidence["rule"] == "model"
    assert 0.5 + opts.min_machine_span_s - 0.05 <= r.decision_s <= 0.5 + opts.min_machine_span_s \
        + 0.15
    # near miss: 0.4 s of speech never reaches the onset guard; only the out-of-time guess
    short = analyze_audio(_call(body[: int(0.4 * 8000)], 0.5, 6), 8000, options=opts)
    assert short.evidence["rule"] == "analysis_time_model"
    assert short.decision_s >= opts.max_s


_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True),
                    st.text(max_size=4), st.lists(st.floats(-2, 2), max_size=3),
                    st.lists(st.sampled_from(FEATURES), max_size=3))


@given(st.dictionaries(st.sampled_from(["features", "mean", "scale", "weights", "bias",
                                        "machine_p", "human_p", "min_silence_s", "meta"]),
                       _values))
@settings(max_examples=200, deadline=None)
def test_model_file_parser_raises_only_value_error(d: dict[str, object]) -> None:
    try:
        m = AmdModel.from_dict(d)
    except ValueError:
        return
    assert len(m.features) == len(m.weights) > 0
    assert 0.0 <= m.probability(np.zeros(len(FEATURES))) <= 1.0
