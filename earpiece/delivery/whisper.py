"""Whisper: each prompt spoken into the agent's ear, never the customer's (``[delivery] whisper``).

For every :class:`~earpiece.events.PromptReady` of a call with an agent leg (``ChannelJoined``
with role ``agent``), one at a time per call:

1. render the text with espeak-ng (voice by the prompt's language: ``whisper_voice_en`` /
   ``whisper_voice_zh``) in a thread, resample to 8 kHz, encode G.711 u-law
   (:mod:`earpiece.delivery.whisper_audio`);
2. through ARI: a mixing bridge named ``"<id_prefix>:<app> <call> whisper"``, an externalMedia
   channel (``format=ulaw``) whose ``external_host`` is Earpiece's own UDP socket, and a snoop
   on the agent's channel with ``spy=none``, ``whisper=out`` (what goes into the snoop reaches
   the snooped channel's phone only; the real Asterisk 22 whisper test: agent 0.82, customer
   0.15 correlation with the prompt); both go into the bridge;
3. send the prompt as RTP at real-time pace to ``UNICASTRTP_LOCAL_ADDRESS``/``PORT`` of the
   externalMedia channel (no files shared with Asterisk);
4. tear it all down (externalMedia and snoop channels hung up, bridge destroyed, socket
   closed), also when the call ends or the agent hangs up mid-prompt.

Every resource gets its id before it is requested, so teardown removes whatever a failed
request may have made; 404 on removal means Asterisk already removed it (a snoop goes with its
target). The helpers are in Stasis for our application and the bridge carries the fork's name
prefix, so a restarted Earpiece removes those a killed one left
(:mod:`earpiece.media.fork_leftovers`). Each prompt is reported as
:class:`~earpiece.events.PromptDelivered` with ``channel="whisper"``: ``sent`` (the whole
prompt was played), ``failed`` with the reason in ``detail`` (speech, ARI, the agent channel
gone, the call ended mid-prompt), or ``skipped`` (no agent leg). Nothing is raised.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from earpiece.bus import EventBus
from earpiece.delivery.settings import DeliverySettings
from earpiece.delivery.whisper_audio import RtpPlayer, SpeechError, render_speech, to_ulaw_8k
from earpiece.errors import EarpieceError
from earpiece.events import (
    CallEnded,
    ChannelJoined,
    ChannelLeft,
    ChannelRole,
    PromptDelivered,
    PromptReady,
)
from earpiece.media.fork_leftovers import bridge_name_prefix
from earpiece.media.fork_parts import (
    AriMediaClient,
    expected_source,
    http_status,
)

log = logging.getLogger(__name__)


class WhisperAri(AriMediaClient, Protocol):
    """The part of :class:`~earpiece.agi.ari_client.AriClient` whisper delivery needs: the media
    fork's, plus reading a channel variable (the externalMedia channel's RTP address)."""

    async def get_channel_var(self, channel_id: str, name: str) -> str: ...


@dataclass
class _Agent:
    legs: dict[str, str] = field(default_factory=dict)  # uniqueid -> channel name
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ended: bool = False


class _Stopped(Exception):
    """The call ended or the agent hung up before the prompt was played."""


@dataclass
class WhisperStats:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    teardown_errors: int = 0


class Whisper:
    """Speaks each prompt to the call's agent only (see the module docstring)."""

    def __init__(self, bus: EventBus, ari: WhisperAri | None, *, app: str,
                 settings: DeliverySettings | None = None, bind_host: str = "127.0.0.1",
                 advertise_host: str = "", id_prefix: str = "ep",
                 clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.ari = ari  # may be set later (the service makes the ARI client after this)
        self.app = app
        self.settings = settings or DeliverySettings()
        self.bind_host = bind_host
        self.advertise_host = advertise_host or bind_host
        self.id_prefix = id_prefix
        self._clock = clock
        self._calls: dict[str, _Agent] = {}
        self._tasks: set[asyncio.Task[PromptDelivered]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self._stopping = False
        self.stats = WhisperStats()
        self.active: set[str] = set()  # ids of the PBX resources of prompts being played

    def start(self) -> None:
        sub = self.bus.subscribe
        self._unsubscribe = [sub(ChannelJoined, self._on_joined), sub(ChannelLeft, self._on_left),
                             sub(CallEnded, self._on_ended), sub(PromptReady, self._on_prompt)]

    async def stop(self) -> None:
        """Stop listening; prompts being played stop and their resources are removed."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        self._stopping = True
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.settings.whisper_timeout_s + 1.0)
        for task in list(self._tasks):
            task.cancel()

    # --- agent legs ----------------------------------------------------------------------------
    def _on_joined(self, ev: ChannelJoined) -> None:
        if ev.role == ChannelRole.AGENT:
            self._calls.setdefault(ev.call_id, _Agent()).legs[ev.uniqueid] = ev.channel

    def _on_left(self, ev: ChannelLeft) -> None:
        agent = self._calls.get(ev.call_id)
        if agent is not None:
            agent.legs.pop(ev.uniqueid, None)

    def _on_ended(self, ev: CallEnded) -> None:
        agent = self._calls.pop(ev.call_id, None)
        if agent is not None:
            agent.ended = True

    def agent_channel(self, call_id: str) -> tuple[str, str] | None:
        """(uniqueid, name) of the call's latest agent leg."""
        agent = self._calls.get(call_id)
        if agent is None or not agent.legs:
            return None
        uniqueid = next(reversed(agent.legs))
        return uniqueid, agent.legs[uniqueid]

    # --- delivery ------------------------------------------------------------------------------
    def _on_prompt(self, ev: PromptReady) -> None:
        if not self.settings.whisper:
            return
        task = asyncio.get_running_loop().create_task(self.send(ev), name="whisper")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def voice_for(self, language: str) -> str:
        s = self.settings
        return s.whisper_voice_zh if language.lower().startswith(("zh", "cmn")) \
            else s.whisper_voice_en

    async def send(self, ev: PromptReady) -> PromptDelivered:
        """Whisper one prompt to the agent and publish (and return) what became of it."""
        agent = self._calls.get(ev.call_id)
        leg = self.agent_channel(ev.call_id)
        if agent is None or leg is None:
            self.stats.skipped += 1
            return self._report(ev, "skipped", "", "no agent channel on the call")
        async with agent.lock:  # one whisper at a time per call, in order
            leg = self.agent_channel(ev.call_id)
            if agent.ended or leg is None or self._stopping:
                return self._failed(ev, "", "the call ended before the prompt was played")
            uniqueid, name = leg
            try:
                ulaw = await self._speech(ev)
            except SpeechError as exc:
                return self._failed(ev, name, f"text-to-speech: {exc}")
            return await self._play(ev, agent, uniqueid, name, ulaw)

    async def _speech(self, ev: PromptReady) -> bytes:
        s = self.settings
        pcm, rate = await asyncio.to_thread(
            render_speech, ev.text, self.voice_for(ev.language), command=s.whisper_command,
            wpm=s.whisper_wpm, timeout_s=s.whisper_timeout_s)
        return to_ulaw_8k(pcm, rate, max_s=s.whisper_max_s)

    async def _play(self, ev: PromptReady, agent: _Agent, uniqueid: str, name: str,
                    ulaw: bytes) -> PromptDelivered:
        ari = self.ari
        if ari is None:
            return self._failed(ev, name, "ARI is not connected")
        key = f"{self.id_prefix}-wh-{uuid.uuid4().hex[:12]}"
        ids = {"bridge": f"{key}-bridge", "em": f"{key}-em", "snoop": f"{key}-snoop"}
        requested: list[str] = []
        player = RtpPlayer(self.bind_host)
        timeout = self.settings.whisper_timeout_s

        def gone() -> bool:
            return agent.ended or uniqueid not in agent.legs or self._stopping

        def step() -> None:
            if gone():
                raise _Stopped

        self.active.update(ids.values())
        why = ""  # reported after the teardown: a report means nothing is left at the PBX
        try:
            port = await player.open()
            step()
            requested.append("bridge")
            await asyncio.wait_for(ari.create_bridge(
                type="mixing", bridge_id=ids["bridge"],
                name=f"{bridge_name_prefix(self.id_prefix, self.app)}{ev.call_id} whisper"),
                timeout)
            step()
            requested.append("em")
            em = await asyncio.wait_for(ari.external_media(
                app=self.app, external_host=f"{self.advertise_host}:{port}", format="ulaw",
                channel_id=ids["em"]), timeout)
            dest = expected_source(em.channelvars) or await self._em_address(ari, em.id)
            step()
            requested.append("snoop")
            await asyncio.wait_for(ari.snoop_channel(
                uniqueid, app=self.app, spy="none", whisper="out",
                app_args=f"earpiece-whisper,{ev.call_id}", snoop_id=ids["snoop"]), timeout)
            step()
            await asyncio.wait_for(ari.add_channel_to_bridge(ids["bridge"], ids["em"]), timeout)
            await asyncio.wait_for(ari.add_channel_to_bridge(ids["bridge"], ids["snoop"]),
                                   timeout)
            step()
            played = await player.play(ulaw, dest, stop=gone)
            whole = len(ulaw) / 8000
            if played + 1e-6 < whole:
                raise _Stopped
        except _Stopped:
            why = ("the call ended" if agent.ended else "Earpiece is stopping" if self._stopping
                   else "the agent channel hung up") + " before the prompt was played"
        except TimeoutError:
            why = f"no answer from ARI within {timeout:g} s"
        except (EarpieceError, OSError) as exc:
            status = http_status(exc)
            if requested and requested[-1] == "snoop" and status == 404:
                why = "the agent channel is gone (snoop: 404)"
            else:
                why = f"{requested[-1] if requested else 'socket'}: {exc}"
        finally:
            player.close()
            await self._teardown(ari, ids, requested)
            self.active.difference_update(ids.values())
        if why:
            return self._failed(ev, name, why)
        self.stats.sent += 1
        return self._report(ev, "sent", name, "")

    async def _em_address(self, ari: WhisperAri, em_id: str) -> tuple[str, int]:
        """``UNICASTRTP_LOCAL_ADDRESS``/``PORT`` when the create response lacked them."""
        timeout = self.settings.whisper_timeout_s
        host = await asyncio.wait_for(ari.get_channel_var(em_id, "UNICASTRTP_LOCAL_ADDRESS"),
                                      timeout)
        port = await asyncio.wait_for(ari.get_channel_var(em_id, "UNICASTRTP_LOCAL_PORT"),
                                      timeout)
        if not host or not port.isdigit():
            raise EarpieceError("externalMedia channel without UNICASTRTP_LOCAL_ADDRESS/PORT")
        return host, int(port)

    async def _teardown(self, ari: WhisperAri, ids: dict[str, str],
                        requested: Sequence[str]) -> None:
        """Remove what may have been made; each step independent, 404 = already gone."""
        for what in ("em", "snoop", "bridge"):
            if what not in requested:
                continue
            rid = ids[what]
            try:
                if what == "bridge":
                    await asyncio.wait_for(ari.destroy_bridge(rid), self.settings.whisper_timeout_s)
                else:
                    await asyncio.wait_for(ari.hangup_channel(rid),
                                           self.settings.whisper_timeout_s)
            except (EarpieceError, TimeoutError) as exc:
                if http_status(exc) != 404:
                    self.stats.teardown_errors += 1
                    log.warning("whisper teardown: %s %s: %s (removed at the next start-up)",
                                what, rid, exc)

    def _failed(self, ev: PromptReady, target: str, why: str) -> PromptDelivered:
        self.stats.failed += 1
        log.warning("[%s] whisper of prompt %s not delivered: %s", ev.call_id, ev.prompt_id, why)
        return self._report(ev, "failed", target, why)

    def _report(self, ev: PromptReady, status: str, target: str, detail: str) -> PromptDelivered:
        out = PromptDelivered(call_id=ev.call_id, prompt_id=ev.prompt_id, channel="whisper",
                              status=status, target=target, detail=detail,
                              latency_s=max(0.0, self._clock() - ev.at))
        self.bus.publish(out)
        return out


__all__ = ["Whisper", "WhisperAri", "WhisperStats"]
