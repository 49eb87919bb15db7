"""Jitter buffer: sequence wrap, reordering, loss, late and duplicate packets, restarts."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from earpiece.media.jitter import JitterBuffer


def run(jb: JitterBuffer[int], seqs: list[int], t: float = 0.0) -> list[tuple[int, int | None]]:
    out: list[tuple[int, int | None]] = []
    for s in seqs:
        out += jb.push(s & 0xFFFF, s, t)
    return out


def test_in_order_released_immediately_across_wrap() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=3)
    seqs = list(range(65530, 65546))  # wraps at 65536
    out = run(jb, seqs)
    assert [p for _, p in out] == seqs
    assert [e for e, _ in out] == seqs  # extended numbers keep increasing
    assert jb.stats.lost == jb.stats.late == 0


def test_fast_path_agrees_with_push() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=3)
    assert not jb.in_order(5)  # nothing known yet
    jb.push(65535, 0, 0.0)
    assert jb.in_order(0)  # 65535 -> 0 wraps
    assert not jb.in_order(5)
    assert jb.push(1, 1, 0.0) == [(65537, 1)]


def test_reordering_within_depth_is_repaired() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=3)
    out = run(jb, [100, 102, 101, 104, 103, 105])
    assert [p for _, p in out] == [100, 101, 102, 103, 104, 105]
    assert jb.stats.lost == 0


def test_loss_declared_after_depth_packets_wait() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=3)
    out = run(jb, [10, 12, 13])
    assert [p for _, p in out] == [10]  # 11 may still come
    out = run(jb, [14])
    assert out == [(11, None), (12, 12), (13, 13), (14, 14)]
    assert jb.stats.lost == 1
    assert run(jb, [11]) == []  # too late now
    assert jb.stats.late == 1


def test_duplicates_counted_and_dropped() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=3)
    run(jb, [1, 3])
    assert run(jb, [3]) == []
    assert jb.stats.duplicate == 1


def test_flush_due_declares_loss_when_packets_stop() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=5, max_wait_s=0.06)
    jb.push(1, 1, 0.0)
    jb.push(3, 3, 0.0)
    assert jb.flush_due(0.05) == []
    assert jb.flush_due(0.07) == [(2, None), (3, 3)]
    assert jb.pending == 0


def test_restart_of_sequence_space_keeps_frame_indexes_continuous() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=3)
    run(jb, [1000, 1001, 1002])
    out = jb.push(40000, 7, 0.0)
    assert out and out[-1][1] == 7
    assert jb.stats.resync == 1
    index = out[-1][0] - jb.first_seq
    assert index == 3  # the next frame after 1000..1002
    assert jb.push(40001, 8, 0.0)[0][0] - jb.first_seq == 4


def test_drain_releases_everything() -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=10)
    run(jb, [5, 7, 9])
    out = jb.drain()
    assert out == [(6, None), (7, 7), (8, None), (9, 9)]


@settings(max_examples=300)
@given(
    start=st.integers(0, 0xFFFF),
    n=st.integers(1, 120),
    data=st.data(),
)
def test_any_local_reordering_loses_nothing(start: int, n: int, data: st.DataObject) -> None:
    """Packets displaced by less than the depth come out complete and in order."""
    depth = 4
    seqs = list(range(start, start + n))
    # swap neighbours at random positions: every packet stays within 1 place of its slot
    swaps = data.draw(st.sets(st.integers(0, max(0, n - 2)), max_size=n // 2))
    done: set[int] = set()
    for i in sorted(swaps):
        if i + 1 < n and i not in done and i - 1 not in done:
            seqs[i], seqs[i + 1] = seqs[i + 1], seqs[i]
            done.add(i)
            done.add(i + 1)
    jb: JitterBuffer[int] = JitterBuffer(depth=depth)
    out = run(jb, seqs) + jb.drain()
    got = [p for _, p in out if p is not None]
    first = seqs[0]
    # a packet older than the first one seen is late by definition; everything else arrives
    expected = sorted(s for s in seqs if s >= first)
    assert got == expected
    assert jb.stats.lost == 0


@settings(max_examples=300)
@given(st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=200))
def test_arbitrary_sequences_never_break_invariants(seqs: list[int]) -> None:
    jb: JitterBuffer[int] = JitterBuffer(depth=3)
    released: list[int] = []
    for i, s in enumerate(seqs):
        released += [e for e, _ in jb.push(s, i, float(i))]
    released += [e for e, _ in jb.drain()]
    st_ = jb.stats
    assert st_.received == len(seqs)
    assert st_.released + st_.late + st_.duplicate == len(seqs)
