"""``earpiece bench amd``: Earpiece's call-progress detector against an app_amd baseline.

Both run on the same generated audio (:mod:`earpiece.media.evalset`): items of group ``amd``
are analysed as the far end after answer, items of group ``tone`` as early media before
answer. "Not sure" (unknown) counts as wrong. The baseline follows app_amd's timing-only
algorithm with the default amd.conf, so it cannot name tones: its tone accuracy is what
timing alone gets (zero).

``--sweep`` measures Earpiece's accuracy/latency trade-off instead of one operating point: the
human/machine items run at a grid of ``(machine_p, human_p)`` points (:func:`sweep`), beside
app_amd on the same items. ``--words-oracle`` feeds the detector a perfect recogniser's words
(:class:`~earpiece.media.amd_words_run.OracleGreetings`): the bound on what words can buy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from earpiece.media.settings import CpaSettings

if TYPE_CHECKING:
    from earpiece.media.cpa import CpaResult
    from earpiece.media.evalset import Item

#: The live greeting-words schedule (``[cpa] words_*`` defaults): what ``--words`` measures.
LIVE = CpaSettings()

TONE_LABELS = ("ringback", "busy", "congestion", "sit", "fax")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", default=None,
                        help="evaluation-set directory (default ~/.cache/earpiece/evalset-amd-v2 "
                             "or $EARPIECE_EVALSET_DIR); generated when missing")
    parser.add_argument("--split", choices=("test", "tune", "all"), default="test",
                        help="held-out items (test, default), tuning items, or all")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the set first")
    parser.add_argument("--seed", type=int, default=None,
                        help="draw the set with another seed (a fresh draw of the same "
                             "material, kept in its own directory beside the default one)")
    parser.add_argument("--tone-plan", default="all", help="tone plans (us,cn,uk,eu or all)")
    parser.add_argument("--amd-conf", default=None, help="amd.conf for the baseline")
    parser.add_argument("--errors", action="store_true", help="list Earpiece's misses")
    parser.add_argument("--amd", choices=("model", "rules"), default="model",
                        help="Earpiece's human/machine stage: learned model (default) or the "
                             "fixed timing rules")
    parser.add_argument("--words", action=argparse.BooleanOptionalAction, default=None,
                        help="the first recognised words on the live schedule, as the "
                             "service runs by default ([cpa] words_*: Whisper decodes the "
                             "greeting 0.7 s after its first speech, then every 0.3 s while "
                             "undecided, at most 3 times); the decode's measured time is part "
                             "of the decision time; transcripts are cached in the set's "
                             "directory. Default on (off with --sweep/--words-oracle); "
                             "--no-words: timing alone")
    parser.add_argument("--asr-model", default="auto",
                        help="Whisper model for --words: auto (tiny.en for English items, "
                             "base for Mandarin, as [cpa] words_model = auto), base, tiny.en "
                             "or a CTranslate2 directory")
    parser.add_argument("--words-wait", type=float, default=None,
                        help="with --words: hold the timing model's machine verdict up to "
                             "this long after the first speech for the words")
    parser.add_argument("--words-first", type=float, default=LIVE.words_first_s,
                        help="with --words: first decode this long after the first speech")
    parser.add_argument("--words-step", type=float, default=LIVE.words_step_s,
                        help="with --words: later decodes this often while undecided")
    parser.add_argument("--words-oracle", action="store_true",
                        help="like --words, but with a perfect recogniser: each snapshot gets "
                             "the item's known words said so far (placed evenly by "
                             "characters over the greeting), --oracle-delay late")
    parser.add_argument("--oracle-delay", type=float, default=None,
                        help=f"with --words-oracle: decode delay in seconds "
                             f"(default {ORACLE_DELAY_S})")
    parser.add_argument("--sweep", action="store_true",
                        help="accuracy/latency curve: Earpiece's human/machine items at a grid "
                             "of operating points (machine_p x the model's human_p, human_p "
                             "at machine_p 0.9) beside app_amd on the same items")
    parser.add_argument("--machine-p", type=float, default=None)
    parser.add_argument("--human-p", type=float, default=None)


def _percentile(xs: Sequence[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(np.asarray(xs), q)), 3) if xs else None


def score(items: Sequence[Item], results: Sequence[CpaResult]) -> dict[str, Any]:
    """Accuracy, latency and confusion of ``results`` against the items' labels."""
    confusion: dict[str, dict[str, int]] = {}
    hm_ok = hm_n = tone_ok = tone_n = ok = 0
    times: list[float] = []
    per_label: dict[str, list[int]] = {}
    for it, r in zip(items, results, strict=True):
        row = confusion.setdefault(it.label, {})
        row[r.label] = row.get(r.label, 0) + 1
        hit = int(r.label == it.label)
        ok += hit
        per_label.setdefault(it.label, [0, 0])
        per_label[it.label][0] += hit
        per_label[it.label][1] += 1
        if it.label in ("human", "machine"):
            hm_n += 1
            hm_ok += hit
            times.append(r.decision_s)
        elif it.label in TONE_LABELS:
            tone_n += 1
            tone_ok += hit
    return {
        "items": len(items),
        "accuracy_human_machine": round(hm_ok / hm_n, 4) if hm_n else None,
        "decision_median_s": _percentile(times, 50),
        "decision_p95_s": _percentile(times, 95),
        "tone_accuracy": round(tone_ok / tone_n, 4) if tone_n else None,
        "accuracy_all": round(ok / len(items), 4) if items else None,
        "per_label": {k: round(v[0] / v[1], 4) for k, v in sorted(per_label.items())},
        "confusion": confusion,
    }


