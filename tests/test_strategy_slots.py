"""Time slots in the site's time zone, across DST changes, and call phases."""

from __future__ import annotations

import datetime as dt

import pytest

from earpiece.errors import ConfigError
from earpiece.strategy.slots import PhaseTracker, Slot, SlotScheme


def utc(year: int, month: int, day: int, hour: int, minute: int) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC).timestamp()


def test_london_spring_forward_moves_the_same_utc_time_into_the_next_part() -> None:
    s = SlotScheme(timezone="Europe/London")
    # 10:45 UTC: 10:45 GMT on Saturday, 11:45 BST on Sunday (clocks went forward at 01:00 UTC)
    assert s.slot(utc(2025, 3, 29, 10, 45)).key == "weekend-morning"
    assert s.slot(utc(2025, 3, 30, 10, 45)).key == "weekend-midday"
    assert s.slot(utc(2025, 3, 28, 10, 45)).key == "weekday-morning"
    assert s.slot(utc(2025, 3, 31, 10, 45)).key == "weekday-midday"
    # the boundary itself: 11:00 local is 10:00 UTC after the change
    assert s.slot(utc(2025, 3, 31, 9, 59)).part == "morning"
    assert s.slot(utc(2025, 3, 31, 10, 0)).part == "midday"


def test_new_york_fall_back() -> None:
    s = SlotScheme(timezone="America/New_York")
    # 22:30 UTC: 18:30 EDT on Saturday 1 Nov, 17:30 EST on Monday 3 Nov
    assert s.slot(utc(2025, 11, 1, 22, 30)).key == "weekend-evening"
    assert s.slot(utc(2025, 11, 3, 22, 30)).key == "weekday-afternoon"
    # 01:30 happens twice on 2 Nov; both are the (Saturday night's) evening, on a weekend day
    assert s.slot(utc(2025, 11, 2, 5, 30)).key == "weekend-evening"
    assert s.slot(utc(2025, 11, 2, 6, 30)).key == "weekend-evening"
    # 10:59 UTC: 06:59 EDT (morning) the day before, 05:59 EST (still evening) after
    assert s.slot(utc(2025, 11, 1, 10, 59)).part == "morning"
    assert s.slot(utc(2025, 11, 2, 10, 59)).part == "evening"


def test_new_york_spring_forward_and_local_weekday() -> None:
    s = SlotScheme(timezone="America/New_York")
    assert s.slot(utc(2025, 3, 8, 15, 30)).part == "morning"  # 10:30 EST
    assert s.slot(utc(2025, 3, 9, 15, 30)).part == "midday"  # 11:30 EDT
    # Sunday 23:30 in New York is Monday in UTC: still the weekend at the site
    assert s.slot(utc(2025, 3, 10, 3, 30)).key == "weekend-evening"


def test_custom_parts_weekend_and_no_day_split() -> None:
    s = SlotScheme.from_table({"timezone": "Asia/Dubai", "weekend": ["fri", "sat"],
                               "dayparts": [{"name": "am", "start": "09:00"},
                                            {"name": "pm", "start": "13:00"}]})
    assert s.slot(utc(2025, 6, 6, 6, 0)).key == "weekend-am"  # Friday 10:00 +04
    assert s.slot(utc(2025, 6, 8, 10, 0)).key == "weekday-pm"  # Sunday 14:00
    assert s.slot(utc(2025, 6, 8, 4, 0)).key == "weekday-pm"  # Sunday 08:00: last night's pm
    flat = SlotScheme(split_days=False)
    assert flat.slot(utc(2025, 6, 7, 12, 0)).key == "midday"
    assert len(SlotScheme().all_slots()) == 8
    assert len(SlotScheme(phase="elapsed").all_slots()) == 32


def test_phase_by_elapsed_time_and_by_events() -> None:
    at = utc(2025, 6, 2, 9, 0)
    s = SlotScheme(phase="elapsed")
    assert s.slot(at, elapsed_s=5).key == "weekday-morning/opening"
    assert s.slot(at, elapsed_s=45).phase == "discovery"
    assert s.slot(at, elapsed_s=130).phase == "offer"
    assert s.slot(at, elapsed_s=301).phase == "closing"
    # a mark moves the phase on early; elapsed time never moves it back
    assert s.slot(at, elapsed_s=10, marked="offer").phase == "offer"
    assert s.slot(at, elapsed_s=400, marked="discovery").phase == "closing"
    events = SlotScheme(phase="events")
    tracker = PhaseTracker()
    assert events.slot(at, elapsed_s=400, marked=tracker.phase).phase == "opening"
    tracker.mark("offer")
    tracker.mark("discovery")  # never back
    assert events.slot(at, marked=tracker.phase) == Slot("weekday", "morning", "offer")
    with pytest.raises(ValueError):
        tracker.mark("upsell")
    assert SlotScheme().slot(at, elapsed_s=400).phase is None


@pytest.mark.parametrize("table", [
    {"timezone": "Mars/Olympus"},
    {"dayparts": [{"name": "a", "start": "25:00"}]},
    {"dayparts": [{"name": "a", "start": "12:00"}, {"name": "b", "start": "09:00"}]},
    {"weekend": ["caturday"]},
    {"phase": "sometimes"},
    {"phase_starts_s": {"upsell": 10}},
    {"colour": "blue"},
])
def test_bad_slot_tables_name_the_key(table: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="slots"):
        SlotScheme.from_table(table, file="c.toml")
