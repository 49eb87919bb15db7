"""The Earpiece service: attaches to a PBX and runs every stage; ``earpiece run``.

:class:`Service` owns its components and starts them in dependency order (CRM, call log, ops
HTTP endpoint with the live feed, strategy and desk-phone delivery, ARI, AMI, FastAGI, media,
listeners) and stops them in reverse order, like aiohttp cleanup contexts. After every AMI or
ARI (re)connect it resynchronises the call registry with the PBX's live channels
(``CoreShowChannels``, ``GET /ari/channels``), so a PBX or network restart loses no call and
duplicates none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from earpiece.agi.ami_client import AmiClient
from earpiece.agi.ari_client import AriClient
from earpiece.agi.ari_models import AriEvent
from earpiece.agi.calls.registry import Registry
from earpiece.agi.fastagi_server import FastAgiServer
from earpiece.agi.routing import make_handlers
from earpiece.bus import EventBus
from earpiece.calllog import CallLog
from earpiece.config import Settings, load_settings
from earpiece.crm.backend import CrmBackend, open_store
from earpiece.crm.lock import InstanceLock
from earpiece.crm.writer import CrmWriter
from earpiece.errors import EarpieceError, PbxError
from earpiece.web.ops import OpsServer

log = logging.getLogger(__name__)

Cleanup = Callable[[], Awaitable[None]]


class Service:
    """One running Earpiece attached to one PBX."""

    def __init__(
        self,
        settings: Settings,
        *,
        bus: EventBus | None = None,
        media: bool = True,
        agi: bool = True,
    ) -> None:
        self.settings = settings
        self.bus = bus or EventBus()
        self.registry = Registry(self.bus)
        self.want_media = media
        self.want_agi = agi
        self.store: CrmBackend | None = None
        self.crm: CrmWriter | None = None
        self.ami: AmiClient | None = None
        self.ari: AriClient | None = None
        self.agi: FastAgiServer | None = None
        self.media: Any = None  # earpiece.media.fork.MediaFork when media is on
        self.hub: Any = None  # earpiece.media.frames.FrameHub
        self.cpa: Any = None  # earpiece.cpa.fork.CpaFork
        self.asr: Any = None  # earpiece.asr.service.AsrService
        self.emotion: Any = None  # earpiece.emotion.stage.EmotionStage
        self.qc: Any = None  # earpiece.crm.qc.QcStage ([qc] enabled)
        self.strategy: Any = None  # earpiece.strategy.stage.StrategyStage ([strategy])
        self.phone: Any = None  # earpiece.delivery.phone.DeskPhone ([delivery] phone)
        self.whisper: Any = None  # earpiece.delivery.whisper.Whisper ([delivery] whisper)
        self.resyncs = {"ami": 0, "ari": 0}
        self.lock: InstanceLock | None = None
        # Set by the first AMI resync: the first ARI resync waits for it, since AMI's linkedids
        # group the agent legs that ARI's listing alone cannot.
        self._ami_synced = asyncio.Event()
        self.ari_app_owned = False  # our Stasis app, until an ApplicationReplaced
        self.ops: OpsServer | None = None  # /healthz /readyz /metrics ([http])
        self._cleanups: list[Cleanup] = []

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        self.store = await open_store(s.crm.url, password=s.crm.password)
        self._cleanups.append(self.store.close)
        # One active Earpiece per ARI app: a second one stops here, before touching the PBX.
        self.lock = InstanceLock(self.store, s.ari.app)
        await self.lock.acquire()
        self._cleanups.append(self.lock.release)
        self.crm = CrmWriter(self.bus, self.store, owner=s.ari.app)
        self.crm.start()
        self._cleanups.append(self.crm.close)
        if s.qc.enabled:  # evaluation 2 on every final transcript, after the CRM writer
            from earpiece.crm.qc import QcStage
            from earpiece.crm.qc_rules import empty_rules, load_rules

            rules = load_rules(s.qc.phrases) if s.qc.phrases else empty_rules()
            self.qc = QcStage(self.bus, rules, store=self.store, flush=self.crm.flush,
                              campaign_tag=s.qc.campaign_tag, long_silence_s=s.qc.long_silence_s,
                              min_overtalk_s=s.qc.min_overtalk_s, settle_s=s.qc.settle_s)
            self.qc.start()
            self._cleanups.append(self.qc.close)
        # Calls a previous Earpiece left open rejoin their records at the first resync.
        pending = self.registry.adopt(await self.store.open_calls(s.ari.app))
        if pending:
            log.info("start-up: %d open calls in the CRM to re-adopt or close", pending)
        calllog = CallLog(self.bus)  # one INFO line per call start/outcome/verdict/end
        calllog.start()
        self._cleanups.append(calllog.stop)
        if s.http.enabled:
            self.ops = OpsServer(self, s.http)
            await self.ops.start()
            self._cleanups.append(self.ops.close)
        self._start_strategy()  # before the PBX feeds: it follows every call from its start

        self.ari = AriClient(s.ari, on_event=self._on_ari_event, on_connected=self._ari_resync)
        await self.ari.start(refuse_if_taken=True)  # AriAppInUseError: app held elsewhere
        self._cleanups.append(self.ari.close)
        if self.whisper is not None:  # stopped (its helpers removed) before ARI closes
            self.whisper.ari = self.ari
            self._cleanups.append(self.whisper.stop)
        self.ami = AmiClient(s.ami, on_event=self.registry.on_ami_event,
                             on_connected=self._ami_resync)
        await self.ami.start(wait=True)
        self._cleanups.append(self.ami.close)
        await self.ari.wait_connected(timeout_s=s.ari.request_timeout_s)

        if self.want_agi:
            self.agi = FastAgiServer.from_settings(
                s.agi, make_handlers(s.agi, on_tag=self._on_tag)
            )
            await self.agi.start()
            self._cleanups.append(self.agi.close)

        if self.want_media:
            await self._start_media()
        log.info("Earpiece attached: AMI %s, ARI %s (app %s)", self.ami.where, s.ari.url,
                 s.ari.app)

    def _heavy_modules(self) -> list[str]:
        """Modules whose import takes long (numpy, scipy, webrtcvad, CTranslate2...)."""
        s = self.settings
        mods = ["earpiece.media.fork", "earpiece.media.frames", "earpiece.media.receiver",
                "earpiece.media.recorder", "earpiece.media.audiosocket"]
        if s.cpa.enabled:
            mods += ["earpiece.cpa.fork", "earpiece.cpa.detector", "earpiece.cpa.words"]
        if s.asr.enabled:
            mods += ["earpiece.asr.service"]
        if s.emotion.enabled:
            mods += ["earpiece.emotion.stage"]
        return mods

    async def _start_media(self) -> None:
        # An import runs module code on the calling thread: do the slow ones on a worker
        # thread so that the loop keeps serving AMI/ARI meanwhile (the later local imports
        # are then dictionary look-ups).
        await asyncio.to_thread(lambda: [importlib.import_module(m)
                                         for m in self._heavy_modules()])
        from earpiece.media.fork import MediaFork
        from earpiece.media.frames import FrameHub
        from earpiece.media.receiver import RtpReceiver
        from earpiece.media.recorder import Recorder

        assert self.ari is not None
        s = self.settings
        self.hub = FrameHub(bus=self.bus)
        receiver = RtpReceiver(s.media, self.hub) if s.media.transport == "rtp" else None
        audiosocket = None
        if s.media.transport == "audiosocket":
            from earpiece.media.audiosocket import AudioSocketServer

            audiosocket = AudioSocketServer(self.hub, host=s.media.bind_host,
                                            port=s.media.audiosocket_port, vad=s.media.vad)
        recorder = Recorder(s.recordings) if s.recordings.enabled else None
        self.media = MediaFork(bus=self.bus, ari=self.ari, settings=s.media, app=s.ari.app,
                               hub=self.hub, receiver=receiver, audiosocket=audiosocket,
                               recorder=recorder)
        await self.media.start()
        self._cleanups.append(self.media.stop)
        # a killed predecessor's bridges/snoops/externalMedia first (the instance lock makes
        # every helper of our app its), then fresh forks for the calls live at our start
        await self.media.clean_leftovers()
        self.media.schedule_resync(self.registry.calls.values())
        if s.cpa.enabled:
            self._start_cpa()
        if s.emotion.enabled:
            await self._start_emotion()
        if s.asr.enabled:
            from earpiece.asr.service import start_asr

            def keep(svc: Any) -> None:
                self.asr = svc

            self._cleanups.append(await start_asr(self.bus, self.hub, s.asr, on_started=keep))

    def _start_cpa(self) -> None:
        """Call-progress / answering-machine detection on each customer's audio."""
        from earpiece.cpa.fork import CpaFork, options_from_settings, words_from_settings

        s = self.settings
        cpa = CpaFork(self.bus, options=options_from_settings(s.cpa),
                      record_audio_verdict=self.registry.record_audio_verdict, offload=True,
                      loop=asyncio.get_running_loop(), words=words_from_settings(s.cpa, s.asr))
        cpa.start()
        unsubscribe = self.hub.subscribe(cpa.on_audio_frame, rate=8000, party="customer")

        async def stop_cpa() -> None:
            unsubscribe()
            cpa.stop()

        self._cleanups.append(stop_cpa)
        self.cpa = cpa

    async def _start_emotion(self) -> None:
        """Customer and agent emotion from their audio and final transcripts."""
        from earpiece.emotion.stage import EmotionStage

        s = self.settings
        stage = await asyncio.to_thread(
            EmotionStage, self.bus, s.emotion, voice_only=not s.asr.enabled)
        await stage.start(self.hub)
        self._cleanups.append(stage.stop)
        self.emotion = stage

    def _start_strategy(self) -> None:
        """Prompts from the customer's emotion, delivered to the agent's desk phone (and ear).

        Advisory: a campaign file that cannot be loaded is logged and the service goes on
        without prompts (call handling matters more)."""
        from earpiece.delivery.phone import DeskPhone
        from earpiece.strategy.stage import StrategyStage

        s = self.settings
        if not s.strategy.enabled or s.strategy.campaign is None:
            return
        try:
            stage = StrategyStage(self.bus, s.strategy)
        except (EarpieceError, OSError, ValueError) as exc:
            log.error("strategy disabled: campaign %s ([strategy] campaign) not usable: %s",
                      s.strategy.campaign, exc)
            return
        stage.start()
        self._cleanups.append(stage.stop)
        self.strategy = stage
        if s.delivery.phone:
            self.phone = DeskPhone(self.bus, self, s.delivery)
            self.phone.start()
            self._cleanups.append(self.phone.stop)
        if s.delivery.whisper:  # beside the desk phone; gets the ARI client once it is made
            from earpiece.delivery.whisper import Whisper

            self.whisper = Whisper(self.bus, None, app=s.ari.app, settings=s.delivery,
                                   bind_host=s.media.bind_host,
                                   advertise_host=s.media.advertise_host)
            self.whisper.start()
        log.info("strategy: campaign %s (%s)", stage.default.campaign.name, s.strategy.campaign)

    async def stop(self) -> None:
        """Stop every component in reverse start order; errors are logged, not raised."""
        while self._cleanups:
            cleanup = self._cleanups.pop()
            try:
                await cleanup()
            except Exception:
                log.exception("cleanup %s failed", getattr(cleanup, "__qualname__", cleanup))

    async def __aenter__(self) -> Service:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- PBX feeds -------------------------------------------------------------------------
    def _on_ari_event(self, event: AriEvent) -> None:
        if event.type == "ApplicationReplaced":
            self.ari_app_owned = False
        self.registry.on_ari_event(event.raw)

    async def _ami_resync(self) -> None:
        assert self.ami is not None
        channels = await self.ami.core_show_channels()
        self.registry.reconcile_ami(channels)
        if not self._ami_synced.is_set():  # the PBX's full listing: what it lacks is gone
            self.registry.finish_adoption()
            self._ami_synced.set()
        self.resyncs["ami"] += 1
        log.info("AMI resync: %d live channels", len(channels))

    async def _ari_resync(self) -> None:
        assert self.ari is not None
        self.ari_app_owned = True  # a new events websocket registers the app to us
        if not self._ami_synced.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ami_synced.wait(),
                                       self.settings.ami.connect_timeout_s)
        body = await self.ari.request("GET", "/channels")
        channels: list[Mapping[str, Any]] = (
            [c for c in body if isinstance(c, dict)] if isinstance(body, list) else []
        )
        self.registry.reconcile_ari(channels)
        if self.media is not None:  # forks missed or broken during the outage (background)
            self.media.schedule_resync(self.registry.calls.values())
        self.resyncs["ari"] += 1
        log.info("ARI resync: %d live channels", len(channels))

    def _on_tag(self, uniqueid: str, channel: str, tags: dict[str, str]) -> None:
        self.registry.tag(uniqueid or channel, tags)

    # --- actions ---------------------------------------------------------------------------
    async def message_send(self, to: str, body: str, from_: str | None = None,
                           variables: Mapping[str, str] | None = None) -> None:
        """AMI ``MessageSend`` (the desk phone's prompts); PbxError when AMI is not there."""
        if self.ami is None:
            raise PbxError("AMI is not connected")
        await self.ami.message_send(to, body, from_=from_, variables=variables)

    async def originate(self, channel: str, *, context: str, exten: str, priority: int = 1,
                        caller_id: str | None = None, timeout_ms: int = 30000,
                        tags: dict[str, str] | None = None) -> str:
        """Originate an outbound call and return its Earpiece call id."""
        if self.ami is None:
            raise PbxError("AMI is not connected")
        action_id = self.ami.next_action_id()
        call_id = self.registry.expect_originate(action_id, tags=tags, channel=channel)
        await self.ami.originate(channel, context=context, exten=exten, priority=priority,
                                 caller_id=caller_id, timeout_ms=timeout_ms,
                                 variables={"EARPIECE_CALL_ID": call_id}, action_id=action_id)
        return call_id


# --- CLI -------------------------------------------------------------------------------------
def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, required=True,
                        help="TOML configuration file (see config/earpiece.example.toml)")
    parser.add_argument("--no-media", action="store_true", help="do not fork call audio")


def main(args: argparse.Namespace) -> int:
    from earpiece.logs import setup_logging

    try:
        settings = load_settings(args.config)
    except EarpieceError as exc:
        print(f"earpiece: {exc}")
        return 2
    setup_logging(args.log_level or settings.log.level)
    try:
        asyncio.run(_run(settings, media=not args.no_media))
    except EarpieceError as exc:
        log.error("%s", exc)
        return 1
    return 0


async def _run(settings: Settings, *, media: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with Service(settings, media=media):
        await stop.wait()
        log.info("stopping")
