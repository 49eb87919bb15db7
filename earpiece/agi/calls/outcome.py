"""What Asterisk's signalling says about the outcome of a dial attempt.

Pure tables and small functions, no state: each maps one wire value (an ``OriginateResponse``
``Reason``, a ``DialStatus``/``DIALSTATUS``, a Q.850 hangup cause, an AMD verdict) to an
:class:`Evidence` about a call: the :class:`~earpiece.events.CallState` it points to, how much it
is worth (``rank``) and where it came from (``source``, e.g. ``"ami:Hangup Cause=17"``).

Ranks order evidence that disagrees (highest wins; among equals, the earliest):

=====================  ====  ================================================================
evidence               rank  why
=====================  ====  ================================================================
answer (any source)    100   an answer is definitive and settles the outcome at once
OriginateResponse 3/5/8  90  Asterisk's own verdict on the originated leg
DialStatus specific     80   BUSY, CONGESTION, CHANUNAVAIL, DONTCALL, TORTURE, INVALIDARGS
hangup cause specific   70   Q.850: 17 busy, 18/19 no answer, 21 rejected, 1 unallocated, ...
audio busy/sit/...      60   call-progress analysis of early media (the CPA)
DialStatus NOANSWER     40   also what app_dial reports for a 603 Decline or a 404 after SIT
OriginateResponse 0/1   30   generic failure
fallback                10   ended before answer with only generic causes (0, 16, 31)
=====================  ====  ================================================================

Facts behind the tables are in ``shared/asterisk/README.md`` (captures of Asterisk 22.10.1):
a PJSIP 486 gives ``Reason: 0`` but cause 17 and ``DialEnd BUSY``; a 603 gives cause 21 and
``DialEnd NOANSWER``; a 480 gives cause 19; the Local-channel busy gives ``Reason: 5``.
"""

from __future__ import annotations

from dataclasses import dataclass

from earpiece.events import OUTCOME_STATES, CallState

RANK_ANSWER = 100
RANK_ORIGINATE_SPECIFIC = 90
RANK_DIALSTATUS_SPECIFIC = 80
RANK_CAUSE_SPECIFIC = 70
RANK_AUDIO = 60
RANK_DIALSTATUS_GENERIC = 40
RANK_ORIGINATE_GENERIC = 30
RANK_FALLBACK = 10

#: Order of the states of the machine; a call never moves to a lower value.
STATE_ORDER: dict[CallState, int] = {
    CallState.DIALING: 0,
    CallState.RINGING: 1,
    **{s: 2 for s in OUTCOME_STATES},
    CallState.ENDED: 3,
}


@dataclass(frozen=True)
class Evidence:
    """One observation pointing at an outcome (or at progress: ``RINGING``)."""

    state: CallState
    rank: int
    source: str
    at: float = 0.0
    channel: str = ""  # the channel it was seen on, when there is one

    def as_dict(self) -> dict[str, object]:
        return {
            "state": self.state.value,
            "rank": self.rank,
            "source": self.source,
            "at": self.at,
            "channel": self.channel,
        }


# --- OriginateResponse Reason (Asterisk channel.h AST_CONTROL_*) ------------------------------
#: ``Reason`` of a failed/succeeded originate: 1 hangup, 3 ringing (timed out while ringing),
#: 4 answer, 5 busy, 8 congestion; 0 = the dial failed without a control frame.
ORIGINATE_REASONS: dict[int, CallState] = {
    0: CallState.FAILED,
    1: CallState.FAILED,
    3: CallState.NO_ANSWER,
    4: CallState.ANSWERED,
    5: CallState.BUSY,
    8: CallState.CONGESTION,
}


def originate_evidence(reason: int, at: float = 0.0) -> Evidence:
    state = ORIGINATE_REASONS.get(reason, CallState.FAILED)
    if state is CallState.ANSWERED:
        rank = RANK_ANSWER
    elif reason in (3, 5, 8):
        rank = RANK_ORIGINATE_SPECIFIC
    else:
        rank = RANK_ORIGINATE_GENERIC
    return Evidence(state, rank, f"ami:OriginateResponse Reason={reason}", at)


