"""A small RTP jitter buffer: sequence extension across the 16-bit wrap, reordering, duplicate
and late-packet detection, and loss declaration (the caller conceals).

It is driven by two things, and never by a per-packet timer task:

* :meth:`JitterBuffer.push` on every packet: in-order packets are released at once (no added
  delay); a packet after a gap is held until the gap is filled, or until ``depth`` packets are
  waiting behind it, when the missing ones are declared lost;
* :meth:`JitterBuffer.flush_due` from one periodic tick for the whole receiver: a gap whose
  first waiting packet arrived more than ``max_wait_s`` ago is declared lost.

Released items are ``(ext_seq, payload)``; ``payload`` is ``None`` for a lost packet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

P = TypeVar("P")

#: A forward jump larger than this (packets) or a backward one beyond it is a stream restart.
RESYNC_GAP = 3000


@dataclass
class JitterStats:
    received: int = 0
    released: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    resync: int = 0


class JitterBuffer(Generic[P]):
    def __init__(self, *, depth: int = 3, max_wait_s: float = 0.06) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        self.max_wait_s = max_wait_s
        self.stats = JitterStats()
        self._buf: dict[int, tuple[P, float]] = {}
        self._highest = -1  # highest extended sequence number seen
        self._next = -1  # next extended sequence number to release
        self._first = -1

    @property
    def first_seq(self) -> int:
        """Extended sequence number of the first packet (frame index 0)."""
        return self._first

    @property
    def pending(self) -> int:
        return len(self._buf)

    def extend(self, seq: int) -> int:
        """Map a 16-bit sequence number to the extended (monotonic) space."""
        if self._highest < 0:
            return seq
        delta = (seq - self._highest) & 0xFFFF
        if delta >= 0x8000:
            delta -= 0x10000
        return self._highest + delta

    def in_order(self, seq: int) -> bool:
        """Fast path: nothing is held and ``seq`` is the next one: account for it, release it.

        Returns False (and changes nothing) otherwise; then call :meth:`push`.
        """
        nxt = self._next
        if self._buf or nxt < 0 or seq != nxt & 0xFFFF:
            return False
        self._highest = nxt
        self._next = nxt + 1
        st = self.stats
        st.received += 1
        st.released += 1
        return True

    def push(self, seq: int, payload: P, now: float) -> list[tuple[int, P | None]]:
        st = self.stats
        st.received += 1
        if self._highest < 0:
            self._highest = self._next = self._first = seq
        ext = self.extend(seq)
        if ext - self._next > RESYNC_GAP or self._next - ext > RESYNC_GAP:
            # The sender restarted its sequence space: give up what is held, continue from here.
            st.resync += 1
            out: list[tuple[int, P | None]] = [
                (k, self._buf[k][0]) for k in sorted(self._buf)
            ]
            st.released += len(out)
            self._buf.clear()
            last = out[-1][0] + 1 if out else self._next
            index = last - self._first  # keep frame indexes continuous
            self._highest = self._next = ext = seq
            self._first = seq - index
            self._buf[ext] = (payload, now)
            out.extend(self._release())
            return out
        if ext < self._next:
            st.late += 1
            return []
        if ext in self._buf:
            st.duplicate += 1
            return []
        if ext > self._highest:
            self._highest = ext
        self._buf[ext] = (payload, now)
        return self._release()

    def _release(self) -> list[tuple[int, P | None]]:
        out: list[tuple[int, P | None]] = []
        buf = self._buf
        while True:
            item = buf.pop(self._next, None)
            if item is not None:
                out.append((self._next, item[0]))
                self._next += 1
                continue
            if not buf or self._highest - self._next < self.depth:
                break
            # ``depth`` packets wait behind a hole: the hole is lost.
            out.append((self._next, None))
            self.stats.lost += 1
            self._next += 1
        self.stats.released += sum(1 for _, p in out if p is not None)
        return out

    def flush_due(self, now: float) -> list[tuple[int, P | None]]:
        """Declare lost the holes in front of packets that have waited ``max_wait_s``."""
        if not self._buf:
            return []
        oldest = min(t for _, t in self._buf.values())
        if now - oldest < self.max_wait_s:
            return []
        out: list[tuple[int, P | None]] = []
        while self._buf and self._next not in self._buf:
            out.append((self._next, None))
            self.stats.lost += 1
            self._next += 1
        out.extend(self._release())
        return out

    def drain(self) -> list[tuple[int, P | None]]:
        """Release everything held (end of stream), holes as lost."""
        out: list[tuple[int, P | None]] = []
        while self._buf:
            out.extend(self.flush_due(float("inf")))
        return out