def item_language(it: Item) -> str:
    """Whisper language of an evaluation item (a campaign's language is known in advance)."""
    voice = str(it.params.get("voice", ""))
    text = str(it.params.get("text", ""))
    if voice.startswith("cmn") or any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return "zh"
    return "en"


#: Operating point with words: None = the model's own (the "balanced" profile), as live.
WORDS_MACHINE_P: float | None = None
WORDS_HUMAN_P: float | None = None
WORDS_WAIT_S = 0.0
#: Decode delay of the perfect recogniser (``--words-oracle``).
ORACLE_DELAY_S = 0.15
#: ``--sweep`` grid: machine_p at the model's own human_p, and human_p at SWEEP_HUMAN_AT.
SWEEP_MACHINE_P = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
SWEEP_HUMAN_P = (0.05, 0.10, 0.15, 0.2)
SWEEP_HUMAN_AT = 0.9
HUMAN_MACHINE = ("human", "machine")


def evaluate(root: Path, split: str, *, tone_plan: str = "all", amd_conf: str | None = None,
             amd: str = "model", words: bool = False, asr_model: str = "auto",
             words_wait_s: float | None = None, machine_p: float | None = None,
             human_p: float | None = None,
             words_first_s: float = LIVE.words_first_s,
             words_step_s: float = LIVE.words_step_s,
             words_oracle: bool = False, oracle_delay_s: float = ORACLE_DELAY_S,
             ) -> tuple[dict[str, Any], list[tuple[Item, CpaResult]]]:
    from earpiece.media.amd_baseline import AmdConfig, baseline_result
    from earpiece.media.cpa import CpaOptions, analyze_audio
    from earpiece.media.evalset import load_manifest, read_wav

    items = [it for it in load_manifest(root) if split == "all" or it.split == split]
    cfg = AmdConfig.from_file(amd_conf) if amd_conf else AmdConfig()
    mode: Literal["model", "rules"] = "rules" if amd == "rules" else "model"
    words = words or words_oracle
    if words:
        machine_p = WORDS_MACHINE_P if machine_p is None else machine_p
        human_p = WORDS_HUMAN_P if human_p is None else human_p
        words_wait_s = WORDS_WAIT_S if words_wait_s is None else words_wait_s
    post = CpaOptions(tone_plan=tone_plan, phase="post_answer", amd=mode, machine_p=machine_p,
                      human_p=human_p, words_wait_s=(words_wait_s or 0.0) if words else 0.0,
                      words_weight=1.0 if words else 0.0)
    pre = CpaOptions(tone_plan=tone_plan, phase="pre_answer", amd=mode)
    from earpiece.media.amd_words_run import (
        OracleGreetings,
        WhisperGreetings,
        WordsOptions,
        analyze_with_words,
    )

    words_options = WordsOptions(first_s=words_first_s, step_s=words_step_s,
                                 max_snapshots=LIVE.words_max_snapshots)
    greetings: WhisperGreetings | OracleGreetings | None = None
    if words_oracle:
        greetings = OracleGreetings(items, delay_s=oracle_delay_s, lead_s=words_options.lead_s)
    elif words:
        greetings = WhisperGreetings(root / f"words-cache-{asr_model.replace('/', '_')}.jsonl",
                                     model=asr_model)
    snapshots: list[dict[str, Any]] = []
    ours: list[CpaResult] = []
    base: list[CpaResult] = []
    t_ours = t_base = audio_s = 0.0
    for it in items:
        x, rate, _ = read_wav(root / it.file)
        audio_s += x.size / rate
        t0 = time.perf_counter()
        if greetings is not None and it.group == "amd":
            r, log_ = analyze_with_words(x, rate, greetings.for_item(it.file, item_language(it)),
                                         options=post, words=words_options)
            ours.append(r)
            snapshots.extend(log_)
        else:
            ours.append(analyze_audio(x, rate, options=pre if it.group == "tone" else post))
        t1 = time.perf_counter()
        base.append(baseline_result(x, rate, cfg))
        t_base += time.perf_counter() - t1
        t_ours += t1 - t0
    report = {
        "earpiece": {**score(items, ours), "cpu_s": round(t_ours, 2), "amd": mode,
                     "words": {**_words_summary(snapshots, greetings), "machine_p": machine_p,
                               "human_p": human_p, "words_wait_s": words_wait_s,
                               "first_s": words_first_s, "step_s": words_step_s}
                     if words else None},
        "baseline": {**score(items, base), "cpu_s": round(t_base, 2),
                     "algorithm": "app_amd.c isAnsweringMachine, amd.conf defaults"
                     if amd_conf is None else f"app_amd.c isAnsweringMachine, {amd_conf}"},
        "set": {**_set_info(root, split, len(items)), "audio_s": round(audio_s, 1)},
    }
    return report, list(zip(items, ours, strict=True))


