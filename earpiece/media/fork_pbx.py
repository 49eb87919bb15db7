"""The media fork's PBX side: making and removing each party's ARI resources, telling an
expected failure (the call ended first) from a real one, and removing a dead predecessor's
leftovers. :class:`ForkResources` is a base of :class:`earpiece.media.fork.MediaFork`.

Every step of a fork (bridge, externalMedia channel, snoop, the two ``addChannel`` requests)
first checks that the call is still on and the party's channel has not hung up; if not, the
attempt stops there and what it made is removed. A snoop answering 404 ("Provided channel was
not found") means the channel is gone: normal for a failing Local originate, whose halves end
within a few ms and refuse a snoop even before their ``ChannelDestroyed``
(``captures/faults/ari/local_dialer_*``). Such attempts are counted
(``ForkStats.attach_gone``) and logged at DEBUG, never as a WARNING.
"""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from earpiece.errors import EarpieceError, PbxConnectionError
from earpiece.media.audiosocket import AudioSocketServer
from earpiece.media.fork_leftovers import bridge_name_prefix, find_leftovers, remove_leftovers
from earpiece.media.fork_parts import (
    AriMediaClient,
    ForkStats,
    MediaLeg,
    _CallMedia,
    _codec_for,
    _make,
    expected_source,
    http_status,
)
from earpiece.media.receiver import RtpReceiver
from earpiece.media.settings import MediaSettings

log = logging.getLogger("earpiece.media.fork")


class _Gone(Exception):
    """The call ended or the party's channel hung up while its fork was being made."""


