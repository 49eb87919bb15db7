""":func:`load_model`: the voice model that ``[emotion] model`` names (one place that knows
every kind, so that the model modules do not import each other)."""

from __future__ import annotations

from pathlib import Path

from earpiece.emotion.models import GmmModel, ModelMismatchError, OnnxModel, VoiceModel, ZScoreModel


def load_model(kind: str, path: str | Path = "", *,
               expect_data_sha256: str | None = None) -> VoiceModel:
    """``kind`` ``zscore`` / ``gmm`` / ``mlp`` / ``onnx`` from ``path`` (``model_path``);
    :class:`ModelMismatchError` for a missing file or one whose metadata does not fit."""
    p = Path(path)
    if kind == "zscore":
        return ZScoreModel()
    if not p.is_file():
        raise ModelMismatchError(f"{p}: no such model file")
    if kind == "gmm":
        return GmmModel.load(p, expect_data_sha256)
    if kind == "mlp":
        from earpiece.emotion.mlp import MlpModel

        return MlpModel.load(p, expect_data_sha256)
    if kind == "onnx":
        return OnnxModel(p)
    raise ModelMismatchError(f"unknown model kind {kind!r}")
