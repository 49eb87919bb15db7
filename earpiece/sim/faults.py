"""Fault injection for the simulator: what a flaky network or a restarting PBX does to clients.

A :class:`Faults` object is shared, mutable configuration: tests change its fields while the
simulator runs (e.g. raise ``rtp_loss`` for a few seconds). Connection-level faults (drop all
connections, restart the AMI/ARI listeners, inject malformed frames) are methods of
:class:`earpiece.sim.simulator.Simulator`; this module holds the knobs and the malformed
payloads.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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

    def chance(self, p: float) -> bool:
        return p > 0.0 and self.rng.random() < p

    def malformed_ami(self, n: int) -> bytes:
        return MALFORMED_AMI_FRAMES[n % len(MALFORMED_AMI_FRAMES)]

    def malformed_ari(self, n: int) -> str:
        return MALFORMED_ARI_FRAMES[n % len(MALFORMED_ARI_FRAMES)]
