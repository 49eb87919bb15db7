"""``bench_amd.score``: the per-class latencies a dialer feels."""

from __future__ import annotations

from earpiece.bench.amd import by_truth, score
from earpiece.cpa.detector import CpaResult
from earpiece.cpa.evalset import Item


def _item(label: str, n: int) -> Item:
    return Item(f"{label}/{n}.wav", label, "amd", "test", "synthetic")


def test_by_truth_separates_connect_and_release_latency() -> None:
    items = [_item("human", i) for i in range(4)] + [_item("machine", i) for i in range(3)]
    results = [CpaResult("human", 0.9, 1.2, {}), CpaResult("human", 0.9, 2.0, {}),
               CpaResult("machine", 0.9, 0.9, {}), CpaResult("unknown", 0.0, 5.0, {}),
               CpaResult("machine", 0.9, 1.5, {}), CpaResult("machine", 0.9, 2.5, {}),
               CpaResult("human", 0.9, 1.0, {})]
    got = by_truth(items, results)
    # people: 2 of 4 judged human, after 1.2 and 2.0 s; the wrong verdicts do not count there
    assert got["human"]["items"] == 4
    assert got["human"]["recall"] == 0.5
    assert got["human"]["correct_median_s"] == 1.6
    assert got["human"]["decision_median_s"] == 1.6  # 0.9, 1.2, 2.0, 5.0
    # machines: released after 1.5 and 2.5 s; the one called human is not a release
    assert got["machine"]["recall"] == round(2 / 3, 4)
    assert got["machine"]["correct_median_s"] == 2.0
    assert got["machine"]["decision_median_s"] == 1.5
    report = score(items, results)
    assert report["by_truth"] == got
    assert report["accuracy_human_machine"] == round(4 / 7, 4)


def test_by_truth_leaves_out_absent_classes() -> None:
    items = [Item("r.wav", "ringback", "tone", "test", "synthetic")]
    assert by_truth(items, [CpaResult("ringback", 1.0, 4.0, {})]) == {}
    got = by_truth([_item("human", 0)], [CpaResult("machine", 0.9, 1.0, {})])
    assert got["human"]["recall"] == 0.0 and got["human"]["correct_median_s"] is None
