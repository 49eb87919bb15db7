"""Train the packaged AMD model on the evaluation set's ``tune`` split (deterministic).

``python -m earpiece.cpa.amd_train [--dir DIR] [--out earpiece/data/amd_model.json]``

1. Every human / machine item of the ``tune`` split runs through
   :class:`~earpiece.cpa.detector.CallProgressDetector` with ``amd="off"`` (no verdicts), and the
   greeting features are taken every 20 ms frame from the first speech to ``max_s`` (+ the
   human silence allowance), with the frames where a beep is sounding.
2. :func:`earpiece.cpa.amd_model.fit` fits the logistic model on those frames, each item
   weighing the same (1 = machine).
3. The operating point (``machine_p``, ``human_p``, ``min_silence_s``) is the grid point with the
   lowest median decision time among those whose simulated tune accuracy is at least
   ``--target`` (default 0.97: a margin over the 95 % acceptance for unseen voices); ties go to
   the lower p95. The simulation replays the detector's own order of rules on the recorded
   frames (beep, hard long greeting, model, out-of-time best guess).

Only the ``tune`` split is read. The held-out ``test`` split is for ``earpiece bench amd``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from earpiece.cpa.amd_model import FEATURES, AmdModel, fit
from earpiece.cpa.detector import CallProgressDetector, CpaOptions, resample_to_8k
from earpiece.cpa.tones import FRAME

log = logging.getLogger(__name__)

MACHINE_P = (0.8, 0.85, 0.9, 0.93, 0.95, 0.97)
HUMAN_P = (0.05, 0.1, 0.15, 0.2, 0.3)
MIN_SILENCE_S = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


@dataclass
class Trace:
    """One item's frames: time, features (NaN row before speech), beep flags."""

    label: str
    t: npt.NDArray[np.float64]
    x: npt.NDArray[np.float64]  # (frames, len(FEATURES)); NaN where no greeting yet
    beep: npt.NDArray[np.bool_]  # a beep has sounded for beep_min_s (or ended) by this frame
    pure: npt.NDArray[np.bool_]  # a pure tone is sounding (blocks a human verdict)


def trace(samples: npt.NDArray[np.int16], rate: int, label: str,
          options: CpaOptions | None = None) -> Trace:
    """Run the detector without verdicts over a post-answer recording, frame by frame."""
    base = options or CpaOptions()
    o = replace(base, amd="off", phase="post_answer")
    det = CallProgressDetector(o)
    x = resample_to_8k(np.asarray(samples, dtype=np.int16).ravel(), rate)
    end_s = o.max_s + o.human_silence_s
    ts: list[float] = []
    rows: list[npt.NDArray[np.float64]] = []
    beep: list[bool] = []
    pure: list[bool] = []
    nan = np.full(len(FEATURES), np.nan)
    for i in range(0, x.size - FRAME + 1, FRAME):
        det.feed(x[i:i + FRAME])
        if det.result is not None:  # a tone cadence decided: nothing more to learn
            break
        f = det.greeting_features()
        ts.append(det.t)
        rows.append(f if f is not None else nan)
        run = det._pure_run
        beep.append(bool(det._beeps) or (det._beep_sounding() and run[1] >= o.beep_min_s))
        pure.append(bool(run))
        if det.t >= end_s:
            break
    return Trace(label, np.asarray(ts), np.asarray(rows).reshape(-1, len(FEATURES)),
                 np.asarray(beep, dtype=bool), np.asarray(pure, dtype=bool))


def simulate(tr: Trace, model: AmdModel, p: npt.NDArray[np.float64],
             options: CpaOptions) -> tuple[str, float]:
    """(label, decision_s) that the detector in ``amd="model"`` mode gives on ``tr``."""
    o = options
    for k in range(tr.t.size):
        t = float(tr.t[k])
        if tr.beep[k]:
            return "machine", t
        row = tr.x[k]
        if np.isnan(row[0]):
            if t >= o.max_s:
                return "unknown", t
            continue
        if row[0] >= o.hard_long_greeting_s or (p[k] >= model.machine_p
                                                 and row[0] >= o.min_machine_span_s):
            return "machine", t
        if p[k] <= model.human_p and row[3] >= model.min_silence_s and not tr.pure[k]:
            return "human", t
        if t >= o.max_s + o.human_silence_s:
            return ("machine" if p[k] >= 0.5 else "human"), t
    if tr.t.size and not np.isnan(tr.x[-1, 0]):
        return ("human" if tr.x[-1, 0] < o.long_greeting_s else "machine"), float(tr.t[-1])
    return "unknown", float(tr.t[-1]) if tr.t.size else 0.0


