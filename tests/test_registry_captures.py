"""The call registry against real Asterisk 22 traffic (shared/asterisk/captures).

Each recorded AMI stream is parsed with AmiFramer and fed message by message; each ARI stream
event by event. The expected outcomes are the ones shared/asterisk/README.md documents.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from earpiece.agi.ami_message import AmiFramer, AmiMessage
from earpiece.agi.calls.registry import Registry
from earpiece.bus import EventBus
from earpiece.events import (
    CallEnded,
    CallEvent,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
)

CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "asterisk" / "captures"
if not CAPTURES.is_dir():  # pragma: no cover - layout of another checkout
    CAPTURES = Path("/work/shared/asterisk/captures")

pytestmark = pytest.mark.skipif(not CAPTURES.is_dir(), reason="captures not available")


# ------------------------------------------------------------------------------------ replay
@dataclass
class Clock:
    now: float = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    bus: EventBus = field(default_factory=EventBus)
    clock: Clock = field(default_factory=Clock)
    events: list[Any] = field(default_factory=list)
    expected_ids: dict[str, str] = field(default_factory=dict)  # ActionID -> reserved call id
    registry: Registry = field(init=False)

    def __post_init__(self) -> None:
        counter = itertools.count(1)
        self.registry = Registry(self.bus, clock=self.clock, id_factory=lambda: f"c{next(counter)}")
        self.bus.subscribe(object, self.events.append)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def ami_items(path: Path) -> Iterator[tuple[float, str, AmiMessage]]:
    """(t, "tx"|"rx", message) for every AMI message of a capture; rx parsed with AmiFramer."""
    framer = AmiFramer()
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["dir"] == "tx":
            yield rec["t"], "tx", AmiMessage.parse(rec["raw"].encode())
            continue
        for item in framer.feed(rec["raw"].encode()):
            if isinstance(item, AmiMessage):
                yield rec["t"], "rx", item
    assert framer.errors == 0


def ari_items(path: Path) -> Iterator[tuple[float, dict[str, Any]]]:
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec["kind"] == "event":
            yield rec["t"], rec["event"]


class AmiFeeder:
    """What the AMI client does: expect our Originates, feed events, reconcile listings."""

    def __init__(self, h: Harness, scenario: str) -> None:
        self.h = h
        self.scenario = scenario
        self.listing: list[AmiMessage] = []

    def __call__(self, direction: str, msg: AmiMessage) -> None:
        reg = self.h.registry
        if direction == "tx":
            if msg.action_name == "Originate" and msg.action_id:
                self.h.expected_ids[msg.action_id] = reg.expect_originate(
                    msg.action_id,
                    tags={"scenario": self.scenario, "action": msg.action_id},
                    channel=msg.get("Channel"),
                )
            return
        if msg.event == "CoreShowChannel":
            self.listing.append(msg)
        elif msg.event == "CoreShowChannelsComplete":
            reg.reconcile_ami(self.listing)
            self.listing = []
        reg.on_ami_event(msg)


def replay_ami(path: Path, h: Harness | None = None, t0: float = 0.0) -> Harness:
    h = h or Harness()
    feed = AmiFeeder(h, path.stem)
    base = h.clock.now
    for t, direction, msg in ami_items(path):
        h.clock.now = base + t0 + t
        feed(direction, msg)
    return h


def replay_ari(path: Path, h: Harness | None = None) -> Harness:
    h = h or Harness()
    base = h.clock.now
    for t, event in ari_items(path):
        h.clock.now = base + t
        h.registry.on_ari_event(event)
    return h


# ------------------------------------------------------------------------------------ checks
def check_lifecycle(h: Harness) -> dict[str, list[CallEvent]]:
    """Per call: starts with CallStarted, one CallOutcome, one CallEnded (last), no reversal."""
    per_call: dict[str, list[CallEvent]] = {}
    for e in h.events:
        per_call.setdefault(e.call_id, []).append(e)
    order = {CallState.DIALING: 0, CallState.RINGING: 1, CallState.ENDED: 3}
    for cid, evs in per_call.items():
        assert isinstance(evs[0], CallStarted), (cid, evs[0])
        kinds = Counter(type(e) for e in evs)
        assert kinds[CallStarted] == 1
        assert kinds[CallOutcome] == 1, cid
        assert kinds[CallEnded] == 1, cid
        assert isinstance(evs[-1], CallEnded)
        outcome = next(e for e in evs if isinstance(e, CallOutcome))
        ended = evs[-1]
        assert ended.outcome is outcome.outcome
        last = 0
        for e in evs:
            if isinstance(e, CallStateChanged):
                rank = order.get(e.new, 2)
                assert rank > last, f"{cid}: {e.old} -> {e.new} after rank {last}"
                assert order.get(e.old, 2) == last
                last = rank
        assert last == 3
        joined = [e.uniqueid for e in evs if isinstance(e, ChannelJoined)]
        left = [e.uniqueid for e in evs if isinstance(e, ChannelLeft)]
        assert len(joined) == len(set(joined)), f"{cid}: a channel joined twice"
        assert len(left) == len(set(left)), f"{cid}: a channel left twice"
        assert set(left) <= set(joined)
    assert h.registry.stats.dropped == 0
    assert not h.registry.calls, "calls left live at the end of a finished capture"
    return per_call


def single_call(h: Harness) -> tuple[str, CallOutcome]:
    per_call = check_lifecycle(h)
    assert len(per_call) == 1, f"expected one call, got {list(per_call)}"
    (cid,) = per_call
    (outcome,) = h.of(CallOutcome)
    return cid, outcome


def roles(h: Harness, cid: str) -> dict[str, ChannelRole]:
    return {e.channel: e.role for e in h.of(ChannelJoined) if e.call_id == cid}


# ------------------------------------------------------------------------------------ AMI tables
# README "OriginateResponse" table and the dial_* rows (the callee's outcome of the Dial()).
AMI_OUTCOMES: list[tuple[str, CallState, str]] = [
    ("ami/originate_answer", CallState.ANSWERED, "ami:"),
    ("ami/originate_noanswer", CallState.NO_ANSWER, "ami:OriginateResponse Reason=3"),
    ("ami/originate_busy", CallState.BUSY, "ami:DialEnd DialStatus=BUSY"),
    ("ami/originate_congestion", CallState.CONGESTION, "ami:DialEnd DialStatus=CONGESTION"),
    ("ami/originate_bad_exten", CallState.FAILED, "fallback:"),
    ("ami/dial_answer", CallState.ANSWERED, "ami:"),
    ("ami/dial_noanswer", CallState.NO_ANSWER, "ami:DialEnd DialStatus=NOANSWER"),
    ("ami/dial_busy", CallState.BUSY, "ami:DialEnd DialStatus=BUSY"),
    ("ami/dial_congestion", CallState.CONGESTION, "ami:DialEnd DialStatus=CONGESTION"),
    ("ami/dial_unavail", CallState.FAILED, "ami:VarSet DIALSTATUS=CHANUNAVAIL"),
    ("ami/amd_human", CallState.ANSWERED, "ami:"),
    ("ami/amd_machine", CallState.ANSWERED, "ami:"),
    ("ami/core_show_channels", CallState.ANSWERED, "ami:"),
    ("ami/hangup_action", CallState.ANSWERED, "ami:"),
    # README "OriginateResponse and hangup cause per SIP outcome"
    ("pjsip/ami/outbound_answered", CallState.ANSWERED, "ami:Newstate Up"),
    ("pjsip/ami/outbound_busy_486", CallState.BUSY, "ami:DialEnd DialStatus=BUSY"),
    ("pjsip/ami/outbound_decline_603", CallState.REJECTED, "ami:HangupRequest Cause=21"),
    ("pjsip/ami/outbound_unavailable_480", CallState.NO_ANSWER, "ami:HangupRequest Cause=19"),
    ("pjsip/ami/outbound_noanswer_timeout", CallState.NO_ANSWER, "ami:OriginateResponse Reason=3"),
    ("pjsip/ami/outbound_offline_endpoint", CallState.FAILED, "ami:OriginateResponse Reason=0"),
    ("pjsip/ami/early_media_ringback", CallState.BUSY, "ami:DialEnd DialStatus=BUSY"),
    ("pjsip/ami/early_media_sit", CallState.FAILED, "ami:HangupRequest Cause=1"),
    ("pjsip/ami/sip_spy_in", CallState.ANSWERED, "ami:Newstate Up"),
    ("pjsip/ami/whisper", CallState.ANSWERED, "ami:Newstate Up"),
]


@pytest.mark.parametrize(("capture", "expected", "source"), AMI_OUTCOMES, ids=lambda v: str(v))
def test_ami_capture_outcome(capture: str, expected: CallState, source: str) -> None:
    h = replay_ami(CAPTURES / f"{capture}.jsonl")
    cid, outcome = single_call(h)
    assert outcome.outcome is expected
    assert outcome.source.startswith(source), outcome.source
    (started,) = h.of(CallStarted)
    # Every capture is an async Originate: outbound, with our reserved id and tags.
    assert started.direction == "outbound"
    assert cid == next(iter(h.expected_ids.values()))
    assert started.tags["scenario"] == Path(capture).name
    call = h.registry.get(cid)
    assert call is not None and call.outcome is expected and call.ended is not None
    snap = h.registry.snapshot()
    assert [s["id"] for s in snap] == [cid]
    assert snap[0]["outcome"] == expected.value
    assert snap[0]["outcome_source"] == outcome.source
    assert snap[0]["started"] <= snap[0]["ended"]
    if expected is CallState.ANSWERED:
        assert snap[0]["answered"] is not None
        assert snap[0]["started"] <= snap[0]["answered"] <= snap[0]["ended"]
    else:
        assert snap[0]["answered"] is None


def test_ami_answered_carries_all_agreeing_evidence() -> None:
    h = replay_ami(CAPTURES / "ami/originate_answer.jsonl")
    call = h.registry.history[0]
    sources = {ev.source for ev in call.evidence}
    assert {"ami:OriginateResponse Reason=4", "ami:DialEnd DialStatus=ANSWER"} <= sources
    assert call.disagreements() == []
    assert call.hangup_cause == 16


def test_local_busy_is_busy_by_every_source() -> None:
    """Local busy: Reason 5, DialEnd BUSY and cause 17 on ;2 all agree."""
    h = replay_ami(CAPTURES / "ami/originate_busy.jsonl")
    call = h.registry.history[0]
    states = {ev.source: ev.state for ev in call.evidence}
    assert states["ami:OriginateResponse Reason=5"] is CallState.BUSY
    assert states["ami:Hangup Cause=17"] is CallState.BUSY
    assert call.disagreements() == []


def test_decline_keeps_the_disagreeing_dialend() -> None:
    """603: cause 21 decides; DialEnd NOANSWER and Reason 0 are kept as disagreements."""
    h = replay_ami(CAPTURES / "pjsip/ami/outbound_decline_603.jsonl")
    (outcome,) = h.of(CallOutcome)
    call = h.registry.history[0]
    assert outcome.outcome is CallState.REJECTED
    disagree = {ev.source: ev.state for ev in call.disagreements()}
    assert disagree["ami:DialEnd DialStatus=NOANSWER"] is CallState.NO_ANSWER
    assert disagree["ami:OriginateResponse Reason=0"] is CallState.FAILED
    detail = outcome.detail["disagreements"]
    assert any(d["source"] == "ami:DialEnd DialStatus=NOANSWER" for d in detail)
    assert call.hangup_cause == 21


def test_offline_endpoint_is_a_call_without_channels() -> None:
    h = replay_ami(CAPTURES / "pjsip/ami/outbound_offline_endpoint.jsonl")
    _cid, outcome = single_call(h)
    assert outcome.outcome is CallState.FAILED
    (started,) = h.of(CallStarted)
    assert started.channel == "PJSIP/cust2"
    assert h.of(ChannelJoined) == []


@pytest.mark.parametrize(
    ("capture", "ringing"),
    [
        ("ami/originate_noanswer", True),
        ("pjsip/ami/outbound_noanswer_timeout", True),
        ("pjsip/ami/early_media_sit", True),  # 183 only: DialState PROGRESS
        ("ami/originate_busy", False),
        ("ami/originate_bad_exten", False),
    ],
)
def test_ringing_state(capture: str, ringing: bool) -> None:
    h = replay_ami(CAPTURES / f"{capture}.jsonl")
    news = [e.new for e in h.of(CallStateChanged)]
    assert (CallState.RINGING in news) is ringing


def test_amd_verdicts_kept_beside_answered() -> None:
    for name, label in (("amd_human", "human"), ("amd_machine", "machine")):
        h = replay_ami(CAPTURES / f"ami/{name}.jsonl")
        call = h.registry.history[0]
        assert call.outcome is CallState.ANSWERED
        assert [(a.label, a.source) for a in call.audio] == [
            (label, f"ami:VarSet AMDSTATUS={label.upper()}")
        ]
        assert h.registry.snapshot()[0]["audio"][0]["label"] == label


# ------------------------------------------------------------------------------------ roles
@pytest.mark.parametrize(
    "capture",
    ["pjsip/ami/outbound_answered", "pjsip/ami/sip_spy_in", "pjsip/ami/whisper"],
)
def test_pjsip_answered_roles(capture: str) -> None:
    """README "Answered dialer call": customer = originated PJSIP/cust1, agent = Dial's dest."""
    h = replay_ami(CAPTURES / f"{capture}.jsonl")
    cid, _ = single_call(h)
    r = roles(h, cid)
    parties = {name: role for name, role in r.items() if name.startswith("PJSIP/")}
    assert len(parties) == 2
    for name, role in parties.items():
        expected = ChannelRole.CUSTOMER if name.startswith("PJSIP/cust1-") else ChannelRole.AGENT
        assert role is expected, (name, role)
    call = h.registry.history[0]
    assert call.customer is not None and call.customer.name.startswith("PJSIP/cust1-")
    # The agent is announced only once the customer answered (the Dial runs after the answer).
    names = [type(e).__name__ + ":" + getattr(e, "channel", "") for e in h.events]
    agent_join = next(i for i, n in enumerate(names) if n.startswith("ChannelJoined:PJSIP/agent1"))
    assert names.index("CallOutcome:") < agent_join


