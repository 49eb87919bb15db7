"""Voice emotion models behind one interface (:class:`VoiceModel`), selected by
``[emotion] model``:

* ``zscore`` (default, no training): arousal from the speaker's own baseline z-scores;
* ``gmm``: PCA + one Gaussian mixture per class (scikit-learn to train, numpy to run);
* ``mlp``: a small torch network (:mod:`earpiece.emotion.mlp`);
* ``onnx``: a deployer-supplied ONNX model run with onnxruntime, with a JSON label map beside
  it (``model.onnx.json``: ``{"labels": [...], "input": "features" | "waveform",
  "rate": 16000}``).

Trained files carry metadata (kind, version, feature names, classes, training-set SHA-256);
:func:`~earpiece.emotion.loader.load_model` refuses a file whose metadata does not match this
code with :class:`ModelMismatchError`, naming what differs. Nothing is downloaded.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from earpiece.emotion.voice import FEATURE_NAMES, INDEX, N_FEATURES, RATE

FloatArray = npt.NDArray[np.float64]
MODEL_VERSION = 1
#: Trained models see the voice features plus the text model's three probabilities.
TRAIN_FEATURES: tuple[str, ...] = (*FEATURE_NAMES, "text_negative", "text_neutral",
                                   "text_positive")

#: Arousal of class names a model may use (others count 0).
AROUSAL_OF: dict[str, float] = {
    "calm": -1.0, "low": -1.0, "sad": -0.5, "neutral": 0.0, "positive": 0.3, "happy": 0.5,
    "negative": 0.7, "agitated": 1.0, "angry": 1.0, "high": 1.0, "frustrated": 0.8,
}


class ModelMismatchError(ValueError):
    """A model file that this code cannot use as it stands."""


@dataclass(frozen=True)
class VoiceInput:
    features: FloatArray  # voice_features() of the utterance
    z: FloatArray  # the same against the speaker's baseline
    pcm: FloatArray | None = None  # the utterance at 8 kHz in [-1, 1] (waveform models)
    text_probs: tuple[float, float, float] | None = None  # negative, neutral, positive


@dataclass(frozen=True)
class VoiceResult:
    arousal: float  # [-1, 1]
    valence: float | None = None  # when the model's classes say it
    probs: dict[str, float] = field(default_factory=dict)


class VoiceModel(Protocol):
    kind: str

    def predict(self, x: VoiceInput) -> VoiceResult: ...


def result_from_probs(probs: dict[str, float]) -> VoiceResult:
    arousal = sum(p * AROUSAL_OF.get(c, 0.0) for c, p in probs.items())
    valence = None
    if "positive" in probs or "negative" in probs:
        valence = probs.get("positive", 0.0) - probs.get("negative", 0.0)
    return VoiceResult(max(-1.0, min(1.0, arousal)), valence, probs)


#: Weights of the z-scores in the untrained arousal score: louder, higher, wider pitch,
#: faster, brighter and fewer pauses read as more aroused.
ZSCORE_WEIGHTS: dict[str, float] = {
    "energy_mean": 0.30, "f0_mean": 0.25, "f0_range": 0.10, "f0_std": 0.05, "rate": 0.15,
    "centroid": 0.10, "tilt": -0.05, "pause_ratio": -0.05, "energy_dyn": 0.05,
}


class ZScoreModel:
    """Arousal = tanh(weighted sum of the speaker-relative z-scores / 1.5); no training."""

    kind = "zscore"

    def __init__(self) -> None:
        self._w = np.zeros(N_FEATURES)
        for name, w in ZSCORE_WEIGHTS.items():
            self._w[INDEX[name]] = w

    def predict(self, x: VoiceInput) -> VoiceResult:
        s = float(np.dot(self._w, np.nan_to_num(x.z)))
        return VoiceResult(math.tanh(s / 1.5))


def train_row(x: VoiceInput) -> FloatArray:
    tp = x.text_probs if x.text_probs is not None else (0.0, 0.0, 0.0)
    return np.concatenate((x.features, np.asarray(tp, dtype=np.float64)))


def check_meta(meta: dict[str, Any], kind: str, path: Path,
               expect_data_sha256: str | None = None) -> None:
    problems = []
    if meta.get("kind") != kind:
        problems.append(f"kind {meta.get('kind')!r}, expected {kind!r}")
    if meta.get("version") != MODEL_VERSION:
        problems.append(f"version {meta.get('version')!r}, this Earpiece reads {MODEL_VERSION}")
    if list(meta.get("features", [])) != list(TRAIN_FEATURES):
        problems.append("features differ from this Earpiece's voice parameters "
                        f"({len(meta.get('features', []))} vs {len(TRAIN_FEATURES)})")
    if not meta.get("classes"):
        problems.append("no classes")
    if expect_data_sha256 and meta.get("data_sha256") != expect_data_sha256:
        problems.append(f"training-set hash {meta.get('data_sha256')!r} is not the expected "
                        f"{expect_data_sha256!r}")
    if problems:
        raise ModelMismatchError(f"{path}: cannot use this {kind} model: " + "; ".join(problems)
                                 + " (retrain with `earpiece train emotion`)")


class GmmModel:
    """PCA then one diagonal Gaussian mixture per class; the class posterior under equal
    priors. Stored as plain arrays (``.npz`` with a JSON ``meta`` entry): no pickle."""

    kind = "gmm"

    def __init__(self, arrays: dict[str, FloatArray], meta: dict[str, Any]) -> None:
        self.a = arrays
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])

    def _project(self, row: FloatArray) -> FloatArray:
        z = (row - self.a["scale_mean"]) / self.a["scale_std"]
        return np.asarray((z - self.a["pca_mean"]) @ self.a["pca_components"].T)

    def log_likelihoods(self, y: FloatArray) -> FloatArray:
        out = []
        for i in range(len(self.classes)):
            w, mu, var = self.a[f"w{i}"], self.a[f"mu{i}"], self.a[f"var{i}"]
            ll = (-0.5 * (((y[None, :] - mu) ** 2) / var + np.log(2 * np.pi * var)).sum(axis=1)
                  + np.log(w))
            m = ll.max()
            out.append(m + np.log(np.exp(ll - m).sum()))
        return np.asarray(out)

    def predict(self, x: VoiceInput) -> VoiceResult:
        ll = self.log_likelihoods(self._project(train_row(x)))
        p = np.exp(ll - ll.max())
        p /= p.sum()
        return result_from_probs({c: float(v) for c, v in zip(self.classes, p, strict=True)})

    def save(self, path: Path) -> None:
        with open(path, "wb") as fh:
            arrays: dict[str, Any] = {"meta": np.asarray(json.dumps(self.meta)), **self.a}
            np.savez(fh, **arrays)

    @classmethod
    def load(cls, path: Path, expect_data_sha256: str | None = None) -> GmmModel:
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: np.asarray(z[k], dtype=np.float64) for k in z.files
                          if k != "meta"}
        except (KeyError, ValueError, OSError, zipfile.BadZipFile, AttributeError) as exc:
            raise ModelMismatchError(f"{path}: not an Earpiece GMM model: {exc}") from None
        check_meta(meta, "gmm", path, expect_data_sha256)
        return cls(arrays, meta)


class OnnxModel:
    """A deployer's ONNX export; ``model.onnx.json`` beside it gives labels and input."""

    kind = "onnx"

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        side = path.with_name(path.name + ".json")
        try:
            spec = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise ModelMismatchError(f"{side}: label map missing or unreadable: {exc}") from None
        self.labels: list[str] = list(spec.get("labels", []))
        self.input: str = spec.get("input", "features")
        self.rate = int(spec.get("rate", RATE))
        if not self.labels or self.input not in ("features", "waveform"):
            raise ModelMismatchError(f"{side}: needs 'labels' and 'input' "
                                     "('features' or 'waveform')")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def predict(self, x: VoiceInput) -> VoiceResult:
        if self.input == "features":
            feed = x.features.astype(np.float32)[None, :]
        else:
            pcm = x.pcm if x.pcm is not None else np.zeros(RATE // 10)
            if self.rate != RATE and len(pcm) > 1:
                from scipy.signal import resample_poly

                pcm = resample_poly(pcm, self.rate, RATE)
            feed = np.asarray(pcm, dtype=np.float32)[None, :]
        (logits,) = self.session.run(None, {self.input_name: feed})[:1]
        v = np.asarray(logits, dtype=np.float64).reshape(-1)
        if len(v) != len(self.labels):
            raise ModelMismatchError(f"model gives {len(v)} outputs for {len(self.labels)} labels")
        p = np.exp(v - v.max())
        p /= p.sum()
        return result_from_probs({c: float(q) for c, q in zip(self.labels, p, strict=True)})
