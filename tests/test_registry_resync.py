"""Registry resynchronisation after a reconnect, entry points, and state-machine properties."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_registry_captures import (
    CAPTURES,
    AmiFeeder,
    Harness,
    ami_items,
    check_lifecycle,
    replay_ami,
    single_call,
)

from earpiece.agi.ami_message import AmiMessage
from earpiece.events import (
    CallEnded,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
)

pytestmark = pytest.mark.skipif(not CAPTURES.is_dir(), reason="captures not available")

ANSWERED = CAPTURES / "pjsip/ami/outbound_answered.jsonl"


def stream(path: Path) -> list[tuple[float, str, AmiMessage]]:
    return list(ami_items(path))


def feed(h: Harness, items: list[tuple[float, str, AmiMessage]], scenario: str = "x") -> None:
    feeder = AmiFeeder(h, scenario)
    for t, direction, msg in items:
        h.clock.now = 1_800_000_000.0 + t
        feeder(direction, msg)


def cut_at(items: list[tuple[float, str, AmiMessage]], pred: Any) -> int:
    return next(i for i, (_, d, m) in enumerate(items) if d == "rx" and pred(m))


def live_channels(h: Harness) -> list[AmiMessage]:
    """A CoreShowChannels listing of what the registry believes is up (as Asterisk sends it)."""
    out = []
    for call in h.registry.calls.values():
        for ch in call.channels.values():
            if ch.alive:
                out.append(show(ch.name, ch.uniqueid, call.linkedid or ch.uniqueid, ch.state))
    return out


STATE_NUM = {"Down": "0", "Ring": "4", "Ringing": "5", "Up": "6"}


def show(name: str, uid: str, linkedid: str, state: str, bridge: str = "") -> AmiMessage:
    return AmiMessage.from_pairs(
        [
            ("Event", "CoreShowChannel"),
            ("ActionID", "resync-1"),
            ("Channel", name),
            ("ChannelState", STATE_NUM.get(state, "0")),
            ("ChannelStateDesc", state),
            ("Uniqueid", uid),
            ("Linkedid", linkedid),
            ("Application", "Dial"),
            ("BridgeId", bridge),
        ]
    )


def ev(name: str, **headers: str) -> AmiMessage:
    return AmiMessage.from_pairs([("Event", name), *headers.items()])


# ------------------------------------------------------------------------------------ reconcile
def test_resync_keeps_a_live_call_and_its_channels() -> None:
    items = stream(ANSWERED)
    bye = cut_at(items, lambda m: m.event == "HangupRequest")
    h = Harness()
    feed(h, items[:bye])
    (call,) = h.registry.calls.values()
    before = len(h.events)
    h.registry.reconcile_ami(live_channels(h))
    assert h.events[before:] == []  # nothing new: same call, same channels, same state
    feed(h, items[bye:])
    cid, outcome = single_call(h)
    assert cid == call.id and outcome.outcome is CallState.ANSWERED


def test_resync_creates_unknown_live_calls() -> None:
    h = Harness()
    h.registry.reconcile_ami(
        [
            show("PJSIP/agent1-00000003", "1700.2", "1700.1", "Up", "br-1"),  # listed first
            show("PJSIP/cust1-00000002", "1700.1", "1700.1", "Up", "br-1"),
            show("Snoop/1700.1-00000001", "snoop-1", "snoop-1", "Up", "br-2"),
            show("UnicastRTP/127.0.0.1:4000-0x1", "em-1", "em-1", "Up", "br-2"),
        ]
    )
    (started,) = h.of(CallStarted)
    assert started.direction == "unknown"
    assert started.channel == "PJSIP/cust1-00000002"
    r = {e.channel: e.role for e in h.of(ChannelJoined)}
    assert r == {
        "PJSIP/cust1-00000002": ChannelRole.CUSTOMER,
        "PJSIP/agent1-00000003": ChannelRole.AGENT,
        "Snoop/1700.1-00000001": ChannelRole.SNOOP,
        "UnicastRTP/127.0.0.1:4000-0x1": ChannelRole.EXTERNAL_MEDIA,
    }
    (outcome,) = h.of(CallOutcome)
    assert outcome.outcome is CallState.ANSWERED
    assert outcome.source == "resync:ami state=Up"
    # Normal events continue the same call.
    for uid, name in (("1700.2", "PJSIP/agent1-00000003"), ("1700.1", "PJSIP/cust1-00000002")):
        h.registry.on_ami_event(
            ev("Hangup", Channel=name, Uniqueid=uid, Linkedid="1700.1", Cause="16")
        )
    check_lifecycle(h)


def test_resync_ringing_call_is_ringing() -> None:
    h = Harness()
    h.registry.reconcile_ari([{"id": "9.1", "name": "PJSIP/cust1-00000009", "state": "Ringing"}])
    (call,) = h.registry.calls.values()
    assert call.state is CallState.RINGING and call.outcome is None
    h.registry.on_ari_event(
        {"type": "ChannelDestroyed", "cause": 19, "channel": {"id": "9.1", "name": "x"}}
    )
    (outcome,) = h.of(CallOutcome)
    assert outcome.outcome is CallState.NO_ANSWER
    assert outcome.source == "ari:ChannelDestroyed cause=19"


def test_resync_ends_calls_that_vanished_during_the_outage() -> None:
    items = stream(ANSWERED)
    bye = cut_at(items, lambda m: m.event == "HangupRequest")
    h = Harness()
    feed(h, items[:bye])
    (call,) = h.registry.calls.values()
    h.clock.now += 5  # the outage
    h.registry.reconcile_ami([])
    assert not h.registry.calls
    ended = h.of(CallEnded)
    assert [e.call_id for e in ended] == [call.id]
    assert ended[0].outcome is CallState.ANSWERED
    last = h.of(CallStateChanged)[-1]
    assert (last.new, last.source) == (CallState.ENDED, "resync")
    parties = {e.channel for e in h.of(ChannelLeft) if e.cause is None}
    assert {"PJSIP/cust1-0000000c", "PJSIP/agent1-0000000d"} <= parties
    # The rest of the stream (events of gone channels, replayed or late) changes nothing.
    n = len(h.events)
    feed(h, items[bye:])
    assert h.events[n:] == []
    check_lifecycle(h)


def test_resync_keeps_channels_newer_than_the_listing() -> None:
    """Newchannel arriving while CoreShowChannels is answered: absent from the listing, kept."""
    items = stream(ANSWERED)
    answered = cut_at(items, lambda m: m.event == "OriginateResponse")
    h = Harness()
    feed(h, items[:answered])
    asked = h.clock.now - 0.5
    h.clock.now += 0.2
    h.registry.reconcile_ami([], since=asked)  # a listing taken before the call existed
    assert len(h.registry.calls) == 1 and h.of(CallEnded) == []
    h.clock.now += 0.1
    h.registry.reconcile_ami([])  # default grace: the last second
    assert h.of(CallEnded) == []
    h.clock.now += 3
    h.registry.reconcile_ami([])
    assert len(h.of(CallEnded)) == 1


def test_resync_unanswered_call_vanished_settles_once() -> None:
    items = stream(CAPTURES / "pjsip/ami/outbound_noanswer_timeout.jsonl")
    ringing = cut_at(items, lambda m: m.event == "DialState")
    h = Harness()
    feed(h, items[: ringing + 1])
    h.clock.now += 5
    h.registry.reconcile_ari([])
    (outcome,) = h.of(CallOutcome)
    assert outcome.outcome is CallState.NO_ANSWER
    assert outcome.source.startswith("fallback:")
    feed(h, items[ringing + 1 :])
    check_lifecycle(h)


def test_events_missed_during_outage_do_not_duplicate() -> None:
    """Outage from the agent's Newchannel to after the answer: resync, then go on."""
    items = stream(ANSWERED)
    start = cut_at(
        items, lambda m: m.event == "Newchannel" and "agent1" in (m.get("Channel") or "")
    )
    bye = cut_at(items, lambda m: m.event == "HangupRequest")
    h = Harness()
    feed(h, items[:start])
    (call,) = h.registry.calls.values()
    cust = call.customer
    assert cust is not None
    agent_uid = next(
        m["Uniqueid"] for _, d, m in items[start:] if m.event == "Newchannel" and d == "rx"
    )
    agent_name = next(m["Channel"] for _, d, m in items[start:] if m.event == "Newchannel")
    h.clock.now += 5
    h.registry.reconcile_ami(
        [
            show(cust.name, cust.uniqueid, cust.uniqueid, "Up"),
            show(agent_name, agent_uid, cust.uniqueid, "Up"),
        ]
    )
    feed(h, items[bye:])
    cid, outcome = single_call(h)
    assert cid == call.id
    assert outcome.outcome is CallState.ANSWERED
    r = {e.channel: e.role for e in h.of(ChannelJoined)}
    assert r[agent_name] is ChannelRole.AGENT