def test_local_roles_dial_answer() -> None:
    h = replay_ami(CAPTURES / "ami/dial_answer.jsonl")
    cid, _ = single_call(h)
    r = roles(h, cid)
    assert r == {
        "Local/dial_answer@test-000001c4;1": ChannelRole.CUSTOMER,
        "Local/dial_answer@test-000001c4;2": ChannelRole.LOCAL_PEER,
        "Local/answer@test-000001c5;1": ChannelRole.AGENT,
        "Local/answer@test-000001c5;2": ChannelRole.LOCAL_PEER,
    }


def test_sip_spy_in_helpers_attach_to_their_call() -> None:
    h = replay_ami(CAPTURES / "pjsip/ami/sip_spy_in.jsonl")
    cid, _ = single_call(h)
    r = roles(h, cid)
    snoops = {n for n, role in r.items() if role is ChannelRole.SNOOP}
    media = {n for n, role in r.items() if role is ChannelRole.EXTERNAL_MEDIA}
    assert len(snoops) == 2 and all(n.startswith("Snoop/") for n in snoops)
    assert len(media) == 2 and all(n.startswith("UnicastRTP/") for n in media)


def test_whisper_chanspy_local_is_a_helper_not_a_call() -> None:
    h = replay_ami(CAPTURES / "pjsip/ami/whisper.jsonl")
    cid, _ = single_call(h)  # the ChanSpy Originate made no call of its own
    r = roles(h, cid)
    spy = {n: role for n, role in r.items() if n.startswith("Local/whisper_src@dialer-")}
    assert set(spy.values()) == {ChannelRole.HELPER} and len(spy) == 2
    assert any(n.startswith("Snoop/") and role is ChannelRole.SNOOP for n, role in r.items())
    # Its channels left the customer's call while the call went on.
    left = [e.channel for e in h.of(ChannelLeft)]
    assert all(n in left for n in spy)
    assert h.registry.stats.calls_started == 1


