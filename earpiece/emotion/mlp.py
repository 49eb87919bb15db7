"""The small torch MLP voice model (``[emotion] model = "mlp"``): standardised
:data:`~earpiece.emotion.models.TRAIN_FEATURES` -> 32 -> 16 -> classes. Saved with
``torch.save`` as a dict of tensors and its metadata, and loaded with ``weights_only=True``."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from earpiece.emotion.models import (
    FloatArray,
    ModelMismatchError,
    VoiceInput,
    VoiceResult,
    check_meta,
    result_from_probs,
    train_row,
)


def _net(n_in: int, n_out: int) -> Any:
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(n_in, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16), torch.nn.ReLU(),
        torch.nn.Linear(16, n_out))


class MlpModel:
    kind = "mlp"

    def __init__(self, net: Any, mean: FloatArray, std: FloatArray, meta: dict[str, Any]) -> None:
        self.net = net.eval()
        self.mean, self.std, self.meta = mean, std, meta
        self.classes: list[str] = list(meta["classes"])

    @classmethod
    def fit(cls, x: FloatArray, y: list[str], meta: dict[str, Any], *, epochs: int = 300,
            seed: int = 0) -> MlpModel:
        import torch

        torch.manual_seed(seed)
        classes = sorted(set(y))
        mean = x.mean(axis=0)
        std = np.maximum(x.std(axis=0), 1e-6)
        xt = torch.tensor((x - mean) / std, dtype=torch.float32)
        yt = torch.tensor([classes.index(c) for c in y])
        net = _net(x.shape[1], len(classes))
        opt = torch.optim.Adam(net.parameters(), lr=0.01, weight_decay=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(epochs):
            opt.zero_grad()
            loss = loss_fn(net(xt), yt)
            loss.backward()
            opt.step()
        return cls(net, mean, std, {**meta, "kind": "mlp", "classes": classes})

    def predict(self, x: VoiceInput) -> VoiceResult:
        import torch

        row = (train_row(x) - self.mean) / self.std
        with torch.no_grad():
            logits = self.net(torch.tensor(row[None, :], dtype=torch.float32))[0]
            p = torch.softmax(logits, dim=0).numpy()
        return result_from_probs({c: float(v) for c, v in zip(self.classes, p, strict=True)})

    def save(self, path: Path) -> None:
        import torch

        torch.save({"meta": self.meta, "state": self.net.state_dict(),
                    "mean": torch.tensor(self.mean), "std": torch.tensor(self.std)}, path)

    @classmethod
    def load(cls, path: Path, expect_data_sha256: str | None = None) -> MlpModel:
        import torch

        try:
            blob = torch.load(path, weights_only=True)
        except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
            # not a torch file, or one with more than tensors in it
            raise ModelMismatchError(f"{path}: not an Earpiece MLP model: {exc}") from None
        meta = dict(blob.get("meta", {}))
        check_meta(meta, "mlp", path, expect_data_sha256)
        mean = blob["mean"].numpy().astype(np.float64)
        net = _net(len(mean), len(meta["classes"]))
        net.load_state_dict(blob["state"])
        return cls(net, mean, blob["std"].numpy().astype(np.float64), meta)