def test_replayed_stream_after_reconnect_is_idempotent() -> None:
    """A reconnect that replays everything from the start (duplicates) adds nothing."""
    items = [it for it in stream(ANSWERED) if it[1] == "rx"]
    half = len(items) // 2
    h = Harness()
    feed(h, items[:half])
    h.registry.reconcile_ami(live_channels(h))
    feed(h, items)  # from the beginning again
    feed(h, items)  # and once more, after the call ended
    single_call(h)


def test_ari_resync_kept_new_vanished() -> None:
    h = Harness()
    h.registry.reconcile_ari(
        [
            {"id": "1.1", "name": "PJSIP/cust1-00000001", "state": "Up"},
            {"id": "2.1", "name": "PJSIP/cust1-00000002", "state": "Ringing"},
        ]
    )
    assert len(h.of(CallStarted)) == 2
    h.clock.now += 5
    h.registry.reconcile_ari(
        [
            {"id": "1.1", "name": "PJSIP/cust1-00000001", "state": "Up"},
            {"id": "3.1", "name": "Local/x@ctx-00000001;1", "state": "Up"},
            {"id": "3.2", "name": "Local/x@ctx-00000001;2", "state": "Up"},
        ]
    )
    starts = h.of(CallStarted)
    assert len(starts) == 3  # the Local pair is one new call
    ended = {e.call_id for e in h.of(CallEnded)}
    gone = h.registry.find_by_channel("2.1")
    assert gone is not None and ended == {gone.id}
    assert gone.outcome is CallState.NO_ANSWER  # was ringing
    pair = h.registry.find_by_channel("Local/x@ctx-00000001;2")
    assert pair is not None and pair is h.registry.find_by_channel("3.1")
    assert {ch.role for ch in pair.channels.values()} == {
        ChannelRole.CUSTOMER,
        ChannelRole.LOCAL_PEER,
    }


