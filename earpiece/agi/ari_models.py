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
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, ClassVar, Self, TypeVar

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

M = TypeVar("M", bound="AriModel")

# A converter checks one JSON value and returns the typed value; ``where`` is the dotted path.
_Conv = Callable[[object, str], object]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _fail(where: str, expected: str, value: object) -> AriProtocolError:
    return AriProtocolError(f"{where}: expected {expected}, got {_json_type(value)}")


def _conv_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _fail(where, "string", value)
    return value


def _conv_int(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(where, "integer", value)
    return value


def _conv_float(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(where, "number", value)
    try:
        return float(value)
    except OverflowError:
        raise AriProtocolError(f"{where}: number out of range") from None


def _conv_bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(where, "boolean", value)
    return value


def _conv_date(value: object, where: str) -> datetime:
    if not isinstance(value, str):
        raise _fail(where, "date string", value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise AriProtocolError(f"{where}: invalid date {value[:40]!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def _conv_any_dict(value: object, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, "object", value)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise AriProtocolError(f"{where}: object key must be a string")
        out[key] = item
    return out


def _conv_any(value: object, where: str) -> object:
    return value


def _make_tuple_conv(item: _Conv) -> _Conv:
    def conv(value: object, where: str) -> tuple[object, ...]:
        if not isinstance(value, (list, tuple)):
            raise _fail(where, "array", value)
        return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

    return conv


def _make_dict_conv(item: _Conv) -> _Conv:
    def conv(value: object, where: str) -> dict[str, object]:
        if not isinstance(value, Mapping):
            raise _fail(where, "object", value)
        out: dict[str, object] = {}
        for key, v in value.items():
            if not isinstance(key, str):
                raise AriProtocolError(f"{where}: object key must be a string")
            out[key] = item(v, f"{where}.{key}")
        return out

    return conv


def _make_model_conv(cls: type[AriModel]) -> _Conv:
    def conv(value: object, where: str) -> AriModel:
        return cls._parse_at(value, where)

    return conv


def _converter(hint: object, owner: type) -> _Conv:
    """The converter for one resolved type hint (the supported subset only)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        rest = [a for a in args if a is not type(None)]
        if len(rest) != 1:
            raise TypeError(f"{owner.__name__}: unsupported union {hint!r}")
        return _converter(rest[0], owner)
    if origin is tuple:
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"{owner.__name__}: only tuple[X, ...] is supported")
        return _make_tuple_conv(_converter(args[0], owner))
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"{owner.__name__}: dict keys must be str")
        if args[1] is Any:
            return _conv_any_dict
        return _make_dict_conv(_converter(args[1], owner))
    if hint is Any:
        return _conv_any
    if hint is str:
        return _conv_str
    if hint is bool:
        return _conv_bool
    if hint is int:
        return _conv_int
    if hint is float:
        return _conv_float
    if hint is datetime:
        return _conv_date
    if isinstance(hint, type) and issubclass(hint, AriModel):
        return _make_model_conv(hint)
    raise TypeError(f"{owner.__name__}: unsupported field type {hint!r}")


@dataclass(frozen=True)
class _FieldSpec:
    attr: str
    key: str
    required: bool
    conv: _Conv


class AriModel:
    """Base of every ARI dataclass: a typed ``parse`` built from the field annotations."""

    __slots__ = ()
    _specs: ClassVar[dict[type, tuple[_FieldSpec, ...]]] = {}

    @classmethod
    def _field_specs(cls) -> tuple[_FieldSpec, ...]:
        specs = AriModel._specs.get(cls)
        if specs is None:
            hints = typing.get_type_hints(cls)
            built = []
            for f in fields(cls):  # type: ignore[arg-type]
                if f.metadata.get("raw"):
                    continue
                required = f.default is MISSING and f.default_factory is MISSING
                key = str(f.metadata.get("json", f.name))
                built.append(_FieldSpec(f.name, key, required, _converter(hints[f.name], cls)))
            specs = tuple(built)
            AriModel._specs[cls] = specs
        return specs

    @classmethod
    def json_keys(cls) -> dict[str, str]:
        """JSON property name -> Python attribute name, for every parsed field."""
        return {s.key: s.attr for s in cls._field_specs()}

    @classmethod
    def parse(cls, obj: Mapping[str, Any]) -> Self:
        """Build from one decoded JSON object; :class:`AriProtocolError` on bad input."""
        return cls._parse_at(obj, cls.__name__)

    @classmethod
    def _parse_at(cls, obj: object, where: str) -> Self:
        if not isinstance(obj, Mapping):
            raise _fail(where, "object", obj)
        kwargs: dict[str, object] = {}
        for spec in cls._field_specs():
            value = obj.get(spec.key)
            if value is None:
                if spec.required:
                    present = "null" if spec.key in obj else "missing"
                    raise AriProtocolError(f"{where}: {present} required field {spec.key!r}")
                continue
            kwargs[spec.attr] = spec.conv(value, f"{where}.{spec.key}")
        cls._check(obj, kwargs, where)
        return cls(**kwargs)

    @classmethod
    def _check(cls, obj: Mapping[Any, Any], kwargs: dict[str, object], where: str) -> None:
        """Hook for extra checks and derived fields; the base does nothing."""


def parse_list(cls: type[M], obj: object, where: str | None = None) -> list[M]:
    """Parse a JSON array of ``cls`` objects (a ``List[...]`` REST body)."""
    name = where if where is not None else f"List[{cls.__name__}]"
    if not isinstance(obj, (list, tuple)):
        raise _fail(name, "array", obj)
    return [cls._parse_at(item, f"{name}[{i}]") for i, item in enumerate(obj)]


# --------------------------------------------------------------------------------------------
# Resources (channels.json, bridges.json, playbacks.json, asterisk.json, applications.json...)


@dataclass(frozen=True, kw_only=True, slots=True)
class CallerID(AriModel):
    name: str
    number: str


@dataclass(frozen=True, kw_only=True, slots=True)
class DialplanCEP(AriModel):
    context: str
    exten: str
    priority: int
    app_name: str
    app_data: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Channel(AriModel):
    id: str
    protocol_id: str
    name: str
    state: str
    caller: CallerID
    connected: CallerID
    accountcode: str
    dialplan: DialplanCEP
    creationtime: datetime
    language: str
    channelvars: dict[str, str] | None = None
    caller_rdnis: str | None = None
    tenantid: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Bridge(AriModel):
    id: str
    technology: str
    bridge_type: str
    bridge_class: str
    creator: str
    name: str
    channels: tuple[str, ...]
    creationtime: datetime
    video_mode: str | None = None
    video_source_id: str | None = None
    bridgevars: dict[str, str] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Playback(AriModel):
    id: str
    media_uri: str
    target_uri: str
    state: str
    next_media_uri: str | None = None
    language: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveRecording(AriModel):
    name: str
    format: str
    target_uri: str
    state: str
    duration: int | None = None
    talking_duration: int | None = None
    silence_duration: int | None = None
    cause: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Variable(AriModel):
    value: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BuildInfo(AriModel):
    os: str
    kernel: str
    options: str
    machine: str
    date: str
    user: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SystemInfo(AriModel):
    version: str
    entity_id: str


@dataclass(frozen=True, kw_only=True, slots=True)
class SetId(AriModel):
    user: str
    group: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigInfo(AriModel):
    name: str
    default_language: str
    setid: SetId
    max_channels: int | None = None
    max_open_files: int | None = None
    max_load: float | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class StatusInfo(AriModel):
    startup_time: datetime
    last_reload_time: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class AsteriskInfo(AriModel):
    build: BuildInfo | None = None
    system: SystemInfo | None = None
    config: ConfigInfo | None = None
    status: StatusInfo | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AsteriskPing(AriModel):
    asterisk_id: str
    ping: str
    timestamp: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Application(AriModel):
    name: str
    channel_ids: tuple[str, ...]
    bridge_ids: tuple[str, ...]
    endpoint_ids: tuple[str, ...]
    device_names: tuple[str, ...]
    events_allowed: tuple[dict[str, Any], ...]
    events_disallowed: tuple[dict[str, Any], ...]


@dataclass(frozen=True, kw_only=True, slots=True)
class DeviceState(AriModel):
    name: str
    state: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Endpoint(AriModel):
    technology: str
    resource: str
    channel_ids: tuple[str, ...]
    state: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TextMessage(AriModel):
    from_: str = field(metadata={"json": "from"})
    to: str
    body: str
    variables: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ContactInfo(AriModel):
    uri: str
    contact_status: str
    aor: str
    roundtrip_usec: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class Peer(AriModel):
    peer_status: str
    cause: str | None = None
    address: str | None = None
    port: str | None = None
    time: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class AdditionalParam(AriModel):
    parameter_name: str
    parameter_value: str


@dataclass(frozen=True, kw_only=True, slots=True)
class RequiredDestination(AriModel):
    protocol_id: str | None = None
    destination: str | None = None
    additional_protocol_params: tuple[AdditionalParam, ...] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReferTo(AriModel):
    requested_destination: RequiredDestination
    destination_channel: Channel | None = None
    connected_channel: Channel | None = None
    bridge: Bridge | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class ReferredBy(AriModel):
    source_channel: Channel
    connected_channel: Channel | None = None
    bridge: Bridge | None = None


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
