"""``earpiece train emotion --data FILE.csv``: train the PCA+GMM or MLP voice model.

The CSV has a header with ``label`` and ``wav`` and/or ``text`` columns (paths relative to the
CSV). Each row becomes :data:`~earpiece.emotion.models.TRAIN_FEATURES`: the voice parameters
of the WAV (zeros without one) and the shipped text model's probabilities of the text (zeros
without one). The model file keeps the metadata that :func:`~earpiece.emotion.models.load_model`
checks, including the SHA-256 of the training rows and the WAV bytes.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from earpiece.emotion.models import (
    MODEL_VERSION,
    TRAIN_FEATURES,
    FloatArray,
    GmmModel,
    VoiceInput,
    train_row,
)
from earpiece.emotion.voice import N_FEATURES, voice_features


def read_wav(path: Path) -> tuple[FloatArray, int, int]:
    """(int16 samples as float, rate, channels) of a PCM WAV; interleaved when stereo."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is read")
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
        return data, w.getframerate(), w.getnchannels()


def load_rows(csv_path: Path, *, progress: Callable[[int, int], None] | None = None,
              language: str = "auto") -> tuple[FloatArray, list[str], str]:
    """(rows x TRAIN_FEATURES, labels, training-set SHA-256)."""
    from earpiece.emotion.text import default_text_model, language_of

    with open(csv_path, newline="", encoding="utf-8") as fh:
        records = list(csv.DictReader(fh))
    if not records or "label" not in records[0]:
        raise ValueError(f"{csv_path}: needs a header with 'label' and 'wav' and/or 'text'")
    h = hashlib.sha256()
    xs, ys = [], []
    for i, rec in enumerate(records):
        label = (rec.get("label") or "").strip()
        if not label:
            raise ValueError(f"{csv_path}:{i + 2}: empty label")
        feats = np.zeros(N_FEATURES)
        wav = (rec.get("wav") or "").strip()
        if wav:
            p = Path(wav) if Path(wav).is_absolute() else csv_path.parent / wav
            data, rate, ch = read_wav(p)
            h.update(hashlib.sha256(p.read_bytes()).digest())
            feats = voice_features(data.reshape(-1, ch).mean(axis=1).astype(np.int16), rate)
        text = (rec.get("text") or "").strip()
        tp = None
        if text:
            lang = language if language != "auto" else language_of(text)
            probs = default_text_model(lang).score(text).probs
            tp = (probs.get("negative", 0.0), probs.get("neutral", 0.0),
                  probs.get("positive", 0.0))
        h.update(f"{label}\t{wav}\t{text}\n".encode())
        xs.append(train_row(VoiceInput(feats, np.zeros(N_FEATURES), None, tp)))
        ys.append(label)
        if progress is not None:
            progress(i + 1, len(records))
    if len(set(ys)) < 2:
        raise ValueError(f"{csv_path}: needs at least two classes")
    return np.asarray(xs), ys, h.hexdigest()


def fit_gmm(x: FloatArray, y: list[str], meta: dict[str, Any], *, components: int = 2,
            pca_dims: int = 8, seed: int = 0) -> GmmModel:
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    mean = x.mean(axis=0)
    std = np.maximum(x.std(axis=0), 1e-6)
    z = (x - mean) / std
    pca = PCA(n_components=min(pca_dims, z.shape[0] - 1, z.shape[1]), random_state=seed).fit(z)
    proj = pca.transform(z)
    classes = sorted(set(y))
    arrays: dict[str, FloatArray] = {
        "scale_mean": mean, "scale_std": std, "pca_mean": pca.mean_,
        "pca_components": pca.components_,
    }
    labels = np.asarray(y)
    for i, c in enumerate(classes):
        pts = proj[labels == c]
        k = max(1, min(components, len(pts) // 2))
        g = GaussianMixture(n_components=k, covariance_type="diag", reg_covar=1e-3,
                            random_state=seed).fit(pts)
        arrays[f"w{i}"], arrays[f"mu{i}"], arrays[f"var{i}"] = g.weights_, g.means_, \
            g.covariances_
    return GmmModel(arrays, {**meta, "kind": "gmm", "classes": classes,
                             "pca_dims": int(pca.n_components_)})


def train(csv_path: Path, kind: str, out: Path, *,
          progress: Callable[[int, int], None] | None = None, epochs: int = 300) -> Any:
    x, y, digest = load_rows(csv_path, progress=progress)
    meta = {"version": MODEL_VERSION, "features": list(TRAIN_FEATURES), "data_sha256": digest,
            "rows": len(y), "source": csv_path.name}
    model: Any
    if kind == "gmm":
        model = fit_gmm(x, y, meta)
    elif kind == "mlp":
        from earpiece.emotion.mlp import MlpModel

        model = MlpModel.fit(x, y, meta, epochs=epochs)
    else:
        raise ValueError(f"unknown kind {kind!r} (gmm or mlp)")
    model.save(out)
    return model


# --- CLI: `earpiece train emotion` --------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("emotion", help="train the PCA+GMM or MLP voice emotion model")
    p.add_argument("--data", type=Path, required=True, help="CSV: label, wav and/or text")
    p.add_argument("--kind", choices=("gmm", "mlp"), default="gmm")
    p.add_argument("--out", type=Path, default=None,
                   help="model file (default emotion-<kind>.npz / .pt beside the CSV)")


def _bar(done: int, total: int) -> None:
    width = 30
    n = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'#' * n}{'.' * (width - n)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def main(args: argparse.Namespace) -> int:
    out = args.out or args.data.with_name(
        f"emotion-{args.kind}.{'npz' if args.kind == 'gmm' else 'pt'}")
    try:
        model = train(args.data, args.kind, out, progress=_bar)
    except (OSError, ValueError, wave.Error) as exc:
        print(f"earpiece train emotion: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}: {model.kind}, classes {', '.join(model.classes)}, "
          f"{model.meta['rows']} rows, data sha256 {model.meta['data_sha256'][:12]}")
    return 0