class ForkResources:
    """ARI resources of the forks (the state lives in :class:`~earpiece.media.fork.MediaFork`)."""

    ari: AriMediaClient
    settings: MediaSettings
    app: str
    id_prefix: str
    receiver: RtpReceiver | None
    audiosocket: AudioSocketServer | None
    stats: ForkStats
    _leftovers: list[tuple[str, str]]
    _mine: set[str]
    _clean_pending: bool

    async def clean_leftovers(self) -> bool:
        """Remove what a dead predecessor (``kill -9``) left at the PBX: its bridges and its
        snoop / externalMedia channels of this ARI application (see
        :mod:`earpiece.media.fork_leftovers`), before the first :meth:`resync` makes fresh
        forks. Logs one INFO line with the numbers. When the PBX's channels cannot be listed,
        the next resync does it; returns whether it was done now."""
        try:
            channels = await self.ari.list_channels()
            bridges = await self.ari.list_bridges()
        except EarpieceError as exc:
            self._clean_pending = True
            log.warning("media: cannot list the PBX's channels and bridges to remove a "
                        "previous Earpiece's leftovers (done once ARI answers): %s", exc)
            return False
        await self._clean(channels, bridges)
        return True

    async def _clean(self, channels: Iterable[Any], bridges: Iterable[Any]) -> None:
        self._clean_pending = False
        found = find_leftovers(channels, bridges, app=self.app, id_prefix=self.id_prefix,
                               skip=self._mine)
        snoops, media, nbridges, gone = await remove_leftovers(
            self.ari, found, self.stats, defer=lambda kind, rid: self._leftovers.append(
                (kind, rid)))
        log.info("media: removed a previous Earpiece's leftovers of ARI app %s: %d snoop "
                 "channels, %d externalMedia channels, %d bridges (%d already gone)", self.app,
                 snoops, media, nbridges, gone)

    def _gone(self, cm: _CallMedia, leg: MediaLeg, exc: BaseException) -> str | None:
        """Why a failed attach is expected (the call or its channel ended), or ``None``."""
        if isinstance(exc, _Gone):
            return str(exc)
        if cm.ended:
            return "the call ended"
        if leg.channel_id in cm.left:
            return "the channel hung up"
        status = http_status(exc)
        if leg.step == "snoop" and status == 404:  # 'Provided channel was not found'
            cm.left.add(leg.channel_id)
            return "the channel is gone (snoop: 404)"
        if leg.step == "add_snoop" and status in (400, 404, 422):
            return f"the snoop went with its channel (addChannel: {status})"
        return None

    # -- PBX resources -----------------------------------------------------------------------

    def _advertise(self) -> str:
        s = self.settings
        return s.advertise_host or s.bind_host

    async def _create(self, leg: MediaLeg, cm: _CallMedia) -> None:
        s = self.settings
        ari = self.ari
        codec = _codec_for(s)

        def step(what: str) -> None:  # before each request: is the call still on?
            if cm.ended:
                raise _Gone("the call ended")
            if leg.channel_id in cm.left:
                raise _Gone("the channel hung up")
            leg.step = what

        leg.bridge_id = f"{leg.key}-bridge"
        leg.em_id = f"{leg.key}-em"
        leg.snoop_id = f"{leg.key}-snoop"
        self._mine.update((leg.bridge_id, leg.em_id, leg.snoop_id))
        step("bridge")
        name = f"{bridge_name_prefix(self.id_prefix, self.app)}{leg.call_id} {leg.party}"
        bridge = await _make(leg, "bridge", ari.create_bridge(
            type="mixing", bridge_id=leg.bridge_id, name=name))
        leg.bridge_id = bridge.id
        leg.created.append("bridge")
        step("external_media")
        if s.transport == "rtp":
            assert self.receiver is not None
            leg.port = await self.receiver.allocate_port()
            em = await _make(leg, "external_media", ari.external_media(
                app=self.app, external_host=f"{self._advertise()}:{leg.port}", format=s.format,
                channel_id=leg.em_id,
            ))
            leg.em_id = em.id
            leg.created.append("external_media")
            leg.source = expected_source(em.channelvars)
            leg.stream = self.receiver.register(leg.port, leg.call_id, leg.party, codec,
                                                source=leg.source)
        else:
            assert self.audiosocket is not None
            leg.audiosocket_uuid = str(uuidlib.uuid4())
            leg.stream = self.audiosocket.register(leg.audiosocket_uuid, leg.call_id, leg.party,
                                                   codec)
            em = await _make(leg, "external_media", ari.external_media(
                app=self.app, external_host=f"{self._advertise()}:{self.audiosocket.port}",
                format="slin16" if codec == "slin16le" else "slin", channel_id=leg.em_id,
                encapsulation="audiosocket", transport="tcp", connection_type="client",
                data=leg.audiosocket_uuid,
            ))
            leg.em_id = em.id
            leg.created.append("external_media")
        step("snoop")
        snoop = await _make(leg, "snoop", ari.snoop_channel(
            leg.channel_id, app=self.app, spy="in",
            app_args=f"earpiece-media,{leg.call_id},{leg.party}", snoop_id=leg.snoop_id,
        ))
        leg.snoop_id = snoop.id
        leg.created.append("snoop")
        step("add_external_media")
        await ari.add_channel_to_bridge(leg.bridge_id, leg.em_id)
        step("add_snoop")
        await ari.add_channel_to_bridge(leg.bridge_id, leg.snoop_id)
        step("done")  # a ChannelLeft meanwhile would find no leg to detach: do it here

    async def _teardown(self, leg: MediaLeg) -> None:
        """Remove everything the leg may have created; each step independent of the others."""
        for what, kind, rid in (("external_media", "channel", leg.em_id),
                                ("snoop", "channel", leg.snoop_id),
                                ("bridge", "bridge", leg.bridge_id)):
            if rid and what in leg.requested:
                await self._remove(kind, rid, leg.call_id, leg.party)
        if leg.port is not None and self.receiver is not None:
            self.receiver.release_port(leg.port)
            leg.port = None
        if leg.audiosocket_uuid and self.audiosocket is not None:
            self.audiosocket.unregister(leg.audiosocket_uuid)
            leg.audiosocket_uuid = ""
        self._mine.difference_update((leg.bridge_id, leg.em_id, leg.snoop_id))
        self.stats.detached += 1

    async def _remove(self, kind: str, rid: str, call_id: str, party: str) -> None:
        """Hang up a channel / destroy a bridge; kept for the next resync if ARI is down."""
        op: Callable[[], Awaitable[None]] = (
            partial(self.ari.hangup_channel, rid) if kind == "channel"
            else partial(self.ari.destroy_bridge, rid)
        )
        try:
            await op()
        except PbxConnectionError as exc:
            self.stats.teardown_deferred += 1
            self._leftovers.append((kind, rid))
            log.warning("media teardown of %s %s: %s %s deferred until ARI is back: %s",
                        call_id, party, kind, rid, exc)
        except EarpieceError as exc:
            # 404: never created, or Asterisk removed it with the snooped channel.
            if http_status(exc) != 404:
                self.stats.teardown_errors += 1
                log.warning("media teardown of %s %s: %s %s: %s", call_id, party, kind, rid,
                            exc)


__all__ = ["ForkResources"]
