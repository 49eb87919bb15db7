"""FreeSWITCH calls from the captured channel events: one call per scenario, the README's
outcome, customer/agent roles and the same bus events as the Asterisk registry."""

from __future__ import annotations

from itertools import pairwise

import pytest
from esl_captures import CAPTURES, ESL_FILES, sidecar
from test_fs_outcome import EXPECTED, events

from earpiece.bus import EventBus
from earpiece.events import (
    CallEnded,
    CallEvent,
    CallOutcome,
    CallStarted,
    CallStateChanged,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
)
from earpiece.freeswitch.calls import FsCalls

pytestmark = pytest.mark.skipif(not ESL_FILES, reason=f"ESL captures not found under {CAPTURES}")


def run(name: str, by_job_uuid: bool = True) -> tuple[FsCalls, list[CallEvent]]:
    bus = EventBus()
    out: list[CallEvent] = []
    bus.subscribe(CallEvent, out.append)
    calls = FsCalls(bus, clock=lambda: 0.0)
    ids = sidecar(name)["ids"]
    calls.expect(ids["customer_uuid"], job_uuid=ids["job_uuid"] if by_job_uuid else None,
                 call_id=f"call-{name}", tags={"scenario": name})
    for ev in events(name):
        calls.feed(ev)
    return calls, out


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("by_job_uuid", [True, False])
def test_scenario_gives_one_call(name: str, by_job_uuid: bool) -> None:
    calls, out = run(name, by_job_uuid)
    ids = sidecar(name)["ids"]
    state, _early, source = EXPECTED[name]
    assert {e.call_id for e in out} == {f"call-{name}"}
    assert isinstance(out[0], CallStarted) and out[0].tags == {"scenario": name}
    assert isinstance(out[-1], CallEnded) and out[-1].outcome is state
    assert sum(isinstance(e, CallStarted) for e in out) == 1
    assert sum(isinstance(e, CallEnded) for e in out) == 1
    (outcome,) = [e for e in out if isinstance(e, CallOutcome)]
    assert outcome.outcome is state and outcome.source == source
    changes = [e for e in out if isinstance(e, CallStateChanged)]
    assert changes[-1].new is state
    assert all(a.new is b.old for a, b in pairwise(changes))
    joined = {e.uniqueid: e.role for e in out if isinstance(e, ChannelJoined)}
    left = [e.uniqueid for e in out if isinstance(e, ChannelLeft)]
    assert sorted(left) == sorted(joined)  # every leg that joined left, once
    if name in ("sip_offline", "sip_nonexistent"):
        assert joined == {}  # the job failed; FreeSWITCH made no channel
    else:
        assert joined[ids["customer_uuid"]] is ChannelRole.CUSTOMER
        assert out[0].channel  # the customer channel's name
    agent = ids.get("agent_uuid") or ids.get("bridged_with")
    if agent:
        assert joined[agent] is ChannelRole.AGENT
    roles = set(joined.values())
    assert roles <= {ChannelRole.CUSTOMER, ChannelRole.AGENT, ChannelRole.LOCAL_PEER}
    assert calls.calls == {}  # nothing left open


def test_loopback_halves_and_eavesdrop_sources() -> None:
    calls, out = run("dialer_loopback")
    joined = [(e.channel, e.role) for e in out if isinstance(e, ChannelJoined)]
    assert sorted(joined) == sorted([
        ("loopback/voice_human-a", ChannelRole.CUSTOMER),
        ("loopback/voice_human-b", ChannelRole.LOCAL_PEER),
        ("loopback/agent_talk-a", ChannelRole.AGENT),
        ("loopback/agent_talk-b", ChannelRole.LOCAL_PEER),
    ])
    calls, out = run("whisper")
    assert calls.untracked > 0  # the eavesdrop whisper's loopback legs are not a call
    assert not any("whisper_src" in e.channel for e in out if isinstance(e, ChannelJoined))


def test_hangup_cause_is_the_customer_q850() -> None:
    _, out = run("sip_busy_486")
    assert out[-1] == CallEnded(call_id="call-sip_busy_486", outcome=out[-1].outcome,
                                hangup_cause=17, at=0.0)
