"""One call as the registry sees it: its channels, its state machine and the evidence behind it.

A :class:`Call` is plain state; :class:`earpiece.agi.calls.registry.Registry` feeds it and publishes
what changes. The state machine only moves forward (``dialing -> ringing -> <outcome> -> ended``,
see :data:`earpiece.agi.calls.outcome.STATE_ORDER`), so duplicated, replayed or doubly
delivered (AMI and ARI) events are no-ops.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from earpiece.agi.calls.outcome import STATE_ORDER, Evidence
from earpiece.events import OUTCOME_STATES, CallState, ChannelRole, Direction

#: Channel technologies that serve a call rather than being a party of it.
HELPER_TECHS: dict[str, ChannelRole] = {
    "Snoop": ChannelRole.SNOOP,
    "UnicastRTP": ChannelRole.EXTERNAL_MEDIA,
    "AudioSocket": ChannelRole.EXTERNAL_MEDIA,
    "WebSocket": ChannelRole.EXTERNAL_MEDIA,
    "Announcer": ChannelRole.HELPER,
    "Recorder": ChannelRole.HELPER,
    "CBAnn": ChannelRole.HELPER,
    "CBRec": ChannelRole.HELPER,
}
HELPER_ROLES = frozenset({ChannelRole.SNOOP, ChannelRole.EXTERNAL_MEDIA, ChannelRole.HELPER})


def channel_tech(name: str) -> str:
    return name.partition("/")[0]


def local_base(name: str) -> str | None:
    """``Local/x@ctx-0000001a;2`` -> ``Local/x@ctx-0000001a``; ``None`` for other channels."""
    if channel_tech(name) == "Local" and name[-2:] in (";1", ";2"):
        return name[:-2]
    return None


def snoop_target(name: str) -> str | None:
    """``Snoop/<uniqueid of the snooped channel>-0000000N`` -> that uniqueid."""
    if channel_tech(name) != "Snoop":
        return None
    target, sep, _ = name[len("Snoop/"):].rpartition("-")
    return target if sep and target else None


@dataclass
class Channel:
    uniqueid: str
    name: str
    role: ChannelRole
    created: float
    state: str = ""
    alive: bool = True
    announced: bool = False
    hangup_requested: bool = False
    cause: int | None = None
    left: float | None = None
    last_seen: float = 0.0  # clock of the last event about it (resync keeps recent ones)
    originated: bool = False  # its first dialplan step was AppDial2 (Outgoing Line)
    dialled: bool = False  # created by Dial(): AppDial (Outgoing Line)

    @property
    def tech(self) -> str:
        return channel_tech(self.name)

    @property
    def is_helper(self) -> bool:
        return self.role in HELPER_ROLES

    @property
    def local_base(self) -> str | None:
        return local_base(self.name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uniqueid": self.uniqueid,
            "role": self.role.value,
            "state": self.state,
            "alive": self.alive,
            "cause": self.cause,
        }


@dataclass(frozen=True)
class Transition:
    old: CallState
    new: CallState
    source: str
    at: float


@dataclass(frozen=True)
class AudioVerdict:
    label: str
    source: str
    at: float


@dataclass
class Call:
    """A call: one or more channels (customer, agent, Local halves, helpers) with one outcome."""

    id: str
    created: float
    direction: Direction = "unknown"
    state: CallState = CallState.DIALING
    channels: dict[str, Channel] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    outcome: CallState | None = None
    outcome_source: str | None = None
    answered: float | None = None
    ended: float | None = None
    hangup_cause: int | None = None
    evidence: list[Evidence] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)
    audio: list[AudioVerdict] = field(default_factory=list)
    confirmed: bool = False  # published (CallStarted sent)
    spy: bool = False  # a Local pair running ChanSpy: becomes a helper of the spyee's call
    awaiting_link: bool = False  # a dialled leg whose caller is not known yet (ARI, no linkedid)
    ours_local: bool = False  # a Local originate of ours, not announced yet (maybe a spy pair)
    originate_seen: bool = False
    originate_action_id: str | None = None
    dial_string: str | None = None
    linkedid: str | None = None
    aliases: set[str] = field(default_factory=set)
    #: Dials made from this call: dest uniqueid -> caller uniqueid.
    dials: dict[str, str] = field(default_factory=dict)

    # --- channels -------------------------------------------------------------------------
    @property
    def customer(self) -> Channel | None:
        for ch in self.channels.values():
            if ch.role is ChannelRole.CUSTOMER:
                return ch
        return None

    def members(self) -> list[Channel]:
        """Party channels (not helpers), alive or not."""
        return [ch for ch in self.channels.values() if not ch.is_helper]

    def live_members(self) -> list[Channel]:
        return [ch for ch in self.channels.values() if ch.alive and not ch.is_helper]

    def local_peer_of(self, ch: Channel) -> Channel | None:
        base = ch.local_base
        if base is None:
            return None
        for other in self.channels.values():
            if other is not ch and other.local_base == base:
                return other
        return None

    @property
    def is_local_only(self) -> bool:
        return all(ch.tech == "Local" for ch in self.members())

    # --- state machine -----------------------------------------------------------------------
    @property
    def settled(self) -> bool:
        return self.outcome is not None

    def advance(self, new: CallState, source: str, at: float) -> Transition | None:
        """Move forward to ``new``; ``None`` when that would not be forward (no-op)."""
        if STATE_ORDER[new] <= STATE_ORDER[self.state]:
            return None
        if new in OUTCOME_STATES and self.outcome is not None:
            return None
        t = Transition(self.state, new, source, at)
        self.state = new
        self.transitions.append(t)
        if new in OUTCOME_STATES:
            self.outcome = new
            self.outcome_source = source
            if new is CallState.ANSWERED:
                self.answered = at
        if new is CallState.ENDED:
            self.ended = at
        return t

    def add_evidence(self, ev: Evidence) -> bool:
        """Record ``ev`` unless the same state from the same source is already there."""
        for old in self.evidence:
            if old.state is ev.state and old.source == ev.source:
                return False
        self.evidence.append(ev)
        return True

    def disagreements(self) -> list[Evidence]:
        """Evidence for an outcome other than the settled one."""
        if self.outcome is None:
            return []
        outcome = self.outcome
        return [e for e in self.evidence if e.state in OUTCOME_STATES and e.state is not outcome]

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "direction": self.direction,
            "state": self.state.value,
            "outcome": self.outcome.value if self.outcome is not None else None,
            "outcome_source": self.outcome_source,
            "started": self.created,
            "answered": self.answered,
            "ended": self.ended,
            "hangup_cause": self.hangup_cause,
            "dial_string": self.dial_string,
            "channels": [ch.as_dict() for ch in self.channels.values()],
            "tags": dict(self.tags),
            "evidence": [ev.as_dict() for ev in self.evidence],
            "disagreements": [ev.as_dict() for ev in self.disagreements()],
            "audio": [{"label": a.label, "source": a.source, "at": a.at} for a in self.audio],
            "transitions": [
                {"old": t.old.value, "new": t.new.value, "source": t.source, "at": t.at}
                for t in self.transitions
            ],
        }
