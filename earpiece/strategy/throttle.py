"""Rate limit, de-duplication and hysteresis of prompts, per call (pure: the caller's clock).

:meth:`PromptThrottle.admit` says whether a prompt may go to the agent now:

* **rate limit**: at most one prompt per ``min_interval_s`` (default 10 s) per call ...
* **... unless the emotion state changed**: a prompt for a state other than that of the last
  prompt *delivered* may go early, but not within ``min_gap_s`` (default 2 s) of it. Comparing
  with the last delivered state (not the last seen one) is the hysteresis: a state that flips
  and flips back while its prompt was held does not open the gate;
* **de-duplication**: a prompt identical to one already delivered on the call (same
  ``key``) is not repeated, unless ``repeat_after_s`` is set and that long has passed.

Held prompts are dropped, not queued: the next emotion event produces a fresh one.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass
class _CallState:
    last_at: float | None = None
    last_state: str | None = None
    sent: dict[Hashable, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    why: str  # first, interval, state_changed, rate_limited, too_soon, duplicate

    def __bool__(self) -> bool:
        return self.admitted


class PromptThrottle:
    def __init__(self, min_interval_s: float = 10.0, min_gap_s: float = 2.0,
                 repeat_after_s: float | None = None) -> None:
        if min_interval_s < 0 or min_gap_s < 0 or min_gap_s > min_interval_s:
            raise ValueError("need 0 <= min_gap_s <= min_interval_s")
        self.min_interval_s = min_interval_s
        self.min_gap_s = min_gap_s
        self.repeat_after_s = repeat_after_s
        self._calls: dict[str, _CallState] = {}

    def admit(self, call_id: str, key: Hashable, state: str, now: float) -> Verdict:
        """Decide for one prompt (identified by ``key``, for emotion ``state``) at ``now``;
        an admitted prompt counts as delivered."""
        call = self._calls.setdefault(call_id, _CallState())
        sent_at = call.sent.get(key)
        if sent_at is not None and (self.repeat_after_s is None
                                    or now - sent_at < self.repeat_after_s):
            return Verdict(False, "duplicate")
        if call.last_at is None:
            why = "first"
        else:
            since = now - call.last_at
            if since >= self.min_interval_s:
                why = "interval"
            elif state != call.last_state:
                if since < self.min_gap_s:
                    return Verdict(False, "too_soon")
                why = "state_changed"
            else:
                return Verdict(False, "rate_limited")
        call.last_at = now
        call.last_state = state
        call.sent[key] = now
        return Verdict(True, why)

    def end_call(self, call_id: str) -> None:
        self._calls.pop(call_id, None)

    @property
    def calls(self) -> int:
        return len(self._calls)
