"""Loading the FreeSWITCH 1.10.12 event-socket captures (../shared/freeswitch/captures/esl)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def captures_root() -> Path:
    env = os.environ.get("EARPIECE_FS_CAPTURES")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "freeswitch" / "captures"


CAPTURES = captures_root()
ESL_FILES = sorted(CAPTURES.glob("esl/*.jsonl"))


@dataclass(frozen=True)
class Record:
    t: float
    dir: str  # "in": FreeSWITCH -> client, "out": client -> FreeSWITCH
    raw: bytes
    eof: bool


def load(path_or_name: Path | str) -> list[Record]:
    path = path_or_name
    if not isinstance(path, Path):
        path = CAPTURES / "esl" / f"{path}.jsonl"
    out = []
    for line in path.read_text().splitlines():
        obj = json.loads(line)
        out.append(Record(obj["t"], obj["dir"], obj["raw"].encode("utf-8"), bool(obj.get("eof"))))
    return out


def frames(name: str, direction: str = "in") -> list[bytes]:
    return [r.raw for r in load(name) if r.dir == direction and not r.eof]


def sidecar(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CAPTURES / "esl" / f"{name}.json").read_text())
    return data
