"""The simulator's call model: channels, bridges and playbacks, and how each one looks on the
wire (AMI header blocks, ARI JSON snapshots), exactly as in the Asterisk 22 captures."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from earpiece.sim.audio import Pcm

STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
DOWN, RING, RINGING, UP = 0, 4, 5, 6

CAUSE_TXT = {
    0: "Unknown",
    1: "Unallocated (unassigned) number",
    16: "Normal Clearing",
    17: "User busy",
    19: "User alerting, no answer",
    21: "Call Rejected",
    32: "Circuit/channel congestion",  # AST_CAUSE_NORMAL_CIRCUIT_CONGESTION (soft hangups)
    34: "Circuit/channel congestion",
}


def wall_ts(t: float | None = None) -> str:
    """ARI/AMI timestamp ``2026-11-23T15:49:09.364+0000``."""
    t = time.time() if t is None else t
    ms = int((t - int(t)) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{ms:03d}+0000"


def _or_unknown(value: str) -> str:
    return value if value else "<unknown>"


class AudioTrack:
    """Audio placed on the engine's 8 kHz sample clock: segments that may overlap (mixed)."""

    def __init__(self) -> None:
        self._segments: list[tuple[int, Pcm, str]] = []

    def add(self, start: int, pcm: Pcm, label: str = "") -> None:
        self._segments.append((start, pcm, label))

    def extend(self, start: int, pcm: Pcm, label: str = "") -> None:
        """Like :meth:`add`, but a segment that continues the last one (same label, starting
        where it ends) is joined to it: received RTP arrives in 20 ms pieces."""
        if self._segments:
            s, last, lab = self._segments[-1]
            if lab == label and s + len(last) == start:
                self._segments[-1] = (s, np.concatenate([last, pcm]), lab)
                return
        self._segments.append((start, pcm, label))

    def clear_from(self, start: int) -> None:
        """Cut everything at and after ``start`` (a party that hangs up stops talking)."""
        kept: list[tuple[int, Pcm, str]] = []
        for s, pcm, label in self._segments:
            if s >= start:
                continue
            if s + len(pcm) > start:
                pcm = pcm[: start - s]
            kept.append((s, pcm, label))
        self._segments = kept

    def read(self, start: int, n: int, out: np.ndarray[Any, np.dtype[np.int32]]) -> bool:
        """Mix samples ``[start, start+n)`` into ``out`` (int32); True if anything was there."""
        hit = False
        end = start + n
        for s, pcm, _ in self._segments:
            e = s + len(pcm)
            if e <= start or s >= end:
                continue
            a = max(s, start)
            b = min(e, end)
            out[a - start: b - start] += pcm[a - s: b - s]
            hit = True
        return hit

    def prune(self, before: int) -> None:
        self._segments = [seg for seg in self._segments if seg[0] + len(seg[1]) > before]

    def labels_between(self, start: int, end: int) -> list[str]:
        return [label for s, pcm, label in self._segments if s < end and s + len(pcm) > start]


@dataclass(eq=False)
class Channel:
    id: str
    name: str
    tech: str  # PJSIP | Snoop | UnicastRTP | Local
    state: int = DOWN
    caller_num: str = ""
    caller_name: str = ""
    connected_num: str = ""
    connected_name: str = ""
    context: str = "default"
    exten: str = "s"
    priority: int = 1
    app: str = ""
    app_data: str = ""
    linkedid: str = ""
    language: str = "en"
    accountcode: str = ""
    protocol_id: str = ""
    device: str = ""
    created: float = field(default_factory=time.time)
    created_mono: float = field(default_factory=time.monotonic)
    variables: dict[str, str] = field(default_factory=dict)
    bridge: Bridge | None = None
    stasis_app: str | None = None
    stasis_from_dialplan: bool = False
    ari_apps: set[str] = field(default_factory=set)
    hungup: bool = False
    doomed: bool = False  # failing at once (busy/congestion/bad exten Local): snoop -> 404
    endpoint: str = ""  # PJSIP endpoint name
    role: str = ""  # customer | agent | snoop | media | local
    # audio: what this channel's party sends (its voice) and extra audio only it hears
    voice: AudioTrack = field(default_factory=AudioTrack)
    whisper: AudioTrack = field(default_factory=AudioTrack)
    played: AudioTrack = field(default_factory=AudioTrack)  # ARI play on this channel
    snoops: list[Channel] = field(default_factory=list)
    # snoop channels
    spy: str = "none"
    whisper_dir: str = "none"
    snoop_target: Channel | None = None
    # UnicastRTP channels
    media_format: str = ""
    external_host: str = ""
    local_port: int = 0
    call: Any = None  # the engine's call record
    rtcp: bool = False  # RTCP reports running

    def __repr__(self) -> str:
        return f"Channel({self.name!r}, id={self.id!r}, state={self.state_desc})"

    @property
    def state_desc(self) -> str:
        return STATE_DESC.get(self.state, "Unknown")

    def ami_block(self, prefix: str = "") -> list[tuple[str, str]]:
        p = prefix
        return [
            (f"{p}Channel", self.name),
            (f"{p}ChannelState", str(self.state)),
            (f"{p}ChannelStateDesc", self.state_desc),
            (f"{p}CallerIDNum", _or_unknown(self.caller_num)),
            (f"{p}CallerIDName", _or_unknown(self.caller_name)),
            (f"{p}ConnectedLineNum", _or_unknown(self.connected_num)),
            (f"{p}ConnectedLineName", _or_unknown(self.connected_name)),
            (f"{p}Language", self.language),
            (f"{p}AccountCode", self.accountcode),
            (f"{p}Context", self.context),
            (f"{p}Exten", self.exten),
            (f"{p}Priority", str(self.priority)),
            (f"{p}Uniqueid", self.id),
            (f"{p}Linkedid", self.linkedid or self.id),
        ]

    def ari_json(self, *, with_vars: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "state": self.state_desc,
            "protocol_id": self.protocol_id,
            "caller": {"name": self.caller_name, "number": self.caller_num},
            "connected": {"name": self.connected_name, "number": self.connected_num},
            "accountcode": self.accountcode,
            "dialplan": {"context": self.context, "exten": self.exten,
                         "priority": self.priority, "app_name": self.app,
                         "app_data": self.app_data},
            "creationtime": wall_ts(self.created),
            "language": self.language,
        }
        if with_vars and self.tech == "UnicastRTP":
            out["channelvars"] = {
                "UNICASTRTP_LOCAL_PORT": str(self.local_port),
                "UNICASTRTP_LOCAL_ADDRESS": self.variables.get("UNICASTRTP_LOCAL_ADDRESS", ""),
            }
        return out

    def apps(self) -> set[str]:
        """ARI applications subscribed to this channel's events (besides subscribeAll)."""
        apps = set(self.ari_apps)
        if self.stasis_app:
            apps.add(self.stasis_app)
        return apps

    def duration(self) -> str:
        s = int(time.monotonic() - self.created_mono)
        return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


