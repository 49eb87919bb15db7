"""Loading the mod_audio_fork websocket captures (../shared/freeswitch/captures/media).

``<name>.bin`` is every websocket frame of one connection in arrival order, each as a 4-byte
big-endian length and the unmasked payload; ``<name>.json`` indexes it (``frames``: ``[t, opcode,
fin, length, text or close]``) and has the ``api_command`` that opened it.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from esl_captures import CAPTURES

MEDIA = CAPTURES / "media"
NAMES = sorted(p.stem for p in MEDIA.glob("*.bin"))

TEXT, BINARY, CLOSE = 1, 2, 8


@dataclass(frozen=True)
class WsFrame:
    t: float
    opcode: int
    payload: bytes


def sidecar(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MEDIA / f"{name}.json").read_text())
    return data


def frames(name: str) -> list[WsFrame]:
    raw = (MEDIA / f"{name}.bin").read_bytes()
    index = sidecar(name)["frames"]
    out: list[WsFrame] = []
    pos = 0
    while pos < len(raw):
        (n,) = struct.unpack_from(">I", raw, pos)
        out.append(WsFrame(0.0, 0, raw[pos + 4 : pos + 4 + n]))
        pos += 4 + n
    assert len(out) == len(index)
    return [WsFrame(row[0], row[1], f.payload) for row, f in zip(index, out, strict=True)]
