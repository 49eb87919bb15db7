"""ARI resources and events as typed, immutable dataclasses (no I/O).

Field names and types follow the Swagger 1.2 ``models`` of Asterisk's own ARI documentation
(``ari-api-docs/*.json``); a test checks every class against them. Mapping of Swagger types:

==============  ==========================================================
Swagger         Python
==============  ==========================================================
string          ``str``
int, long       ``int`` (``bool`` is rejected)
double          ``float`` (JSON integers accepted)
boolean         ``bool``
Date            ``datetime`` (timezone-aware; Asterisk sends
                ``2026-11-23T15:28:29.365+0000``; a value without offset is taken as UTC)
object          ``dict[str, str]`` (channel/bridge variables) or ``dict[str, Any]``
List[X]         ``tuple[X, ...]``
<Model>         the dataclass of that name
==============  ==========================================================

A property Swagger marks ``required`` is a dataclass field without default; an optional one
defaults to ``None``. JSON ``null`` in an optional property reads as absent. Unknown JSON keys
are ignored (newer Asterisk versions add properties). Enumerated strings (``Channel.state``,
``Playback.state``...) stay plain ``str`` so a new value never makes an event unreadable.

Every ``parse(obj)`` raises :class:`~earpiece.errors.AriProtocolError` naming the dotted path of
the offending field (``StasisStart.channel.caller: missing required field 'number'``) and raises
nothing else, whatever JSON it is given.

Events: :func:`parse_event` dispatches on ``type`` to the classes in :data:`EVENT_TYPES`; an
unknown ``type`` gives a plain :class:`AriEvent`. Every event keeps the decoded JSON object in
``raw``.

The parsing machinery (:class:`AriModel`, :func:`parse_list`) is in
:mod:`earpiece.agi.ari_model_base`, the resource dataclasses in :mod:`earpiece.agi.ari_resources`;
both are re-exported here, so import everything from this module.
"""

from __future__ import annotations

import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from earpiece.agi.ari_model_base import AriModel, _fail, parse_list
from earpiece.agi.ari_resources import (
    AdditionalParam,
    Application,
    AsteriskInfo,
    AsteriskPing,
    Bridge,
    BuildInfo,
    CallerID,
    Channel,
    ConfigInfo,
    ContactInfo,
    DeviceState,
    DialplanCEP,
    Endpoint,
    LiveRecording,
    Peer,
    Playback,
    ReferredBy,
    ReferTo,
    RequiredDestination,
    SetId,
    StatusInfo,
    SystemInfo,
    TextMessage,
    Variable,
)
from earpiece.errors import AriProtocolError

__all__ = [
    "EVENT_TYPES",
    "AdditionalParam",
    "Application",
    "ApplicationMoveFailed",
    "ApplicationRegistered",
    "ApplicationReplaced",
    "ApplicationUnregistered",
    "AriEvent",
    "AriModel",
    "AsteriskInfo",
    "AsteriskPing",
    "Bridge",
    "BridgeAttendedTransfer",
    "BridgeBlindTransfer",
    "BridgeCreated",
    "BridgeDestroyed",
    "BridgeMerged",
    "BridgeVideoSourceChanged",
    "BuildInfo",
    "CallBroadcast",
    "CallClaimed",
    "CallerID",
    "Channel",
    "ChannelCallerId",
    "ChannelConnectedLine",
    "ChannelCreated",
    "ChannelDestroyed",
    "ChannelDialplan",
    "ChannelDtmfReceived",
    "ChannelEnteredBridge",
    "ChannelHangupRequest",
    "ChannelHold",
    "ChannelLeftBridge",
    "ChannelStateChange",
    "ChannelTalkingFinished",
    "ChannelTalkingStarted",
    "ChannelToneDetected",
    "ChannelTransfer",
    "ChannelUnhold",
    "ChannelUserevent",
    "ChannelVarset",
    "ConfigInfo",
    "ContactInfo",
    "ContactStatusChange",
    "DeviceState",
    "DeviceStateChanged",
    "Dial",
    "DialplanCEP",
    "Endpoint",
    "EndpointStateChange",
    "LiveRecording",
    "Peer",
    "PeerStatusChange",
    "Playback",
    "PlaybackContinuing",
    "PlaybackFinished",
    "PlaybackStarted",
    "RecordingFailed",
    "RecordingFinished",
    "RecordingStarted",
    "ReferTo",
    "ReferredBy",
    "RequiredDestination",
    "SetId",
    "StasisEnd",
    "StasisStart",
    "StatusInfo",
    "SystemInfo",
    "TextMessage",
    "TextMessageReceived",
    "Variable",
    "parse_event",
    "parse_event_json",
    "parse_list",
]


