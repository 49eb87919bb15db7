"""Audio for the simulator: prompts, call-progress tones, G.711 encoding and resampling.

Everything here is 8 kHz signed 16-bit mono, the format of the Debian
``asterisk-core-sounds-en-wav`` prompts that the scenarios play. Encoding to the wire format of
an externalMedia channel (``ulaw``, ``alaw`` or ``slin16``) happens per 20 ms frame in
:mod:`earpiece.sim.rtp_sender`.
"""

from __future__ import annotations

import functools
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from earpiece.media.g711 import decode_alaw, decode_ulaw, encode_alaw, encode_ulaw

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
SOUNDS_DIR = Path("/usr/share/asterisk/sounds")
ULAW_SILENCE = 0xFF
ALAW_SILENCE = 0xD5

Pcm = npt.NDArray[np.int16]


class SoundNotFoundError(LookupError):
    """A prompt named by a scenario or an ARI ``play`` is not installed."""


def resolve_sound(name: str, sounds_dir: Path = SOUNDS_DIR, language: str = "en") -> Path:
    """Map ``hello-world``, ``en/hello-world.wav``, ``sound:hello-world`` or a path to a file."""
    if name.startswith("sound:"):
        name = name[len("sound:"):]
    path = Path(name)
    if path.is_absolute():
        candidates = [path, path.with_suffix(".wav")]
    else:
        candidates = [
            sounds_dir / language / name,
            sounds_dir / language / f"{name}.wav",
            sounds_dir / name,
            sounds_dir / f"{name}.wav",
        ]
    for candidate in candidates:
        if candidate.suffix == ".wav" and candidate.is_file():
            return candidate
    raise SoundNotFoundError(f"sound {name!r} not found under {sounds_dir / language}")


@functools.lru_cache(maxsize=256)
def load_wav(path: Path) -> Pcm:
    """Read an 8 kHz 16-bit mono WAV file (cached, read-only array)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path}: need 16-bit mono, got {wav.getsampwidth() * 8}-bit "
                             f"{wav.getnchannels()} channels")
        rate = wav.getframerate()
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    if rate != SAMPLE_RATE:
        data = resample(data, rate, SAMPLE_RATE)
    data.setflags(write=False)
    return data


def load_sound(name: str, sounds_dir: Path = SOUNDS_DIR) -> Pcm:
    return load_wav(resolve_sound(name, sounds_dir))


def resample(pcm: Pcm, rate_in: int, rate_out: int) -> Pcm:
    """Polyphase resampling (anti-aliased), e.g. 8 kHz -> 16 kHz for slin16."""
    if rate_in == rate_out:
        return pcm
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    out = np.asarray(resample_poly(pcm.astype(np.float64), rate_out // g, rate_in // g))
    result: Pcm = np.clip(np.round(out), -32768, 32767).astype(np.int16)
    return result


def _tone(freqs: tuple[float, ...], seconds: float, amplitude: float) -> Pcm:
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    sig = sum(np.sin(2 * np.pi * f * t) for f in freqs) / max(len(freqs), 1)
    return np.round(np.asarray(sig) * amplitude * 32767).astype(np.int16)


def _silence(seconds: float) -> Pcm:
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.int16)


def ringback(seconds: float, country: str = "us") -> Pcm:
    """Ringback tone: US 440+480 Hz 2 s on / 4 s off (the capture's recipe), CN 450 Hz 1/4,
    EU 425 Hz 1/4."""
    if country == "cn":
        cycle = np.concatenate([_tone((450.0,), 1.0, 0.25), _silence(4.0)])
    elif country == "eu":
        cycle = np.concatenate([_tone((425.0,), 1.0, 0.25), _silence(4.0)])
    else:
        cycle = np.concatenate([_tone((440.0, 480.0), 2.0, 0.25), _silence(4.0)])
    return _repeat_to(cycle, seconds)


def busy_tone(seconds: float) -> Pcm:
    """US busy: 480+620 Hz, 0.5 s on / 0.5 s off."""
    cycle = np.concatenate([_tone((480.0, 620.0), 0.5, 0.25), _silence(0.5)])
    return _repeat_to(cycle, seconds)


def sit_tones() -> Pcm:
    """Special information tones 913.8 / 1370.6 / 1776.7 Hz for 274 / 274 / 380 ms (as in the
    capture's recipe), then 0.1 s of silence."""
    return np.concatenate([
        _tone((913.8,), 0.274, 0.3),
        _tone((1370.6,), 0.274, 0.3),
        _tone((1776.7,), 0.380, 0.3),
        _silence(0.1),
    ])


def _repeat_to(cycle: Pcm, seconds: float) -> Pcm:
    n = round(seconds * SAMPLE_RATE)
    reps = n // len(cycle) + 1
    return np.tile(cycle, reps)[:n].astype(np.int16)


# --- G.711 ---------------------------------------------------------------------------------
# The simulator encodes with the same reference tables the receiver decodes with
# (earpiece.media.g711, after ITU/Sun g711.c); the names below are kept for its callers.


def ulaw_encode(pcm: Pcm) -> bytes:
    return encode_ulaw(pcm)


def alaw_encode(pcm: Pcm) -> bytes:
    return encode_alaw(pcm)


def ulaw_decode(data: bytes) -> Pcm:
    return decode_ulaw(data)


def alaw_decode(data: bytes) -> Pcm:
    return decode_alaw(data)