# ------------------------------------------------------------------------------------ entry points
def test_tag_before_and_after_the_channel_appears() -> None:
    items = stream(ANSWERED)
    h = Harness()
    cust_uid = next(m["Uniqueid"] for _, d, m in items if m.event == "Newchannel")
    assert h.registry.tag(cust_uid, {"campaign": "spring"}) is None  # not seen yet: kept
    first_joined = cut_at(items, lambda m: m.event == "DialBegin")
    feed(h, items[:first_joined])
    (started,) = h.of(CallStarted)
    assert started.tags["campaign"] == "spring"
    cid = h.registry.tag("PJSIP/cust1-0000000c", {"lead": "42"})
    assert cid == started.call_id
    (tagged,) = h.of(CallTagged)
    assert tagged.tags == {"lead": "42"}
    assert h.registry.tag("PJSIP/cust1-0000000c", {"lead": "42"}) == cid  # unchanged: no event
    assert len(h.of(CallTagged)) == 1
    feed(h, items[first_joined:])
    assert h.registry.snapshot()[0]["tags"]["lead"] == "42"


def test_expect_originate_without_channel_binds_on_response() -> None:
    items = stream(ANSWERED)
    h = Harness()
    reserved = h.registry.expect_originate("outbound_answered-2", tags={"k": "v"})
    for t, direction, msg in items:
        h.clock.now = 1_800_000_000.0 + t
        if direction == "rx":
            h.registry.on_ami_event(msg)
    cid, _ = single_call(h)
    call = h.registry.get(reserved)
    assert call is not None and call.id == cid  # an alias: the call was announced before
    assert call.tags["k"] == "v"
    assert any(isinstance(e, CallTagged) and e.tags == {"k": "v"} for e in h.events)


