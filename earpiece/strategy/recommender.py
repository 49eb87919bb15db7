"""Which product to recommend in a slot, learned from outcomes.

Per (slot, product) the recommender keeps the accepted / declined outcomes of the last
``window_s`` seconds, each weighted ``0.5 ** (age / half_life_s)`` (no decay without a
half-life). With a Beta(``prior_a``, ``prior_b``) prior the posterior is Beta(prior_a + s,
prior_b + f) for weighted successes s and failures f. A product **qualifies** in a slot when
the posterior's lower ``1 - confidence`` quantile clears ``threshold``: one success in one try
(lower bound 0.32 at 90 %) does not beat 80 in 100 (0.74).

Choice among the qualifying products: the highest lower bound (rule ``best_lower_bound``), or
with ``explore = true`` Thompson sampling, one draw per product from its posterior (rule
``thompson``). A product that does not qualify is never recommended.

Cold start (no product qualifies in the slot, e.g. a new campaign or slot): ``cold_start =
"none"`` (default) recommends nothing (the policy then prompts the agent to find out the
customer's needs); ``"pooled"`` falls back to the statistics of all slots together, with the
same threshold (rule ``cold_start_pooled``).

History comes from a :class:`HistorySource` (CSV today, :class:`CsvHistory`; the CRM store can
implement the same protocol) and online :meth:`Recommender.feedback`. Everything random
goes through one ``random.Random(seed)``: the same seed and inputs give the same choices.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from scipy.special import betaincinv

from earpiece.errors import ConfigError

ColdStart = Literal["none", "pooled"]
DAY_S = 86400.0


@dataclass(frozen=True)
class Outcome:
    """One recommendation and its result."""

    at: float  # Unix time
    slot: str  # Slot.key
    product: str
    accepted: bool


class HistorySource(Protocol):
    """Where past outcomes come from (a CSV file, the CRM store)."""

    def outcomes(self, since: float, until: float) -> Iterable[Outcome]: ...


@dataclass(frozen=True)
class RecommenderSettings:
    threshold: float = 0.15
    confidence: float = 0.9  # the lower bound is the 1 - confidence quantile
    prior_a: float = 1.0
    prior_b: float = 1.0
    window_s: float = 90 * DAY_S
    half_life_s: float | None = 30 * DAY_S
    explore: bool = False
    cold_start: ColdStart = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold < 1.0:
            raise ConfigError("threshold must be in [0, 1)", key="threshold")
        if not 0.5 <= self.confidence < 1.0:
            raise ConfigError("confidence must be in [0.5, 1)", key="confidence")
        if self.prior_a <= 0 or self.prior_b <= 0:
            raise ConfigError("prior_a and prior_b must be > 0", key="prior")
        if self.window_s <= 0:
            raise ConfigError("window must be > 0", key="window_days")
        if self.half_life_s is not None and self.half_life_s <= 0:
            raise ConfigError("half-life must be > 0", key="half_life_days")
        if self.cold_start not in ("none", "pooled"):
            raise ConfigError("cold_start must be none or pooled", key="cold_start")


@dataclass(frozen=True)
class Estimate:
    """The success estimate of one product in one slot, with its evidence."""

    slot: str
    product: str
    mean: float  # posterior mean
    lower: float  # posterior lower bound
    successes: float  # decayed weights
    failures: float
    count: int  # outcomes in the window (undecayed)
    qualifies: bool

    @property
    def evidence(self) -> float:
        return self.successes + self.failures


@dataclass(frozen=True)
class Choice:
    estimate: Estimate
    rule: str  # best_lower_bound, thompson, cold_start_pooled

    @property
    def product(self) -> str:
        return self.estimate.product


@dataclass
class _Cell:
    """Decayed sums of one (slot, product) at ``ref`` and the raw outcomes in the window."""

    s: float = 0.0
    f: float = 0.0
    ref: float = -math.inf
    events: deque[tuple[float, bool]] = field(default_factory=deque)


class Recommender:
    def __init__(self, products: Sequence[str], settings: RecommenderSettings | None = None
                 ) -> None:
        if not products:
            raise ConfigError("a campaign needs at least one product", key="products")
        self.products = tuple(products)
        self.settings = settings or RecommenderSettings()
        self.rng = random.Random(self.settings.seed)
        self._cells: dict[tuple[str, str], _Cell] = {}

    # -- data in -------------------------------------------------------------------------------
    def load(self, source: HistorySource, now: float) -> int:
        """Add the source's outcomes of the last window before ``now``; returns how many."""
        rows = sorted(source.outcomes(now - self.settings.window_s, now), key=lambda o: o.at)
        n = 0
        for o in rows:
            if o.product in self.products and now - self.settings.window_s <= o.at <= now:
                self._add(o.slot, o.product, o.accepted, o.at)
                n += 1
        return n

    def feedback(self, product: str, slot: str, accepted: bool, at: float) -> None:
        """One online result: ``product`` recommended in ``slot``, accepted or declined."""
        if product not in self.products:
            raise KeyError(f"unknown product {product!r}")
        self._add(slot, product, accepted, at)

    def _decay(self, dt_s: float) -> float:
        h = self.settings.half_life_s
        if h is None or dt_s <= 0:
            return 1.0
        return float(0.5 ** (dt_s / h))

    def _add(self, slot: str, product: str, accepted: bool, at: float) -> None:
        cell = self._cells.setdefault((slot, product), _Cell())
        self._advance(cell, max(at, cell.ref))
        w = self._decay(cell.ref - at)  # an outcome older than the cell's reference
        if accepted:
            cell.s += w
        else:
            cell.f += w
        # keep the window's raw events in time order (late arrivals are rare: insert in place)
        if not cell.events or cell.events[-1][0] <= at:
            cell.events.append((at, accepted))
        else:
            items = sorted([*cell.events, (at, accepted)], key=lambda e: e[0])
            cell.events = deque(items)

    def _advance(self, cell: _Cell, now: float) -> None:
        """Decay ``cell`` to ``now`` and drop the outcomes that left the window."""
        if now > cell.ref:
            if cell.ref != -math.inf:
                k = self._decay(now - cell.ref)
                cell.s *= k
                cell.f *= k
            cell.ref = now
        limit = now - self.settings.window_s
        while cell.events and cell.events[0][0] < limit:
            at, ok = cell.events.popleft()
            w = self._decay(cell.ref - at)
            if ok:
                cell.s = max(0.0, cell.s - w)
            else:
                cell.f = max(0.0, cell.f - w)
        if not cell.events:
            cell.s = cell.f = 0.0

    # -- estimates -----------------------------------------------------------------------------
    def _estimate(self, slot: str, product: str, s: float, f: float, count: int) -> Estimate:
        st = self.settings
        a, b = st.prior_a + s, st.prior_b + f
        lower = float(betaincinv(a, b, 1.0 - st.confidence))
        return Estimate(slot=slot, product=product, mean=a / (a + b), lower=lower,
                        successes=s, failures=f, count=count, qualifies=lower >= st.threshold)

    def _sums(self, slot: str, product: str, now: float) -> tuple[float, float, int]:
        cell = self._cells.get((slot, product))
        if cell is None:
            return 0.0, 0.0, 0
        self._advance(cell, now)
        k = self._decay(now - cell.ref)  # now before ref: no decay
        return cell.s * k, cell.f * k, len(cell.events)

    def estimate(self, slot: str, product: str, now: float) -> Estimate:
        return self._estimate(slot, product, *self._sums(slot, product, now))

    def estimates(self, slot: str, now: float) -> list[Estimate]:
        """Every product's estimate in ``slot``, best lower bound first."""
        out = [self.estimate(slot, p, now) for p in self.products]
        return sorted(out, key=lambda e: (-e.lower, e.product))

    def pooled(self, product: str, now: float) -> Estimate:
        s = f = 0.0
        count = 0
        for slot, prod in list(self._cells):
            if prod == product:
                ds, df, dc = self._sums(slot, prod, now)
                s, f, count = s + ds, f + df, count + dc
        return self._estimate("*", product, s, f, count)

    # -- choice --------------------------------------------------------------------------------
    def recommend(self, slot: str, now: float) -> Choice | None:
        """The product to recommend in ``slot`` now, or ``None`` when none qualifies."""
        qualifying = [e for e in self.estimates(slot, now) if e.qualifies]
        rule = "best_lower_bound"
        if not qualifying and self.settings.cold_start == "pooled":
            pooled = [self.pooled(p, now) for p in self.products]
            qualifying = sorted((e for e in pooled if e.qualifies),
                                key=lambda e: (-e.lower, e.product))
            rule = "cold_start_pooled"
        if not qualifying:
            return None
        if self.settings.explore and len(qualifying) > 1:
            st = self.settings
            draws = [(self.rng.betavariate(st.prior_a + e.successes, st.prior_b + e.failures), e)
                     for e in qualifying]
            best = max(draws, key=lambda d: d[0])[1]
            return Choice(best, "thompson" if rule == "best_lower_bound" else rule)
        return Choice(qualifying[0], rule)

    def mapping(self, slots: Iterable[str], now: float) -> dict[str, str | None]:
        """Slot -> the product with the best lower bound (no exploration), None if none."""
        out: dict[str, str | None] = {}
        for slot in slots:
            q = [e for e in self.estimates(slot, now) if e.qualifies]
            out[slot] = q[0].product if q else None
        return out


