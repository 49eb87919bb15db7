"""Outcomes of every captured FreeSWITCH call scenario, as the README's outcome table says."""

from __future__ import annotations

import pytest
from esl_captures import CAPTURES, ESL_FILES, frames, sidecar

from earpiece.events import CallState
from earpiece.freeswitch.esl_event import EslEvent
from earpiece.freeswitch.esl_message import EslMessage
from earpiece.freeswitch.outcome import OutcomeTracker, cause_outcome, job_evidence

pytestmark = pytest.mark.skipif(not ESL_FILES, reason=f"ESL captures not found under {CAPTURES}")

A, B, R, N, C, F = (CallState.ANSWERED, CallState.BUSY, CallState.REJECTED, CallState.NO_ANSWER,
                    CallState.CONGESTION, CallState.FAILED)

#: scenario -> (outcome, early media seen, the source that settled it)
EXPECTED: dict[str, tuple[CallState, bool, str]] = {
    "sip_answered": (A, False, "esl:CHANNEL_ANSWER"),
    "sip_answered_inline_bridge": (A, False, "esl:CHANNEL_ANSWER"),
    "sip_busy_486": (B, False, "esl:CHANNEL_HANGUP Hangup-Cause=USER_BUSY"),
    "sip_decline_603": (R, False, "esl:CHANNEL_HANGUP Hangup-Cause=CALL_REJECTED"),
    "sip_unavailable_480": (N, False, "esl:CHANNEL_HANGUP Hangup-Cause=NO_USER_RESPONSE"),
    "sip_noanswer_timeout": (N, False, "esl:CHANNEL_HANGUP Hangup-Cause=NO_ANSWER"),
    "sip_offline": (F, False, "esl:BACKGROUND_JOB -ERR USER_NOT_REGISTERED"),
    "sip_nonexistent": (F, False, "esl:BACKGROUND_JOB -ERR SUBSCRIBER_ABSENT"),
    # The trap: the job said +OK at 0.04 s and the agent was bridged; the callee never answered.
    "sip_early_media": (B, True, "esl:CHANNEL_HANGUP Hangup-Cause=USER_BUSY"),
    "sip_early_media_ignore": (B, True, "esl:CHANNEL_HANGUP Hangup-Cause=USER_BUSY"),
    "originate_answer": (A, False, "esl:CHANNEL_ANSWER"),
    "originate_busy": (B, False, "esl:CHANNEL_HANGUP Hangup-Cause=USER_BUSY"),
    "originate_congestion": (C, False, "esl:CHANNEL_HANGUP Hangup-Cause=NORMAL_CIRCUIT_CONGESTION"),
    "originate_noanswer": (N, False, "esl:CHANNEL_HANGUP Hangup-Cause=NO_ANSWER"),
    "originate_nonexistent": (F, False, "esl:CHANNEL_HANGUP Hangup-Cause=NO_ROUTE_DESTINATION"),
    "originate_early_media": (B, True, "esl:CHANNEL_HANGUP Hangup-Cause=USER_BUSY"),
    "originate_early_media_ignore": (B, True, "esl:CHANNEL_HANGUP Hangup-Cause=USER_BUSY"),
    "originate_machine": (A, False, "esl:CHANNEL_ANSWER"),
    "dialer_loopback": (A, False, "esl:CHANNEL_ANSWER"),
    "dialer_loopback_json": (A, False, "esl:CHANNEL_ANSWER"),
    "events_plain_all": (A, False, "esl:CHANNEL_ANSWER"),
    "events_json_all": (A, False, "esl:CHANNEL_ANSWER"),
    "sip_kill": (A, False, "esl:CHANNEL_ANSWER"),
    "sip_message_in_dialog": (A, False, "esl:CHANNEL_ANSWER"),
    "audio_fork": (A, False, "esl:CHANNEL_ANSWER"),
    "whisper": (A, False, "esl:CHANNEL_ANSWER"),
    "restart_mid_call": (A, False, "esl:CHANNEL_ANSWER"),
}


def events(name: str) -> list[EslEvent]:
    out = []
    for raw in frames(name):
        msg = EslMessage.parse(raw)
        if msg.is_event:
            out.append(EslEvent.from_message(msg))
    return out


def test_every_scenario_with_an_originate_is_covered() -> None:
    with_jobs = {p.stem for p in ESL_FILES if (p.with_suffix(".json")).exists()
                 and sidecar(p.stem).get("ids", {}).get("job_uuid")}
    assert with_jobs == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("by_job_uuid", [True, False])
def test_scenario_outcome(name: str, by_job_uuid: bool) -> None:
    ids = sidecar(name)["ids"]
    tracker = OutcomeTracker(ids["customer_uuid"], ids["job_uuid"] if by_job_uuid else None)
    settled = [ev for ev in (tracker.feed(e) for e in events(name)) if ev is not None]
    state, early, source = EXPECTED[name]
    assert len(settled) == 1, "an outcome settles exactly once"
    assert settled[0].state is state and tracker.state is state
    assert settled[0].source == source
    assert tracker.early_media is early
    jobs = [j["body"] for j in sidecar(name)["facts"]["jobs"]]
    if jobs[0].startswith("-ERR"):
        # The job's cause and the channel's cause agree (README), whichever came first.
        cause = jobs[0].split()[1]
        assert cause_outcome(cause) is state
        if tracker.hangup_cause is not None:
            assert tracker.hangup_cause == cause


def test_early_media_job_ok_is_not_an_answer() -> None:
    ids = sidecar("sip_early_media")["ids"]
    tracker = OutcomeTracker(ids["customer_uuid"], ids["job_uuid"])
    for event in events("sip_early_media"):
        if event.name == "CHANNEL_HANGUP":
            break
        assert tracker.feed(event) is None
    assert tracker.state is CallState.RINGING and tracker.early_media
    assert [e.source for e in tracker.evidence] == ["esl:BACKGROUND_JOB +OK"]
    assert tracker.detail()["early_media"] is True


def test_sip_status_is_recorded() -> None:
    ids = sidecar("sip_decline_603")["ids"]
    tracker = OutcomeTracker(ids["customer_uuid"], ids["job_uuid"])
    for event in events("sip_decline_603"):
        tracker.feed(event)
    assert tracker.sip_status == "603" and tracker.hangup_cause == "CALL_REJECTED"


def test_other_calls_and_jobs_are_ignored() -> None:
    tracker = OutcomeTracker("not-this-call", "not-this-job")
    for name in ("originate_busy", "sip_answered"):
        assert all(tracker.feed(e) is None for e in events(name))
    assert tracker.state is CallState.DIALING and tracker.evidence == []


def test_job_bodies() -> None:
    assert job_evidence("-ERR USER_BUSY\n").state is CallState.BUSY
    assert job_evidence("-ERR NORMAL_CLEARING\n").state is CallState.FAILED
    assert job_evidence("-ERR SOMETHING_NEW\n").state is CallState.FAILED
    assert job_evidence("+OK 1234\n").state is CallState.RINGING
    assert cause_outcome("") is None
