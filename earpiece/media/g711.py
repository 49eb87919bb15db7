"""G.711 u-law and A-law through lookup tables (numpy), after the ITU/Sun reference ``g711.c``.

Decoding is one fancy-index per packet: ``ULAW_DECODE[np.frombuffer(payload, np.uint8)]``.
Encoding (used by the simulator, the benchmark sender and tests) indexes a 65,536-entry table
by the int16 sample. The tables are built once, lazily, on first use.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt

_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)

#: Byte values of digital silence (what Asterisk sends from a snoop before anyone speaks).
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5


def _seg(value: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if value <= end:
            return i
    return len(table)


def ulaw_to_linear(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if u & 0x80 else (t - 0x84)


def alaw_to_linear(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def linear_to_ulaw(pcm: int) -> int:
    pcm >>= 2
    if pcm < 0:
        pcm = -pcm
        mask = 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + (0x84 >> 2)
    seg = _seg(pcm, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0x0F)) ^ mask


def linear_to_alaw(pcm: int) -> int:
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        pcm = -pcm - 1
    seg = _seg(pcm, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((pcm >> 1) if seg < 2 else (pcm >> seg)) & 0x0F
    return aval ^ mask


@cache
def ulaw_decode_table() -> npt.NDArray[np.int16]:
    return np.array([ulaw_to_linear(i) for i in range(256)], dtype=np.int16)


@cache
def alaw_decode_table() -> npt.NDArray[np.int16]:
    return np.array([alaw_to_linear(i) for i in range(256)], dtype=np.int16)


@cache
def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    # index = sample + 32768
    return np.array([linear_to_ulaw(s) for s in range(-32768, 32768)], dtype=np.uint8)


@cache
def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    return np.array([linear_to_alaw(s) for s in range(-32768, 32768)], dtype=np.uint8)


def decode_ulaw(payload: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    return ulaw_decode_table()[np.frombuffer(payload, dtype=np.uint8)]


def decode_alaw(payload: bytes | bytearray | memoryview) -> npt.NDArray[np.int16]:
    return alaw_decode_table()[np.frombuffer(payload, dtype=np.uint8)]


def encode_ulaw(pcm: npt.NDArray[np.int16]) -> bytes:
    idx = pcm.astype(np.int32) + 32768
    return _ulaw_encode_table()[idx].tobytes()


def encode_alaw(pcm: npt.NDArray[np.int16]) -> bytes:
    idx = pcm.astype(np.int32) + 32768
    return _alaw_encode_table()[idx].tobytes()