def test_early_media_helpers_created_before_the_call() -> None:
    """The UnicastRTP channel exists (and is bridged) before the customer's call starts."""
    h = replay_ami(CAPTURES / "pjsip/ami/early_media_ringback.jsonl")
    cid, _ = single_call(h)
    r = roles(h, cid)
    assert sorted(r.values()) == sorted(
        [ChannelRole.CUSTOMER, ChannelRole.SNOOP, ChannelRole.EXTERNAL_MEDIA]
    )


def test_core_show_channels_reconcile_keeps_the_call() -> None:
    h = replay_ami(CAPTURES / "ami/core_show_channels.jsonl")
    single_call(h)
    assert h.registry.stats.resyncs == 1
    assert h.registry.stats.calls_started == 1


def test_find_by_channel_and_lookups() -> None:
    h = replay_ami(CAPTURES / "pjsip/ami/outbound_answered.jsonl")
    cid, _ = single_call(h)
    call = h.registry.get(cid)
    assert call is not None
    for ch in call.channels.values():
        assert h.registry.find_by_channel(ch.name) is call
        assert h.registry.find_by_channel(ch.uniqueid) is call
    assert h.registry.find_by_channel("PJSIP/nobody-00000001") is None
    assert h.registry.get("nope") is None


# ------------------------------------------------------------------------------------ ARI
ARI_OUTCOMES: list[tuple[str, CallState, str]] = [
    ("ari/originate_via_ari", CallState.ANSWERED, "ari:ChannelStateChange Up"),
    ("pjsip/ari/early_media_ringback", CallState.BUSY, "ari:Dial dialstatus=BUSY"),
    ("pjsip/ari/early_media_sit", CallState.FAILED, "ari:ChannelHangupRequest cause=1"),
    ("pjsip/ari/sip_spy_in", CallState.ANSWERED, "ari:ChannelStateChange Up"),
]


