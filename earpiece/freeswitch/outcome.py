"""The outcome of one originated FreeSWITCH call from its event-socket events.

Pure and I/O-free: :class:`OutcomeTracker` is fed the :class:`~earpiece.freeswitch.esl_event.
EslEvent` stream and says, once, how the dial attempt ended, as the same
:class:`~earpiece.agi.calls.outcome.Evidence` (state, rank, source) the Asterisk registry uses, so
the :class:`~earpiece.events.CallOutcome` published for a FreeSWITCH call looks like an Asterisk
one (``source`` ``"esl:..."`` instead of ``"ami:..."``).

Rules, from the README's outcome table (captures of FreeSWITCH 1.10.12):

* ``CHANNEL_ANSWER`` (or ``Answer-State: answered``) on the customer leg settles *answered*.
* The originate's ``BACKGROUND_JOB`` body ``-ERR <CAUSE>`` settles the cause's outcome at once
  (offline and unknown users fail in 2 ms with no channel at all, so the job is all there is).
* ``+OK <uuid>`` does **not** mean answered: without ``ignore_early_media=true`` a 183 or a
  ``pre_answer`` makes the job succeed while the callee never answers (``sip_early_media``: the
  agent was bridged to ringback, then the callee sent 486). It is kept as low evidence only.
* Before an answer, ``CHANNEL_HANGUP``/``_COMPLETE`` on the customer leg settles by its
  ``Hangup-Cause`` (the same name as in the job body), confirmed by ``variable_sip_term_status``
  on SIP legs; a generic cause (NORMAL_CLEARING) gives *failed* at fallback rank.
* ``CHANNEL_PROGRESS`` / ``CHANNEL_PROGRESS_MEDIA`` mean *ringing*; the latter sets
  :attr:`OutcomeTracker.early_media`, so the audio call-progress analysis can be pointed at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from earpiece.agi.calls.outcome import (
    RANK_ANSWER,
    RANK_CAUSE_SPECIFIC,
    RANK_FALLBACK,
    RANK_ORIGINATE_GENERIC,
    RANK_ORIGINATE_SPECIFIC,
    Evidence,
    best,
)
from earpiece.events import OUTCOME_STATES, CallState
from earpiece.freeswitch.esl_event import EslEvent

#: FreeSWITCH cause names (switch_types.h ``SWITCH_CAUSE_*``) and the outcome each points to.
#: ``None``: says nothing about why an unanswered call failed.
CAUSES: dict[str, CallState | None] = {
    "NORMAL_CLEARING": None,
    "NORMAL_UNSPECIFIED": None,
    "NONE": None,
    "USER_BUSY": CallState.BUSY,
    "CALL_REJECTED": CallState.REJECTED,  # SIP 603
    "NO_USER_RESPONSE": CallState.NO_ANSWER,  # SIP 480 (Asterisk maps 480 to no answer too)
    "NO_ANSWER": CallState.NO_ANSWER,  # originate_timeout while ringing
    "ORIGINATOR_CANCEL": CallState.NO_ANSWER,  # we gave up while it rang
    "ALLOTTED_TIMEOUT": CallState.NO_ANSWER,
    "RECOVERY_ON_TIMER_EXPIRE": CallState.NO_ANSWER,
    "USER_NOT_REGISTERED": CallState.FAILED,  # offline user: no channel is even created
    "SUBSCRIBER_ABSENT": CallState.FAILED,  # user not in the directory
    "NO_ROUTE_DESTINATION": CallState.FAILED,
    "UNALLOCATED_NUMBER": CallState.FAILED,
    "INVALID_NUMBER_FORMAT": CallState.FAILED,
    "DESTINATION_OUT_OF_ORDER": CallState.FAILED,
    "INCOMPATIBLE_DESTINATION": CallState.FAILED,
    "SYSTEM_SHUTDOWN": CallState.FAILED,
    "NORMAL_CIRCUIT_CONGESTION": CallState.CONGESTION,
    "SWITCH_CONGESTION": CallState.CONGESTION,
    "NETWORK_OUT_OF_ORDER": CallState.CONGESTION,
    "NORMAL_TEMPORARY_FAILURE": CallState.CONGESTION,
    "REQUESTED_CHAN_UNAVAIL": CallState.CONGESTION,
    "GATEWAY_DOWN": CallState.CONGESTION,
}

#: Final SIP responses (``variable_sip_term_status``) and the outcome each points to.
SIP_STATUS: dict[str, CallState] = {
    "486": CallState.BUSY,
    "600": CallState.BUSY,
    "603": CallState.REJECTED,
    "480": CallState.NO_ANSWER,
    "408": CallState.NO_ANSWER,
    "487": CallState.NO_ANSWER,
    "404": CallState.FAILED,
    "484": CallState.FAILED,
    "503": CallState.CONGESTION,
}

_HANGUPS = frozenset({"CHANNEL_HANGUP", "CHANNEL_HANGUP_COMPLETE"})


def cause_outcome(cause: str) -> CallState | None:
    """The outcome a FreeSWITCH cause name points to; unknown names: ``FAILED``."""
    name = cause.strip().upper()
    if name in CAUSES:
        return CAUSES[name]
    return CallState.FAILED if name else None


def job_evidence(body: str, at: float = 0.0) -> Evidence:
    """Evidence from an originate's BACKGROUND_JOB body (``+OK <uuid>`` / ``-ERR <CAUSE>``)."""
    text = body.strip()
    if text.startswith("+OK"):
        # Answer or early media: not an outcome by itself (see the module docstring).
        return Evidence(CallState.RINGING, RANK_FALLBACK, "esl:BACKGROUND_JOB +OK", at)
    cause = text.removeprefix("-ERR").strip() or text
    state = cause_outcome(cause)
    if state is None:
        return Evidence(CallState.FAILED, RANK_ORIGINATE_GENERIC,
                        f"esl:BACKGROUND_JOB -ERR {cause}", at)
    return Evidence(state, RANK_ORIGINATE_SPECIFIC, f"esl:BACKGROUND_JOB -ERR {cause}", at)


