"""Turn-taking measures of one call (evaluation 2): agent response speed, overtalk, silences.

A pure calculator on the final transcripts' timings (``start_s`` / ``end_s``, seconds on the
call clock: the recogniser adds each stream's offset from the call start, so both parties share
one clock). Each party's utterances are merged into speech intervals first (overlapping or
touching utterances of one party are one interval).

- **Response**: a customer interval ends at ``e`` while the agent is silent, and the agent's
  next interval starts at ``s >= e`` before the customer speaks again: one response of
  ``s - e`` seconds. An agent already speaking at ``e`` is overtalk, not a response.
- **Overtalk**: the stretches where both parties speak at once, of at least
  ``min_overtalk_s`` (shorter ones are back-channel "mm-hm"s).
- **Long silence**: a gap of at least ``long_silence_s`` between the first and the last
  speech of the call in which neither party speaks.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Interval = tuple[float, float]


@dataclass(frozen=True)
class Utterance:
    party: str  # "customer" or "agent"
    start_s: float
    end_s: float


@dataclass(frozen=True)
class CallTiming:
    responses: tuple[float, ...] = ()  # seconds, in call order
    overtalk: tuple[Interval, ...] = ()
    silences: tuple[Interval, ...] = ()
    agent_talk_s: float = 0.0
    customer_talk_s: float = 0.0

    @property
    def response_mean_s(self) -> float | None:
        return statistics.fmean(self.responses) if self.responses else None

    @property
    def response_max_s(self) -> float | None:
        return max(self.responses) if self.responses else None

    @property
    def response_median_s(self) -> float | None:
        return statistics.median(self.responses) if self.responses else None

    @property
    def overtalk_s(self) -> float:
        return sum(e - s for s, e in self.overtalk)

    @property
    def silence_s(self) -> float:
        return sum(e - s for s, e in self.silences)

    @property
    def longest_silence_s(self) -> float:
        return max((e - s for s, e in self.silences), default=0.0)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted union of ``intervals`` (touching ones join; empty or reversed ones are dropped)."""
    out: list[Interval] = []
    for s, e in sorted(i for i in intervals if i[1] > i[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def intersect(a: Sequence[Interval], b: Sequence[Interval]) -> list[Interval]:
    """Where two sorted unions overlap."""
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def measure(utterances: Iterable[Utterance], *, long_silence_s: float = 5.0,
            min_overtalk_s: float = 0.3) -> CallTiming:
    """The call's :class:`CallTiming` from its utterances (any order)."""
    utts = list(utterances)
    agent = merge((u.start_s, u.end_s) for u in utts if u.party == "agent")
    customer = merge((u.start_s, u.end_s) for u in utts if u.party == "customer")
    responses: list[float] = []
    for k, (_, end) in enumerate(customer):
        next_customer = customer[k + 1][0] if k + 1 < len(customer) else float("inf")
        if any(s < end < e for s, e in agent):
            continue  # the agent is talking over the end of the customer's turn
        start = next((s for s, _ in agent if end <= s < next_customer), None)
        if start is not None:
            responses.append(round(start - end, 3))
    overtalk = [(s, e) for s, e in intersect(agent, customer) if e - s >= min_overtalk_s]
    both = merge(agent + customer)
    silences = [(both[k][1], both[k + 1][0]) for k in range(len(both) - 1)
                if both[k + 1][0] - both[k][1] >= long_silence_s]
    return CallTiming(
        responses=tuple(responses), overtalk=tuple(overtalk), silences=tuple(silences),
        agent_talk_s=round(sum(e - s for s, e in agent), 3),
        customer_talk_s=round(sum(e - s for s, e in customer), 3))
