"""Deterministic evaluation set for call-progress and answering-machine detection.

``generate(path)`` writes 8 kHz mono WAVs plus ``manifest.jsonl`` (one line per file: file,
label, group, split, source, and the channel parameters) and reuses the directory when its
``VERSION`` matches. Everything is drawn from one fixed seed.

Material:

* **human**: short greetings, real recordings from asterisk-core-sounds-en-wav ("hello",
  "hello world") and espeak-ng English and Mandarin greetings with varied voices, speed and
  pitch; some say "hello?" twice. Since v2 also longer live greetings of 1-2 s
  (:data:`HUMAN_EN_LONG`: "Hello, this is Mary speaking.", "Hi, who is this?", ...).
* **machine**: voicemail-style greetings assembled from the real prompts ("the person at
  extension 1 2 3 4 is unavailable", "nobody is available to take your call", "please leave your
  message after the tone", ...), espeak-ng English and Mandarin voicemail and carrier
  greetings, optionally followed by a beep, and synthetic music on hold. Since v2 also short
  recorded greetings (:data:`MACHINE_SHORT_EN`: "Leave a message.", ...), always followed by a
  beep (synthetic, or Asterisk's own ``beep.wav``) 0.3 s after the greeting.
* **silence**: line noise only. **fax**: CNG (1100 Hz 0.5 s / 3 s) or CED (2100 Hz).
* **tones** (as early media): ringback, busy and congestion of the US, China, UK and Europe,
  and SIT (913.8/985.2, 1370.6/1428.5, 1776.7 Hz), some followed by ss-noservice, with
  +-1.5 % frequency drift, +-10 % cadence jitter, -10..-35 dBFS, random start phase.

* **answered, then tone** (since v3, group ``answer_tone``, analysed from answer: false answer
  supervision): after 0-1.2 s of line noise, every tone plan's busy / congestion / ringback,
  SIT alone or followed by an intercept message (espeak-ng English and Mandarin,
  :data:`INTERCEPT_EN` / :data:`INTERCEPT_CMN`, or Asterisk's ``ss-noservice``), and fax CED.
  They are drawn from their own random stream after the v2 items, so every v2 file is the same.

Every item goes through a telephone band-pass (300-3400 Hz), additive noise at a drawn SNR
and a G.711 mu-law round trip.

**Held out.** ``split`` is ``test`` for items built only from voices and prompts that the
detector's thresholds were never tuned on (espeak voices in :data:`TEST_VOICES`, the
real prompts in :data:`TEST_PROMPTS`, Mandarin variants in :data:`TEST_CMN_VOICES`) and for
half of the tone items; everything else is ``tune``.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from earpiece.asr.wav import read_wav as read_wav
from earpiece.cpa.tones import PLANS, SIT_FIRST, SIT_SECOND, SIT_THIRD, synth_tone

log = logging.getLogger(__name__)

VERSION = "evalset-amd-v3"
SEED = 20261123
RATE = 8000
SOUNDS = Path("/usr/share/asterisk/sounds/en")
DEFAULT_DIR = Path("~/.cache/earpiece") / VERSION

TUNE_VOICES = ("en-us+f3", "en-us+m3", "en-gb+f2", "en+m1", "en-us-nyc+m2", "en-029+f4")
TEST_VOICES = ("en-gb-scotland+m4", "en-gb-x-rp+f5", "en-us+m7", "en+f1")
TUNE_CMN_VOICES = ("cmn+f3", "cmn+m3")
TEST_CMN_VOICES = ("cmn+f2", "cmn+m6")
TUNE_PROMPTS = ("hello", "vm-theperson", "vm-isunavail", "vm-intro", "number-not-answering",
                "please-try-call-later", "vm-isonphone")
TEST_PROMPTS = ("hello-world", "vm-nobodyavail", "tt-allbusy", "all-circuits-busy-now",
                "vm-rec-unv")

HUMAN_EN = ("Hello?", "Hello.", "Hi.", "Yes?", "Hello, who's this?", "Hi, this is Mark.",
            "Yeah, hello?", "Good morning.", "Speaking.", "Hello, Anna speaking.", "Hey.",
            "Yes, hello?", "Hello, hello?", "Who is it?")
#: Longer live greetings (1-2 s at conversational rates): where timing alone gets hard.
HUMAN_EN_LONG = ("Hello, this is Mary speaking.", "Hi, who is this?", "Hello, Johnson residence.",
                 "Good afternoon, Peter speaking.", "Hello? Who's calling, please?",
                 "Hi, this is Tom.", "Hello, yes, this is she.", "Yes, hello, who's this?")
HUMAN_CMN = ("喂？", "喂，你好。", "你好，哪位？", "喂，请讲。", "是我。", "喂，哪位？")
MACHINE_EN = (
    "Hi, you've reached the voicemail of John Smith. I can't take your call right now, "
    "please leave a message after the beep.",
    "Hello, this is Sarah. I'm not available at the moment. Please leave your name and number "
    "and I'll call you back.",
    "The person you are calling is not available. Please leave a message after the tone.",
    "Thank you for calling Acme Insurance. Our office is currently closed. Please call back "
    "during business hours.",
    "You have reached five five five, zero one three four. Please leave a message.",
    "Hi, it's Mike. Leave a message and I'll get back to you.",
    "The number you have dialed is not available. Please try again later.",
    "Hello, you've reached Dave and Karen. We can't come to the phone, leave a message.",
)
MACHINE_CMN = (
    "您拨打的用户暂时无法接通，请稍后再拨。",
    "您好，我现在不方便接听电话，请在提示音后留言。",
    "您拨打的电话正在通话中，请稍后再拨。",
    "您好，欢迎致电，现在是非工作时间，请留言。",
)
#: Intercept messages after a SIT (English and Mandarin carriers).
INTERCEPT_EN = ("We're sorry, the number you have dialed is not in service. Please check the "
                "number and dial again.",
                "The number you have reached has been disconnected or is no longer in service.",
                "Your call cannot be completed as dialed. Please check the number and try again.")
INTERCEPT_CMN = ("对不起，您拨打的号码是空号，请查证后再拨。", "您拨打的电话已停机。",
                 "对不起，您拨打的号码不存在，请查证后再拨。")
#: Short recorded greetings (about 1 s); they always end in a beep here (a 1 s recording
#: followed by silence is, by its audio alone, a person who said one phrase).
MACHINE_SHORT_EN = ("Leave a message.", "Please leave a message.",
                    "Leave a message after the tone.", "Sorry I missed you, leave a message.",
                    "Not here, leave a message.")


@dataclass
class Item:
    file: str
    label: str
    group: str  # "amd" (after answer) or "tone" (early media)
    split: str  # tune or test
    source: str
    params: dict[str, Any] = field(default_factory=dict)


# ---- channel ------------------------------------------------------------------------------------
def ulaw_roundtrip(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """G.711 mu-law encode + decode (ITU-T G.711 segment coding)."""
    s = np.clip(np.round(x), -32768, 32767).astype(np.int32)
    sign = s < 0
    mag = np.minimum(np.abs(s), 32635) + 0x84
    exp = np.floor(np.log2(mag)).astype(np.int32) - 7
    exp = np.clip(exp, 0, 7)
    man = (mag >> (exp + 3)) & 0x0F
    dec = (((man << 3) + 0x84) << exp) - 0x84
    out: npt.NDArray[np.float64] = np.where(sign, -dec, dec).astype(np.float64)
    return out


def bandpass(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    from scipy.signal import butter, sosfilt

    sos = butter(4, [300.0, 3400.0], btype="bandpass", fs=RATE, output="sos")
    y: npt.NDArray[np.float64] = np.asarray(sosfilt(sos, x), dtype=np.float64)
    return y


def active_rms(x: npt.NDArray[np.float64]) -> float:
    """RMS over the 20 ms frames within 20 dB of the loudest (speech "active level")."""
    n = x.size // 160
    if n == 0:
        return 0.0
    fr = x[: n * 160].reshape(n, 160)
    p = (fr**2).mean(axis=1)
    act = p[p >= p.max() * 0.01]
    return float(np.sqrt(act.mean())) if act.size else 0.0


def channel(x: npt.NDArray[np.float64], rng: np.random.Generator, *, snr_db: float,
            ref_rms: float | None = None) -> npt.NDArray[np.int16]:
    """Band-pass, add band-limited noise at ``snr_db`` below the active level, mu-law."""
    y = bandpass(x)
    ref = ref_rms if ref_rms is not None else active_rms(y)
    noise = bandpass(rng.standard_normal(y.size))
    nr = float(np.sqrt((noise**2).mean())) or 1.0
    y = y + noise * (ref / nr) * 10 ** (-snr_db / 20.0)
    y = ulaw_roundtrip(y)
    return np.clip(np.round(y), -32768, 32767).astype(np.int16)


def write_wav(path: Path, x: npt.NDArray[np.int16], rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.ascontiguousarray(x, dtype="<i2").tobytes())


def _prompt(name: str) -> npt.NDArray[np.float64]:
    x, rate, ch = read_wav(SOUNDS / f"{name}.wav")
    if ch != 1 or rate != RATE:
        raise ValueError(f"{name}.wav: expected 8 kHz mono")
    return _trim(x.astype(np.float64))


def _trim(x: npt.NDArray[np.float64], thr: float = 100.0) -> npt.NDArray[np.float64]:
    idx = np.nonzero(np.abs(x) > thr)[0]
    out: npt.NDArray[np.float64] = x[idx[0]: idx[-1] + 1] if idx.size else x
    return out


def _resample(x: npt.NDArray[np.float64], factor: float) -> npt.NDArray[np.float64]:
    """Play ``x`` ``factor`` times faster (speed and pitch together)."""
    if abs(factor - 1.0) < 1e-3:
        return x
    n = max(1, round(x.size / factor))
    out: npt.NDArray[np.float64] = np.interp(np.linspace(0, x.size - 1, n), np.arange(x.size), x)
    return out


def _level(x: npt.NDArray[np.float64], dbfs: float) -> npt.NDArray[np.float64]:
    r = active_rms(x)
    if r <= 0:
        return x
    gain = float(32768.0 / np.sqrt(2) * 10 ** (dbfs / 20.0) / r)
    return x * gain


# ---- speech synthesis ---------------------------------------------------------------------------
@dataclass(frozen=True)
class TtsJob:
    text: str
    voice: str
    speed: int
    pitch: int

    def key(self) -> str:
        return hashlib.sha1(f"{self.voice}|{self.speed}|{self.pitch}|{self.text}".encode()
                            ).hexdigest()[:16]


def _espeak(job: TtsJob, tmp: Path) -> npt.NDArray[np.float64]:
    out = tmp / f"{job.key()}.wav"
    subprocess.run(["espeak-ng", "-v", job.voice, "-s", str(job.speed), "-p", str(job.pitch),
                    "-w", str(out), job.text], check=True, capture_output=True, timeout=60)
    x, rate, _ = read_wav(out)
    from scipy.signal import resample_poly

    g = np.gcd(rate, RATE)
    y = resample_poly(x.astype(np.float64), RATE // g, rate // g)
    return _trim(np.asarray(y, dtype=np.float64))


# ---- item builders ------------------------------------------------------------------------------
def _digits(rng: np.random.Generator) -> list[str]:
    return [f"digits/{int(d)}" for d in rng.integers(1, 10, size=int(rng.integers(3, 5)))]


def _join(parts: Sequence[npt.NDArray[np.float64]], rng: np.random.Generator,
          gap: tuple[float, float] = (0.05, 0.25)) -> npt.NDArray[np.float64]:
    out: list[npt.NDArray[np.float64]] = []
    for i, p in enumerate(parts):
        if i:
            out.append(np.zeros(int(rng.uniform(*gap) * RATE)))
        out.append(p)
    return np.concatenate(out)


def _beep(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    f = float(rng.choice([850.0, 1000.0, 1400.0, 440.0 * 2]))
    return synth_tone([f], float(rng.uniform(0.25, 0.8)), level_dbfs=-12.0)


def _music(rng: np.random.Generator, dur_s: float) -> npt.NDArray[np.float64]:
    """Synthetic music on hold: a melody of harmonic notes over a chord, with vibrato."""
    n = int(dur_s * RATE)
    t = np.arange(n) / RATE
    out = np.zeros(n)
    root = float(rng.uniform(180, 260))
    for ratio in (1.0, 1.25, 1.5):
        for h in range(1, 5):
            out += 0.15 / h * np.sin(2 * np.pi * root * ratio * h * t)
    scale = [1.0, 9 / 8, 5 / 4, 4 / 3, 3 / 2, 5 / 3, 15 / 8, 2.0]
    pos = 0
    while pos < n:
        dur = int(RATE * float(rng.choice([0.25, 0.5, 0.75])))
        f = root * 2 * float(rng.choice(scale))
        tt = np.arange(min(dur, n - pos)) / RATE
        env = np.minimum(1.0, tt / 0.02) * np.exp(-tt * 2.0)
        vib = 1 + 0.004 * np.sin(2 * np.pi * 5 * tt)
        note = sum(0.5 / h * np.sin(2 * np.pi * f * h * vib * tt) for h in range(1, 4))
        out[pos:pos + tt.size] += env * note
        pos += dur
    return out


def _tone_signal(freqs: Sequence[float], cadence: Sequence[float], dur_s: float,
                 rng: np.random.Generator, level: float, drift: float,
                 jitter: float) -> tuple[npt.NDArray[np.float64], float]:
    """A cadenced tone starting at a random point of its cycle; returns (signal, offset_s)."""
    f = [x * (1 + drift) for x in freqs]
    segs: list[npt.NDArray[np.float64]] = []
    total = 0.0
    k = 0
    cyc = list(cadence) if cadence else [dur_s + 1.0, 0.0]
    while total < dur_s + sum(cyc):
        d = cyc[k % len(cyc)] * (1 + rng.uniform(-jitter, jitter))
        if d > 0:
            seg = (synth_tone(f, d, level_dbfs=level, phase=float(rng.uniform(0, 6.28)))
                   if k % 2 == 0 else np.zeros(round(d * RATE)))
            segs.append(seg)
            total += d
        k += 1
    sig = np.concatenate(segs)
    offset = float(rng.uniform(0, sum(cyc))) if cadence else 0.0
    start = round(offset * RATE)
    return sig[start:start + round(dur_s * RATE)], offset


def _place(body: npt.NDArray[np.float64], lead_s: float, total_s: float) -> npt.NDArray[
        np.float64]:
    n = round(total_s * RATE)
    out = np.zeros(max(n, round(lead_s * RATE) + body.size))
    s = round(lead_s * RATE)
    out[s:s + body.size] = body
    return out[:max(n, 1)]


class _Builder:
    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = np.random.default_rng(seed)
        self.items: list[Item] = []
        self.tts: dict[TtsJob, npt.NDArray[np.float64]] = {}
        self._prompts: dict[str, npt.NDArray[np.float64]] = {}
        self._n: dict[str, int] = {}

    def prompt(self, name: str) -> npt.NDArray[np.float64]:
        if name not in self._prompts:
            self._prompts[name] = _prompt(name)
        return self._prompts[name]

    def emit(self, label: str, group: str, split: str, source: str,
             x: npt.NDArray[np.float64], params: dict[str, Any], *,
             snr_db: float, ref_rms: float | None = None) -> None:
        i = self._n.get(label, 0)
        self._n[label] = i + 1
        rel = f"{label}/{label}-{i:04d}.wav"
        pcm = channel(x, self.rng, snr_db=snr_db, ref_rms=ref_rms)
        write_wav(self.root / rel, pcm)
        params = {**params, "snr_db": round(snr_db, 1), "codec": "ulaw"}
        self.items.append(Item(rel, label, group, split, source, params))


def _tts_plan(rng: np.random.Generator) -> list[tuple[str, str, TtsJob]]:
    """(label, split, job) for every synthetic greeting, drawn up front so TTS runs in parallel."""
    plan: list[tuple[str, str, TtsJob]] = []

    def job(texts: Sequence[str], voices: Sequence[str], label: str, split: str, n: int,
            speed: tuple[int, int], pitch: tuple[int, int] = (30, 70)) -> None:
        for _ in range(n):
            plan.append((label, split, TtsJob(str(rng.choice(list(texts))),
                                              str(rng.choice(list(voices))),
                                              int(rng.integers(*speed)),
                                              int(rng.integers(*pitch)))))

    # espeak-ng's default rate (175 wpm, slower still in Mandarin) makes "hello, who's this?"
    # last longer than people say it; human greetings are drawn at conversational rates.
    job(HUMAN_EN, TUNE_VOICES, "human", "tune", 50, (165, 230))
    job(HUMAN_EN, TEST_VOICES, "human", "test", 40, (165, 230))
    job(HUMAN_CMN, TUNE_CMN_VOICES, "human", "tune", 20, (200, 270))
    job(HUMAN_CMN, TEST_CMN_VOICES, "human", "test", 20, (200, 270))
    job(MACHINE_EN, TUNE_VOICES, "machine", "tune", 40, (150, 200))
    job(MACHINE_EN, TEST_VOICES, "machine", "test", 35, (150, 200))
    job(MACHINE_CMN, TUNE_CMN_VOICES, "machine", "tune", 15, (140, 200))
    job(MACHINE_CMN, TEST_CMN_VOICES, "machine", "test", 15, (140, 200))
    # v2: longer live greetings and short recorded ones, in both splits
    job(HUMAN_EN_LONG, TUNE_VOICES, "human", "tune", 30, (165, 230))
    job(HUMAN_EN_LONG, TEST_VOICES, "human", "test", 30, (165, 230))
    job(MACHINE_SHORT_EN, TUNE_VOICES, "machine_short", "tune", 14, (150, 200))
    job(MACHINE_SHORT_EN, TEST_VOICES, "machine_short", "test", 14, (150, 200))
    return plan


def _build(root: Path, seed: int, jobs: int) -> list[Item]:
    b = _Builder(root, seed)
    rng = b.rng
    plan = _tts_plan(rng)
    with tempfile.TemporaryDirectory(prefix="earpiece-tts-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        unique = list(dict.fromkeys(j for _, _, j in plan))
        for j, audio in zip(unique, pool.map(lambda j: _espeak(j, Path(tmp)), unique),
                            strict=True):
            b.tts[j] = audio
    snrs = (30.0, 20.0, 15.0, 10.0)

    def human(x: npt.NDArray[np.float64], split: str, source: str, extra: dict[str, Any]) -> None:
        lead = float(rng.uniform(0.15, 1.1))
        x = _level(x, float(rng.uniform(-30, -16)))
        body = x
        twice = bool(rng.random() < 0.25)
        if twice:  # "Hello? ... Hello?"
            body = np.concatenate([x, np.zeros(int(rng.uniform(1.2, 2.0) * RATE)), x])
        b.emit("human", "amd", split, source, _place(body, lead, 6.0),
               {**extra, "lead_s": round(lead, 3), "greeting_s": round(x.size / RATE, 3),
                "repeated": twice}, snr_db=float(rng.choice(snrs)), ref_rms=active_rms(
                    bandpass(x)))

    def machine(x: npt.NDArray[np.float64], split: str, source: str,
                extra: dict[str, Any], *, always_beep: bool = False) -> None:
        lead = float(rng.uniform(0.1, 0.8))
        x = _level(x, float(rng.uniform(-28, -14)))
        beep = always_beep or bool(rng.random() < 0.5)
        tone = _beep(rng)
        if beep and always_beep and rng.random() < 0.5:  # Asterisk's own recorded beep
            tone = _level(b.prompt("beep"), float(rng.uniform(-18, -10)))
            extra = {**extra, "beep_wav": True}
        body = np.concatenate([x, np.zeros(int(0.3 * RATE)), tone]) if beep else x
        total = min(8.0, max(6.0, lead + body.size / RATE + 0.5))
        b.emit("machine", "amd", split, source, _place(body, lead, total),
               {**extra, "lead_s": round(lead, 3), "greeting_s": round(x.size / RATE, 3),
                "beep": beep}, snr_db=float(rng.choice(snrs)), ref_rms=active_rms(bandpass(x)))

    # synthetic speech
    for label, split, j in plan:
        x = b.tts[j]
        extra = {"text": j.text, "voice": j.voice, "speed": j.speed, "pitch": j.pitch}
        if label == "human":
            human(x, split, "espeak-ng", extra)
        else:
            machine(x, split, "espeak-ng", extra, always_beep=label == "machine_short")
    # real recorded prompts (Allison, asterisk-core-sounds-en)
    for split, real, n in (("tune", ("hello",), 30), ("test", ("hello-world",), 25)):
        for _ in range(n):
            name = str(rng.choice(list(real)))
            f = float(rng.uniform(0.9, 1.12))
            human(_resample(b.prompt(name), f), split, "asterisk-sounds",
                  {"prompts": [name], "speed": round(f, 3)})
    tune_combos: list[list[str]] = [["vm-theperson", "*digits", "vm-isunavail"],
                                    ["vm-theperson", "*digits", "vm-isonphone"],
                                    ["vm-intro"], ["number-not-answering",
                                                   "please-try-call-later"],
                                    ["vm-theperson", "*digits", "vm-isunavail", "vm-intro"]]
    test_combos: list[list[str]] = [["vm-nobodyavail"], ["vm-nobodyavail", "vm-rec-unv"],
                                    ["tt-allbusy"], ["all-circuits-busy-now"]]
    for split, combos, n in (("tune", tune_combos, 35), ("test", test_combos, 30)):
        for _ in range(n):
            combo = combos[int(rng.integers(len(combos)))]
            names: list[str] = []
            for c in combo:
                names.extend(_digits(rng) if c == "*digits" else [c])
            f = float(rng.uniform(0.92, 1.1))
            x = _resample(_join([b.prompt(p) for p in names], rng), f)
            machine(x, split, "asterisk-sounds", {"prompts": names, "speed": round(f, 3)})
    # music on hold answered by a system (near miss: not a human)
    for i in range(12):
        split = "tune" if i % 2 else "test"
        x = _music(rng, float(rng.uniform(5.0, 7.0)))
        b.emit("machine", "amd", split, "music-on-hold",
               _place(_level(x, float(rng.uniform(-28, -16))), float(rng.uniform(0.1, 0.6)),
                      7.0), {"kind": "music"}, snr_db=float(rng.choice(snrs)))
    # silence: line noise only (level given directly)
    for i in range(24):
        lvl = float(rng.uniform(-70, -50))
        noise = bandpass(rng.standard_normal(6 * RATE)) * 32768 * 10 ** (lvl / 20) * 1.4
        b.emit("silence", "amd", "tune" if i % 2 else "test", "noise", noise,
               {"noise_dbfs": round(lvl, 1)}, snr_db=60.0)
    # fax
    for i in range(24):
        cng = i % 2 == 0
        lvl = float(rng.uniform(-30, -12))
        drift = float(rng.uniform(-0.015, 0.015))
        if cng:
            sig, off = _tone_signal([1100.0], [0.5, 3.0], 8.0, rng, lvl, drift, 0.1)
        else:
            sig, off = _tone_signal([2100.0], [], 4.0, rng, lvl, drift, 0.0)
        lead = float(rng.uniform(0.1, 1.0))
        b.emit("fax", "amd", "tune" if (i // 2) % 2 else "test", "cng" if cng else "ced",
               _place(sig, lead, 8.0), {"drift": round(drift, 4), "level_dbfs": round(lvl, 1),
                                        "offset_s": round(off, 3), "lead_s": round(lead, 3)},
               snr_db=float(rng.uniform(15, 35)))
    # call-progress tones as early media
    for country, plans in PLANS.items():
        if country == "common":
            continue
        for tp in plans:
            n = 14 if tp.label == "ringback" else 10
            for i in range(n):
                lvl = float(rng.uniform(-35, -10))
                drift = float(rng.uniform(-0.015, 0.015))
                dur = 10.0 if tp.label == "ringback" else 6.0
                sig, off = _tone_signal(tp.freqs, tp.cadence, dur, rng, lvl, drift, 0.1)
                ref = 32768 / np.sqrt(2) * 10 ** (lvl / 20)
                b.emit(tp.label, "tone", "tune" if i % 2 else "test", tp.name, sig,
                       {"country": country, "drift": round(drift, 4),
                        "level_dbfs": round(lvl, 1), "offset_s": round(off, 3)},
                       snr_db=float(rng.uniform(15, 35)), ref_rms=ref)
    for i in range(30):
        lvl = float(rng.uniform(-35, -10))
        drift = float(rng.uniform(-0.015, 0.015))
        segs, fs, durs = _sit(rng, lvl, drift)
        lead = float(rng.uniform(0.0, 1.5))
        parts = [np.zeros(int(lead * RATE)), *segs, np.zeros(int(0.1 * RATE))]
        announce = i % 3 != 0
        if announce:
            parts.append(_level(b.prompt("ss-noservice"), lvl - 3))
        x = np.concatenate(parts)[: 6 * RATE]
        ref = 32768 / np.sqrt(2) * 10 ** (lvl / 20)
        b.emit("sit", "tone", "tune" if i % 2 else "test", "sit", _place(x, 0.0, 6.0),
               {"freqs": fs, "durs": durs, "drift": round(drift, 4), "level_dbfs": round(lvl, 1),
                "lead_s": round(lead, 3), "announcement": announce},
               snr_db=float(rng.uniform(15, 35)), ref_rms=ref)
    _answer_tones(b, seed, jobs)
    return b.items


def _sit(rng: np.random.Generator, lvl: float, drift: float
         ) -> tuple[list[npt.NDArray[np.float64]], list[float], list[float]]:
    fs = [float(rng.choice(SIT_FIRST)), float(rng.choice(SIT_SECOND)), SIT_THIRD[0]]
    durs = [float(rng.choice([0.274, 0.380])) for _ in range(2)] + [0.380]
    segs = [synth_tone([f * (1 + drift)], d * (1 + rng.uniform(-0.1, 0.1)), level_dbfs=lvl)
            for f, d in zip(fs, durs, strict=True)]
    return segs, fs, durs


def _answer_tones(b: _Builder, seed: int, jobs: int) -> None:
    """v3: "answered, then tone" items (group ``answer_tone``), from their own random stream."""
    rng = np.random.default_rng([seed, 3])
    texts = [(t, v, "en") for t in INTERCEPT_EN for v in (*TUNE_VOICES[:2], *TEST_VOICES[:2])]
    texts += [(t, v, "zh") for t in INTERCEPT_CMN for v in (TUNE_CMN_VOICES[0],
                                                           TEST_CMN_VOICES[0])]
    jobs_ = [TtsJob(t, v, 165 if lang == "en" else 190, 50) for t, v, lang in texts]
    with tempfile.TemporaryDirectory(prefix="earpiece-tts-") as tmp, \
            concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        speech = dict(zip(jobs_, pool.map(lambda j: _espeak(j, Path(tmp)), jobs_), strict=True))
    lead_noise = (0.0, 1.2)
    for country, plans in PLANS.items():
        for tp in plans:
            if tp.name == "fax.cng":
                continue
            for i in range(6):
                lvl = float(rng.uniform(-35, -10))
                drift = float(rng.uniform(-0.015, 0.015))
                dur = 10.0 if tp.label == "ringback" else 6.0
                sig, off = _tone_signal(tp.freqs, tp.cadence, dur, rng, lvl, drift, 0.1)
                lead = float(rng.uniform(*lead_noise))
                ref = 32768 / np.sqrt(2) * 10 ** (lvl / 20)
                b.emit(tp.label, "answer_tone", "tune" if i % 2 else "test", tp.name,
                       _place(sig, lead, lead + dur),
                       {"country": country, "drift": round(drift, 4), "lead_s": round(lead, 3),
                        "level_dbfs": round(lvl, 1), "offset_s": round(off, 3)},
                       snr_db=float(rng.uniform(15, 35)), ref_rms=ref)
    for i in range(36):
        lvl = float(rng.uniform(-30, -10))
        drift = float(rng.uniform(-0.015, 0.015))
        segs, fs, durs = _sit(rng, lvl, drift)
        lead = float(rng.uniform(*lead_noise))
        split = "tune" if i % 2 else "test"
        kind = ("none", "en", "zh", "ss-noservice")[i % 4]
        parts = [np.zeros(int(lead * RATE)), *segs, np.zeros(int(rng.uniform(0.1, 0.5) * RATE))]
        extra: dict[str, Any] = {"announcement": kind}
        if kind == "ss-noservice":
            parts.append(_level(b.prompt("ss-noservice"), lvl - 3))
        elif kind != "none":
            pool_ = [j for j, (_, v, lang) in zip(jobs_, texts, strict=True) if lang == kind
                     and (v in TEST_VOICES or v in TEST_CMN_VOICES) == (split == "test")]
            j = pool_[int(rng.integers(len(pool_)))]
            parts.append(_level(speech[j], lvl - 3))
            extra.update(text=j.text, voice=j.voice)
        x = np.concatenate(parts)
        ref = 32768 / np.sqrt(2) * 10 ** (lvl / 20)
        b.emit("sit", "answer_tone", split, "sit", _place(x, 0.0, max(6.0, x.size / RATE)),
               {**extra, "freqs": fs, "durs": durs, "drift": round(drift, 4),
                "level_dbfs": round(lvl, 1), "lead_s": round(lead, 3)},
               snr_db=float(rng.uniform(15, 35)), ref_rms=ref)


def _fingerprint(seed: int) -> str:
    return f"{VERSION} seed={seed}"


def default_dir() -> Path:
    env = os.environ.get("EARPIECE_EVALSET_DIR")
    return Path(env).expanduser() if env else DEFAULT_DIR.expanduser()


def generate(path: str | Path | None = None, *, seed: int = SEED, force: bool = False,
             jobs: int = 2) -> Path:
    """Create (or reuse) the evaluation set under ``path``; returns the directory."""
    root = Path(path).expanduser() if path is not None else default_dir()
    stamp = root / "VERSION"
    if not force and stamp.exists() and stamp.read_text().strip() == _fingerprint(seed) \
            and (root / "manifest.jsonl").exists():
        return root
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    log.info("generating %s under %s", VERSION, root)
    items = _build(root, seed, jobs)
    with open(root / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")
    stamp.write_text(_fingerprint(seed) + "\n")
    return root


def load_manifest(root: str | Path) -> list[Item]:
    out = []
    with open(Path(root) / "manifest.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(Item(**json.loads(line)))
    return out