@pytest.mark.parametrize(("capture", "expected", "source"), ARI_OUTCOMES, ids=lambda v: str(v))
def test_ari_capture_outcome(capture: str, expected: CallState, source: str) -> None:
    h = replay_ari(CAPTURES / f"{capture}.jsonl")
    _cid, outcome = single_call(h)
    assert outcome.outcome is expected
    assert outcome.source == source
    (started,) = h.of(CallStarted)
    assert started.direction == "outbound"


def test_ari_sip_spy_in_roles_without_linkedid() -> None:
    """ARI has no linkedid: the agent leg is linked by the Dial event, helpers by name/bridge."""
    h = replay_ari(CAPTURES / "pjsip/ari/sip_spy_in.jsonl")
    cid, _ = single_call(h)
    r = roles(h, cid)
    assert r["PJSIP/cust1-00000014"] is ChannelRole.CUSTOMER
    assert r["PJSIP/agent1-00000015"] is ChannelRole.AGENT
    assert r["Snoop/1795448962.37-00000007"] is ChannelRole.SNOOP
    assert r["Snoop/1795448964.39-00000008"] is ChannelRole.SNOOP
    assert sum(role is ChannelRole.EXTERNAL_MEDIA for role in r.values()) == 2


def test_ari_originate_local_pair_roles() -> None:
    h = replay_ari(CAPTURES / "ari/originate_via_ari.jsonl")
    cid, _ = single_call(h)
    assert roles(h, cid) == {
        "Local/answer@test-000001d4;1": ChannelRole.CUSTOMER,
        "Local/answer@test-000001d4;2": ChannelRole.LOCAL_PEER,
    }


