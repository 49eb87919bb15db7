"""Fault injection for the simulator: what a flaky network or a restarting PBX does to clients.

A :class:`Faults` object is shared, mutable configuration: tests change its fields while the
simulator runs (e.g. raise ``rtp_loss`` for a few seconds). Connection-level faults (drop all
connections, restart the AMI/ARI listeners, inject malformed frames) are methods of
:class:`earpiece.sim.simulator.Simulator`; this module holds the knobs and the malformed
payloads.

A restart of the whole PBX (``core restart now`` / ``core restart gracefully``: calls hung up,
``Shutdown``, connections closed, refused, then booting) is :meth:`Faults.pbx_restart`, with its
timings in a :class:`RestartPlan` (defaults: ``shared/asterisk/captures/faults/core_restart*``).
It is a different fault from :meth:`~earpiece.sim.simulator.Simulator.restart_ami` /
``restart_ari`` (a listener restart that keeps the calls up).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Protocol

# Frames a broken or hostile peer could send. Each one must be counted and dropped by a
# correct client, never crash it.
MALFORMED_AMI_FRAMES: tuple[bytes, ...] = (
    b"Event Newchannel\r\nPrivilege call,all\r\n\r\n",  # no 'Key: Value' separator
    b"Event: VarSet\r\nChannel PJSIP/cust1-0000000c\r\n\r\n",  # header without separator
    b": no-key\r\nEvent: Bogus\r\n\r\n",  # empty header name
    b"Event: Partial\r\nChannel: PJSIP/x\rValue: 1\r\n\r\n",  # bare CR inside a line
)
MALFORMED_ARI_FRAMES: tuple[str, ...] = (
    '{"type":"StasisStart","timestamp":',  # truncated JSON
    "not json at all",
    '{"timestamp":"2026-11-23T15:49:09.364+0000"}',  # no type
    '{"type":"StasisStart","timestamp":"2026-11-23T15:49:09.364+0000","args":[],'
    '"channel":{"id":42}}',  # wrong field types
    "[1,2,3]",  # not an object
)


@dataclass(frozen=True)
class RestartPlan:
    """Timings of a simulated ``core restart``, in seconds (defaults as captured).

    ``core restart now``: ``hangup_after_s`` after the command every channel is hung up;
    ``shutdown_after_s`` later AMI gets ``Event: Shutdown``; ``ami_close_after_s`` after it AMI
    closes its TCP connections (no ``Response``/``Goodbye``) and ``ari_close_after_s`` after it
    the ARI websockets are cut without a close frame. Both ports then refuse connections for
    ``down_s``; ARI answers ``404`` (an HTML page) for ``not_found_s``, then ``503``
    ``{"message":"Asterisk not booted"}`` for ``not_booted_s`` while AMI already accepts logins
    (no ``FullyBooted`` yet); then ARI upgrades websockets again and AMI sends ``FullyBooted``
    (after ``ContactStatus`` of the registered endpoints when ``contact_status``).

    ``core restart gracefully`` (``graceful=True``): AMI ``Originate`` is refused (``Asterisk is
    shutting down``) until the last channel is gone; then ``Shutdown`` after
    ``shutdown_after_s``, websockets get a close frame 1000, AMI closes after
    ``ami_close_after_s`` and both are back after ``down_s`` (defaults 0.5 s, no 404/503 seen).
    """

    graceful: bool = False
    hangup_after_s: float = 0.008
    shutdown_after_s: float = 1.1
    ami_close_after_s: float = 0.015
    ari_close_after_s: float = 0.027
    down_s: float | None = None  # None: 0.25 (now) / 0.5 (gracefully)
    not_found_s: float | None = None  # None: 0.05 (now) / 0 (gracefully)
    not_booted_s: float | None = None  # None: 0.1 (now) / 0 (gracefully)
    contact_status: bool = True

    def __post_init__(self) -> None:
        for name in ("hangup_after_s", "shutdown_after_s", "ami_close_after_s",
                     "ari_close_after_s", "down_s", "not_found_s", "not_booted_s"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")

    @property
    def down(self) -> float:
        return self.down_s if self.down_s is not None else (0.5 if self.graceful else 0.25)

    @property
    def not_found(self) -> float:
        if self.not_found_s is not None:
            return self.not_found_s
        return 0.0 if self.graceful else 0.05

    @property
    def not_booted(self) -> float:
        if self.not_booted_s is not None:
            return self.not_booted_s
        return 0.0 if self.graceful else 0.1


class PbxControl(Protocol):
    """What runs a :class:`RestartPlan` (the :class:`~earpiece.sim.simulator.Simulator`)."""

    async def pbx_restart_plan(self, plan: RestartPlan) -> None: ...


@dataclass
class Faults:
    """Knobs read live by the AMI/ARI servers and the RTP sender."""

    ami_response_delay_s: float = 0.0
    ami_event_delay_s: float = 0.0
    ari_response_delay_s: float = 0.0
    ari_event_delay_s: float = 0.0
    ami_malformed_every: int = 0  # after every N-th event, also send a malformed frame
    ari_malformed_every: int = 0
    rtp_loss: float = 0.0  # probability a packet is not sent
    rtp_reorder: float = 0.0  # probability a packet is held back and sent after the next
    rtp_jitter_ms: float = 0.0  # each packet delayed by uniform(0, jitter) ms
    rtp_duplicate: float = 0.0  # probability a packet is sent twice
    rogue_rtp: str = ""  # "" | "address" (same SSRC, another source port) | "ssrc"
    rogue_rate: float = 1.0  # rogue packets per genuine packet
    seed: int | None = None
    rng: random.Random = field(default_factory=random.Random, repr=False)
    pbx: PbxControl | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.seed is not None:
            self.rng.seed(self.seed)
        for name in ("rtp_loss", "rtp_reorder", "rtp_duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")
        if self.rogue_rtp not in ("", "address", "ssrc"):
            raise ValueError(f"rogue_rtp must be '', 'address' or 'ssrc', got {self.rogue_rtp!r}")

    @property
    def rtp_active(self) -> bool:
        return bool(self.rtp_loss or self.rtp_reorder or self.rtp_jitter_ms or self.rtp_duplicate
                    or self.rogue_rtp)

    async def pbx_restart(self, graceful: bool = False, *, down_s: float | None = None,
                          not_found_s: float | None = None, not_booted_s: float | None = None,
                          shutdown_after_s: float = 1.1, hangup_after_s: float = 0.008,
                          ami_close_after_s: float = 0.015, ari_close_after_s: float = 0.027,
                          contact_status: bool = True) -> None:
        """Restart the simulated PBX (see :class:`RestartPlan`); returns once it is fully
        booted again. Needs a running simulator that uses these faults."""
        if self.pbx is None:
            raise RuntimeError("these Faults are not attached to a running Simulator")
        await self.pbx.pbx_restart_plan(RestartPlan(
            graceful=graceful, hangup_after_s=hangup_after_s, shutdown_after_s=shutdown_after_s,
            ami_close_after_s=ami_close_after_s, ari_close_after_s=ari_close_after_s,
            down_s=down_s, not_found_s=not_found_s, not_booted_s=not_booted_s,
            contact_status=contact_status))

    def chance(self, p: float) -> bool:
        return p > 0.0 and self.rng.random() < p

    def malformed_ami(self, n: int) -> bytes:
        return MALFORMED_AMI_FRAMES[n % len(MALFORMED_AMI_FRAMES)]

    def malformed_ari(self, n: int) -> str:
        return MALFORMED_ARI_FRAMES[n % len(MALFORMED_ARI_FRAMES)]
