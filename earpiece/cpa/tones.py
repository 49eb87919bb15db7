"""Call-progress tone plans, a tone filter bank and a cadence matcher.

Pure functions and small state machines over 8 kHz 16-bit audio in 20 ms frames; no I/O.

* :class:`TonePlan` describes one tone of one country (ringback, busy, congestion, fax) as
  frequencies plus an on/off cadence; :data:`PLANS` holds the built-in plans and
  :func:`plans_for` selects them by country code.
* :class:`ToneBank` measures, per frame, which known frequency set explains the audio: for every
  set the fraction of the frame's 200-3800 Hz energy inside narrow bands around its frequencies
  (each band is widened by the drift tolerance, so +-1.5 % drift costs nothing). This is the
  FFT form of a Goertzel bank: per 20 ms hop one FFT of a 128 ms Hann window (resolves 440 vs
  480 Hz and 425 vs 450 Hz) and one of a 60 ms window (SIT segments, fax, beeps), then band
  sums, which is cheaper than one Goertzel per (frequency, drift step). It also reports the
  dominant pure tone of the frame (voicemail beeps).
* :class:`CadenceMatcher` turns per-frame on/off into runs and matches them against a plan's
  cadence with a relative tolerance (+-10 % jitter passes) plus a small absolute slack.
* :class:`SitMatcher` matches the three-segment special information tone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
FRAME_S = FRAME / RATE
SHORT = 480  # 60 ms window: SIT, fax and beeps (well separated, short segments)
WINDOW = 1024  # 128 ms window: the closely spaced 400-620 Hz call-progress tones
NFFT = 2048
LOW_HZ = 800.0  # sets whose lowest frequency is below this use the long window
_FULL_SCALE_POWER = 32768.0**2 / 2.0  # mean power of a full-scale sine = 0 dBFS

#: SIT segment frequencies (ITU-T E.180 / Telcordia: low and high variants of the first two).
SIT_FIRST = (913.8, 985.2)
SIT_SECOND = (1370.6, 1428.5)
SIT_THIRD = (1776.7,)


@dataclass(frozen=True)
class TonePlan:
    """One call-progress tone: ``freqs`` played together with the on/off ``cadence``.

    ``cadence`` alternates on and off durations in seconds starting with "on" and repeats; an
    empty cadence is a continuous tone that is recognised after ``min_on_s``. ``min_elements``
    is how many consecutive cadence elements must match before the tone is recognised.
    """

    name: str
    label: str  # ringback, busy, congestion, fax
    freqs: tuple[float, ...]
    cadence: tuple[float, ...] = ()
    min_elements: int = 2
    min_on_s: float = 0.8

    def __post_init__(self) -> None:
        if not self.freqs:
            raise ValueError(f"tone plan {self.name}: no frequencies")
        if len(self.cadence) % 2:
            raise ValueError(f"tone plan {self.name}: cadence needs on/off pairs")
        if any(d <= 0 for d in self.cadence):
            raise ValueError(f"tone plan {self.name}: cadence durations must be positive")


def _p(name: str, label: str, freqs: tuple[float, ...], cadence: tuple[float, ...],
       min_elements: int = 2, min_on_s: float = 0.8) -> TonePlan:
    return TonePlan(name, label, freqs, cadence, min_elements, min_on_s)


#: Built-in plans by country code ("common" applies everywhere).
PLANS: dict[str, tuple[TonePlan, ...]] = {
    "us": (
        _p("us.ringback", "ringback", (440.0, 480.0), (2.0, 4.0), 2),
        _p("us.busy", "busy", (480.0, 620.0), (0.5, 0.5), 3),
        _p("us.congestion", "congestion", (480.0, 620.0), (0.25, 0.25), 4),
    ),
    "cn": (
        _p("cn.ringback", "ringback", (450.0,), (1.0, 4.0), 2),
        _p("cn.busy", "busy", (450.0,), (0.35, 0.35), 3),
        _p("cn.congestion", "congestion", (450.0,), (0.7, 0.7), 3),
    ),
    "uk": (
        _p("uk.ringback", "ringback", (400.0, 450.0), (0.4, 0.2, 0.4, 2.0), 3),
        _p("uk.busy", "busy", (400.0,), (0.375, 0.375), 3),
    ),
    "eu": (
        _p("eu.ringback", "ringback", (425.0,), (1.0, 4.0), 2),
        _p("eu.busy", "busy", (425.0,), (0.5, 0.5), 3),
        _p("eu.congestion", "congestion", (425.0,), (0.25, 0.25), 4),
    ),
    "common": (
        _p("fax.cng", "fax", (1100.0,), (0.5, 3.0), 2),
        _p("fax.ced", "fax", (2100.0,), (), 1, 0.8),
    ),
}


def plans_for(countries: str | Iterable[str]) -> tuple[TonePlan, ...]:
    """Plans for a comma-separated list of country codes (``"all"`` = every plan).

    The fax plans ("common") are always included.
    """
    if isinstance(countries, str):
        names = [c.strip().lower() for c in countries.split(",") if c.strip()]
    else:
        names = [c.lower() for c in countries]
    if "all" in names:
        names = [n for n in PLANS if n != "common"]
    unknown = [n for n in names if n not in PLANS]
    if unknown:
        raise ValueError(f"unknown tone plan {', '.join(unknown)} (known: all, "
                         f"{', '.join(n for n in PLANS if n != 'common')})")
    out: list[TonePlan] = []
    for n in [*names, "common"]:
        for plan in PLANS[n]:
            if plan not in out:
                out.append(plan)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FrameTones:
    """What the tone bank saw in one 20 ms frame."""

    level_dbfs: float  # power of the newest 20 ms, dBFS (full-scale sine = 0)
    tone: int  # index into ToneBank.freq_sets of the best matching set, or -1
    tone_fraction: float  # share of the window's energy in that set's bands
    pure_hz: float  # frequency of the dominant narrow-band component (0 if none)
    pure_fraction: float  # share of the window's energy within +-(2 % + 20 Hz) of it


def dbfs(power: float) -> float:
    """Mean power of int16-scaled samples -> dBFS (full-scale sine = 0 dBFS)."""
    return 10.0 * float(np.log10(max(power, 1e-3) / _FULL_SCALE_POWER))


class ToneBank:
    """Band-energy detector for a list of frequency sets (see module docstring).

    ``analyse(window)`` takes the newest :data:`WINDOW` samples (float64) and returns
    :class:`FrameTones`. A set matches a frame when the energy in the union of its bands is at
    least ``min_fraction`` of the frame energy, every component holds at least
    ``min_component`` of it (both tones of a dual tone are present), the newest 20 ms is not
    much quieter than the window (so a tone's end is seen within one frame) and the level is
    above ``min_level_dbfs``. When several sets match, the one with the largest fraction wins.
    """

    def __init__(self, freq_sets: Sequence[tuple[float, ...]], *, drift: float = 0.015,
                 extra_hz: float = 12.0, short_extra_hz: float = 25.0,
                 min_fraction: float = 0.7, min_component: float = 0.2,
                 min_level_dbfs: float = -45.0) -> None:
        self.freq_sets = tuple(freq_sets)
        self.min_fraction = min_fraction
        self.min_component = min_component
        self.min_level_dbfs = min_level_dbfs
        self.drift = drift
        self._long_f = np.fft.rfftfreq(NFFT, 1.0 / RATE)
        self._short_f = np.fft.rfftfreq(NFFT, 1.0 / RATE)
        self._long_in = (self._long_f >= 200.0) & (self._long_f <= 3800.0)
        self._hann_long = np.hanning(WINDOW)
        self._hann_short = np.hanning(SHORT)
        self.short_extra_hz = short_extra_hz
        self._long_sets = [i for i, fs in enumerate(self.freq_sets) if min(fs) < LOW_HZ]
        self._short_sets = [i for i, fs in enumerate(self.freq_sets) if min(fs) >= LOW_HZ]
        self._banks = {}
        for name, idx, extra in (("long", self._long_sets, extra_hz),
                                 ("short", self._short_sets, short_extra_hz)):
            unions, comps, owner = [], [], []
            for i in idx:
                union = np.zeros(self._long_f.shape, dtype=bool)
                for f in self.freq_sets[i]:
                    m = self._band(f, extra)
                    union |= m
                    comps.append(m.astype(np.float64))
                    owner.append(i)
                unions.append(union.astype(np.float64))
            size = self._long_f.size
            self._banks[name] = (
                np.array(unions) if unions else np.zeros((0, size)),
                np.array(comps) if comps else np.zeros((0, size)),
                np.array(owner, dtype=np.int64), np.array(idx, dtype=np.int64))

    def _band(self, f: float, extra: float) -> npt.NDArray[np.bool_]:
        half = f * self.drift + extra
        return np.asarray((self._long_f >= f - half) & (self._long_f <= f + half))

    def _score(self, name: str, power: npt.NDArray[np.float64], total: float,
               best: tuple[int, float]) -> tuple[int, float]:
        unions, comps, owner, idx = self._banks[name]
        if not unions.shape[0]:
            return best
        fractions = (unions @ power) / total
        ok = fractions >= self.min_fraction
        if not ok.any():
            return best
        comp_fr = (comps @ power) / total
        for j, i in enumerate(idx.tolist()):
            if not ok[j]:
                continue
            mine = comp_fr[owner == i]
            weakest = float(mine.min())
            if weakest < self.min_component:
                continue
            # rank by how evenly the set explains the energy: a single tone that happens to
            # fall inside one band of a dual set scores low on the dual set
            rank = min(float(fractions[j]), mine.size * weakest)
            if rank > best[1]:
                best = (i, rank)
        return best

    def analyse(self, window: npt.NDArray[np.float64]) -> FrameTones:
        if window.shape[0] != WINDOW:
            raise ValueError(f"window must have {WINDOW} samples")
        newest = window[-FRAME:]
        frame_power = float(np.dot(newest, newest)) / FRAME
        level = dbfs(frame_power)
        if level < self.min_level_dbfs:
            return FrameTones(level, -1, 0.0, 0.0, 0.0)
        short = window[-SHORT:]
        short_power = float(np.dot(short, short)) / SHORT
        spec = np.fft.rfft(short * self._hann_short, NFFT)
        p_short = spec.real * spec.real + spec.imag * spec.imag
        t_short = float(p_short[self._long_in].sum())
        if t_short <= 0.0:
            return FrameTones(level, -1, 0.0, 0.0, 0.0)
        # dominant pure tone (short window)
        inband = np.where(self._long_in, p_short, 0.0)
        peak = int(np.argmax(inband))
        peak_hz = float(self._long_f[peak])
        half = peak_hz * 0.02 + self.short_extra_hz
        lo = int(np.searchsorted(self._long_f, peak_hz - half))
        hi = int(np.searchsorted(self._long_f, peak_hz + half, side="right"))
        band = p_short[lo:hi]
        pure_fraction = float(band.sum()) / t_short
        pure_hz = float(np.dot(self._long_f[lo:hi], band) / max(float(band.sum()), 1e-12))
        best: tuple[int, float] = (-1, 0.0)
        long_power = float(np.dot(window, window)) / WINDOW
        # the newest 20 ms must carry the tone itself (not just the tail of the window)
        if frame_power >= 0.25 * max(short_power, long_power):
            best = self._score("short", p_short, t_short, best)
            spec_l = np.fft.rfft(window * self._hann_long, NFFT)
            p_long = spec_l.real * spec_l.real + spec_l.imag * spec_l.imag
            t_long = float(p_long[self._long_in].sum())
            if t_long > 0.0:
                best = self._score("long", p_long, t_long, best)
        return FrameTones(level, best[0], best[1], pure_hz, pure_fraction)


class CadenceMatcher:
    """Matches runs of on/off frames against a plan's cadence.

    Each cadence element matches a run whose duration is within ``d * (1 +- tolerance) +-
    slack_s``. The run in progress counts once it is long enough (an off run that is still in
    progress already counts after ``relaxed_off_s`` so a 4 s ringback pause need not be waited
    out). A run that started with the stream is never used: its true length is unknown.
    """

    def __init__(self, plan: TonePlan, *, tolerance: float = 0.12, slack_s: float = 0.05,
                 relaxed_off_s: float = 1.0) -> None:
        self.plan = plan
        self.tolerance = tolerance
        self.slack_s = slack_s
        self.relaxed_off_s = relaxed_off_s
        self._runs: list[list[float]] = []  # [on (1.0/0.0), duration_s]
        self._first_truncated = True
        self.matched_elements = 0
        self._keep = max(2 * len(plan.cadence) + 2, 6)

    def reset(self) -> None:
        self._runs.clear()
        self._first_truncated = True
        self.matched_elements = 0

    def _bounds(self, d: float) -> tuple[float, float]:
        return d * (1 - self.tolerance) - self.slack_s, d * (1 + self.tolerance) + self.slack_s

    def update(self, on: bool, frame_s: float = FRAME_S) -> bool:
        """Add one frame; True when the plan is recognised (stays True while it keeps matching)."""
        flag = 1.0 if on else 0.0
        runs = self._runs
        if runs and runs[-1][0] == flag:
            runs[-1][1] += frame_s
        elif len(runs) >= 2 and runs[-1][1] <= frame_s + 1e-9:
            # a one-frame glitch between two runs of the same state: merge it away
            glitch = runs.pop()
            runs[-1][1] += glitch[1] + frame_s
        else:
            if not self._runs and not on:
                self._first_truncated = False  # stream began in silence: the first tone is whole
            self._runs.append([flag, frame_s])
            if len(self._runs) > self._keep:
                del self._runs[0]
                self._first_truncated = False
        self.matched_elements = self._match()
        return self.matched_elements >= self.plan.min_elements

    def _match(self) -> int:
        cad = self.plan.cadence
        runs = self._runs
        if not cad:
            last = runs[-1]
            ok = last[0] == 1.0 and last[1] >= self.plan.min_on_s
            if ok and len(runs) == 1 and self._first_truncated:
                return 1  # a continuous tone may start with the stream
            return 1 if ok else 0
        n = len(cad)
        best = 0
        for start in range(len(runs)):
            if runs[start][0] != 1.0 or (start == 0 and self._first_truncated):
                continue
            for phase in range(0, n, 2):  # on-elements only
                count = 0
                for k in range(start, len(runs)):
                    d = cad[(phase + k - start) % n]
                    lo, hi = self._bounds(d)
                    dur = runs[k][1]
                    if k == len(runs) - 1:  # in progress
                        need = lo if runs[k][0] == 1.0 else min(lo, self.relaxed_off_s)
                        if dur > hi or dur < need:
                            break
                    elif not lo <= dur <= hi:
                        break
                    count += 1
                best = max(best, count)
        return best


class SitMatcher:
    """Special information tone: three consecutive single-frequency segments.

    Segment durations are 274 or 380 ms (accepted: 0.17-0.5 s for the first two, >= 0.17 s for
    the third); at most ``max_gap_s`` of anything else between segments.
    """

    def __init__(self, first: Sequence[int], second: Sequence[int], third: Sequence[int], *,
                 min_s: float = 0.17, max_s: float = 0.5, max_gap_s: float = 0.08) -> None:
        self._steps = (frozenset(first), frozenset(second), frozenset(third))
        self.min_s = min_s
        self.max_s = max_s
        self.max_gap_s = max_gap_s
        self._runs: list[list[float]] = []  # [step index or -1, duration, tone index]

    def reset(self) -> None:
        self._runs.clear()

    def update(self, tone: int, frame_s: float = FRAME_S) -> bool:
        step = -1.0
        for i, ids in enumerate(self._steps):
            if tone in ids:
                step = float(i)
                break
        if self._runs and self._runs[-1][0] == step:
            self._runs[-1][1] += frame_s
        else:
            self._runs.append([step, frame_s, float(tone)])
            if len(self._runs) > 12:
                del self._runs[0]
        return self._match()

    def _segs(self) -> list[list[float]]:
        return [r for r in self._runs if not (r[0] == -1.0 and r[1] <= self.max_gap_s)]

    def partial(self) -> bool:
        """A SIT may be under way: the newest runs are a valid start of the sequence (the
        segment in progress not yet too long, or a short gap after a finished one)."""
        segs = self._segs()
        if not segs or segs[-1][0] < 0:
            return False
        k = int(segs[-1][0])
        if len(segs) < k + 1 or (k < 2 and segs[-1][1] > self.max_s):
            return False
        return all(segs[-1 - k + j][0] == float(j)
                   and self.min_s <= segs[-1 - k + j][1] <= self.max_s for j in range(k))

    def segments(self) -> list[tuple[int, float]]:
        """(tone index, duration s) of the last three segments: the evidence of a match."""
        return [(int(r[2]), r[1]) for r in self._segs()[-3:]]

    def _match(self) -> bool:
        segs = self._segs()
        if len(segs) < 3:
            return False
        a, b, c = segs[-3:]
        return (a[0] == 0.0 and b[0] == 1.0 and c[0] == 2.0
                and self.min_s <= a[1] <= self.max_s and self.min_s <= b[1] <= self.max_s
                and c[1] >= self.min_s)


def sit_sets() -> tuple[tuple[float, ...], ...]:
    return tuple((f,) for f in (*SIT_FIRST, *SIT_SECOND, *SIT_THIRD))


def frequency_sets(plans: Sequence[TonePlan]) -> tuple[tuple[float, ...], ...]:
    """Unique frequency sets of ``plans`` followed by the SIT segment frequencies."""
    out: list[tuple[float, ...]] = []
    for p in plans:
        if p.freqs not in out:
            out.append(p.freqs)
    for s in sit_sets():
        if s not in out:
            out.append(s)
    return tuple(out)


def synth_tone(freqs: Sequence[float], dur_s: float, *, level_dbfs: float = -15.0,
               rate: int = RATE, phase: float = 0.0) -> npt.NDArray[np.float64]:
    """Sum of sines, each component at ``level_dbfs`` (peak = full scale at 0 dBFS)."""
    n = round(dur_s * rate)
    t = np.arange(n) / rate
    amp = 32767.0 * 10 ** (level_dbfs / 20.0)
    out = np.zeros(n)
    for i, f in enumerate(freqs):
        out += amp * np.sin(2 * np.pi * f * t + phase + i * 1.3)
    return out


def resample_to_8k(samples: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
    """Polyphase resampling of int16 audio to 8 kHz (identity at 8 kHz)."""
    if rate == RATE:
        return samples
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate, RATE)
    y = resample_poly(samples.astype(np.float64), RATE // g, rate // g)
    out: npt.NDArray[np.int16] = np.clip(np.round(y), -32768, 32767).astype(np.int16)
    return out