def test_audio_verdicts() -> None:
    # Early-media SIT: signalling only says "failed"; audio "busy" ranks below cause 1 (specific)
    items = stream(CAPTURES / "pjsip/ami/early_media_sit.jsonl")
    h = Harness()
    progress = cut_at(items, lambda m: m.event == "DialState")
    feed(h, items[: progress + 1])
    (call,) = h.registry.calls.values()
    assert h.registry.record_audio_verdict(call.id, "sit", "cpa:tones")
    feed(h, items[progress + 1 :])
    (outcome,) = h.of(CallOutcome)
    assert outcome.outcome is CallState.FAILED
    assert outcome.source == "ami:HangupRequest Cause=1"
    evidence = {(e["state"], e["source"]) for e in outcome.detail["evidence"]}
    assert ("failed", "cpa:tones") in evidence
    # Busy tones with only a generic signalling failure: the audio decides.
    h = Harness()
    h.registry.on_ami_event(
        ev("Newchannel", Channel="PJSIP/trunk-00000001", Uniqueid="5.1", Linkedid="5.1",
           ChannelStateDesc="Down")
    )  # fmt: skip
    h.registry.on_ami_event(
        ev("Newexten", Channel="PJSIP/trunk-00000001", Uniqueid="5.1", Linkedid="5.1",
           ChannelStateDesc="Down", Application="AppDial2", AppData="(Outgoing Line)")
    )  # fmt: skip
    (call,) = h.registry.calls.values()
    h.registry.record_audio_verdict(call.id, "busy", "cpa:busy-tone")
    h.registry.on_ami_event(
        ev("Hangup", Channel="PJSIP/trunk-00000001", Uniqueid="5.1", Linkedid="5.1", Cause="16")
    )
    (outcome,) = h.of(CallOutcome)
    assert (outcome.outcome, outcome.source) == (CallState.BUSY, "cpa:busy-tone")
    # Answered, then the CPA says machine: both kept, the outcome stays answered.
    h = replay_ami(CAPTURES / "ami/originate_answer.jsonl")
    cid = h.of(CallStarted)[0].call_id
    assert h.registry.record_audio_verdict(cid, "machine", "cpa:amd")
    call = h.registry.get(cid)
    assert call is not None and call.outcome is CallState.ANSWERED
    assert [a.label for a in call.audio] == ["machine"]
    assert not h.registry.record_audio_verdict("no-such-call", "human", "cpa")


def test_malformed_events_are_counted_not_raised() -> None:
    h = Harness()
    h.registry.on_ari_event({"type": 5})
    h.registry.on_ari_event({"type": "Dial", "peer": "not-a-channel"})
    h.registry.on_ari_event({"type": "ChannelDestroyed", "channel": {"id": 3}})
    h.registry.on_ami_event(ev("Hangup", Uniqueid="nope", Cause="x"))
    h.registry.on_ami_event(ev("OriginateResponse", Response="Failure", Reason="zz",
                               Application="ChanSpy", Channel="Local/a@b"))  # fmt: skip
    assert h.events == []
    assert h.registry.stats.dropped == 1