def _set_info(root: Path, split: str, items: int) -> dict[str, Any]:
    return {"dir": str(root), "split": split, "items": items,
            "version": (root / "VERSION").read_text(encoding="utf-8").strip()
            if (root / "VERSION").exists() else None}


def _words_summary(snapshots: Sequence[dict[str, Any]], greetings: Any) -> dict[str, Any]:
    from earpiece.media.amd_words_run import OracleGreetings

    times = [float(s["decode_s"]) for s in snapshots]
    out = {"asr_model": greetings.model if greetings is not None else None,
           "snapshots": len(snapshots), "decoded_now": greetings.decodes if greetings else 0,
           "decode_median_s": _percentile(times, 50), "decode_p95_s": _percentile(times, 95)}
    if isinstance(greetings, OracleGreetings):
        return {"oracle": True, "delay_s": greetings.delay_s, **out,
                "snapshots_with_words": sum(1 for s in snapshots if s["text"])}
    return {"oracle": False, **out}


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
    from earpiece.media.amd_baseline import AmdConfig, baseline_result
    from earpiece.media.amd_model import load_default
    from earpiece.media.amd_words_run import OracleGreetings, WordsOptions, analyze_with_words
    from earpiece.media.cpa import CpaOptions, analyze_audio, resample_to_8k
    from earpiece.media.evalset import load_manifest, read_wav
    from earpiece.media.tones import RATE

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


