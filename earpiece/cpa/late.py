"""After the verdict: what may still revise it, and tone-edge bookkeeping for the detector.

:class:`LateWatch` is the detector's state after its first post-answer verdict. For
``revise_s`` seconds (or until the agent has spoken and the customer answered, see
:meth:`LateWatch.agent`) the detector keeps listening:

* a call-progress tone or SIT (SIT first) that differs from the verdict -> that tone's label,
  whatever the first verdict was (false answer supervision: the carrier answers, then plays
  SIT + intercept message, busy, reorder, ringback, or a fax answers with CED);
* after a ``human`` verdict only: a beep, a monologue that runs on for ``late_monologue_s``
  after the verdict (the recorded message after a short "hello" and a pause; music on hold),
  or machine wording in a later words snapshot -> ``machine_late``.

Each revision is a new :class:`~earpiece.cpa.options.CpaResult` (phase ``after_verdict``,
``revises`` = the first label, ``after_s`` = seconds since the first verdict); the first
verdict stays as it was. At most one revision per call. Pure state, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from earpiece.cpa.options import CpaOptions
from earpiece.cpa.tones import FRAME_S

#: The label of a human verdict revised to machine.
MACHINE_LATE = "machine_late"


@dataclass
class Utterance:
    """A stretch of speech bursts joined across short pauses (times after answer)."""

    start_s: float
    last_speech_s: float
    speech_s: float = 0.0
    bursts: int = 1
    burst_last_s: float = 0.0
    max_pause_s: float = 0.0
    edge_s: float = 0.0  # of speech_s, frames at a tone's edges

    @property
    def real_s(self) -> float:
        return self.speech_s - self.edge_s


def rules_verdict(o: CpaOptions, utt: Utterance, t: float) -> tuple[str, float, str] | None:
    """``amd="rules"``: the previous fixed timing rules; (label, confidence, rule) or None."""
    span = utt.last_speech_s - utt.start_s
    if span >= o.long_greeting_s or utt.bursts > o.max_human_bursts:
        conf = min(0.99, 0.75 + 0.1 * utt.bursts / 3 + 0.1 * (span - o.long_greeting_s))
        rule = "long_greeting" if span >= o.long_greeting_s else "many_words"
        return "machine", conf, rule
    silent = t - utt.last_speech_s
    # a very short greeting ("hello?") needs less silence behind it than a longer one,
    # which may be the first phrase of a recording
    wait = (o.human_silence_short_s if span <= o.short_greeting_s
            and utt.bursts <= 2 else o.human_silence_s)
    if silent >= wait:
        conf = min(0.97, 0.65 + 0.25 * (1 - span / o.long_greeting_s)
                   + 0.1 * min(1.0, silent / 1.0))
        return "human", conf, "short_greeting_then_silence"
    return None


@dataclass
class LateWatch:
    """Watch after the first verdict ``label`` given at ``verdict_s`` (seconds after answer)."""

    label: str
    verdict_s: float
    until_s: float
    agent_speech_s: float = 0.0  # agent speech heard since the verdict
    agent_last_s: float = -1e9
    answered_agent: bool = False  # the customer spoke after the agent had spoken
    done: bool = False

    def open(self, t: float) -> bool:
        """Still watching at ``t``; closes the watch for good once its time is up."""
        if not self.done and (t > self.until_s or self.answered_agent):
            self.done = True
        return not self.done

    def agent(self, speaking: bool, t: float) -> None:
        """The agent's voice activity (one 20 ms frame), when the service knows it."""
        if speaking and t >= self.verdict_s:
            self.agent_speech_s += FRAME_S
            self.agent_last_s = t

    def customer_started(self, t: float) -> None:
        """A new customer utterance began at ``t``: an answer, if the agent spoke before it."""
        if self.agent_speech_s >= 0.5 and t > self.agent_last_s + FRAME_S:
            self.answered_agent = True


@dataclass
class ToneEdges:
    """Speech-looking frames at a tone's onset and end are the tone's edges, not speech.

    The tone bank needs most of its window filled before it names a tone, so the one or two
    frames where a tone starts or stops can look like speech; a cadenced tone (ringback,
    reorder) then reads as a bursty "greeting". ``speech`` counts those frames apart.
    """

    frames: int = 2
    _tone_until_s: float = -1e9
    _recent: int = 0  # consecutive speech frames just before now

    def frame(self, tone: bool, speech: bool, t: float) -> tuple[bool, int]:
        """(this frame is a tone edge, earlier speech frames now known to be an onset edge)."""
        if tone:
            back, self._recent = self._recent, 0
            self._tone_until_s = t + self.frames * FRAME_S
            return False, back
        self._recent = min(self.frames, self._recent + 1) if speech else 0
        return speech and t <= self._tone_until_s + 1e-9, 0


__all__ = ["MACHINE_LATE", "LateWatch", "ToneEdges", "Utterance", "rules_verdict"]