class CsvHistory:
    """Outcomes from a CSV file with a header: ``at,slot,product,accepted``.

    ``at``: ISO 8601 (with offset, or UTC when naive) or Unix seconds; ``accepted``: 1/0,
    true/false, yes/no or accepted/declined. Without a ``slot`` column, ``slot_of(at)`` names
    it (e.g. ``lambda t: scheme.slot(t).key``).
    """

    TRUE = frozenset({"1", "true", "yes", "accepted", "y"})
    FALSE = frozenset({"0", "false", "no", "declined", "n"})

    def __init__(self, path: str | Path, slot_of: Callable[[float], str] | None = None) -> None:
        self.path = Path(path)
        self.slot_of = slot_of

    def outcomes(self, since: float, until: float) -> Iterable[Outcome]:
        file = str(self.path)
        with self.path.open(encoding="utf-8", newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                try:
                    at = _time(row["at"])
                    flag = row["accepted"].strip().lower()
                    if flag not in self.TRUE | self.FALSE:
                        raise ValueError(f"accepted={row['accepted']!r}")
                    slot = row.get("slot") or (self.slot_of(at) if self.slot_of else None)
                    if not slot:
                        raise ValueError("no slot column and no slot_of")
                    product = row["product"].strip()
                except (KeyError, ValueError, AttributeError) as exc:
                    raise ConfigError(f"line {line}: {exc}", file=file) from None
                if since <= at <= until:
                    yield Outcome(at=at, slot=slot.strip(), product=product,
                                  accepted=flag in self.TRUE)


def _time(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()