def _table(report: dict[str, Any], out: Callable[[str], None]) -> None:
    keys = ("accuracy_human_machine", "decision_median_s", "decision_p95_s", "tone_accuracy",
            "accuracy_all")
    out(f"{'metric':28} {'earpiece':>10} {'app_amd':>10}")
    for k in keys:
        out(f"{k:28} {report['earpiece'][k]!s:>10} {report['baseline'][k]!s:>10}")
    for name in ("earpiece", "baseline"):
        out(f"\n{name} confusion (rows = truth):")
        conf = report[name]["confusion"]
        cols = sorted({c for row in conf.values() for c in row})
        out(f"{'':12}" + "".join(f"{c:>11}" for c in cols))
        for truth, row in sorted(conf.items()):
            out(f"{truth:12}" + "".join(f"{row.get(c, 0):>11}" for c in cols))


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


def _check_args(args: argparse.Namespace) -> str | None:
    """Why the option combination makes no sense, or None."""
    if args.words is None:  # the service's default, where it makes sense
        args.words = not (args.sweep or args.words_oracle or args.amd == "rules")
    if args.words and args.words_oracle:
        return "--words and --words-oracle exclude each other"
    if args.oracle_delay is not None and not args.words_oracle:
        return "--oracle-delay needs --words-oracle"
    if args.oracle_delay is not None and args.oracle_delay < 0:
        return "--oracle-delay must be >= 0"
    if args.sweep:
        if args.machine_p is not None or args.human_p is not None:
            return "--sweep chooses machine_p/human_p itself: drop --machine-p/--human-p"
        if args.words:
            return "--sweep runs without Whisper words (use --words-oracle for perfect words)"
        if args.amd != "model":
            return "--sweep varies the learned model's operating point: --amd model only"
        if args.errors:
            return "--errors lists one operating point's misses: not with --sweep"
    return None


def main(args: argparse.Namespace) -> int:
    from earpiece.media.evalset import SEED, VERSION, default_dir, generate

    problem = _check_args(args)
    if problem:
        print(f"earpiece bench amd: {problem}", file=sys.stderr)
        return 2
    oracle_delay = ORACLE_DELAY_S if args.oracle_delay is None else args.oracle_delay
    seed = SEED if args.seed is None else args.seed
    where = args.dir
    if where is None and seed != SEED:
        where = default_dir().with_name(f"{VERSION}-seed{seed}")
    root = generate(where, seed=seed, force=args.regenerate)
    if args.sweep:
        curve = sweep(root, args.split, tone_plan=args.tone_plan, amd_conf=args.amd_conf,
                      words_oracle=args.words_oracle, oracle_delay_s=oracle_delay,
                      words_first_s=args.words_first, words_step_s=args.words_step)
        if args.json:
            print(json.dumps(curve, ensure_ascii=False))
        else:
            print(f"evaluation set {root} ({args.split}: "
                  f"{curve['set']['human_machine_items']} human/machine items"
                  + (f", perfect words {oracle_delay} s late" if args.words_oracle else "")
                  + ")")
            _sweep_table(curve, print)
        return 0
    report, pairs = evaluate(root, args.split, tone_plan=args.tone_plan, amd_conf=args.amd_conf,
                             amd=args.amd, words=args.words, asr_model=args.asr_model,
                             words_wait_s=args.words_wait, machine_p=args.machine_p,
                             human_p=args.human_p, words_first_s=args.words_first,
                             words_step_s=args.words_step, words_oracle=args.words_oracle,
                             oracle_delay_s=oracle_delay)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"evaluation set {root} ({args.split}: {report['set']['items']} items)")
        _table(report, print)
    if args.errors:
        for it, r in pairs:
            if it.label != r.label:
                print(json.dumps({"file": it.file, "truth": it.label, "got": r.label,
                                  "decision_s": r.decision_s, "rule": r.evidence.get("rule"),
                                  "source": it.source, "params": it.params},
                                 ensure_ascii=False), file=sys.stderr)
    return 0
