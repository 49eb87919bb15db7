"""``earpiece bench strategy`` on a small run: keys, determinism, and the regret sums."""

from __future__ import annotations

import argparse

import pytest

from earpiece.bench import strategy
from earpiece.cli import build_parser


def _args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["bench", "strategy", "--calls", "600", "--json", *extra])


def test_small_run_is_deterministic_and_has_the_keys() -> None:
    a = strategy.run(_args())
    assert {"regret", "regret_fixed", "regret_ratio"} <= set(a)
    assert a["calls"] == 600 and 0 < a["offers"] < 600  # negative customers get no offer
    assert a["regret"] >= 0 and a["regret_fixed"] >= 0
    assert a["regret_ratio"] == pytest.approx(a["regret"] / a["regret_fixed"], rel=1e-2)
    b = strategy.run(_args())
    a.pop("decide_us_mean"), b.pop("decide_us_mean")
    assert a == b


def test_seeds_give_per_seed_results() -> None:
    out = strategy.run(_args("--seeds", "2", "--calls", "300"))
    assert [r["seed"] for r in out["per_seed"]] == [1, 2]
    assert out["regret_ratio_max"] >= out["regret_ratio_mean"]
