"""Emotion: voice parameters, text model, voice models (z-score, GMM, MLP, ONNX), fusion,
the live stage on the bus, and the CRM statements."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import warnings
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.bus import EventBus
from earpiece.crm.writer import statements_for
from earpiece.emotion.fusion import CallIndex, fuse
from earpiece.emotion.loader import load_model
from earpiece.emotion.models import (
    ModelMismatchError,
    VoiceInput,
    ZScoreModel,
)
from earpiece.emotion.settings import EmotionSettings
from earpiece.emotion.stage import EmotionStage
from earpiece.emotion.text import data_path, default_text_model, read_labelled
from earpiece.emotion.voice import N_FEATURES, SpeakerBaseline, voice_features
from earpiece.events import EmotionChanged, EmotionScored, Transcript
from earpiece.media.frames import FrameHub

RNG = np.random.default_rng(15)


def _voice(f0: float, level: float, seconds: float = 1.0, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    vib = f0 * (1 + 0.03 * np.sin(2 * np.pi * 4 * t))
    phase = 2 * np.pi * np.cumsum(vib) / rate
    x = sum(np.sin(k * phase) / k for k in range(1, 8)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    x = x + RNG.normal(0, 0.01, len(t))
    return np.clip(x * level * 32767, -32768, 32767).astype(np.int16)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-32768, 32767), min_size=0, max_size=3000),
       st.sampled_from([8000, 16000]))
def test_features_are_finite_on_any_input(samples: list[int], rate: int) -> None:
    v = voice_features(np.asarray(samples, dtype=np.int16), rate)
    assert v.shape == (N_FEATURES,) and np.isfinite(v).all()


@pytest.mark.parametrize("x", [np.zeros(8000, np.int16), np.full(8000, 32767, np.int16),
                               np.full(1, 5, np.int16), np.zeros(0, np.int16),
                               np.full(4000, 1e30), np.array([np.nan, np.inf])])
def test_features_finite_on_silence_clipping_dc_one_sample(x: np.ndarray) -> None:
    assert np.isfinite(voice_features(x)).all()


def test_pitch_and_energy_follow_the_voice() -> None:
    from earpiece.emotion.voice import INDEX

    low, high = voice_features(_voice(120, 0.1)), voice_features(_voice(240, 0.5))
    assert high[INDEX["f0_mean"]] - low[INDEX["f0_mean"]] == pytest.approx(12, abs=1.5)
    assert high[INDEX["energy_mean"]] > low[INDEX["energy_mean"]] + 10
    assert low[INDEX["voiced_ratio"]] > 0.7


def test_baseline_is_relative_to_the_speaker() -> None:
    base = SpeakerBaseline()
    assert not base.observe(voice_features(_voice(120, 0.1))).any()  # nothing to compare yet
    for _ in range(3):
        base.observe(voice_features(_voice(125, 0.1)))
    model = ZScoreModel()
    calm = voice_features(_voice(122, 0.1))
    loud = voice_features(_voice(200, 0.6))
    a_calm = model.predict(VoiceInput(calm, base.zscores(calm))).arousal
    a_loud = model.predict(VoiceInput(loud, base.zscores(loud))).arousal
    assert a_calm < 0.3 < a_loud


def test_text_sets_are_big_enough_and_the_model_scores_both_languages() -> None:
    for lang in ("en", "zh"):
        assert len(read_labelled(data_path(f"text_{lang}.tsv"))) >= 600
        assert len(read_labelled(data_path(f"heldout_{lang}.tsv"))) >= 200
    en, zh = default_text_model("en"), default_text_model("zh")
    assert len(en.meta["data_sha256"]) == 64 and en.meta["classes"] == [
        "negative", "neutral", "positive"]
    assert en.score("please stop calling me").label == "negative"
    assert en.score("sign me up").label == "positive"
    assert zh.score("不需要，谢谢").label == "negative"
    assert zh.score("信用卡怎么办理").label == "positive"
    assert en.score("").label == "neutral"


def _write_wav(path: Path, pcm: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm.tobytes())


@pytest.fixture
def train_csv(tmp_path: Path) -> Path:
    rows = ["wav,text,label"]
    for i in range(12):
        calm, agitated = tmp_path / f"c{i}.wav", tmp_path / f"a{i}.wav"
        _write_wav(calm, _voice(110 + 3 * i, 0.08, 0.6))
        _write_wav(agitated, _voice(220 + 4 * i, 0.6, 0.6))
        rows += [f"{calm.name},,calm", f"{agitated.name},stop calling me,agitated"]
    path = tmp_path / "train.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("kind", ["gmm", "mlp"])
def test_train_save_load_predict_and_refuse_mismatch(train_csv: Path, kind: str) -> None:
    from earpiece.emotion.train import train

    out = train_csv.with_name(f"m.{kind}")
    model = train(train_csv, kind, out, epochs=150)
    loaded = load_model(kind, out, expect_data_sha256=model.meta["data_sha256"])
    x_hi = voice_features(_voice(260, 0.6, 0.6))
    x_lo = voice_features(_voice(115, 0.08, 0.6))
    hi = loaded.predict(VoiceInput(x_hi, np.zeros(N_FEATURES), None, (0.9, 0.05, 0.05)))
    lo = loaded.predict(VoiceInput(x_lo, np.zeros(N_FEATURES)))
    assert hi.probs["agitated"] > 0.5 > lo.probs["agitated"]
    assert hi.arousal > lo.arousal
    with pytest.raises(ModelMismatchError, match="training-set hash"):
        load_model(kind, out, expect_data_sha256="0" * 64)
    with pytest.raises(ModelMismatchError):
        load_model("mlp" if kind == "gmm" else "gmm", out)


def test_gmm_refuses_other_features(train_csv: Path) -> None:
    from earpiece.emotion.train import train

    out = train_csv.with_name("m.npz")
    model = train(train_csv, "gmm", out)
    model.meta["features"] = ["f0_mean"]
    model.save(out)
    with pytest.raises(ModelMismatchError, match="features differ"):
        load_model("gmm", out)


def test_onnx_model_exported_by_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")  # torch's exporter writes through it (dev dependency)
    net = torch.nn.Sequential(torch.nn.Linear(N_FEATURES, 2))
    with torch.no_grad():
        net[0].weight.zero_()
        net[0].bias.zero_()
        net[0].weight[1, 5] = 1.0  # energy_mean -> "agitated"
    path = tmp_path / "tiny.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(net, (torch.zeros(1, N_FEATURES),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"])
    path.with_name("tiny.onnx.json").write_text(json.dumps(
        {"labels": ["calm", "agitated"], "input": "features"}))
    m = load_model("onnx", path)
    loud = m.predict(VoiceInput(voice_features(_voice(200, 0.6)), np.zeros(N_FEATURES)))
    quiet = m.predict(VoiceInput(voice_features(_voice(200, 0.01)), np.zeros(N_FEATURES)))
    assert loud.arousal > quiet.arousal


def test_fusion_and_hysteresis() -> None:
    assert fuse(0.0, 0.9).label == "negative" or fuse(0.0, 0.9).score < 0
    assert fuse(0.8, 0.0).label == "positive" and fuse(-0.8, None).label == "negative"
    idx = CallIndex(EmotionSettings())
    script = [0.0, 0.05, -0.1, -0.8, -0.9, 0.1, -0.7, 0.9, 0.85, 0.9]
    changes = [(i, c) for i, s in enumerate(script) if (c := idx.update(s)) is not None]
    assert changes == [(3, "negative"), (8, "positive")] or changes == [
        (3, "negative"), (7, "positive")]


LINES = [("neutral", "what's the monthly fee on that plan"), ("neutral", "I'm at work right now"),
         ("neutral", "my contract ends in March"), ("negative", "please stop calling me"),
         ("negative", "this is ridiculous, I want to make a complaint"),
         ("negative", "I've had enough of this"), ("positive", "okay that sounds great"),
         ("positive", "sign me up, how do I apply"), ("positive", "perfect, thank you so much")]


async def test_stage_scripted_call_transitions_without_flicker(monkeypatch: pytest.MonkeyPatch,
                                                               ) -> None:
    meter: list[float] = []
    run = asyncio.events.Handle._run

    def timed(handle: asyncio.events.Handle) -> None:
        t0 = time.thread_time()
        try:
            run(handle)
        finally:
            meter.append(time.thread_time() - t0)

    bus = EventBus()
    stage = EmotionStage(bus)
    await stage.start()
    await stage.wait_ready()
    monkeypatch.setattr(asyncio.events.Handle, "_run", timed)
    changed: list[EmotionChanged] = []
    scored: list[EmotionScored] = []
    bus.subscribe(EmotionChanged, changed.append)
    bus.subscribe(EmotionScored, scored.append)
    rng = np.random.default_rng(1)
    for i, (_, text) in enumerate(LINES):
        t = 2.0 * i
        agitated = 3 <= i < 6
        pcm = _voice(230 if agitated else 130, 0.5 if agitated else 0.1, 1.2) + rng.integers(
            -50, 50, 9600).astype(np.int16)
        stage.submit_audio("c1", "customer", t, t + 1.2, pcm)
        bus.publish(Transcript(call_id="c1", party="customer", text=text, final=True,
                               start_s=t, end_s=t + 1.2, language="en"))
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(scored) > i:
                break
    await stage.stop()
    assert [(c.old, c.new) for c in changed] == [("neutral", "negative"),
                                                 ("negative", "positive")]
    assert changed[0].utterance <= 3 + 2 and changed[1].utterance <= 6 + 2
    assert all(s.arousal is not None for s in scored)
    assert max(meter) < 0.1, "a loop step computed for more than 100 ms"


def test_crm_statements_for_emotion_events() -> None:
    ev = EmotionScored(call_id="c1", party="customer", label="negative", valence=-0.6,
                       arousal=0.4, confidence=0.8, start_s=1.0, end_s=2.0, text="no",
                       index=-0.4, state="negative")
    (ins, upsert) = statements_for(ev)
    assert "emotion_utterances" in ins[0] and "ON CONFLICT" in upsert[0]
    (upd,) = statements_for(EmotionChanged(call_id="c1", party="customer", old="neutral",
                                           new="negative", index=-0.4, utterance=2))
    assert "changes + 1" in upd[0]


async def test_crm_writes_emotion_rows(tmp_path: Path) -> None:
    from earpiece.crm.backend import open_store
    from earpiece.crm.writer import CrmWriter
    from earpiece.events import CallStarted

    store = await open_store(f"sqlite:///{tmp_path / 'crm.sqlite3'}")
    bus = EventBus()
    writer = CrmWriter(bus, store)
    writer.start()
    bus.publish(CallStarted(call_id="c1", direction="outbound", channel="PJSIP/x"))
    for i, (label, idx) in enumerate([("neutral", 0.0), ("negative", -0.5)]):
        bus.publish(EmotionScored(call_id="c1", party="customer", label=label, valence=idx,
                                  arousal=None, confidence=0.7, start_s=i, end_s=i + 1,
                                  index=idx, state=label))
    bus.publish(EmotionChanged(call_id="c1", party="customer", old="neutral", new="negative",
                               index=-0.5, utterance=2))
    await writer.flush()
    await writer.close()
    rows = await store.query("SELECT state, emotion_index, utterances, changes "
                             "FROM emotion_calls")
    n = await store.query("SELECT COUNT(*) AS n FROM emotion_utterances")
    await store.close()
    assert rows == [{"state": "negative", "emotion_index": -0.5, "utterances": 2,
                     "changes": 1}]
    assert n == [{"n": 2}]


@pytest.fixture
def slow_text_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """The text models' warm-up blocks until the returned event is set (as training them on a
    busy 2-core machine takes seconds)."""
    release = threading.Event()
    real = EmotionStage._text_model

    def slow(self: EmotionStage, lang: str) -> object:
        release.wait(10)
        return real(self, lang)

    monkeypatch.setattr(EmotionStage, "_text_model", slow)
    yield release
    release.set()


async def test_stage_start_does_not_wait_for_the_text_models(
        slow_text_models: threading.Event) -> None:
    """Regression (#15): ``start`` trained the text models before returning, and the service
    starts speech recognition only after this stage, so the first call's utterances (the
    agent's in tests/test_e2e_event_loop.py) went by untranscribed. Now the stage subscribes
    at once and warms up in the background; transcripts published meanwhile are still scored."""
    bus = EventBus()
    hub = FrameHub(bus=bus)
    stage = EmotionStage(bus)
    scored: list[EmotionScored] = []
    bus.subscribe(EmotionScored, scored.append)
    try:
        await asyncio.wait_for(stage.start(hub), 1.0)
        assert hub._segment_subs and hub._subs  # subscribed before the warm-up ends
        bus.publish(Transcript(call_id="c1", party="agent", text="how can I help you today",
                               final=True, start_s=0.0, end_s=1.0, language="en"))
        await asyncio.sleep(0.05)
        assert scored == []  # waits for the models, in the stage's queue
        slow_text_models.set()
        await asyncio.wait_for(stage.wait_ready(), 30)
        for _ in range(300):
            if scored:
                break
            await asyncio.sleep(0.01)
        assert [s.party for s in scored] == ["agent"]
    finally:
        slow_text_models.set()
        await stage.stop()


async def test_service_emotion_start_leaves_asr_free_to_start(
        slow_text_models: threading.Event) -> None:
    """The service's emotion start returns while the text models still warm up, so the ASR
    started right after it is attached to the media hub in time for the first call."""
    from earpiece.app import Service
    from earpiece.config import Settings

    service = Service(Settings(emotion=EmotionSettings(enabled=True)))
    service.hub = FrameHub(bus=service.bus)
    try:
        await asyncio.wait_for(service._start_emotion(), 5.0)
        assert service.emotion is not None
    finally:
        slow_text_models.set()
        await service.stop()
