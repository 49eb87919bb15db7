"""Typed events published on the in-process bus (:mod:`earpiece.bus`).

Later stages (media fork, ASR, emotion, strategy, delivery, CRM, dashboard) subscribe to these.
Every event is a frozen dataclass carrying the Earpiece ``call_id`` and a wall-clock ``at``.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any, Literal

Party = Literal["customer", "agent"]
Direction = Literal["outbound", "inbound", "unknown"]


class CallState(enum.StrEnum):
    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    CONGESTION = "congestion"
    FAILED = "failed"
    REJECTED = "rejected"
    ENDED = "ended"


#: States that settle the outcome of the dial attempt.
OUTCOME_STATES = frozenset(
    {
        CallState.ANSWERED,
        CallState.NO_ANSWER,
        CallState.BUSY,
        CallState.CONGESTION,
        CallState.FAILED,
        CallState.REJECTED,
    }
)


class ChannelRole(enum.StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    LOCAL_PEER = "local_peer"  # the other half of a Local ;1/;2 pair
    SNOOP = "snoop"
    EXTERNAL_MEDIA = "external_media"
    HELPER = "helper"
    UNKNOWN = "unknown"


def _now() -> float:
    return time.time()


@dataclass(frozen=True, kw_only=True)
class CallEvent:
    call_id: str
    at: float = field(default_factory=_now)


@dataclass(frozen=True, kw_only=True)
class CallStarted(CallEvent):
    direction: Direction
    channel: str
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ChannelJoined(CallEvent):
    channel: str  # channel name, e.g. PJSIP/cust1-00000001
    uniqueid: str
    role: ChannelRole


@dataclass(frozen=True, kw_only=True)
class ChannelLeft(CallEvent):
    channel: str
    uniqueid: str
    cause: int | None = None


@dataclass(frozen=True, kw_only=True)
class CallStateChanged(CallEvent):
    old: CallState
    new: CallState
    source: str  # what decided it, e.g. "ami:OriginateResponse Reason=4"


@dataclass(frozen=True, kw_only=True)
class CallOutcome(CallEvent):
    """The settled outcome of a dial attempt (signalling and/or audio)."""

    outcome: CallState
    source: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class CallTagged(CallEvent):
    tags: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class CallEnded(CallEvent):
    outcome: CallState | None
    hangup_cause: int | None = None
    #: Why the call was closed when not by its own hangup, e.g. "ended while Earpiece was down"
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class SpeechSegment(CallEvent):
    party: Party
    start_s: float  # relative to the start of the party's stream
    end_s: float


@dataclass(frozen=True, kw_only=True)
class CpaDecision(CallEvent):
    """Call-progress / answering-machine verdict from audio."""

    label: str  # human, machine, fax, silence, ringback, busy, congestion, sit, unknown
    confidence: float
    decision_s: float
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Word:
    word: str
    start_s: float
    end_s: float
    probability: float = 1.0


@dataclass(frozen=True, kw_only=True)
class Transcript(CallEvent):
    party: Party
    text: str
    final: bool
    start_s: float
    end_s: float
    language: str
    words: tuple[Word, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AsrSkipped(CallEvent):
    """Speech recognition does not transcribe this call (published once per call).

    ``reason`` ``"capacity"``: the recogniser was at its ``[asr] max_streams`` when the call's
    audio began, so the call was not admitted (calls already admitted keep their finals).
    """

    reason: str


@dataclass(frozen=True, kw_only=True)
class EmotionScored(CallEvent):
    """One utterance's emotion (text valence x voice arousal) and the party's call index."""

    party: Party
    label: str  # positive, neutral, negative
    valence: float  # fused score of the utterance, [-1, 1]
    arousal: float | None  # voice arousal, [-1, 1]; None without audio
    confidence: float
    start_s: float
    end_s: float
    text: str = ""
    index: float = 0.0  # the party's smoothed per-call emotion index after it, [-1, 1]
    state: str = "neutral"  # the party's call state after it


@dataclass(frozen=True, kw_only=True)
class EmotionChanged(CallEvent):
    """A party's per-call emotion state changed (smoothed, with hysteresis)."""

    party: Party
    old: str
    new: str
    index: float
    utterance: int  # how many of the party's utterances had been scored


@dataclass(frozen=True, kw_only=True)
class PromptReady(CallEvent):
    """The strategy's next move for the agent, with the reason it was chosen.

    ``kind``: recommend, introduce, answer, discover or soothe; ``reason``: emotion state and
    index, slot, product, success estimate (posterior mean, lower bound, evidence count), the
    threshold and the rule that fired (:class:`earpiece.strategy.policy.Reason`).
    """

    kind: str
    text: str
    language: str
    slot: str
    product: str | None = None
    rule: str = ""
    reason: dict[str, Any] = field(default_factory=dict)
    prompt_id: str = ""  # set by the strategy stage; delivery reports refer to it


@dataclass(frozen=True, kw_only=True)
class PromptDelivered(CallEvent):
    """What became of one prompt on one delivery channel.

    ``channel``: ``phone`` (AMI ``MessageSend`` to the agent's desk phone), ``feed`` (the live
    websocket feed) or ``whisper``; ``status``: ``sent``, ``failed`` (``detail`` keeps the
    PBX's reason, e.g. "Message failed to send.") or ``skipped`` (nothing to send it to);
    ``target``: e.g. ``pjsip:agent1``; ``latency_s``: from the prompt's ``at`` to the answer.
    """

    prompt_id: str
    channel: str
    status: str
    target: str = ""
    detail: str = ""
    latency_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class QcFlag(CallEvent):
    """A quality-control finding on what was said (evaluation 2, :mod:`earpiece.crm.qc`).

    ``kind``: ``forbidden`` (a forbidden phrase), ``pattern`` (a regular expression such as a
    promised rate) or ``required_missing`` (a required phrase the agent never said, at call
    end). ``rule``: the phrase as written in the rules, or the pattern's name. ``span``:
    ``[start, end)`` character offsets into ``text``, the utterance's original transcript
    (``None`` for a missing phrase); ``start_s`` / ``end_s``: the utterance's times.
    """

    kind: str
    rule: str
    language: str
    campaign: str
    party: Party
    span: tuple[int, int] | None = None
    matched: str = ""
    text: str = ""
    start_s: float | None = None
    end_s: float | None = None
