"""The accuracy/latency trade-off curve of the AMD benchmark (``earpiece bench amd --sweep``).

Earpiece's human/machine items run at a grid of ``(machine_p, human_p)`` operating points
(:func:`sweep`), beside app_amd on the same items; :func:`summarise_sweep` picks the two points
that compare with the baseline. The CLI and the single-point evaluation live in
:mod:`earpiece.bench.amd`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from earpiece.bench.amd_score import (
    HUMAN_MACHINE,
    LIVE,
    ORACLE_DELAY_S,
    _set_info,
    item_language,
    score,
)

if TYPE_CHECKING:
    from earpiece.cpa.detector import CpaResult

#: ``--sweep`` grid: machine_p at the model's own human_p, and human_p at SWEEP_HUMAN_AT.
SWEEP_MACHINE_P = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
SWEEP_HUMAN_P = (0.05, 0.10, 0.15, 0.2)
SWEEP_HUMAN_AT = 0.9


def sweep_grid(default_human_p: float) -> list[tuple[float, float]]:
    """``(machine_p, human_p)`` points of ``--sweep``, in order, without repeats."""
    pts = [(m, default_human_p) for m in SWEEP_MACHINE_P]
    pts += [(SWEEP_HUMAN_AT, h) for h in SWEEP_HUMAN_P]
    out: list[tuple[float, float]] = []
    for m, h in pts:
        if not any(abs(m - a) < 1e-9 and abs(h - b) < 1e-9 for a, b in out):
            out.append((m, h))
    return out


def _curve_point(scored: dict[str, Any]) -> dict[str, Any]:
    per = scored["per_label"]
    return {"accuracy_human_machine": scored["accuracy_human_machine"],
            "decision_median_s": scored["decision_median_s"],
            "decision_p95_s": scored["decision_p95_s"],
            "human_accuracy": per.get("human"), "machine_accuracy": per.get("machine"),
            "items": scored["items"]}


def summarise_sweep(points: Sequence[dict[str, Any]], baseline: dict[str, Any]
                    ) -> dict[str, dict[str, Any] | None]:
    """The two comparisons of a sweep with the baseline (None where no point qualifies).

    * ``fastest_at_least_as_accurate_as_baseline``: lowest median among the points whose
      accuracy >= the baseline's (ties: higher accuracy, then lower p95);
    * ``most_accurate_at_least_as_fast_as_baseline``: highest accuracy among the points whose
      median <= the baseline's (ties: lower median, then lower p95).

    Each carries ``dominates_baseline``: strictly more accurate AND a strictly lower median.
    """
    acc0 = baseline["accuracy_human_machine"]
    med0 = baseline["decision_median_s"]
    inf = float("inf")

    def med(p: dict[str, Any]) -> float:
        v = p["decision_median_s"]
        return inf if v is None else float(v)

    def acc(p: dict[str, Any]) -> float:
        v = p["accuracy_human_machine"]
        return -inf if v is None else float(v)

    def p95(p: dict[str, Any]) -> float:
        v = p["decision_p95_s"]
        return inf if v is None else float(v)

    def pick(cands: list[dict[str, Any]], key: Callable[[dict[str, Any]], tuple[float, ...]]
             ) -> dict[str, Any] | None:
        if acc0 is None or med0 is None or not cands:
            return None
        best = min(cands, key=key)
        return {**best, "dominates_baseline": acc(best) > acc0 and med(best) < med0}

    as_accurate = [p for p in points if acc0 is not None and acc(p) >= acc0]
    as_fast = [p for p in points if med0 is not None and med(p) <= med0]
    return {
        "fastest_at_least_as_accurate_as_baseline":
            pick(as_accurate, lambda p: (med(p), -acc(p), p95(p))),
        "most_accurate_at_least_as_fast_as_baseline":
            pick(as_fast, lambda p: (-acc(p), med(p), p95(p))),
    }


def sweep(root: Path, split: str, *, tone_plan: str = "all", amd_conf: str | None = None,
          words_oracle: bool = False, oracle_delay_s: float = ORACLE_DELAY_S,
          words_first_s: float = LIVE.words_first_s,
          words_step_s: float = LIVE.words_step_s,
          grid: Sequence[tuple[float, float]] | None = None) -> dict[str, Any]:
    """Earpiece's accuracy/latency curve over ``grid`` against app_amd on the same items.

    Only the human/machine items depend on the operating point; they are read once and run at
    every point (with the perfect recogniser's words when ``words_oracle``). The other items of
    the split (tones, fax, silence) run once at the model's own point and are reported apart.
    """
    from earpiece.cpa.amd_baseline import AmdConfig, baseline_result
    from earpiece.cpa.amd_model import load_default
    from earpiece.cpa.amd_words_run import OracleGreetings, WordsOptions, analyze_with_words
    from earpiece.cpa.detector import CpaOptions, analyze_audio, resample_to_8k
    from earpiece.cpa.evalset import load_manifest, read_wav
    from earpiece.cpa.tones import RATE

    t_start = time.perf_counter()
    items = [it for it in load_manifest(root) if split == "all" or it.split == split]
    hm = [it for it in items if it.label in HUMAN_MACHINE]
    others = [it for it in items if it.label not in HUMAN_MACHINE]
    cfg = AmdConfig.from_file(amd_conf) if amd_conf else AmdConfig()
    model = load_default()
    default_point = (model.machine_p, model.human_p)
    points_in = list(grid) if grid is not None else sweep_grid(model.human_p)

    clips = []
    audio_s = 0.0
    for it in hm:
        x, rate, _ = read_wav(root / it.file)
        audio_s += x.size / rate
        clips.append(resample_to_8k(x, rate))
    words_options = WordsOptions(first_s=words_first_s, step_s=words_step_s,
                                 max_snapshots=LIVE.words_max_snapshots)
    oracle = (OracleGreetings(hm, delay_s=oracle_delay_s, lead_s=words_options.lead_s)
              if words_oracle else None)

    t0 = time.perf_counter()
    base = [baseline_result(x, RATE, cfg) for x in clips]
    t_base = time.perf_counter() - t0
    baseline = {**_curve_point(score(hm, base)), "cpu_s": round(t_base, 2),
                "algorithm": "app_amd.c isAnsweringMachine, amd.conf defaults"
                if amd_conf is None else f"app_amd.c isAnsweringMachine, {amd_conf}"}

    points: list[dict[str, Any]] = []
    for machine_p, human_p in points_in:
        post = CpaOptions(tone_plan=tone_plan, phase="post_answer", amd="model",
                          machine_p=machine_p, human_p=human_p,
                          words_weight=1.0 if oracle is not None else 0.0)
        t0 = time.perf_counter()
        ours = []
        snaps: list[dict[str, float | str]] = []
        for it, x in zip(hm, clips, strict=True):
            if oracle is not None:
                r, log_ = analyze_with_words(x, RATE,
                                             oracle.for_item(it.file, item_language(it)),
                                             options=post, words=words_options)
                snaps.extend(log_)
            else:
                r = analyze_audio(x, RATE, options=post)
            ours.append(r)
        took = time.perf_counter() - t0
        point = {"machine_p": machine_p, "human_p": human_p,
                 "min_silence_s": model.min_silence_s,
                 "default": abs(machine_p - default_point[0]) < 1e-9
                 and abs(human_p - default_point[1]) < 1e-9,
                 **_curve_point(score(hm, ours)), "cpu_s": round(took, 2)}
        if oracle is not None:
            point["snapshots"] = len(snaps)
            point["snapshots_with_words"] = sum(1 for t in snaps if t["text"])
            point["decided_by_words"] = sum(1 for r in ours if r.evidence.get("rule") in
                                            ("machine_words", "model+words"))
        points.append(point)

    # the rest once, as evaluate() runs them (the model's own point, no words)
    fixed: list[CpaResult] = []
    t0 = time.perf_counter()
    for it in others:
        x, rate, _ = read_wav(root / it.file)
        audio_s += x.size / rate
        phase: Literal["pre_answer", "post_answer"] = (
            "pre_answer" if it.group == "tone" else "post_answer")
        fixed.append(analyze_audio(x, rate, options=CpaOptions(tone_plan=tone_plan, phase=phase,
                                                                 amd="model")))
    rest = score(others, fixed)
    return {
        "points": points,
        "baseline": baseline,
        "summary": summarise_sweep(points, baseline),
        "others": {"items": rest["items"], "tone_accuracy": rest["tone_accuracy"],
                   "accuracy": rest["accuracy_all"], "per_label": rest["per_label"],
                   "cpu_s": round(time.perf_counter() - t0, 2),
                   "note": "tone, fax and silence items, once at the model's own point"},
        "words": {"oracle": True, "delay_s": oracle_delay_s, "first_s": words_first_s,
                  "step_s": words_step_s, "lead_s": words_options.lead_s,
                  "items_without_text": sum(1 for it in hm if oracle.text_of(it) is None)}
        if oracle is not None else None,
        "set": {**_set_info(root, split, len(items)), "human_machine_items": len(hm),
                "audio_s": round(audio_s, 1),
                "model": {"machine_p": model.machine_p, "human_p": model.human_p,
                          "min_silence_s": model.min_silence_s},
                "wall_s": round(time.perf_counter() - t_start, 2)},
    }


def _sweep_table(report: dict[str, Any], out: Callable[[str], None]) -> None:
    def f(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    out(f"{'machine_p':>9} {'human_p':>7} {'accuracy':>8} {'median_s':>8} {'p95_s':>6} "
        f"{'human':>6} {'machine':>7}")
    for p in report["points"]:
        out(f"{p['machine_p']:>9.2f} {p['human_p']:>7.2f} "
            f"{f(p['accuracy_human_machine'], '.4f'):>8} {f(p['decision_median_s'], '.3f'):>8} "
            f"{f(p['decision_p95_s'], '.3f'):>6} {f(p['human_accuracy'], '.3f'):>6} "
            f"{f(p['machine_accuracy'], '.3f'):>7}" + ("  (model's own point)"
                                                        if p["default"] else ""))
    b = report["baseline"]
    out(f"{'app_amd':>17} {f(b['accuracy_human_machine'], '.4f'):>8} "
        f"{f(b['decision_median_s'], '.3f'):>8} {f(b['decision_p95_s'], '.3f'):>6} "
        f"{f(b['human_accuracy'], '.3f'):>6} {f(b['machine_accuracy'], '.3f'):>7}")
    for name, p in report["summary"].items():
        if p is None:
            out(f"{name}: none")
        else:
            out(f"{name}: machine_p {p['machine_p']:.2f} human_p {p['human_p']:.2f} "
                f"({p['accuracy_human_machine']}, {p['decision_median_s']} s), "
                f"dominates_baseline={p['dominates_baseline']}")
    o = report["others"]
    out(f"other items (once at the model's point): {o['items']}, tone accuracy "
        f"{o['tone_accuracy']}, all {o['accuracy']}")
