"""Settings of the FreeSWITCH attachment (inbound event socket)."""

from __future__ import annotations

from dataclasses import dataclass, field

from earpiece.secret import Secret

#: What the call registry needs (README "Channel events of a call"), plus the job results.
DEFAULT_EVENTS: tuple[str, ...] = (
    "CHANNEL_CREATE", "CHANNEL_UUID", "CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER", "CHANNEL_BRIDGE", "CHANNEL_UNBRIDGE", "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE", "CHANNEL_DESTROY", "BACKGROUND_JOB", "HEARTBEAT", "SHUTDOWN",
    "CUSTOM", "mod_audio_fork::connect", "mod_audio_fork::connect_failed",
    "mod_audio_fork::disconnect",
)


@dataclass(frozen=True)
class EslSettings:
    host: str = "127.0.0.1"
    port: int = 8021
    password: Secret = field(default_factory=lambda: Secret("ClueCon"))
    #: ``plain`` (URL-encoded headers) or ``json``; both are parsed into the same EslEvent.
    event_format: str = "plain"
    events: tuple[str, ...] = DEFAULT_EVENTS
    connect_timeout_s: float = 5.0
    command_timeout_s: float = 10.0
    #: A ``bgapi originate`` answers when the call is answered or fails: minutes at most.
    job_timeout_s: float = 180.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    #: ``api status`` every so often; no answer within ``command_timeout_s`` drops the link.
    keepalive_s: float = 20.0