# --- Dial() status ------------------------------------------------------------------------------
DIAL_STATUS: dict[str, CallState] = {
    "ANSWER": CallState.ANSWERED,
    "BUSY": CallState.BUSY,
    "CONGESTION": CallState.CONGESTION,
    "CHANUNAVAIL": CallState.FAILED,
    "INVALIDARGS": CallState.FAILED,
    "DONTCALL": CallState.REJECTED,
    "TORTURE": CallState.REJECTED,
    "NOANSWER": CallState.NO_ANSWER,
    "CANCEL": CallState.NO_ANSWER,
}
#: Intermediate ``DialState`` values that mean the far end is being alerted.
DIAL_PROGRESS = frozenset({"RINGING", "PROGRESS"})
_GENERIC_DIAL_STATUS = frozenset({"NOANSWER", "CANCEL"})


def dial_status_evidence(status: str, source: str, at: float = 0.0) -> Evidence | None:
    """Evidence for a final ``DialStatus``; ``None`` for progress or unknown values."""
    status = status.strip().upper()
    state = DIAL_STATUS.get(status)
    if state is None:
        return None
    if state is CallState.ANSWERED:
        rank = RANK_ANSWER
    elif status in _GENERIC_DIAL_STATUS:
        rank = RANK_DIALSTATUS_GENERIC
    else:
        rank = RANK_DIALSTATUS_SPECIFIC
    return Evidence(state, rank, source, at)


# --- Q.850 hangup causes --------------------------------------------------------------------------
#: Causes that say nothing about why an unanswered call failed.
GENERIC_CAUSES = frozenset({0, 16, 31})
_CAUSE_STATES: dict[int, CallState] = {
    17: CallState.BUSY,  # user busy
    18: CallState.NO_ANSWER,  # no user responding
    19: CallState.NO_ANSWER,  # no answer from user (user alerted)
    20: CallState.NO_ANSWER,  # subscriber absent
    102: CallState.NO_ANSWER,  # recovery on timer expiry
    21: CallState.REJECTED,  # call rejected
    24: CallState.REJECTED,  # call rejected due to feature at the destination
    34: CallState.CONGESTION,  # no circuit/channel available
    38: CallState.CONGESTION,  # network out of order
    41: CallState.CONGESTION,  # temporary failure
    42: CallState.CONGESTION,  # switching equipment congestion
    44: CallState.CONGESTION,  # requested circuit/channel not available
    47: CallState.CONGESTION,  # resource unavailable, unspecified
}


def cause_state(cause: int) -> CallState | None:
    """The outcome a non-generic Q.850 cause points to (unknown causes: ``FAILED``)."""
    if cause in GENERIC_CAUSES or cause < 0:
        return None
    return _CAUSE_STATES.get(cause, CallState.FAILED)


def cause_evidence(cause: int, source: str, at: float = 0.0) -> Evidence | None:
    state = cause_state(cause)
    if state is None:
        return None
    return Evidence(state, RANK_CAUSE_SPECIFIC, source, at)


# --- audio verdicts -------------------------------------------------------------------------------
#: CPA/AMD labels that point to a dial outcome before the signalling settles it.
AUDIO_FAILURE_LABELS: dict[str, CallState] = {
    "busy": CallState.BUSY,
    "congestion": CallState.CONGESTION,
    "sit": CallState.FAILED,
}
#: CPA/AMD labels that only make sense once someone (or something) picked up.
AUDIO_ANSWER_LABELS = frozenset({"human", "machine", "fax"})


def audio_evidence(label: str, source: str, at: float = 0.0) -> Evidence | None:
    state = AUDIO_FAILURE_LABELS.get(label.lower())
    if state is None:
        return None
    return Evidence(state, RANK_AUDIO, source, at)


def best(evidence: list[Evidence]) -> Evidence | None:
    """Highest rank wins; among equal ranks the earliest observation wins."""
    chosen: Evidence | None = None
    for ev in evidence:
        if ev.state not in OUTCOME_STATES:
            continue
        if chosen is None or ev.rank > chosen.rank:
            chosen = ev
    return chosen


def parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None