def test_history_is_bounded() -> None:
    h = Harness()
    h.registry = type(h.registry)(h.bus, clock=h.clock, history_size=3)
    for i in range(5):
        uid = f"7.{i}"
        name = f"PJSIP/cust1-0000000{i}"
        h.registry.on_ami_event(
            ev("Newchannel", Channel=name, Uniqueid=uid, Linkedid=uid, ChannelStateDesc="Ring")
        )
        h.registry.on_ami_event(
            ev("Newexten", Channel=name, Uniqueid=uid, Linkedid=uid, Application="Answer")
        )
        h.registry.on_ami_event(
            ev("Hangup", Channel=name, Uniqueid=uid, Linkedid=uid, Cause="16")
        )
    assert len(h.registry.history) == 3
    assert [s["direction"] for s in h.registry.snapshot()] == ["inbound"] * 3
    assert len(h.of(CallEnded)) == 5


def test_snapshot_is_json_ready() -> None:
    h = replay_ami(CAPTURES / "pjsip/ami/sip_spy_in.jsonl")
    snap = h.registry.snapshot()
    text = json.dumps(snap)
    back = json.loads(text)[0]
    assert {"id", "direction", "outcome", "started", "answered", "ended", "channels", "tags",
            "outcome_source"} <= set(back)  # fmt: skip
    roles = {c["role"] for c in back["channels"]}
    assert {"customer", "agent", "snoop", "external_media"} <= roles


# ------------------------------------------------------------------------------------ properties
SCENARIOS = {
    "pjsip/ami/outbound_answered": CallState.ANSWERED,
    "pjsip/ami/outbound_busy_486": CallState.BUSY,
    "pjsip/ami/outbound_decline_603": CallState.REJECTED,
    "ami/originate_busy": CallState.BUSY,
    "ami/dial_congestion": CallState.CONGESTION,
    "ami/originate_noanswer": CallState.NO_ANSWER,
}
_RX: dict[str, list[AmiMessage]] = {}


def rx(name: str) -> list[AmiMessage]:
    if name not in _RX:
        _RX[name] = [m for _, d, m in ami_items(CAPTURES / f"{name}.jsonl") if d == "rx"]
    return _RX[name]


def check_invariants(h: Harness) -> None:
    """Whatever the order: at most one start/outcome/end per call, never backwards."""
    order = {CallState.DIALING: 0, CallState.RINGING: 1, CallState.ENDED: 3}
    per: dict[str, list[Any]] = {}
    for e in h.events:
        per.setdefault(e.call_id, []).append(e)
    for cid, evs in per.items():
        kinds = Counter(type(e) for e in evs)
        assert kinds[CallStarted] == 1 and isinstance(evs[0], CallStarted), cid
        assert kinds[CallOutcome] <= 1 and kinds[CallEnded] <= 1, cid
        if kinds[CallEnded]:
            assert isinstance(evs[-1], CallEnded) and kinds[CallOutcome] == 1
        last = 0
        for e in evs:
            if isinstance(e, CallStateChanged):
                assert order.get(e.new, 2) > last, f"{cid}: backwards to {e.new}"
                last = order.get(e.new, 2)
    for call in h.registry.history:
        assert call.outcome is not None and call.state is CallState.ENDED


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SCENARIOS)),
    data=st.data(),
)
def test_duplicates_keep_the_outcome(name: str, data: st.DataObject) -> None:
    """Each event delivered 1-3 times (AMI+ARI, replays): same single outcome, one end."""
    msgs = rx(name)
    reps = data.draw(st.lists(st.integers(1, 3), min_size=len(msgs), max_size=len(msgs)))
    h = Harness()
    for m, n in zip(msgs, reps, strict=True):
        for _ in range(n):
            h.clock.now += 0.001
            h.registry.on_ami_event(m)
    check_invariants(h)
    check_lifecycle(h)
    outcomes = [e.outcome for e in h.of(CallOutcome)]
    assert outcomes == [SCENARIOS[name]]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SCENARIOS)), data=st.data())