# --------------------------------------------------------------------------------------------
# Events (events.json): Message -> Event -> <type>


@dataclass(frozen=True, kw_only=True, slots=True)
class AriEvent(AriModel):
    """Any event of the ``/events`` websocket; the typed events below extend it.

    ``raw`` is the decoded JSON object as received (not compared, not shown in ``repr``).
    """

    type: str
    application: str
    timestamp: datetime
    asterisk_id: str | None = None
    raw: Mapping[str, Any] = field(
        default_factory=dict, repr=False, compare=False, metadata={"raw": True}
    )

    @classmethod
    def _check(cls, obj: Mapping[Any, Any], kwargs: dict[str, object], where: str) -> None:
        if cls is not AriEvent and kwargs.get("type") != cls.__name__:
            raise AriProtocolError(f"{where}.type: expected {cls.__name__!r}")
        kwargs["raw"] = obj


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceStateChanged(AriEvent):
    device_state: DeviceState


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackStarted(AriEvent):
    playback: Playback


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackContinuing(AriEvent):
    playback: Playback


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackFinished(AriEvent):
    playback: Playback


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordingStarted(AriEvent):
    recording: LiveRecording


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordingFinished(AriEvent):
    recording: LiveRecording


@dataclass(frozen=True, kw_only=True, slots=True)
class RecordingFailed(AriEvent):
    recording: LiveRecording


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplicationMoveFailed(AriEvent):
    channel: Channel
    destination: str
    args: tuple[str, ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplicationRegistered(AriEvent):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplicationUnregistered(AriEvent):
    pass


@dataclass(frozen=True, kw_only=True, slots=True)
class ApplicationReplaced(AriEvent):
    """Another websocket registered the same application name: this one gets no more events."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeCreated(AriEvent):
    bridge: Bridge


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeDestroyed(AriEvent):
    bridge: Bridge


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeMerged(AriEvent):
    bridge: Bridge
    bridge_from: Bridge


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeVideoSourceChanged(AriEvent):
    bridge: Bridge
    old_video_source_id: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeBlindTransfer(AriEvent):
    channel: Channel
    exten: str
    context: str
    result: str
    is_external: bool
    replace_channel: Channel | None = None
    transferee: Channel | None = None
    bridge: Bridge | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class BridgeAttendedTransfer(AriEvent):
    transferer_first_leg: Channel
    transferer_second_leg: Channel
    result: str
    is_external: bool
    destination_type: str
    replace_channel: Channel | None = None
    transferee: Channel | None = None
    transfer_target: Channel | None = None
    transferer_first_leg_bridge: Bridge | None = None
    transferer_second_leg_bridge: Bridge | None = None
    destination_bridge: str | None = None
    destination_application: str | None = None
    destination_link_first_leg: Channel | None = None
    destination_link_second_leg: Channel | None = None
    destination_threeway_channel: Channel | None = None
    destination_threeway_bridge: Bridge | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelCreated(AriEvent):
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelDestroyed(AriEvent):
    cause: int
    cause_txt: str
    channel: Channel
    tech_cause: int | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelEnteredBridge(AriEvent):
    bridge: Bridge
    channel: Channel | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelLeftBridge(AriEvent):
    bridge: Bridge
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelStateChange(AriEvent):
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelDtmfReceived(AriEvent):
    digit: str
    duration_ms: int
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelDialplan(AriEvent):
    channel: Channel
    dialplan_app: str
    dialplan_app_data: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelCallerId(AriEvent):
    caller_presentation: int
    caller_presentation_txt: str
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelUserevent(AriEvent):
    eventname: str
    userevent: dict[str, Any]
    channel: Channel | None = None
    bridge: Bridge | None = None
    endpoint: Endpoint | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelHangupRequest(AriEvent):
    channel: Channel
    cause: int | None = None
    tech_cause: int | None = None
    soft: bool | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelVarset(AriEvent):
    """A variable was set; ``channel`` is absent for a global variable."""

    variable: str
    value: str
    channel: Channel | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelHold(AriEvent):
    channel: Channel
    musicclass: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelUnhold(AriEvent):
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelToneDetected(AriEvent):
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelTalkingStarted(AriEvent):
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelTalkingFinished(AriEvent):
    channel: Channel
    duration: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactStatusChange(AriEvent):
    endpoint: Endpoint
    contact_info: ContactInfo


@dataclass(frozen=True, kw_only=True, slots=True)
class PeerStatusChange(AriEvent):
    endpoint: Endpoint
    peer: Peer


@dataclass(frozen=True, kw_only=True, slots=True)
class EndpointStateChange(AriEvent):
    endpoint: Endpoint


@dataclass(frozen=True, kw_only=True, slots=True)
class Dial(AriEvent):
    """Dialing state: ``dialstatus`` is ``""`` when the dial starts, then e.g. ``ANSWER``."""

    peer: Channel
    dialstatus: str
    caller: Channel | None = None
    forward: str | None = None
    forwarded: Channel | None = None
    dialstring: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class StasisEnd(AriEvent):
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class StasisStart(AriEvent):
    args: tuple[str, ...]
    channel: Channel
    replace_channel: Channel | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TextMessageReceived(AriEvent):
    message: TextMessage
    endpoint: Endpoint | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelConnectedLine(AriEvent):
    channel: Channel


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelTransfer(AriEvent):
    refer_to: ReferTo
    referred_by: ReferredBy
    state: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CallBroadcast(AriEvent):
    channel: Channel
    caller: str | None = None
    called: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class CallClaimed(AriEvent):
    channel: Channel
    winner_app: str


#: ``type`` -> typed event class, for every event :func:`parse_event` knows.
EVENT_TYPES: Mapping[str, type[AriEvent]] = types.MappingProxyType(
    {
        cls.__name__: cls
        for cls in (
            DeviceStateChanged,
            PlaybackStarted,
            PlaybackContinuing,
            PlaybackFinished,
            RecordingStarted,
            RecordingFinished,
            RecordingFailed,
            ApplicationMoveFailed,
            ApplicationRegistered,
            ApplicationUnregistered,
            ApplicationReplaced,
            BridgeCreated,
            BridgeDestroyed,
            BridgeMerged,
            BridgeVideoSourceChanged,
            BridgeBlindTransfer,
            BridgeAttendedTransfer,
            ChannelCreated,
            ChannelDestroyed,
            ChannelEnteredBridge,
            ChannelLeftBridge,
            ChannelStateChange,
            ChannelDtmfReceived,
            ChannelDialplan,
            ChannelCallerId,
            ChannelUserevent,
            ChannelHangupRequest,
            ChannelVarset,
            ChannelHold,
            ChannelUnhold,
            ChannelToneDetected,
            ChannelTalkingStarted,
            ChannelTalkingFinished,
            ContactStatusChange,
            PeerStatusChange,
            EndpointStateChange,
            Dial,
            StasisEnd,
            StasisStart,
            TextMessageReceived,
            ChannelConnectedLine,
            ChannelTransfer,
            CallBroadcast,
            CallClaimed,
        )
    }
)


def parse_event(obj: object) -> AriEvent:
    """Typed event for one decoded websocket frame; unknown ``type`` gives :class:`AriEvent`."""
    if not isinstance(obj, Mapping):
        raise _fail("event", "object", obj)
    kind = obj.get("type")
    if not isinstance(kind, str):
        if kind is None:
            raise AriProtocolError("event: missing required field 'type'")
        raise _fail("event.type", "string", kind)
    cls = EVENT_TYPES.get(kind, AriEvent)
    return cls._parse_at(obj, kind if cls is not AriEvent else f"AriEvent({kind[:40]})")


def parse_event_json(text: str | bytes) -> AriEvent:
    """:func:`parse_event` of one websocket text frame (JSON); bad JSON is an AriProtocolError."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise AriProtocolError(f"event: invalid JSON: {exc}") from None
    return parse_event(obj)