@dataclass(eq=False)
class Bridge:
    id: str
    bridge_class: str = "stasis"  # AMI BridgeType: basic | stasis
    technology: str = "simple_bridge"
    creator: str = ""
    name: str = ""
    video_mode: str = "none"
    channels: list[Channel] = field(default_factory=list)
    created: float = field(default_factory=time.time)
    ari_apps: set[str] = field(default_factory=set)
    end_technology: str = ""  # basic call bridges report native_rtp when torn down
    destroyed: bool = False

    def __repr__(self) -> str:
        names = [c.name for c in self.channels]
        return f"Bridge({self.id!r}, {self.bridge_class}, channels={names})"

    def ami_block(self, technology: str | None = None) -> list[tuple[str, str]]:
        return [
            ("BridgeUniqueid", self.id),
            ("BridgeType", self.bridge_class),
            ("BridgeTechnology", technology or self.technology),
            ("BridgeCreator", _or_unknown(self.creator)),
            ("BridgeName", _or_unknown(self.name)),
            ("BridgeNumChannels", str(len(self.channels))),
            ("BridgeVideoSourceMode", self.video_mode),
        ]

    def ari_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "technology": self.technology,
            "bridge_type": "mixing",
            "bridge_class": self.bridge_class,
            "creator": self.creator,
            "name": self.name,
            "channels": [c.id for c in self.channels],
            "creationtime": wall_ts(self.created),
            "video_mode": self.video_mode,
        }

    def apps(self) -> set[str]:
        apps = set(self.ari_apps)
        for ch in self.channels:
            apps |= ch.apps()
        return apps


@dataclass(eq=False)
class Playback:
    id: str
    media: list[str]
    target: Channel
    index: int = 0
    state: str = "queued"
    language: str = "en"

    def ari_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "media_uri": self.media[self.index]}
        if self.index + 1 < len(self.media):
            out["next_media_uri"] = self.media[self.index + 1]
        out["target_uri"] = f"channel:{self.target.id}"
        out["language"] = self.language
        out["state"] = self.state
        return out


@dataclass
class OriginateRequest:
    """An Originate as AMI (or the internal dialer) asks for it."""

    channel: str
    context: str = ""
    exten: str = ""
    priority: int = 1
    application: str = ""
    data: str = ""
    callerid_name: str = ""
    callerid_num: str = ""
    timeout_ms: int = 30000
    variables: list[tuple[str, str]] = field(default_factory=list)
    action_id: str | None = None
    source: str = "ami"
    app: str = ""  # ARI originate: Stasis app entered on answer
    app_args: list[str] = field(default_factory=list)
    channel_id: str = ""
    other_channel_id: str = ""
    is_async: bool = True  # a synchronous AMI Originate gets no OriginateResponse event


@dataclass
class OriginateOutcome:
    """What the scenario scripted for one originated call and what the engine made of it."""

    action_id: str | None
    dial_string: str
    endpoint: str
    scripted: str  # the endpoint's outcome (answer, busy, ... offline)
    answered_by: str
    source: str
    started: float
    response: str = ""  # Success | Failure ('' while pending)
    reason: int | None = None
    uniqueid: str = ""
    channel: str = ""
    dial_status: str = ""  # the originate's DialEnd status ('' when none was sent)
    hangup_cause: int | None = None
    agent_channel: str = ""
    finished: bool = False


@dataclass
class HeardEntry:
    """A prompt injected for one party only (whisper), for tests: who heard what, when."""

    channel: str
    role: str
    media: str
    t: float
