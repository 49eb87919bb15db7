"""``earpiece bench emotion``: text emotion on the held-out files, voice arousal on synthetic
speech, and the CPU cost of the voice parameters.

* ``en`` / ``zh``: accuracy, macro-F1 and the confusion matrix (rows = truth, columns =
  prediction, order negative / neutral / positive) of the text model on
  ``earpiece/emotion/data/heldout_<lang>.tsv`` -- lines that no model or rule was tuned on --
  next to VADER (compound >= 0.05 positive, <= -0.05 negative) and snownlp (sentiment >= 0.6
  positive, <= 0.4 negative) on the same lines.
* ``audio``: each sentence rendered by espeak-ng calm (slow, low, quiet) and agitated (fast,
  high, loud), through G.711 u-law at 8 kHz; the speaker's baseline is built from neutral
  renderings of other sentences, then both are scored: how often arousal(calm) <
  arousal(agitated).
* ``features_ms``: CPU milliseconds of :func:`~earpiece.emotion.voice.voice_features` per
  utterance (mean and max over the renderings, one BLAS thread).
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import time
import wave
from typing import Any

import numpy as np

from earpiece.emotion.text import LABELS, data_path, default_text_model, read_labelled

SENTENCES = {
    "en": ["I have been waiting for forty minutes and nobody has called me back",
           "I want to cancel my contract today", "you charged me twice for the same order",
           "please tell me what happens to my refund", "the internet has been down all week",
           "I already explained this to your colleague"],
    "zh": ["我已经等了四十分钟了", "我要取消这个套餐", "这个月扣了我两次钱",
           "我的退款到底什么时候到", "网已经断了一个星期了", "我已经跟你同事说过了"],
}
NEUTRAL = {"en": ["my account number ends in four five two", "I live in Manchester",
                  "my contract ends in March", "I usually pay by direct debit"],
           "zh": ["我的卡号尾号是四五二", "我住在杭州", "我的合同三月份到期", "我一般是自动扣款"]}
STYLES = {"neutral": ["-s", "160", "-p", "50", "-a", "100"],
          "calm": ["-s", "130", "-p", "35", "-a", "70"],
          "agitated": ["-s", "210", "-p", "75", "-a", "190"]}


def scores(truth: list[str], pred: list[str]) -> dict[str, Any]:
    conf = [[sum(1 for t, p in zip(truth, pred, strict=True) if t == a and p == b)
             for b in LABELS] for a in LABELS]
    f1s = []
    for i in range(len(LABELS)):
        tp = conf[i][i]
        fp = sum(conf[j][i] for j in range(len(LABELS))) - tp
        fn = sum(conf[i]) - tp
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp else 0.0)
    acc = sum(conf[i][i] for i in range(len(LABELS))) / max(len(truth), 1)
    return {"lines": len(truth), "accuracy": round(acc, 4),
            "macro_f1": round(sum(f1s) / len(f1s), 4), "confusion": conf}


def _vader(texts: list[str]) -> list[str]:
    from earpiece.emotion.lexicon import _vader as vader

    out = []
    for t in texts:
        c = vader().polarity_scores(t)["compound"]
        out.append("positive" if c >= 0.05 else "negative" if c <= -0.05 else "neutral")
    return out


def _snownlp(texts: list[str]) -> list[str] | None:
    try:
        from snownlp import SnowNLP
    except ImportError:
        return None
    out = []
    for t in texts:
        s = SnowNLP(t).sentiments
        out.append("positive" if s >= 0.6 else "negative" if s <= 0.4 else "neutral")
    return out


def text_bench(lang: str) -> dict[str, Any]:
    rows = read_labelled(data_path(f"heldout_{lang}.tsv"))
    texts, truth = [r.text for r in rows], [r.label for r in rows]
    model = default_text_model(lang)
    res = scores(truth, [s.label for s in model.predict(texts)])
    res["model_data_sha256"] = model.meta["data_sha256"][:16]
    res["vader"] = scores(truth, _vader(texts))
    sn = _snownlp(texts)
    res["snownlp"] = scores(truth, sn) if sn is not None else "snownlp not installed"
    return res


def _say(text: str, lang: str, style: str) -> np.ndarray[Any, np.dtype[np.int16]]:
    from scipy.signal import resample_poly

    from earpiece.media.g711 import decode_ulaw, encode_ulaw

    voice = "cmn" if lang == "zh" else "en-us"
    wav = subprocess.run(["espeak-ng", "--stdout", "-v", voice, *STYLES[style], text],
                         capture_output=True, check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    x8 = np.clip(resample_poly(x, 8000, rate), -32768, 32767).astype(np.int16)
    return np.asarray(decode_ulaw(encode_ulaw(x8)), dtype=np.int16)


def audio_bench() -> dict[str, Any]:
    from threadpoolctl import threadpool_limits

    from earpiece.emotion.models import VoiceInput, ZScoreModel
    from earpiece.emotion.voice import SpeakerBaseline, voice_features

    if shutil.which("espeak-ng") is None:
        return {"skipped": "espeak-ng not installed"}
    model = ZScoreModel()
    pairs = ordered = 0
    ms: list[float] = []
    with threadpool_limits(1):
        for lang in ("en", "zh"):
            base = SpeakerBaseline()
            for t in NEUTRAL[lang]:
                base.update(voice_features(_say(t, lang, "neutral")))
            for t in SENTENCES[lang]:
                a = {}
                for style in ("calm", "agitated"):
                    pcm = _say(t, lang, style)
                    t0 = time.process_time()
                    f = voice_features(pcm)
                    ms.append((time.process_time() - t0) * 1000)
                    a[style] = model.predict(VoiceInput(f, base.zscores(f))).arousal
                pairs += 1
                ordered += a["calm"] < a["agitated"]
    return {"pairs": pairs, "calm_below_agitated": ordered,
            "rate": round(ordered / max(pairs, 1), 4),
            "features_ms": {"mean": round(float(np.mean(ms)), 2),
                            "max": round(float(np.max(ms)), 2)}}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object")


def main(args: argparse.Namespace) -> int:
    out = {"en": text_bench("en"), "zh": text_bench("zh"), "audio": audio_bench()}
    if args.json:
        print(json.dumps(out))
    else:
        for lang in ("en", "zh"):
            r = out[lang]
            print(f"{lang}: macro-F1 {r['macro_f1']} accuracy {r['accuracy']} "
                  f"(VADER {r['vader']['macro_f1']}, snownlp "
                  f"{r['snownlp']['macro_f1'] if isinstance(r['snownlp'], dict) else '-'})")
        print(f"audio: {out['audio']}")
    return 0