def test_ari_whisper_reconcile_from_get_channels() -> None:
    """pjsip/ari/whisper: plain subscription joined mid-call; GET /ari/channels resyncs."""
    h = Harness()
    for line in (CAPTURES / "pjsip/ari/whisper.jsonl").read_text().splitlines():
        rec = json.loads(line)
        h.clock.now = 1_800_000_000.0 + rec["t"]
        if rec["kind"] == "response" and rec["method"] == "GET" and rec["path"] == "/ari/channels":
            h.registry.reconcile_ari(json.loads(rec["body"]))
        elif rec["kind"] == "event":
            h.registry.on_ari_event(rec["event"])
    calls = h.registry.calls
    assert len(calls) == 1
    (call,) = calls.values()
    r = {ch.name: ch.role for ch in call.channels.values()}
    assert r["PJSIP/cust1-00000016"] is ChannelRole.CUSTOMER
    assert r["PJSIP/agent1-00000017"] is ChannelRole.AGENT
    assert r["Snoop/1795448980.42-00000009"] is ChannelRole.SNOOP
    assert call.outcome is CallState.ANSWERED
    assert call.outcome_source == "resync:ari state=Up"
    assert not call.channels["fx-whisper-snoop"].alive  # StasisEnd of the snoop


# ------------------------------------------------------------------------------------ AMI + ARI
@pytest.mark.parametrize("scenario", ["sip_spy_in", "whisper", "early_media_sit"])
def test_ami_and_ari_together_make_one_call(scenario: str) -> None:
    """Both feeds at once (merged on the ARI clock): one call, one outcome, no duplicates."""
    sidecar = CAPTURES / f"pjsip/ari/{scenario}.json"
    t0 = json.loads(sidecar.read_text())["ami_t0_on_this_clock"] if sidecar.exists() else 0.0
    h = Harness()
    feed = AmiFeeder(h, scenario)
    items: list[tuple[float, int, Any]] = []
    for t, direction, msg in ami_items(CAPTURES / f"pjsip/ami/{scenario}.jsonl"):
        items.append((t + t0, 0, (direction, msg)))
    for t, event in ari_items(CAPTURES / f"pjsip/ari/{scenario}.jsonl"):
        items.append((t, 1, event))
    items.sort(key=lambda it: (it[0], it[1]))
    for t, source, item in items:
        h.clock.now = 1_800_000_000.0 + t
        if source == 0:
            feed(*item)
        else:
            h.registry.on_ari_event(item)
    single_call(h)
    single_ami = replay_ami(CAPTURES / f"pjsip/ami/{scenario}.jsonl")
    assert h.of(CallOutcome)[0].outcome is single_ami.of(CallOutcome)[0].outcome


def test_our_ringing_local_originate_is_announced_at_the_ring() -> None:
    """faults/local_dialer_noanswer: Earpiece's own Originate of Local/noanswer@customers rings
    at 1 ms and fails at 5 s; the call is announced at the ring (so its early media can be
    forked: the capture's snoops on both halves worked), not at the OriginateResponse."""
    h = replay_ami(CAPTURES / "faults/ami/local_dialer_noanswer.jsonl")
    started = [e for e in h.events if isinstance(e, CallStarted)]
    assert len(started) == 1 and started[0].channel.startswith("Local/noanswer@customers-")
    assert started[0].at - Clock().now < 0.01
    outcome = [e for e in h.events if isinstance(e, CallOutcome)]
    assert [e.outcome for e in outcome] == [CallState.NO_ANSWER]
