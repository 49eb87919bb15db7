"""The PBX simulator: engine + AMI server + ARI server + RTP sender in one object.

Usage::

    async with Simulator(load_scenario("demo")) as sim:
        ...  # connect an AMI client to sim.ami_port, an ARI client to sim.ari_url
        assert not sim.channels()  # leak check at the end

Live calls survive :meth:`restart_ami`, :meth:`restart_ari` and :meth:`drop_connections`:
a client that reconnects and resynchronises (``CoreShowChannels``, ``GET /ari/channels``)
finds them. :meth:`pbx_restart` (also ``sim.faults.pbx_restart``) restarts the whole PBX like
``core restart now``/``gracefully``: the calls are gone afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from types import TracebackType
from typing import Any

from earpiece.sim.ami_server import AmiServer
from earpiece.sim.ari_server import AriServer
from earpiece.sim.engine import Engine, HeardEntry, OriginateOutcome, OriginateRequest
from earpiece.sim.faults import Faults, RestartPlan
from earpiece.sim.model import Bridge, Channel
from earpiece.sim.restart import PbxRestart
from earpiece.sim.rtp_sender import RtpSender
from earpiece.sim.scenario import Scenario

log = logging.getLogger(__name__)


class Simulator:
    def __init__(self, scenario: Scenario, *, host: str = "127.0.0.1", ami_port: int = 0,
                 ari_port: int = 0, faults: Faults | None = None,
                 auth_fail_delay_s: float = 1.0, seed: int | None = None) -> None:
        self.scenario = scenario
        self.host = host
        self.faults = faults or Faults()
        rng = random.Random(seed)
        self.rtp = RtpSender(host=host, faults=self.faults, rng=rng)
        self.engine = Engine(scenario, media=self.rtp, host=host, rng=rng)
        self.rtp.clock = self.engine.sample_now
        self.ami = AmiServer(self.engine, scenario.credentials, host=host, port=ami_port,
                             faults=self.faults, auth_fail_delay_s=auth_fail_delay_s)
        self.ari = AriServer(self.engine, scenario.credentials, host=host, port=ari_port,
                             faults=self.faults)
        self.pbx = PbxRestart(self.engine, self.ami, self.ari)
        self._restart: asyncio.Task[None] | None = None
        self._running = False

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        await self.rtp.start()
        await self.ami.start()
        await self.ari.start()
        self.engine.start()
        self.faults.pbx = self
        self._running = True

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        if self.faults.pbx is self:
            self.faults.pbx = None
        if self._restart is not None and not self._restart.done():
            self._restart.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restart
        await self.pbx.stop()
        await self.engine.stop()
        await self.ami.stop()
        await self.ari.stop()
        await self.rtp.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # --- where to connect ------------------------------------------------------------------
    @property
    def ami_port(self) -> int:
        return self.ami.port

    @property
    def ari_port(self) -> int:
        return self.ari.port

    @property
    def ari_url(self) -> str:
        return f"http://{self.host}:{self.ari.port}"

    # --- state for tests -------------------------------------------------------------------
    def channels(self) -> list[Channel]:
        return self.engine.channels()

    def bridges(self) -> list[Bridge]:
        return self.engine.bridges()

    @property
    def originated_outcomes(self) -> list[OriginateOutcome]:
        return list(self.engine.outcomes)

    @property
    def heard(self) -> list[HeardEntry]:
        """Prompts injected for a single party (whispers), with the role that heard them."""
        return list(self.engine.heard)

    @property
    def messages(self) -> list[dict[str, str]]:
        """``MessageSend`` deliveries to registered endpoints."""
        return list(self.engine.messages)

    def set_registered(self, endpoint: str, registered: bool) -> None:
        """A phone that (un)registers mid-scenario: an endpoint without a contact takes no new
        calls and ``MessageSend`` to it fails with "Message failed to send.", as on Asterisk."""
        scenario = self.engine.scenario
        if scenario.endpoint(endpoint) is None:
            raise KeyError(endpoint)
        self.engine.scenario = dataclasses.replace(scenario, endpoints=tuple(
            dataclasses.replace(ep, registered=registered) if ep.name == endpoint else ep
            for ep in scenario.endpoints))

    def originate(self, req: OriginateRequest) -> asyncio.Future[bool]:
        """Originate like an external dialer would (no AMI session needed)."""
        return self.engine.originate(req)

    # --- faults ----------------------------------------------------------------------------
    async def restart_ami(self, delay_s: float = 0.5) -> None:
        await self.ami.restart(delay_s)

    async def restart_ari(self, delay_s: float = 0.5) -> None:
        await self.ari.restart(delay_s)

    async def pbx_restart(self, graceful: bool = False, **timings: Any) -> None:
        """``core restart now`` (``graceful=False``) or ``core restart gracefully``; returns once
        the PBX is fully booted again. ``timings``: the fields of
        :class:`~earpiece.sim.faults.RestartPlan` (``down_s``, ``not_found_s``,
        ``not_booted_s``, ``shutdown_after_s``, ...)."""
        await self.pbx_restart_plan(RestartPlan(graceful=graceful, **timings))

    async def pbx_restart_plan(self, plan: RestartPlan) -> None:
        if self._restart is not None and not self._restart.done():
            raise RuntimeError("a PBX restart is already running")
        self._restart = asyncio.get_running_loop().create_task(self.pbx.run(plan))
        await self._restart

    @property
    def pbx_state(self) -> str:
        """``up`` | ``shutting_down`` | ``down`` | ``not_found`` | ``not_booted``."""
        return self.pbx.state

    def drop_connections(self) -> int:
        """Abort every AMI session and ARI websocket/HTTP connection; returns how many."""
        return self.ami.drop_connections() + self.ari.drop_connections()

    def inject_malformed_ami(self, count: int = 1) -> None:
        for session in list(self.ami.sessions):
            for i in range(count):
                session.send(self.faults.malformed_ami(i), "event")

    async def inject_malformed_ari(self, count: int = 1) -> None:
        await self.ari.send_raw_all([self.faults.malformed_ari(i) for i in range(count)])
