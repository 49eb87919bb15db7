"""Call time slots: time of day x weekday in the site's time zone, optionally x call phase.

A campaign's ``[slots]`` table configures a :class:`SlotScheme`:

* ``timezone``: IANA name (``zoneinfo``); slot boundaries are wall-clock times there, so a
  call at 10:45 UTC is "morning" in London in winter and "midday" in summer;
* ``dayparts``: ``[{name, start = "HH:MM"}, ...]`` in order; a time before the first start
  belongs to the last part (the evening runs past midnight). Default morning 06:00, midday
  11:00, afternoon 14:00, evening 18:00;
* ``weekend``: day names that form the weekend (default ``["sat", "sun"]``); ``split_days =
  false`` drops the weekday / weekend split;
* ``phase``: ``"none"`` (default), ``"elapsed"`` (phase from the seconds since answer and
  ``phase_starts_s``) or ``"events"`` (only marks: :class:`PhaseTracker.mark`). With
  ``"elapsed"`` a mark can still move the phase on earlier; a phase never goes back.

A slot's :attr:`Slot.key` (``"weekday-morning"``, ``"weekend-evening/offer"``) is what the
recommender keys its statistics by and what a history file names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from earpiece.errors import ConfigError

PHASES = ("opening", "discovery", "offer", "closing")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
PhaseMode = Literal["none", "elapsed", "events"]

DEFAULT_DAYPARTS: tuple[tuple[str, int], ...] = (
    ("morning", 6 * 60), ("midday", 11 * 60), ("afternoon", 14 * 60), ("evening", 18 * 60))
DEFAULT_PHASE_STARTS: Mapping[str, float] = {
    "opening": 0.0, "discovery": 30.0, "offer": 120.0, "closing": 300.0}


@dataclass(frozen=True)
class Slot:
    """Where a moment of a call falls: day type, part of the day, and (optionally) phase."""

    day: str  # "weekday", "weekend", or "any" without the split
    part: str
    phase: str | None = None

    @property
    def key(self) -> str:
        base = self.part if self.day == "any" else f"{self.day}-{self.part}"
        return base if self.phase is None else f"{base}/{self.phase}"

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True)
class SlotScheme:
    timezone: str = "UTC"
    #: (name, start in minutes after local midnight), ascending
    dayparts: tuple[tuple[str, int], ...] = DEFAULT_DAYPARTS
    weekend: frozenset[int] = frozenset({5, 6})  # datetime.weekday(): Monday = 0
    split_days: bool = True
    phase: PhaseMode = "none"
    phase_starts_s: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PHASE_STARTS))

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"unknown time zone {self.timezone!r}",
                              key="slots.timezone") from None
        if not self.dayparts:
            raise ConfigError("at least one day part is needed", key="slots.dayparts")
        starts = [m for _, m in self.dayparts]
        if starts != sorted(starts) or len(set(starts)) != len(starts):
            raise ConfigError("day parts must start at increasing times", key="slots.dayparts")
        unknown = set(self.phase_starts_s) - set(PHASES)
        if unknown:
            raise ConfigError(f"unknown phases {sorted(unknown)}; use {PHASES}",
                              key="slots.phase_starts_s")

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, at: float) -> dt.datetime:
        """Wall-clock time at the site for a Unix timestamp (DST-aware)."""
        return dt.datetime.fromtimestamp(at, tz=self.zone)

    def part_of(self, local: dt.datetime) -> str:
        minute = local.hour * 60 + local.minute
        name = self.dayparts[-1][0]  # before the first start: the previous evening
        for part, start in self.dayparts:
            if minute >= start:
                name = part
        return name

    def day_of(self, local: dt.datetime) -> str:
        if not self.split_days:
            return "any"
        return "weekend" if local.weekday() in self.weekend else "weekday"

    def phase_at(self, elapsed_s: float) -> str:
        """The phase by elapsed seconds since answer (the latest phase whose start has passed)."""
        current = PHASES[0]
        for name in PHASES:
            start = self.phase_starts_s.get(name)
            if start is not None and elapsed_s >= start:
                current = name
        return current

    def slot(self, at: float, *, elapsed_s: float | None = None,
             marked: str | None = None) -> Slot:
        """The slot of a call that started (was answered) at ``at``.

        ``elapsed_s``: seconds since answer (phase ``"elapsed"``); ``marked``: the latest phase
        set by an event (:class:`PhaseTracker`). Without phases both are ignored.
        """
        local = self.local(at)
        phase: str | None = None
        if self.phase != "none":
            phase = marked or PHASES[0]
            if self.phase == "elapsed" and elapsed_s is not None:
                by_time = self.phase_at(elapsed_s)
                if PHASES.index(by_time) > PHASES.index(phase):
                    phase = by_time
        return Slot(day=self.day_of(local), part=self.part_of(local), phase=phase)

    def all_slots(self) -> list[Slot]:
        days = ["weekday", "weekend"] if self.split_days else ["any"]
        phases: Sequence[str | None] = PHASES if self.phase != "none" else (None,)
        return [Slot(d, p, ph) for d in days for p, _ in self.dayparts for ph in phases]

    @classmethod
    def from_table(cls, table: Mapping[str, Any], *, file: str | None = None) -> SlotScheme:
        """Build from a campaign's ``[slots]`` table, naming the key on a bad value."""
        known = {"timezone", "dayparts", "weekend", "split_days", "phase", "phase_starts_s"}
        extra = set(table) - known
        if extra:
            raise ConfigError(f"unknown keys {sorted(extra)}", file=file, key="slots")
        kwargs: dict[str, Any] = {}
        try:
            if "timezone" in table:
                kwargs["timezone"] = str(table["timezone"])
            if "dayparts" in table:
                kwargs["dayparts"] = tuple((str(p["name"]), _minutes(str(p["start"])))
                                           for p in table["dayparts"])
            if "weekend" in table:
                kwargs["weekend"] = frozenset(DAY_NAMES.index(str(d).lower()[:3])
                                              for d in table["weekend"])
            if "split_days" in table:
                kwargs["split_days"] = bool(table["split_days"])
            if "phase" in table:
                if table["phase"] not in ("none", "elapsed", "events"):
                    raise ValueError("phase must be none, elapsed or events")
                kwargs["phase"] = table["phase"]
            if "phase_starts_s" in table:
                kwargs["phase_starts_s"] = {str(k): float(v)
                                            for k, v in table["phase_starts_s"].items()}
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"invalid slots: {exc}", file=file, key="slots") from None
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(str(exc), file=file) from None


def _minutes(hhmm: str) -> int:
    hours, _, minutes = hhmm.partition(":")
    h, m = int(hours), int(minutes or 0)
    if not (0 <= h < 24 and 0 <= m < 60):
        raise ValueError(f"bad time {hhmm!r}")
    return h * 60 + m


class PhaseTracker:
    """A call's phase from events: :meth:`mark` moves it on (never back)."""

    def __init__(self) -> None:
        self._phase: str | None = None

    @property
    def phase(self) -> str | None:
        return self._phase

    def mark(self, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown phase {phase!r}; use {PHASES}")
        if self._phase is None or PHASES.index(phase) > PHASES.index(self._phase):
            self._phase = phase
