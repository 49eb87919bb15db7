"""A small learned human/machine scorer for the greeting after answer (pure numpy).

:class:`CallProgressDetector` describes the far end's greeting, frame by frame, with the
timing features in :data:`FEATURES` (all derived from its own speech detector, so training and
inference see the same numbers). :class:`AmdModel` is a logistic regression over those
features: ``probability(x)`` is P(machine). The detector turns it into a verdict only when it
is confident (``>= machine_p`` -> machine, ``<= human_p`` after at least ``min_silence_s`` of
silence -> human), so the clear cases stay fast and the rest wait for more audio.

The weights ship as ``earpiece/data/amd_model.json``; :func:`fit` (deterministic Newton
iterations with an L2 penalty) rebuilds them from the ``tune`` split of the evaluation set
(``python -m earpiece.cpa.amd_train``). No I/O at import; :func:`load_default` reads the
packaged file once.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

#: Feature order (seconds unless noted). ``span``: first to last speech frame of the current
#: utterance (pauses of up to ``utterance_gap_s`` joined); ``speech``: voiced time in it;
#: ``bursts``: word-like bursts in it; ``silence``: time since its last speech frame;
#: ``utterances``: earlier, finished utterances; ``total_speech``: voiced time since answer;
#: ``since_first``: time since the first speech; ``max_pause``: longest pause inside any
#: utterance so far; ``density``: speech / span; then three non-linear terms: ``span_x_silence``
#: (a long greeting needs more silence behind it than a short one), ``span_sq`` and
#: ``silence_capped`` (silence, at most 1 s).
FEATURES = ("span", "speech", "bursts", "silence", "utterances", "total_speech",
            "since_first", "max_pause", "density", "span_x_silence", "span_sq",
            "silence_capped")
MODEL_FILE = "amd_model.json"


@dataclass(frozen=True)
class AmdModel:
    """Logistic regression: P(machine) = sigmoid(w . (x - mean) / scale + bias)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    machine_p: float = 0.9  # operating point chosen on the tune split (see amd_train)
    human_p: float = 0.1
    min_silence_s: float = 0.3
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.weights) == n) or n == 0:
            raise ValueError("amd model: features, mean, scale and weights differ in length")
        if any(s <= 0 or not math.isfinite(s) for s in self.scale):
            raise ValueError("amd model: scale must be positive")
        if not all(math.isfinite(v) for v in (*self.mean, *self.weights, self.bias)):
            raise ValueError("amd model: mean, weights and bias must be finite")
        if not 0.0 <= self.human_p < self.machine_p <= 1.0:
            raise ValueError("amd model: need 0 <= human_p < machine_p <= 1")
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"amd model: unknown features {sorted(unknown)}")

    @cached_property
    def _linear(self) -> tuple[list[int], list[float], float]:
        """(feature indices, coefficients, intercept) with the scaling folded in."""
        coef = [w / s for w, s in zip(self.weights, self.scale, strict=True)]
        icpt = self.bias - sum(m * c for m, c in zip(self.mean, coef, strict=True))
        return [FEATURES.index(f) for f in self.features], coef, icpt

    def probability(self, x: npt.NDArray[np.float64]) -> float:
        """P(machine) for one feature vector in :data:`FEATURES` order."""
        idx, coef, z = self._linear
        for i, c in zip(idx, coef, strict=True):
            z += float(x[i]) * c
        return _sigmoid(z)

    def to_json(self) -> str:
        d = asdict(self)
        return json.dumps(d, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AmdModel:
        try:
            return cls(features=tuple(str(f) for f in d["features"]),
                       mean=tuple(float(v) for v in d["mean"]),
                       scale=tuple(float(v) for v in d["scale"]),
                       weights=tuple(float(v) for v in d["weights"]),
                       bias=float(d["bias"]), machine_p=float(d["machine_p"]),
                       human_p=float(d["human_p"]), min_silence_s=float(d["min_silence_s"]),
                       meta=dict(d.get("meta", {})))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"amd model: bad model file ({exc})") from exc

    @classmethod
    def load(cls, path: str | Path) -> AmdModel:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@lru_cache(maxsize=1)
def load_default() -> AmdModel:
    """The packaged model (``earpiece/data/amd_model.json``)."""
    text = resources.files("earpiece").joinpath("data", MODEL_FILE).read_text(encoding="utf-8")
    return AmdModel.from_dict(json.loads(text))


def fit(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64],
        sample_weight: npt.NDArray[np.float64] | None = None, *,
        features: tuple[str, ...] = FEATURES, l2: float = 1e-3,
        iterations: int = 50) -> AmdModel:
    """Weighted L2 logistic regression by Newton's method (deterministic, no randomness).

    ``x``: (n, len(FEATURES)) rows in :data:`FEATURES` order; ``y``: 1 = machine, 0 = human.
    Only the columns named in ``features`` are used.
    """
    xa = np.asarray(x, dtype=np.float64)
    if xa.ndim != 2 or xa.shape[1] != len(FEATURES):
        raise ValueError(f"fit: x must be (n, {len(FEATURES)})")
    ya = np.asarray(y, dtype=np.float64).ravel()
    if ya.size != xa.shape[0] or ya.size == 0:
        raise ValueError("fit: x and y differ in length")
    sw = (np.ones(ya.size) if sample_weight is None
          else np.asarray(sample_weight, dtype=np.float64).ravel())
    sw = sw / sw.sum()
    cols = [FEATURES.index(f) for f in features]
    xs = xa[:, cols]
    mean = xs.mean(axis=0)
    scale = xs.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    z = np.hstack([(xs - mean) / scale, np.ones((xs.shape[0], 1))])
    w = np.zeros(z.shape[1])
    reg = l2 * np.eye(w.size)
    reg[-1, -1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        grad = z.T @ (sw * (p - ya)) + reg @ w
        hess = (z * (sw * p * (1 - p))[:, None]).T @ z + reg + 1e-9 * np.eye(w.size)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-10:
            break
    return AmdModel(features=tuple(features), mean=tuple(float(v) for v in mean),
                    scale=tuple(float(v) for v in scale),
                    weights=tuple(float(v) for v in w[:-1]), bias=float(w[-1]))
