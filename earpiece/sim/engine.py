"""The simulator's PBX engine: originates and runs calls, snoops, externalMedia channels and
bridges, and emits the AMI events and ARI events a real Asterisk 22 (chan_pjsip) sends.

Event sequences, header sets and values follow ``shared/asterisk/captures/pjsip`` (dialer
pattern: the customer is originated into ``dialer,agent``, which ``Dial()``s the agent;
``OriginateResponse`` Success/4 when the customer answers). The engine is transport-free: the
AMI and ARI servers register listeners and turn what it emits into bytes, so restarting a
listener never touches a live call.

The engine is a stack of layers, one module each, every class subclassing the one before:
:mod:`~earpiece.sim.channel_events` (shared state, clock, tasks and the AMI/ARI events of
channel changes), :mod:`~earpiece.sim.channel_audio` (what each channel sends and hears,
playbacks, RTCP/QoS), :mod:`~earpiece.sim.bridging` (bridges, snoops, externalMedia) and
:mod:`~earpiece.sim.pjsip_calls` (originates, the dialer's agent leg, hangups). Local channels
are :class:`~earpiece.sim.local_calls.LocalCalls` (``engine.local``). :class:`Engine` sets the
state up, runs the scenario's dialer and delivers ``MessageSend``; the names other modules
import from here are re-exported.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any

from earpiece.sim.channel_events import AmiListener, AriListener, MediaHub
from earpiece.sim.local_calls import LocalCalls
from earpiece.sim.local_dialer import LocalDialer
from earpiece.sim.model import (
    AudioTrack,
    Bridge,
    Channel,
    HeardEntry,
    OriginateOutcome,
    OriginateRequest,
    Playback,
)
from earpiece.sim.pjsip_calls import Call, PjsipCalls
from earpiece.sim.scenario import Scenario


class Engine(PjsipCalls):
    """Live calls of one simulated Asterisk."""

    def __init__(self, scenario: Scenario, *, media: MediaHub | None = None,
                 host: str = "127.0.0.1", rng: random.Random | None = None,
                 asterisk_id: str = "02:fc:00:00:00:01") -> None:
        self.scenario = scenario
        self.media = media
        self.host = host
        self.asterisk_id = asterisk_id
        self.rng = rng or random.Random()
        self.ami_listeners: list[AmiListener] = []
        self.ari_listeners: list[AriListener] = []
        self.outcomes: list[OriginateOutcome] = []
        self.heard: list[HeardEntry] = []
        self.messages: list[dict[str, str]] = []  # MessageSend deliveries
        self.texts: list[tuple[str, str]] = []  # SendText (channel, message)
        self.calls: list[Call] = []
        self._channels: dict[str, Channel] = {}
        self._bridges: dict[str, Bridge] = {}
        self._playbacks: dict[str, Playback] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._chan_seq = itertools.count(0x0C)
        self._snoop_seq = itertools.count(1)
        self._local_seq = itertools.count(1)
        self._uid_seq = itertools.count(1)
        self._agent_rr = itertools.count()
        self._t0 = time.monotonic()
        self.started_wall = time.time()
        self.device_states: dict[str, str] = {}
        self._stopping = False
        self.shutting_down = False
        self.fully_booted = True
        self.local = LocalCalls(self)
        self.local_dialer = LocalDialer(self)
        self.local.dialer = self.local_dialer

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        if self.scenario.dialer.enabled and self.scenario.dialer.calls:
            self.spawn(self._run_dialer())

    # --- dialer ----------------------------------------------------------------------------
    async def _run_dialer(self) -> None:
        plan = self.scenario.dialer
        await asyncio.sleep(plan.start_after_s)
        name, num = parse_callerid(plan.callerid)
        for i, endpoint in enumerate(plan.calls, 1):
            if self._stopping or self.shutting_down:
                return
            self.originate(OriginateRequest(
                channel=f"PJSIP/{endpoint}", context=self.scenario.dialplan.context,
                exten=self.scenario.dialplan.exten, priority=1, callerid_name=name,
                callerid_num=num, timeout_ms=plan.timeout_ms,
                variables=[("SIM_CALL", str(i))], action_id=f"sim-dialer-{i}",
                source="dialer"))
            await asyncio.sleep(plan.spacing_s)

    # --- messages --------------------------------------------------------------------------
    def message_send(self, to: str, from_: str, body: str, content_type: str) -> bool:
        tech, _, dest = to.partition(":")
        if tech.lower() != "pjsip":
            return False
        ep = self.scenario.endpoint(dest.split("@")[0])
        if ep is None or ep.offline:
            return False
        self.messages.append({"to": to, "endpoint": ep.name, "from": from_, "body": body,
                              "content_type": content_type})
        return True


def parse_callerid(value: str) -> tuple[str, str]:
    """``"Dialer" <5000>`` / ``Dialer <5000>`` / ``5000`` -> (name, number)."""
    value = value.strip()
    if "<" in value and value.endswith(">"):
        name, _, num = value[:-1].partition("<")
        return name.strip().strip('"'), num.strip()
    if value.isdigit() or value.startswith("+"):
        return "", value
    return value.strip('"'), ""


__all__ = [
    "AudioTrack",
    "Call",
    "Engine",
    "HeardEntry",
    "MediaHub",
    "OriginateOutcome",
    "OriginateRequest",
    "parse_callerid",
]
