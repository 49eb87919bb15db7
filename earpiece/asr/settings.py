"""Settings of streaming speech recognition (``[asr]``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class AsrSettings:
    enabled: bool = True
    # "base" (multilingual, assembled from PyPI packages), "tiny.en", or a CTranslate2 directory.
    model: str = "base"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compute_type: str = "int8"
    language: str = "en"  # "auto" detects once per speaker then fixes it
    workers: int = 2
    cache_dir: Path = Path("~/.cache/earpiece/models")
