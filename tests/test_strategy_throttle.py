"""Per-call rate limit, de-duplication and hysteresis of prompts, on a fake clock."""

from __future__ import annotations

import pytest

from earpiece.strategy.throttle import PromptThrottle


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def tick(self, s: float) -> float:
        self.t += s
        return self.t


def test_one_prompt_per_ten_seconds_per_call() -> None:
    th, clock = PromptThrottle(), Clock()
    assert th.admit("c1", "a", "positive", clock.t).why == "first"
    assert th.admit("c1", "b", "positive", clock.tick(5)).why == "rate_limited"
    assert th.admit("c2", "b", "positive", clock.t).why == "first"  # other calls unaffected
    assert not th.admit("c1", "b", "positive", clock.tick(4.9))
    assert th.admit("c1", "b", "positive", clock.tick(0.1)).why == "interval"


def test_state_change_goes_early_but_not_within_the_gap() -> None:
    th, clock = PromptThrottle(), Clock()
    assert th.admit("c", "rec", "positive", clock.t)
    assert th.admit("c", "soothe", "negative", clock.tick(1)).why == "too_soon"
    assert th.admit("c", "soothe", "negative", clock.tick(1.5)).why == "state_changed"
    assert th.admit("c", "soothe2", "negative", clock.tick(3)).why == "rate_limited"


def test_hysteresis_compares_with_the_last_delivered_state() -> None:
    th, clock = PromptThrottle(), Clock()
    assert th.admit("c", "rec", "positive", clock.t)
    # negative held (too soon), then back to positive: no state change against what was sent
    assert not th.admit("c", "soothe", "negative", clock.tick(1))
    assert th.admit("c", "rec2", "positive", clock.tick(3)).why == "rate_limited"


def test_identical_prompt_is_not_repeated() -> None:
    th, clock = PromptThrottle(), Clock()
    assert th.admit("c", "same", "neutral", clock.t)
    assert th.admit("c", "same", "neutral", clock.tick(60)).why == "duplicate"
    assert th.admit("c", "same", "negative", clock.tick(60)).why == "duplicate"
    again = PromptThrottle(repeat_after_s=120)
    assert again.admit("c", "same", "neutral", 0)
    assert not again.admit("c", "same", "neutral", 119)
    assert again.admit("c", "same", "neutral", 120)


def test_end_call_forgets_and_settings_are_checked() -> None:
    th = PromptThrottle()
    th.admit("c", "x", "neutral", 0)
    assert th.calls == 1
    th.end_call("c")
    assert th.calls == 0
    assert th.admit("c", "x", "neutral", 1).why == "first"
    with pytest.raises(ValueError):
        PromptThrottle(min_interval_s=1, min_gap_s=5)