@dataclass
class OutcomeTracker:
    """Feed every event; :meth:`feed` returns the settling :class:`Evidence` once.

    ``customer_uuid`` is the ``origination_uuid`` Earpiece set (or the dialer's); ``job_uuid`` the
    Job-UUID of the ``bgapi originate``, when known. A BACKGROUND_JOB whose ``Job-Command-Arg``
    sets ``origination_uuid=<customer_uuid>`` is recognised without it.
    """

    customer_uuid: str
    job_uuid: str | None = None
    state: CallState = CallState.DIALING
    early_media: bool = False
    outcome: Evidence | None = None
    hangup_cause: str | None = None
    sip_status: str | None = None
    evidence: list[Evidence] = field(default_factory=list)

    @property
    def settled(self) -> bool:
        return self.outcome is not None

    def feed(self, event: EslEvent, at: float = 0.0) -> Evidence | None:
        if self.outcome is not None:
            self._note_hangup(event)
            return None
        name = event.name
        if name == "BACKGROUND_JOB":
            if not self._is_our_job(event):
                return None
            ev = job_evidence(event.body, at)
            self.evidence.append(ev)
            return self._settle(ev) if ev.state in OUTCOME_STATES else None
        if event.unique_id != self.customer_uuid:
            return None
        if name == "CHANNEL_ANSWER" or (
            name not in _HANGUPS and event.get("Answer-State") == "answered"
        ):
            return self._settle(Evidence(CallState.ANSWERED, RANK_ANSWER, f"esl:{name}", at))
        if name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
            self.early_media = self.early_media or name == "CHANNEL_PROGRESS_MEDIA"
            self.state = CallState.RINGING
            return None
        if name in _HANGUPS:
            self._note_hangup(event)
            cause = self.hangup_cause or ""
            state = cause_outcome(cause)
            source = f"esl:{name} Hangup-Cause={cause}"
            if state is None and self.sip_status in SIP_STATUS:
                state = SIP_STATUS[self.sip_status]
                source += f" sip_term_status={self.sip_status}"
            if state is None:
                ev = Evidence(CallState.FAILED, RANK_FALLBACK, source, at)
            else:
                ev = Evidence(state, RANK_CAUSE_SPECIFIC, source, at)
            self.evidence.append(ev)
            return self._settle(best(self.evidence) or ev)
        return None

    def _note_hangup(self, event: EslEvent) -> None:
        if event.name in _HANGUPS and event.unique_id == self.customer_uuid:
            self.hangup_cause = event.get("Hangup-Cause") or self.hangup_cause
            self.sip_status = event.variable("sip_term_status") or self.sip_status

    def _is_our_job(self, event: EslEvent) -> bool:
        if self.job_uuid is not None:
            return event.job_uuid == self.job_uuid
        arg = event.get("Job-Command-Arg") or ""
        return event.get("Job-Command") == "originate" and (
            f"origination_uuid={self.customer_uuid}" in arg
        )

    def _settle(self, ev: Evidence) -> Evidence:
        self.outcome = ev
        self.state = ev.state
        return ev

    def detail(self) -> dict[str, object]:
        """What :class:`~earpiece.events.CallOutcome` carries in ``detail``."""
        return {
            "hangup_cause": self.hangup_cause,
            "sip_term_status": self.sip_status,
            "early_media": self.early_media,
            "evidence": [e.as_dict() for e in self.evidence],
        }