def test_shuffled_and_duplicated_never_backwards(name: str, data: st.DataObject) -> None:
    """Any order, any duplication: never backwards, never two outcomes or two ends."""
    msgs = rx(name)
    picks = data.draw(
        st.lists(st.integers(0, len(msgs) - 1), min_size=1, max_size=len(msgs) * 2)
    )
    h = Harness()
    for i in picks:
        h.clock.now += 0.001
        h.registry.on_ami_event(msgs[i])
    check_invariants(h)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    a=st.sampled_from(sorted(SCENARIOS)),
    b=st.sampled_from(sorted(SCENARIOS)),
    data=st.data(),
)
def test_interleaved_calls_keep_their_outcomes(a: str, b: str, data: st.DataObject) -> None:
    """Two calls' streams interleaved (each in order): each call gets its own outcome."""
    if a == b:
        return
    ma, mb = rx(a), rx(b)
    mask = data.draw(st.permutations([0] * len(ma) + [1] * len(mb)))
    ia = ib = 0
    h = Harness()
    for which in mask:
        h.clock.now += 0.001
        if which == 0:
            h.registry.on_ami_event(ma[ia])
            ia += 1
        else:
            h.registry.on_ami_event(mb[ib])
            ib += 1
    check_lifecycle(h)
    got = sorted(e.outcome.value for e in h.of(CallOutcome))
    assert got == sorted([SCENARIOS[a].value, SCENARIOS[b].value])


def test_inbound_call_rings_then_answers_with_an_agent() -> None:
    """Inbound PJSIP call to a queue-like Dial: customer rings in, agent leg linked by Linkedid."""
    h = Harness()
    cust = {"Channel": "PJSIP/trunk-00000001", "Uniqueid": "8.1", "Linkedid": "8.1"}
    agent = {"Channel": "PJSIP/agent1-00000002", "Uniqueid": "8.2", "Linkedid": "8.1"}
    for msg in (
        ev("Newchannel", **cust, ChannelStateDesc="Ring", Exten="5551234"),
        ev("Newexten", **cust, ChannelStateDesc="Ring", Application="Dial", AppData="PJSIP/agent1"),
        ev("Newchannel", **agent, ChannelStateDesc="Down"),
        ev("VarSet", **agent, Variable="DIALEDPEERNUMBER", Value="agent1"),
        ev("Newexten", **agent, Application="AppDial", AppData="(Outgoing Line)"),
        ev("DialBegin", **cust, **{"Dest" + k: v for k, v in agent.items()}),
        ev("Newstate", **agent, ChannelStateDesc="Ringing"),
        ev("Newstate", **agent, ChannelStateDesc="Up"),
        ev("DialEnd", **cust, **{"Dest" + k: v for k, v in agent.items()}, DialStatus="ANSWER"),
        ev("Newstate", **cust, ChannelStateDesc="Up"),
        ev("Hangup", **agent, Cause="16"),
        ev("Hangup", **cust, Cause="16"),
    ):
        h.registry.on_ami_event(msg)
    cid, outcome = single_call(h)
    (started,) = h.of(CallStarted)
    assert started.direction == "inbound"
    assert outcome.outcome is CallState.ANSWERED
    assert outcome.source == "ami:DialEnd DialStatus=ANSWER"
    news = [(e.new, e.source) for e in h.of(CallStateChanged)]
    assert news[0] == (CallState.RINGING, "inbound:Ring")
    r = {e.channel: e.role for e in h.of(ChannelJoined)}
    assert r == {"PJSIP/trunk-00000001": ChannelRole.CUSTOMER,
                 "PJSIP/agent1-00000002": ChannelRole.AGENT}  # fmt: skip
    assert h.registry.get(cid) is h.registry.history[0]


