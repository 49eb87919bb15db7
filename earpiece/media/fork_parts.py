"""What the media fork works with: the ARI client as :class:`AriMediaClient` (a
``typing.Protocol`` with exactly the eight methods needed), each party's :class:`MediaLeg` and
the PBX resources behind it, the fork's counters, and the helpers that turn channel variables
into the expected RTP source and tell a refused connection from a failed request.
:mod:`earpiece.media.fork` re-exports every name.
"""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from earpiece.errors import PbxConnectionError
from earpiece.events import ChannelRole, Party
from earpiece.media.frames import Codec, PartyStream
from earpiece.media.settings import MediaSettings

T = TypeVar("T")

ROLE_PARTY: dict[ChannelRole, Party] = {
    ChannelRole.CUSTOMER: "customer",
    ChannelRole.AGENT: "agent",
}


class AriChannel(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def channelvars(self) -> dict[str, str] | None: ...


class AriBridge(Protocol):
    @property
    def id(self) -> str: ...


class AriMediaClient(Protocol):
    """The part of the ARI client the media fork needs."""

    async def snoop_channel(
        self, channel_id: str, *, app: str, spy: str = "none", whisper: str = "none",
        app_args: str = "", snoop_id: str | None = None,
    ) -> AriChannel: ...

    async def create_bridge(
        self, *, type: str = "mixing", bridge_id: str | None = None, name: str = ""
    ) -> AriBridge: ...

    async def add_channel_to_bridge(self, bridge_id: str, channel_id: str) -> None: ...

    async def external_media(
        self, *, app: str, external_host: str, format: str, channel_id: str | None = None,
        encapsulation: str = "rtp", transport: str = "udp", connection_type: str | None = None,
        direction: str = "both", data: str | None = None,
    ) -> AriChannel: ...

    async def hangup_channel(self, channel_id: str, reason: str = "normal") -> None: ...

    async def destroy_bridge(self, bridge_id: str) -> None: ...

    async def list_channels(self) -> Sequence[AriChannel]: ...

    async def list_bridges(self) -> Sequence[AriBridge]: ...


@dataclass
class MediaLeg:
    """One party's fork and the PBX resources behind it."""

    call_id: str
    party: Party
    channel_id: str  # the party's channel (ARI id = AMI Uniqueid)
    key: str
    transport: str
    bridge_id: str = ""
    snoop_id: str = ""
    em_id: str = ""
    port: int | None = None
    audiosocket_uuid: str = ""
    source: tuple[str, int] | None = None
    stream: PartyStream | None = None
    created: list[str] = field(default_factory=list)  # resources as they were confirmed
    requested: set[str] = field(default_factory=set)  # resources asked for (maybe created)
    attached_at: float = 0.0  # time.monotonic() when the fork was complete
    step: str = ""  # the request being made (bridge, external_media, snoop, add_...)


@dataclass
class _CallMedia:
    call_id: str
    outbound: bool = False
    answered: bool = False
    ended: bool = False
    channels: dict[Party, str] = field(default_factory=dict)
    legs: dict[Party, MediaLeg] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)  # party channels that hung up (ChannelLeft)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class ForkStats:
    attached: int = 0
    attach_failed: int = 0
    detached: int = 0
    early_attached: int = 0  # forks made before the answer (early media)
    retries: int = 0  # attach attempts repeated after an ARI connection failure
    resyncs: int = 0
    replaced: int = 0  # forks whose PBX resources vanished, made again by a resync
    teardown_errors: int = 0
    teardown_deferred: int = 0  # removals postponed because ARI was unreachable
    # forks not made (or abandoned half-way, everything removed) because the call ended or
    # the party's channel was gone first: a snoop answering 404, say (no WARNING)
    attach_gone: int = 0
    # a dead predecessor's helpers removed at start-up (see MediaFork.clean_leftovers)
    leftover_snoops: int = 0
    leftover_media: int = 0  # externalMedia (UnicastRTP / AudioSocket) channels
    leftover_bridges: int = 0


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed ARI request (``AriHttpError.status``), else ``None``."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _codec_for(settings: MediaSettings) -> Codec:
    if settings.transport == "audiosocket":
        return "slin16le" if settings.format == "slin16" else "slin"
    return settings.format


async def _make(leg: MediaLeg, what: str, request: Awaitable[T]) -> T:
    """Await a create request; ``what`` may exist at the PBX afterwards unless the request
    never reached it (connection refused), in which case teardown skips it."""
    leg.requested.add(what)
    try:
        return await request
    except PbxConnectionError as exc:
        if _refused(exc):
            leg.requested.discard(what)
        raise


def _refused(exc: BaseException) -> bool:
    """The connection was refused: the request was never sent."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; bounded in case of a cycle
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError) or (
            isinstance(seen, OSError) and seen.errno == errno.ECONNREFUSED
        ):
            return True
        seen = seen.__cause__
    return False


def expected_source(channelvars: dict[str, str] | None) -> tuple[str, int] | None:
    """The address externalMedia RTP comes from, per its channel variables."""
    if not channelvars:
        return None
    host = channelvars.get("UNICASTRTP_LOCAL_ADDRESS")
    port = channelvars.get("UNICASTRTP_LOCAL_PORT")
    if not host or not port or not port.isdigit():
        return None
    return host, int(port)
