"""``earpiece bench amd``: Earpiece's call-progress detector against an app_amd baseline.

Both run on the same generated audio (:mod:`earpiece.cpa.evalset`): items of group ``amd``
are analysed as the far end after answer, items of group ``tone`` as early media before
answer. "Not sure" (unknown) counts as wrong. The baseline follows app_amd's timing-only
algorithm with the default amd.conf, so it cannot name tones: its tone accuracy is what
timing alone gets (zero).

``--sweep`` measures Earpiece's accuracy/latency trade-off instead of one operating point: the
human/machine items run at a grid of ``(machine_p, human_p)`` points
(:func:`earpiece.bench.amd_sweep.sweep`), beside app_amd on the same items.
``--words-oracle`` feeds the detector a perfect recogniser's words
(:class:`~earpiece.cpa.amd_words_run.OracleGreetings`): the bound on what words can buy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from earpiece.bench.amd_score import (
    HUMAN_MACHINE,
    LIVE,
    ORACLE_DELAY_S,
    TONE_LABELS,
    _percentile,
    _set_info,
    by_truth,
    item_language,
    score,
)

if TYPE_CHECKING:
    from earpiece.cpa.detector import CpaResult
    from earpiece.cpa.evalset import Item


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dir", default=None,
                        help="evaluation-set directory (default ~/.cache/earpiece/evalset-amd-v3 "
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
    parser.add_argument("--labelled", default=None, metavar="DIR",
                        help="score your own recordings instead of the generated set: WAVs in "
                             "DIR/human/, DIR/machine/, DIR/fax/, DIR/silence/, DIR/ringback/, "
                             "DIR/busy/, DIR/congestion/, DIR/sit/, or listed in "
                             "DIR/labels.csv (file,label[,phase]); stereo = customer on "
                             "channel 0")
    parser.add_argument("--language", default="en",
                        help='with --labelled: the campaign language for the greeting words '
                             '("en", "zh", ... or "auto"; default en)')
    parser.add_argument("--machine-p", type=float, default=None)
    parser.add_argument("--human-p", type=float, default=None)


#: Operating point with words: None = the model's own (the "balanced" profile), as live.
WORDS_MACHINE_P: float | None = None
WORDS_HUMAN_P: float | None = None
WORDS_WAIT_S = 0.0


def evaluate(root: Path, split: str, *, tone_plan: str = "all", amd_conf: str | None = None,
             amd: str = "model", words: bool = False, asr_model: str = "auto",
             words_wait_s: float | None = None, machine_p: float | None = None,
             human_p: float | None = None,
             words_first_s: float = LIVE.words_first_s,
             words_step_s: float = LIVE.words_step_s,
             words_oracle: bool = False, oracle_delay_s: float = ORACLE_DELAY_S,
             ) -> tuple[dict[str, Any], list[tuple[Item, CpaResult]]]:
    from earpiece.cpa.amd_baseline import AmdConfig, baseline_result
    from earpiece.cpa.detector import CpaOptions, analyze_audio
    from earpiece.cpa.evalset import load_manifest, read_wav

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
    from earpiece.cpa.amd_words_run import (
        OracleGreetings,
        WhisperGreetings,
        WordsOptions,
        analyze_revised,
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
    late: list[CpaResult | None] = []
    base: list[CpaResult] = []
    t_ours = t_base = audio_s = 0.0
    for it in items:
        x, rate, _ = read_wav(root / it.file)
        audio_s += x.size / rate
        t0 = time.perf_counter()
        if it.group != "tone":  # from answer, watching after the verdict for a revision
            r, lt, log_ = analyze_revised(
                x, rate, greetings.for_item(it.file, item_language(it))
                if greetings is not None else None, options=post, words=words_options)
            ours.append(r)
            late.append(lt)
            snapshots.extend(log_)
        else:
            ours.append(analyze_audio(x, rate, options=pre))
            late.append(None)
        t1 = time.perf_counter()
        base.append(baseline_result(x, rate, cfg))
        t_base += time.perf_counter() - t1
        t_ours += t1 - t0
    report = {
        "earpiece": {**score(items, ours, late), "cpu_s": round(t_ours, 2), "amd": mode,
                     "words": {**_words_summary(snapshots, greetings), "machine_p": machine_p,
                               "human_p": human_p, "words_wait_s": words_wait_s,
                               "first_s": words_first_s, "step_s": words_step_s}
                     if words else None},
        "baseline": {**score(items, base), "cpu_s": round(t_base, 2),
                     "algorithm": "app_amd.c isAnsweringMachine, amd.conf defaults"
                     if amd_conf is None else f"app_amd.c isAnsweringMachine, {amd_conf}"},
        "set": {**_set_info(root, split, len(items)), "audio_s": round(audio_s, 1)},
    }
    _late_errors[:] = late
    return report, list(zip(items, ours, strict=True))


#: The revisions of the last evaluate() run, per item (for --errors).
_late_errors: list[CpaResult | None] = []


def _words_summary(snapshots: Sequence[dict[str, Any]], greetings: Any) -> dict[str, Any]:
    from earpiece.cpa.amd_words_run import OracleGreetings

    times = [float(s["decode_s"]) for s in snapshots]
    out = {"asr_model": greetings.model if greetings is not None else None,
           "snapshots": len(snapshots), "decoded_now": greetings.decodes if greetings else 0,
           "decode_median_s": _percentile(times, 50), "decode_p95_s": _percentile(times, 95)}
    if isinstance(greetings, OracleGreetings):
        return {"oracle": True, "delay_s": greetings.delay_s, **out,
                "snapshots_with_words": sum(1 for s in snapshots if s["text"])}
    return {"oracle": False, **out}


#: The headline: latency per class, as a dialer feels it (``by_truth``), then the rest.
HEADLINE = (("human recall (judged human)", "human", "recall"),
            ("  wait before human, median", "human", "correct_median_s"),
            ("  wait before human, p95", "human", "correct_p95_s"),
            ("  people revised to machine", "human", "revised_to_machine"),
            ("machine recall (released)", "machine", "recall"),
            ("  release, median", "machine", "correct_median_s"),
            ("  release, p95", "machine", "correct_p95_s"),
            ("  caught late (machine_late)", "machine", "caught_late"),
            ("  late: after first, median", "machine", "late_after_median_s"),
            ("  recall with late <= 3 s", "machine", "recall_revised"),
            ("  release with late, median", "machine", "release_median_s"),
            ("  release with late, p95", "machine", "release_p95_s"))


def _table(report: dict[str, Any], out: Callable[[str], None]) -> None:
    keys = ("accuracy_human_machine", "accuracy_human_machine_revised", "decision_median_s",
            "decision_p95_s", "tone_accuracy", "after_answer_tone_accuracy", "accuracy_all")
    out(f"{'per class (by_truth)':32} {'earpiece':>10} {'app_amd':>10}")
    for name, label, key in HEADLINE:
        cells = [report[side].get("by_truth", {}).get(label, {}).get(key)
                 for side in ("earpiece", "baseline")]
        out(f"{name:32} {cells[0]!s:>10} {cells[1]!s:>10}")
    out("")
    for k in keys:
        out(f"{k:32} {report['earpiece'].get(k)!s:>10} {report['baseline'].get(k)!s:>10}")
    for name in ("earpiece", "baseline"):
        out(f"\n{name} confusion (rows = truth):")
        conf = report[name]["confusion"]
        cols = sorted({c for row in conf.values() for c in row})
        out(f"{'':12}" + "".join(f"{c:>11}" for c in cols))
        for truth, row in sorted(conf.items()):
            out(f"{truth:12}" + "".join(f"{row.get(c, 0):>11}" for c in cols))


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
    if args.labelled is not None:
        given = [flag for flag, on in (("--dir", args.dir is not None),
                                       ("--seed", args.seed is not None),
                                       ("--regenerate", args.regenerate),
                                       ("--split", args.split != "test"),
                                       ("--sweep", args.sweep),
                                       ("--words-oracle", args.words_oracle),
                                       ("--amd rules", args.amd != "model"),
                                       ("--machine-p", args.machine_p is not None),
                                       ("--human-p", args.human_p is not None),
                                       ("--words-wait", args.words_wait is not None)) if on]
        if given:
            return f"--labelled scores your recordings at the service's settings: drop {given[0]}"
    elif args.language != "en":
        return "--language is for --labelled (the generated set knows its items' languages)"
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
    from earpiece.cpa.evalset import SEED, VERSION, default_dir, generate

    problem = _check_args(args)
    if problem:
        print(f"earpiece bench amd: {problem}", file=sys.stderr)
        return 2
    if args.labelled is not None:
        return _main_labelled(args)
    oracle_delay = ORACLE_DELAY_S if args.oracle_delay is None else args.oracle_delay
    seed = SEED if args.seed is None else args.seed
    where = args.dir
    if where is None and seed != SEED:
        where = default_dir().with_name(f"{VERSION}-seed{seed}")
    root = generate(where, seed=seed, force=args.regenerate)
    if args.sweep:
        from earpiece.bench.amd_sweep import _sweep_table, sweep

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
    _print_errors(args, pairs)
    return 0


def _main_labelled(args: argparse.Namespace) -> int:
    from earpiece.bench.amd_labelled import LabelledSetError, evaluate_labelled
    from earpiece.errors import ModelError

    transcribe = model = None
    if args.words:
        from earpiece.cpa.amd_words_run import whisper_transcribe
        from earpiece.cpa.words import words_model_for

        model = words_model_for(args.asr_model, "base", args.language)
        transcribe = whisper_transcribe(model, args.language)
    try:
        report, pairs = evaluate_labelled(args.labelled, tone_plan=args.tone_plan,
                                          amd_conf=args.amd_conf, transcribe=transcribe,
                                          words_model=model)
    except LabelledSetError as exc:
        print(f"earpiece bench amd: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:
        print(f"earpiece bench amd: greeting words: {exc} (--no-words scores timing alone)",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print(f"labelled recordings {report['set']['dir']} ({report['set']['items']} items: "
              + ", ".join(f"{k} {v}" for k, v in report["set"]["labels"].items())
              + (f"; {len(report['set']['skipped'])} unreadable, skipped"
                 if report["set"]["skipped"] else "") + ")")
        _table(report, print)
    sys.stdout.flush()
    for bad in report["set"]["skipped"]:
        print(f"earpiece bench amd: skipped {bad['file']}: {bad['error']}", file=sys.stderr)
    _print_errors(args, pairs)
    return 0


def _print_errors(args: argparse.Namespace, pairs: Sequence[tuple[Item, CpaResult]]) -> None:
    if args.errors:
        lates = _late_errors if len(_late_errors) == len(pairs) else [None] * len(pairs)
        for (it, r), lt in zip(pairs, lates, strict=True):
            if it.label != r.label or lt is not None:
                print(json.dumps({"file": it.file, "truth": it.label, "got": r.label,
                                  "decision_s": r.decision_s, "rule": r.evidence.get("rule"),
                                  "late": lt.label if lt else None,
                                  "late_after_s": lt.evidence.get("after_s") if lt else None,
                                  "source": it.source, "params": it.params},
                                 ensure_ascii=False), file=sys.stderr)


__all__ = [
    "HUMAN_MACHINE",
    "LIVE",
    "ORACLE_DELAY_S",
    "TONE_LABELS",
    "WORDS_HUMAN_P",
    "WORDS_MACHINE_P",
    "WORDS_WAIT_S",
    "by_truth",
    "configure",
    "evaluate",
    "item_language",
    "main",
    "score",
]
