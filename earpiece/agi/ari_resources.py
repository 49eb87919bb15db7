"""ARI resources (channels.json, bridges.json, playbacks.json...) as typed dataclasses.

Purely declarative: one frozen dataclass per Swagger model, parsed by
:class:`~earpiece.agi.ari_model_base.AriModel`; the events that carry them are in
:mod:`earpiece.agi.ari_models`, which re-exports every class here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from earpiece.agi.ari_model_base import AriModel

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
