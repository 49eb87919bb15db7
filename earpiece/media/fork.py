"""Media fork: each call's customer and agent audio, separately, from Asterisk.

For each party of an answered call (``ChannelJoined`` with role CUSTOMER/AGENT, then
``CallStateChanged`` to ANSWERED) and, with ``[media] early_media`` (default), for the customer
of an outbound call as soon as its channel joins (``CallStarted`` direction ``outbound``): the
snoop then carries the early media (ringback, busy tone, SIT + intercept announcement) to
call-progress analysis before or without any signalling (see the ``early_media_*`` captures:
silence until the 183, then the early media, until the channel hangs up). Recordings cover
answered calls only (from the answer on; early media before it is written as silence, so both
parties stay on one timeline). Per party, through ARI:

1. allocate a UDP port from the receiver's range;
2. create a mixing bridge and an ``externalMedia`` channel sending RTP to
   ``advertise_host:port`` in the configured format; learn the address Asterisk sends from
   (``UNICASTRTP_LOCAL_ADDRESS``/``PORT`` channel variables) and register the stream with the
   receiver, which drops anything from elsewhere;
3. snoop the party's channel with ``spy=in`` (what that channel sends into Asterisk: its party's
   own voice, as the SIP captures show) and put the snoop and the externalMedia channel into
   the bridge.

With ``transport = "audiosocket"`` step 2 creates an externalMedia channel with
``encapsulation=audiosocket, transport=tcp, data=<uuid>`` pointing at the AudioSocket server.

Every resource gets an id chosen here before it is requested, so teardown (on the party's
``ChannelLeft``, on ``CallEnded``, and on :meth:`MediaFork.stop`) can remove it even when a
request failed half-way: hang up the externalMedia and snoop channels, destroy the bridge,
release the port (404s are expected when Asterisk already removed a snoop with its target).
Bridges are named ``"<id_prefix>:<app> <call> <party>"``. A call that ends (or a party channel
that hangs up) while its fork is being made stops the attempt at its next step, and a snoop
answering 404 means the channel is already gone (a failing Local originate): both are counted
and logged at DEBUG, not as failures (:mod:`earpiece.media.fork_pbx`). At start-up
:meth:`MediaFork.clean_leftovers` removes what a killed predecessor left at the PBX
(:mod:`earpiece.media.fork_leftovers`).

ARI outages: an attach that fails with :class:`~earpiece.errors.PbxConnectionError` is retried
with backoff while the party's channel is live, and :meth:`MediaFork.resync` (the service runs
it at start and after every ARI reconnect through :meth:`MediaFork.schedule_resync`, handing
over the registry's live calls, see :meth:`MediaFork.adopt`) attaches every party of a live
call that should have a fork and has none, replaces forks whose snoop, externalMedia channel or
bridge vanished from the PBX, and retries removals that failed while ARI was unreachable (a
create request refused at connect created nothing, so nothing is queued for it).

The ARI client is used through :class:`AriMediaClient`, a ``typing.Protocol`` with exactly the
eight methods needed (``earpiece.agi.ari_client.AriClient`` implements it).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from earpiece.agi.calls.call import Call
from earpiece.bus import EventBus
from earpiece.errors import EarpieceError, PbxConnectionError
from earpiece.events import (
    CallEnded,
    CallStarted,
    CallState,
    CallStateChanged,
    ChannelJoined,
    ChannelLeft,
    Party,
)
from earpiece.media.audiosocket import AudioSocketServer
from earpiece.media.fork_parts import (
    ROLE_PARTY,
    AriBridge,
    AriChannel,
    AriMediaClient,
    ForkStats,
    MediaLeg,
    _CallMedia,
    expected_source,
)
from earpiece.media.fork_pbx import ForkResources, _Gone
from earpiece.media.frames import FrameHub, PartyStream
from earpiece.media.receiver import RtpReceiver
from earpiece.media.recorder import Recorder
from earpiece.media.settings import MediaSettings

log = logging.getLogger(__name__)

ENDED_MEMORY = 10_000
RETRY_INITIAL_S = 0.5  # first retry of an attach that failed for want of ARI
RETRY_MAX_S = 8.0


class MediaFork(ForkResources):
    def __init__(
        self,
        *,
        bus: EventBus,
        ari: AriMediaClient,
        settings: MediaSettings,
        app: str,
        hub: FrameHub,
        receiver: RtpReceiver | None = None,
        audiosocket: AudioSocketServer | None = None,
        recorder: Recorder | None = None,
        id_prefix: str = "ep",
        retry_initial_s: float = RETRY_INITIAL_S,
        retry_max_s: float = RETRY_MAX_S,
    ) -> None:
        if settings.transport == "rtp" and receiver is None:
            raise ValueError("transport rtp needs an RtpReceiver")
        if settings.transport == "audiosocket" and audiosocket is None:
            raise ValueError("transport audiosocket needs an AudioSocketServer")
        self.bus = bus
        self.ari = ari
        self.settings = settings
        self.app = app
        self.hub = hub
        self.receiver = receiver
        self.audiosocket = audiosocket
        self.recorder = recorder
        self.id_prefix = id_prefix
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = max(retry_initial_s, retry_max_s)
        self.stats = ForkStats()
        self._calls: dict[str, _CallMedia] = {}
        # Calls already ended (bounded, oldest forgotten first): a late attach is refused.
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._retrying: dict[tuple[str, Party], asyncio.Task[None]] = {}
        # (kind, id) of resources whose removal failed for want of ARI: retried on resync
        self._leftovers: list[tuple[str, str]] = []
        self._mine: set[str] = set()  # ids of the PBX resources this process asked for
        self._clean_pending = False  # clean_leftovers() could not list: done on a resync
        self._unsubscribe: list[Callable[[], None]] = []
        self._running = False

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        b = self.bus
        self._unsubscribe = [
            b.subscribe(CallStarted, self._on_started),
            b.subscribe(ChannelJoined, self._on_joined),
            b.subscribe(CallStateChanged, self._on_state),
            b.subscribe(ChannelLeft, self._on_left),
            b.subscribe(CallEnded, self._on_ended),
        ]
        if self.recorder is not None:
            self._unsubscribe.append(self.hub.subscribe(self.recorder.on_frame))
            await self.recorder.start()
        if self.receiver is not None:
            await self.receiver.start()
        if self.audiosocket is not None:
            await self.audiosocket.start()

    async def stop(self) -> None:
        """Tear down every fork (no leaked channel, bridge or port), then close the transports
        (the RTP receiver, the AudioSocket server) and the recorder this fork started."""
        self._running = False
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe = []
        for task in list(self._retrying.values()):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for call_id in list(self._calls):
            await self.end_call(call_id)
        leftovers, self._leftovers = self._leftovers, []
        for kind, rid in leftovers:  # removals deferred during an ARI outage: one more try
            await self._remove(kind, rid, "", "")
        if self.recorder is not None:
            await self.recorder.close()
        if self.receiver is not None:
            await self.receiver.close()
        if self.audiosocket is not None:
            await self.audiosocket.close()

    # -- bus callbacks (sync; they only schedule) --------------------------------------------

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _call(self, call_id: str) -> _CallMedia:
        cm = self._calls.get(call_id)
        if cm is None:
            cm = self._calls[call_id] = _CallMedia(call_id)
        return cm

    def _wanted(self, cm: _CallMedia, party: Party) -> bool:
        """Should ``party`` of this (live) call have a fork now?"""
        if cm.ended:
            return False
        return cm.answered or (party == "customer" and cm.outbound and self.settings.early_media)

    def _on_started(self, ev: CallStarted) -> None:
        if ev.direction != "outbound" or not self._running or ev.call_id in self._ended:
            return
        cm = self._call(ev.call_id)
        cm.outbound = True
        channel_id = cm.channels.get("customer")
        if channel_id is not None and not cm.answered and self._wanted(cm, "customer"):
            self._spawn(self.attach(ev.call_id, "customer", channel_id))

    def _on_joined(self, ev: ChannelJoined) -> None:
        party = ROLE_PARTY.get(ev.role)
        if party is None or not self._running or ev.call_id in self._ended:
            return
        cm = self._call(ev.call_id)
        if cm.ended:
            return
        previous = cm.channels.get(party)
        cm.channels[party] = ev.uniqueid
        if not self._wanted(cm, party):
            return
        leg = cm.legs.get(party)
        if leg is not None and leg.channel_id != ev.uniqueid:
            # the party is now on another channel (transfer, re-dial): follow it
            self._spawn(self._replace(ev.call_id, party, ev.uniqueid))
        elif previous != ev.uniqueid or leg is None:
            self._spawn(self.attach(ev.call_id, party, ev.uniqueid))

    def _on_state(self, ev: CallStateChanged) -> None:
        if ev.new != CallState.ANSWERED or not self._running or ev.call_id in self._ended:
            return
        cm = self._call(ev.call_id)
        if cm.answered or cm.ended:
            return
        cm.answered = True
        if self.recorder is not None and cm.legs:
            # answered calls only are recorded; the early media before is left as silence
            self.recorder.start_call(ev.call_id)
        for party, channel_id in list(cm.channels.items()):
            self._spawn(self.attach(ev.call_id, party, channel_id))

    def _on_left(self, ev: ChannelLeft) -> None:
        cm = self._calls.get(ev.call_id)
        if cm is None:
            return
        cm.left.add(ev.uniqueid)  # an attach in flight on it stops at its next step
        for party, channel_id in list(cm.channels.items()):
            if channel_id == ev.uniqueid:
                del cm.channels[party]
        for party, leg in list(cm.legs.items()):
            if leg.channel_id == ev.uniqueid:
                self._spawn(self.detach(ev.call_id, party, channel_id=ev.uniqueid))

    async def _replace(self, call_id: str, party: Party, channel_id: str) -> None:
        await self.detach(call_id, party)
        await self.attach(call_id, party, channel_id)

    def _on_ended(self, ev: CallEnded) -> None:
        cm = self._calls.get(ev.call_id)
        if cm is not None:
            cm.ended = True  # at once: an attach in flight stops at its next step
            self._spawn(self.end_call(ev.call_id))
        else:
            self._remember_ended(ev.call_id)

    def _remember_ended(self, call_id: str) -> None:
        self._ended[call_id] = None
        while len(self._ended) > ENDED_MEMORY:
            self._ended.popitem(last=False)

    # -- public operations -------------------------------------------------------------------

    def legs(self) -> list[MediaLeg]:
        return [leg for cm in self._calls.values() for leg in cm.legs.values()]

    def stream(self, call_id: str, party: Party) -> PartyStream | None:
        cm = self._calls.get(call_id)
        leg = cm.legs.get(party) if cm else None
        return leg.stream if leg else None

    async def attach(self, call_id: str, party: Party, channel_id: str) -> MediaLeg | None:
        """Fork ``party``'s audio of ``call_id`` (idempotent per party).

        When ARI cannot be reached the attempt is repeated with backoff while the call lives
        and the party is still on ``channel_id`` (see also :meth:`resync`)."""
        leg, exc = await self._attach(call_id, party, channel_id)
        if leg is None and isinstance(exc, PbxConnectionError):
            self._retry_later(call_id, party)
        return leg

    async def _attach(
        self, call_id: str, party: Party, channel_id: str
    ) -> tuple[MediaLeg | None, BaseException | None]:
        if call_id in self._ended:
            return None, None
        cm = self._call(call_id)
        async with cm.lock:
            if party in cm.legs:
                return cm.legs[party], None
            if cm.ended or channel_id in cm.left:
                self.stats.attach_gone += 1
                log.debug("media fork of %s %s (channel %s) not made: %s", call_id, party,
                          channel_id, "the call ended" if cm.ended else "the channel hung up")
                return None, None
            cm.channels.setdefault(party, channel_id)
            key = f"{self.id_prefix}-{uuidlib.uuid4().hex[:16]}-{party}"
            leg = MediaLeg(call_id, party, channel_id, key, self.settings.transport)
            try:
                await self._create(leg, cm)
            except (_Gone, EarpieceError, OSError, KeyError, ValueError) as exc:
                await self._teardown(leg)
                gone = self._gone(cm, leg, exc)
                if gone is not None:  # expected (a failing Local originate, say): no WARNING
                    self.stats.attach_gone += 1
                    log.debug("media fork of %s %s (channel %s) abandoned at %s: %s; "
                              "nothing left at the PBX", call_id, party, channel_id,
                              leg.step, gone)
                    return None, None
                self.stats.attach_failed += 1
                log.warning("media fork of %s %s (channel %s) failed: %s", call_id, party,
                            channel_id, exc)
                return None, exc
            leg.attached_at = time.monotonic()
            cm.legs[party] = leg
            if self.recorder is not None and cm.answered:
                self.recorder.start_call(call_id)
            self.stats.attached += 1
            if not cm.answered:
                self.stats.early_attached += 1
            log.info("media fork %s %s%s: snoop %s -> bridge %s -> %s", call_id, party,
                     "" if cm.answered else " (early media)", leg.snoop_id, leg.bridge_id,
                     leg.em_id)
            return leg, None

    def _retry_later(self, call_id: str, party: Party) -> None:
        key = (call_id, party)
        if not self._running or key in self._retrying:
            return
        self._retrying[key] = self._spawn(self._retry(call_id, party))

    async def _retry(self, call_id: str, party: Party) -> None:
        delay = self.retry_initial_s
        try:
            while self._running:
                await asyncio.sleep(delay)
                delay = min(delay * 2.0, self.retry_max_s)
                cm = self._calls.get(call_id)
                if cm is None or party in cm.legs or not self._wanted(cm, party):
                    return
                channel_id = cm.channels.get(party)
                if channel_id is None:
                    return
                self.stats.retries += 1
                leg, exc = await self._attach(call_id, party, channel_id)
                if leg is not None or not isinstance(exc, PbxConnectionError):
                    return
        finally:
            self._retrying.pop((call_id, party), None)

    def adopt(self, calls: Iterable[Call]) -> None:
        """Take the call registry's view of live calls (``Registry.calls.values()``): calls
        that were live before this fork started, or whose events it missed, get their parties
        (and answer / direction) known here, for :meth:`resync` to attach."""
        for call in calls:
            if call.ended is not None or call.id in self._ended or not self._running:
                continue
            cm = self._call(call.id)
            if cm.ended:
                continue
            cm.outbound = cm.outbound or call.direction == "outbound"
            if call.answered is not None and not cm.answered:
                cm.answered = True
                if self.recorder is not None and cm.legs:
                    self.recorder.start_call(call.id)
            newest: dict[Party, tuple[float, str]] = {}
            for ch in call.channels.values():
                party = ROLE_PARTY.get(ch.role)
                if party is not None and ch.alive and ch.created >= newest.get(party, (-1.0,))[0]:
                    newest[party] = (ch.created, ch.uniqueid)
            for party, (_, uid) in newest.items():
                cm.channels[party] = uid

    def schedule_resync(self, calls: Iterable[Call] | None = None) -> None:
        """:meth:`adopt` ``calls``, then run :meth:`resync` in the background (for an ARI
        ``on_connected`` callback, which must not hold up the event stream)."""
        if not self._running:
            return
        if calls is not None:
            self.adopt(calls)
        self._spawn(self.resync())

    async def resync(self) -> None:
        """Make the forks match the PBX after an ARI outage.

        Lists the PBX's channels and bridges, then: retries removals that failed while ARI was
        unreachable; tears down forks whose party channel is gone; replaces forks whose snoop,
        externalMedia channel or bridge vanished; attaches every party of a live call that
        should have a fork (answered, or an outbound customer with early media) and has none.
        Forks made after the listing was asked for are left alone.
        """
        if not self._running:
            return
        asked = time.monotonic()
        try:
            channels = await self.ari.list_channels()
            bridge_list = await self.ari.list_bridges()
        except EarpieceError as exc:
            log.warning("media resync: cannot list the PBX's channels and bridges: %s", exc)
            return
        live = {c.id for c in channels}
        bridges = {b.id for b in bridge_list}
        self.stats.resyncs += 1
        leftovers, self._leftovers = self._leftovers, []
        for kind, rid in leftovers:
            await self._remove(kind, rid, "", "")
        if self._clean_pending:  # clean_leftovers() found ARI unreachable
            await self._clean(channels, bridge_list)
        work: list[Awaitable[Any]] = []
        for cm in list(self._calls.values()):
            if cm.ended:
                continue
            for party, leg in list(cm.legs.items()):
                if leg.attached_at > asked:
                    continue
                if leg.channel_id not in live:
                    work.append(self.detach(cm.call_id, party, channel_id=leg.channel_id))
                elif (leg.snoop_id not in live or leg.em_id not in live
                      or leg.bridge_id not in bridges):
                    log.warning("media fork %s %s lost its PBX resources; making it again",
                                cm.call_id, party)
                    self.stats.replaced += 1
                    work.append(self._reattach(cm.call_id, party, leg.channel_id))
            for party, channel_id in list(cm.channels.items()):
                if party not in cm.legs and channel_id in live and self._wanted(cm, party):
                    work.append(self.attach(cm.call_id, party, channel_id))
        if work:
            await asyncio.gather(*work)

    async def _reattach(self, call_id: str, party: Party, channel_id: str) -> None:
        await self.detach(call_id, party, channel_id=channel_id)
        await self.attach(call_id, party, channel_id)

    async def detach(self, call_id: str, party: Party, *, channel_id: str | None = None) -> None:
        """Tear down ``party``'s fork (only if it is on ``channel_id``, when given)."""
        cm = self._calls.get(call_id)
        if cm is None:
            return
        async with cm.lock:
            leg = cm.legs.get(party)
            if leg is None or (channel_id is not None and leg.channel_id != channel_id):
                return
            del cm.legs[party]
            await self._teardown(leg)

    async def end_call(self, call_id: str) -> None:
        cm = self._calls.get(call_id)
        if cm is None:
            return
        self._remember_ended(call_id)
        cm.ended = True  # before the lock: an attach holding it stops at its next step
        async with cm.lock:
            for party in list(cm.legs):
                await self._teardown(cm.legs.pop(party))
            self._calls.pop(call_id, None)
        if self.recorder is not None:
            fut = self.recorder.end_call(call_id)
            if fut is not None:
                await asyncio.wrap_future(fut)

__all__ = [
    "ENDED_MEMORY",
    "RETRY_INITIAL_S",
    "RETRY_MAX_S",
    "ROLE_PARTY",
    "AriBridge",
    "AriChannel",
    "AriMediaClient",
    "ForkStats",
    "MediaFork",
    "MediaLeg",
    "expected_source",
]
