"""The recommender: Beta lower bound vs threshold, feedback, decay, window, cold start, seeds."""

from __future__ import annotations

from pathlib import Path

import pytest

from earpiece.errors import ConfigError
from earpiece.strategy.recommender import (
    DAY_S,
    CsvHistory,
    Outcome,
    Recommender,
    RecommenderSettings,
)

NOW = 1_780_000_000.0
SLOT = "weekday-morning"


def feed(r: Recommender, product: str, ok: int, total: int, at: float = NOW,
         slot: str = SLOT) -> None:
    for i in range(total):
        r.feedback(product, slot, i < ok, at)


def test_one_in_one_does_not_beat_eighty_in_a_hundred() -> None:
    r = Recommender(["lucky", "solid"], RecommenderSettings(threshold=0.2, half_life_s=None))
    feed(r, "lucky", 1, 1)
    feed(r, "solid", 80, 100)
    lucky, solid = r.estimate(SLOT, "lucky", NOW), r.estimate(SLOT, "solid", NOW)
    # the raw rates (100 % vs 80 %) would put the lucky one first; the lower bounds do not
    assert lucky.lower < solid.lower
    assert lucky.lower == pytest.approx(0.3162, abs=1e-3)  # Beta(2, 1): sqrt(0.1)
    assert solid.count == 100 and solid.evidence == pytest.approx(100)
    choice = r.recommend(SLOT, NOW)
    assert choice is not None and choice.product == "solid" and choice.rule == "best_lower_bound"


def test_a_product_below_the_threshold_is_never_recommended() -> None:
    for explore in (False, True):
        r = Recommender(["weak", "ok"], RecommenderSettings(threshold=0.2, explore=explore))
        feed(r, "weak", 5, 100)
        feed(r, "ok", 40, 100)
        assert not r.estimate(SLOT, "weak", NOW).qualifies
        picks = {c.product for _ in range(200) if (c := r.recommend(SLOT, NOW)) is not None}
        assert picks == {"ok"}
        alone = Recommender(["weak"], RecommenderSettings(threshold=0.2, explore=explore))
        feed(alone, "weak", 5, 100)
        assert alone.recommend(SLOT, NOW) is None


def test_feedback_changes_the_mapping() -> None:
    r = Recommender(["a", "b"], RecommenderSettings(threshold=0.1))
    feed(r, "a", 30, 60)
    feed(r, "b", 10, 60)
    assert r.mapping([SLOT, "weekend-evening"], NOW) == {SLOT: "a", "weekend-evening": None}
    for i in range(80):  # a stops selling, b starts
        r.feedback("a", SLOT, False, NOW + i)
        r.feedback("b", SLOT, i % 2 == 0, NOW + i)
    assert r.mapping([SLOT], NOW + 100) == {SLOT: "b"}
    with pytest.raises(KeyError):
        r.feedback("zzz", SLOT, True, NOW)


def test_old_data_decays() -> None:
    settings = RecommenderSettings(threshold=0.1, half_life_s=30 * DAY_S,
                                   window_s=365 * DAY_S)
    r = Recommender(["old", "new"], settings)
    feed(r, "old", 60, 100, at=NOW - 120 * DAY_S)  # strong but four half-lives ago
    feed(r, "new", 18, 30, at=NOW)
    old = r.estimate(SLOT, "old", NOW)
    assert old.evidence == pytest.approx(100 / 16)
    assert old.count == 100
    assert r.mapping([SLOT], NOW) == {SLOT: "new"}
    # the same data without decay keeps the old product on top
    flat = Recommender(["old", "new"], RecommenderSettings(threshold=0.1, half_life_s=None,
                                                           window_s=365 * DAY_S))
    feed(flat, "old", 60, 100, at=NOW - 120 * DAY_S)
    feed(flat, "new", 18, 30, at=NOW)
    assert flat.mapping([SLOT], NOW) == {SLOT: "old"}
    # and the evidence keeps shrinking as time passes
    assert r.estimate(SLOT, "new", NOW + 30 * DAY_S).evidence == pytest.approx(15)


def test_window_drops_old_outcomes() -> None:
    r = Recommender(["a"], RecommenderSettings(threshold=0.1, window_s=10 * DAY_S,
                                               half_life_s=None))
    feed(r, "a", 50, 50, at=NOW)
    assert r.estimate(SLOT, "a", NOW + 9 * DAY_S).count == 50
    gone = r.estimate(SLOT, "a", NOW + 11 * DAY_S)
    assert gone.count == 0 and gone.evidence == 0


def test_cold_start_none_and_pooled() -> None:
    cold = Recommender(["a", "b"], RecommenderSettings(threshold=0.15))
    assert cold.recommend(SLOT, NOW) is None  # no data: Beta(1,1) lower bound 0.1 < 0.15
    pooled = Recommender(["a", "b"], RecommenderSettings(threshold=0.15, cold_start="pooled"))
    feed(pooled, "b", 30, 60, slot="weekday-midday")
    feed(pooled, "a", 5, 60, slot="weekday-evening")
    choice = pooled.recommend(SLOT, NOW)
    assert choice is not None and choice.product == "b" and choice.rule == "cold_start_pooled"
    assert choice.estimate.slot == "*" and choice.estimate.count == 60


def test_thompson_explores_among_qualifying_and_is_deterministic_per_seed() -> None:
    def run(seed: int) -> list[str]:
        r = Recommender(["a", "b", "c"], RecommenderSettings(threshold=0.2, explore=True,
                                                             seed=seed))
        feed(r, "a", 40, 100)
        feed(r, "b", 38, 100)
        feed(r, "c", 2, 100)
        out = []
        for _ in range(100):
            c = r.recommend(SLOT, NOW)
            assert c is not None and c.rule == "thompson"
            out.append(c.product)
        return out

    first = run(3)
    assert first == run(3)
    assert set(first) == {"a", "b"}
    assert first != run(4)


def test_csv_history(tmp_path: Path) -> None:
    path = tmp_path / "h.csv"
    path.write_text("at,slot,product,accepted\n"
                    "2026-05-01T09:00:00+01:00,weekday-morning,a,accepted\n"
                    f"{NOW - 5},weekday-morning,a,0\n"
                    f"{NOW - 400 * DAY_S},weekday-morning,a,1\n"
                    f"{NOW - 3},weekday-morning,ghost,1\n", encoding="utf-8")
    r = Recommender(["a"], RecommenderSettings(window_s=365 * DAY_S))
    rows = list(CsvHistory(path).outcomes(0, NOW))
    assert rows[0] == Outcome(at=1777622400.0, slot=SLOT, product="a", accepted=True)
    assert r.load(CsvHistory(path), NOW) == 2  # out of window and unknown product left out
    assert r.estimate(SLOT, "a", NOW).count == 2
    noslot = tmp_path / "n.csv"
    noslot.write_text(f"at,product,accepted\n{NOW},a,yes\n", encoding="utf-8")
    got = list(CsvHistory(noslot, slot_of=lambda t: "weekend-evening").outcomes(0, NOW))
    assert got[0].slot == "weekend-evening"
    bad = tmp_path / "b.csv"
    bad.write_text(f"at,slot,product,accepted\n{NOW},s,a,maybe\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        list(CsvHistory(bad).outcomes(0, NOW))


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        RecommenderSettings(threshold=1.5)
    with pytest.raises(ConfigError):
        RecommenderSettings(half_life_s=0)
    with pytest.raises(ConfigError):
        Recommender([])