def choose_operating_point(traces: Sequence[Trace], model: AmdModel, options: CpaOptions,
                           target: float) -> tuple[AmdModel, list[dict[str, float]]]:
    probs = [np.array([model.probability(r) if not np.isnan(r[0]) else np.nan for r in tr.x])
             for tr in traces]
    grid: list[dict[str, float]] = []
    for mp in MACHINE_P:
        for hp in HUMAN_P:
            for ms in MIN_SILENCE_S:
                m = replace(model, machine_p=mp, human_p=hp, min_silence_s=ms)
                out = [simulate(tr, m, p, options) for tr, p in zip(traces, probs, strict=True)]
                acc = float(np.mean([lab == tr.label for (lab, _), tr in
                                     zip(out, traces, strict=True)]))
                times = np.array([t for _, t in out])
                grid.append({"machine_p": mp, "human_p": hp, "min_silence_s": ms,
                             "accuracy": round(acc, 4),
                             "median_s": round(float(np.median(times)), 3),
                             "p95_s": round(float(np.percentile(times, 95)), 3)})
    ok = [g for g in grid if g["accuracy"] >= target] or \
        sorted(grid, key=lambda g: -g["accuracy"])[:1]
    best = min(ok, key=lambda g: (g["median_s"], g["p95_s"], -g["accuracy"]))
    chosen = replace(model, machine_p=best["machine_p"], human_p=best["human_p"],
                     min_silence_s=best["min_silence_s"])
    return chosen, grid


def train(root: Path, *, target: float = 0.97, options: CpaOptions | None = None,
          horizon_s: float = 2.5) -> tuple[AmdModel, list[dict[str, float]]]:
    from earpiece.cpa.evalset import load_manifest, read_wav

    o = options or CpaOptions()
    traces: list[Trace] = []
    for it in load_manifest(root):
        if it.split != "tune" or it.group != "amd" or it.label not in ("human", "machine"):
            continue
        x, rate, _ = read_wav(root / it.file)
        traces.append(trace(x, rate, it.label, o))
    xs, ys, ws = [], [], []
    for tr in traces:
        keep = ~np.isnan(tr.x[:, 0]) & (tr.t <= horizon_s)
        # only frames where the model may decide: a greeting long enough for "machine", or
        # silence long enough for "human" (onset frames would only bend the fit)
        keep &= (np.nan_to_num(tr.x[:, 0]) >= o.min_machine_span_s) \
            | (np.nan_to_num(tr.x[:, 3]) >= MIN_SILENCE_S[0])
        n = int(keep.sum())
        if n == 0:
            continue
        xs.append(tr.x[keep])
        ys.append(np.full(n, 1.0 if tr.label == "machine" else 0.0))
        ws.append(np.full(n, 1.0 / n))
    model = fit(np.vstack(xs), np.concatenate(ys), np.concatenate(ws))
    model, grid = choose_operating_point(traces, model, o, target)
    best = next(g for g in grid if g["machine_p"] == model.machine_p
                and g["human_p"] == model.human_p and g["min_silence_s"] == model.min_silence_s)
    meta = {"trained_on": "tune split of " + root.name, "items": len(traces),
            "horizon_s": horizon_s,
            "frames": int(sum(len(x) for x in xs)), "target_accuracy": target,
            "tune_simulated": best}
    return replace(model, meta=meta), grid


def main(argv: Sequence[str] | None = None) -> int:
    from earpiece.cpa.evalset import generate

    ap = argparse.ArgumentParser(prog="python -m earpiece.cpa.amd_train")
    ap.add_argument("--dir", default=None, help="evaluation-set directory (generated if missing)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "data" /
                                         "amd_model.json"))
    ap.add_argument("--target", type=float, default=0.97,
                    help="tune accuracy the operating point must reach")
    ap.add_argument("--horizon", type=float, default=2.5,
                    help="train on frames up to this many seconds after answer")
    ap.add_argument("--grid", action="store_true", help="print the operating-point grid")
    args = ap.parse_args(argv)
    root = generate(args.dir)
    model, grid = train(root, target=args.target, horizon_s=args.horizon)
    Path(args.out).write_text(model.to_json(), encoding="utf-8")
    if args.grid:
        for g in sorted(grid, key=lambda g: (-g["accuracy"], g["median_s"])):
            print(json.dumps(g), file=sys.stderr)
    print(json.dumps({"out": args.out, **model.meta}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
