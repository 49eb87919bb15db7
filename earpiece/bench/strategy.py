"""``earpiece bench strategy``: regret of the recommender against the oracle and a fixed mapping.

A simulated campaign: ``--products`` products, the default 8 slots (morning / midday /
afternoon / evening x weekday / weekend, UTC), calls spread uniformly over ``--days`` days
between 08:00 and 21:00. Each (slot, product, emotion) has a hidden acceptance probability:
a base rate per (slot, product) drawn uniformly from [0.05, 0.45], times 1.0 for a positive
customer (the agent recommends) and 0.55 for a neutral one (the agent introduces); a negative
customer is soothed and offered nothing, by every strategy alike. With ``--drift`` (default
0.5) that share of the (slot, product) base rates is redrawn halfway through the calls.
Emotions: 40 % positive, 40 % neutral, 20 % negative, scripted as
:class:`~earpiece.events.EmotionScored` events through the real
:class:`~earpiece.strategy.policy.Policy`.

Before the first call every strategy sees the same history: ``--history`` outcomes per
(slot, product) from the ``--days`` before. Three strategies offer a product per call:

* **oracle**: the product with the highest true probability for the slot among those whose
  true rate over offered calls clears the threshold (nothing when none does);
* **fixed**: the recommender's own slot -> product mapping at the first call (best lower
  bound of that history), never updated (what a supervisor would configure from last
  quarter's report);
* **recommender**: the campaign's recommender (threshold, Thompson sampling, half-life),
  loaded from the history and updated online from every offer's result.

``regret``: the recommender's cumulative expected regret, sum over offers of p(oracle) -
p(chosen) (an offer of nothing when no product qualifies costs p(oracle)); ``regret_fixed``
the same for the fixed mapping; ``regret_ratio`` = regret / regret_fixed (target < 0.5).
With ``--seeds N`` every number is given per seed and the ratio also as mean and max.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from earpiece.events import EmotionScored
from earpiece.strategy.campaign import Campaign, parse_campaign
from earpiece.strategy.policy import Policy
from earpiece.strategy.recommender import DAY_S, Outcome, Recommender
from earpiece.strategy.slots import SlotScheme

EMOTION_FACTOR = {"positive": 1.0, "neutral": 0.55}
EMOTION_MIX = (("positive", 0.4), ("neutral", 0.4), ("negative", 0.2))
OFFER_FACTOR = 0.775  # mean emotion factor over offered (positive or neutral) calls
T0 = 1_767_225_600.0  # 2026-01-01 00:00 UTC


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=5)
    parser.add_argument("--history", type=int, default=20,
                        help="outcomes per (slot, product) before the first call")
    parser.add_argument("--days", type=float, default=60.0)
    parser.add_argument("--threshold", type=float, default=0.05)
    parser.add_argument("--drift", type=float, default=0.5,
                        help="share of (slot, product) rates redrawn halfway through the calls")
    parser.add_argument("--half-life-days", type=float, default=30.0)
    parser.add_argument("--no-explore", action="store_true",
                        help="best lower bound instead of Thompson sampling")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=1, help="repeat with seed, seed+1, ...")
    parser.add_argument("--json", action="store_true")


def _campaign(products: list[str], args: argparse.Namespace, seed: int) -> Campaign:
    data: dict[str, Any] = {
        "campaign": {"name": "bench", "languages": ["en"]},
        "recommender": {"threshold": args.threshold, "window_days": 4 * args.days,
                        "half_life_days": args.half_life_days,
                        "explore": not args.no_explore, "seed": seed},
        "slots": {"timezone": "UTC"},
        "products": [{"id": p, "text": {"en": {"name": p, "facts": [f"{p} fact"],
                                               "talking_points": [f"{p} point"]}}}
                     for p in products],
        "lines": {"en": {"recommend": "Recommend {name}: {point}",
                         "introduce": "Introduce {name}: {fact}", "answer": "{answer}",
                         "discover": "Ask about needs.", "soothe": ["Soothe."],
                         "closing": ["Close."]}},
    }
    return parse_campaign(data, file="<bench>")


def run_once(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    products = [f"P{i}" for i in range(args.products)]
    campaign = _campaign(products, args, seed)
    scheme: SlotScheme = campaign.slots
    slots = [s.key for s in scheme.all_slots()]
    base = {(s, p): rng.uniform(0.05, 0.45) for s in slots for p in products}

    after = {k: (rng.uniform(0.05, 0.45) if rng.random() < args.drift else v)
             for k, v in base.items()}
    mid = T0 + args.days * DAY_S / 2
    rates = base

    def p_true(slot: str, product: str | None, emotion: str) -> float:
        return 0.0 if product is None else rates[slot, product] * EMOTION_FACTOR[emotion]

    def oracle(slot: str, emotion: str) -> str | None:
        # the best product whose true success rate (over offered calls) clears the threshold
        ok = [p for p in products if rates[slot, p] * OFFER_FACTOR >= args.threshold]
        return max(ok, key=lambda p: (rates[slot, p], p)) if ok else None

    def when(day0: float) -> float:
        return day0 + rng.randrange(int(args.days)) * DAY_S + rng.uniform(8, 21) * 3600

    def emotion() -> str:
        x = rng.random()
        for name, share in EMOTION_MIX:
            x -= share
            if x < 0:
                return name
        return EMOTION_MIX[-1][0]

    history: list[Outcome] = []
    for _ in range(args.history):
        for s in slots:
            for p in products:
                emo = "positive" if rng.random() < 0.5 else "neutral"
                history.append(Outcome(at=T0 - args.days * DAY_S + rng.uniform(0, args.days)
                                       * DAY_S, slot=s, product=p,
                                       accepted=rng.random() < p_true(s, p, emo)))

    class _History:
        def outcomes(self, since: float, until: float) -> list[Outcome]:
            return [o for o in history if since <= o.at <= until]

    recommender = Recommender(campaign.product_ids, campaign.recommender)
    recommender.load(_History(), T0)
    fixed = recommender.mapping(slots, T0)
    policy = Policy(campaign, recommender)

    calls = sorted((when(T0), emotion()) for _ in range(args.calls))
    regret = regret_fixed = 0.0
    accepted = offers = no_product = 0
    started = time.perf_counter()
    for i, (at, emo) in enumerate(calls):
        if at >= mid:
            rates = after
        slot = scheme.slot(at).key
        event = EmotionScored(call_id=f"c{i}", at=at, party="customer", label=emo,
                              valence=0.0, arousal=None, confidence=1.0, start_s=0.0,
                              end_s=1.0, state=emo, index=0.0)
        prompt = policy.decide(event, slot)
        policy.end_call(event.call_id)
        if prompt is None or emo == "negative":
            continue
        offers += 1
        best = p_true(slot, oracle(slot, emo), emo)
        chosen = prompt.product
        if chosen is None:
            no_product += 1
        regret += best - p_true(slot, chosen, emo)
        regret_fixed += best - p_true(slot, fixed[slot], emo)
        if chosen is not None:
            ok = rng.random() < p_true(slot, chosen, emo)
            accepted += ok
            recommender.feedback(chosen, slot, ok, at)
    elapsed = time.perf_counter() - started
    return {"seed": seed, "calls": args.calls, "offers": offers, "offers_no_product": no_product,
            "accepted": accepted, "drift": args.drift, "regret": round(regret, 2),
            "regret_fixed": round(regret_fixed, 2),
            "regret_ratio": round(regret / regret_fixed, 4) if regret_fixed else None,
            "decide_us_mean": round(elapsed / max(args.calls, 1) * 1e6, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    runs = [run_once(args, args.seed + k) for k in range(max(args.seeds, 1))]
    out: dict[str, Any] = {k: v for k, v in runs[0].items() if k != "seed"}
    out.update({"seed": args.seed, "products": args.products, "slots": 8,
                "history_per_cell": args.history, "threshold": args.threshold,
                "explore": not args.no_explore, "half_life_days": args.half_life_days})
    if len(runs) > 1:
        ratios = [r["regret_ratio"] for r in runs if r["regret_ratio"] is not None]
        out["per_seed"] = runs
        out["regret_ratio_mean"] = round(sum(ratios) / len(ratios), 4)
        out["regret_ratio_max"] = max(ratios)
    return out


def main(args: argparse.Namespace) -> int:
    result = run(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"regret {result['regret']} vs fixed mapping {result['regret_fixed']} "
              f"(ratio {result['regret_ratio']}) over {result['calls']} calls")
    return 0