def test_originate_variable_binds_the_reserved_id() -> None:
    """``Variable: EARPIECE_CALL_ID=<id>`` on the Originate names the call from its start."""
    h = Harness()
    reserved = h.registry.expect_originate("some-other-action")  # no ActionID/channel match
    for t, direction, msg in ami_items(CAPTURES / "ami/originate_answer.jsonl"):
        h.clock.now = 1_800_000_000.0 + t
        if direction != "rx":
            continue
        if msg.event == "VarSet" and msg.get("Variable") == "FX_TAG":
            msg = AmiMessage.from_pairs(
                [(k, reserved if k == "Value" else "EARPIECE_CALL_ID" if k == "Variable" else v)
                 for k, v in msg.headers]
            )  # fmt: skip
        h.registry.on_ami_event(msg)
    cid, _ = single_call(h)
    assert cid == reserved


def test_resync_gives_up_on_lost_originate_responses() -> None:
    """Our Originate's response was lost in the outage and no channel is live: failed, once."""
    h = Harness()
    reserved = h.registry.expect_originate("act-9", tags={"lead": "7"}, channel="PJSIP/cust2")
    h.clock.now += 5
    pending = h.registry.expect_originate("act-10", channel="PJSIP/cust3")
    h.clock.now += 0.5
    h.registry.reconcile_ami([])  # act-10 was sent within the grace second: may be in flight
    (outcome,) = h.of(CallOutcome)
    assert outcome.call_id == reserved
    assert outcome.outcome is CallState.FAILED
    assert outcome.source == "resync:no OriginateResponse and no live channel"
    assert h.of(CallStarted)[0].tags == {"lead": "7"}
    # The response turns up after all: noted on that call, nothing new published.
    n = len(h.events)
    h.registry.on_ami_event(
        ev("OriginateResponse", ActionID="act-9", Response="Failure", Channel="PJSIP/cust2",
           Reason="0", Uniqueid="<unknown>")
    )  # fmt: skip
    assert h.events[n:] == []
    call = h.registry.get(reserved)
    assert call is not None
    assert "ami:OriginateResponse Reason=0" in {e.source for e in call.evidence}
    assert h.registry.get(pending) is None  # still waiting for its response


def test_resync_binds_our_originate_created_during_the_outage() -> None:
    h = Harness()
    reserved = h.registry.expect_originate("act-1", channel="PJSIP/cust1")
    h.clock.now += 5
    h.registry.reconcile_ami([show("PJSIP/cust1-00000005", "9.5", "9.5", "Ringing")])
    (started,) = h.of(CallStarted)
    assert (started.call_id, started.direction) == (reserved, "outbound")
    h.registry.on_ami_event(
        ev("OriginateResponse", ActionID="act-1", Response="Success", Reason="4",
           Channel="PJSIP/cust1-00000005", Uniqueid="9.5")
    )  # fmt: skip
    (outcome,) = h.of(CallOutcome)
    assert (outcome.call_id, outcome.outcome) == (reserved, CallState.ANSWERED)
    assert outcome.source == "ami:OriginateResponse Reason=4"


def test_audiosocket_dialled_from_a_call_is_its_helper() -> None:
    h = Harness()
    cust = {"Channel": "PJSIP/trunk-00000001", "Uniqueid": "6.1", "Linkedid": "6.1"}
    sock = {"Channel": "AudioSocket/127.0.0.1:9092-1", "Uniqueid": "6.2", "Linkedid": "6.1"}
    for msg in (
        ev("Newchannel", **cust, ChannelStateDesc="Ring"),
        ev("Newexten", **cust, ChannelStateDesc="Ring", Application="Answer"),
        ev("Newstate", **cust, ChannelStateDesc="Up"),
        ev("Newchannel", **sock, ChannelStateDesc="Down"),
        ev("Newstate", **sock, ChannelStateDesc="Up"),
        ev("Hangup", **sock, Cause="16"),
        ev("Hangup", **cust, Cause="16"),
    ):
        h.registry.on_ami_event(msg)
    _cid, outcome = single_call(h)
    assert outcome.outcome is CallState.ANSWERED
    r = {e.channel: e.role for e in h.of(ChannelJoined)}
    assert r["AudioSocket/127.0.0.1:9092-1"] is ChannelRole.EXTERNAL_MEDIA
    assert len(h.of(CallStarted)) == 1
