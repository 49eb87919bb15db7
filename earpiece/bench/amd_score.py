"""Scoring of the AMD benchmark, shared by ``earpiece bench amd`` (:mod:`earpiece.bench.amd`),
its ``--sweep`` (:mod:`earpiece.bench.amd_sweep`) and ``--labelled`` runs
(:mod:`earpiece.bench.amd_labelled`): accuracy, latency and confusion of verdicts against
labels, latency per true class, an item's language, and the constants the three share.
:mod:`earpiece.bench.amd` re-exports every name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earpiece.cpa.settings import CpaSettings

if TYPE_CHECKING:
    from earpiece.cpa.detector import CpaResult
    from earpiece.cpa.evalset import Item

#: The live greeting-words schedule (``[cpa] words_*`` defaults): what ``--words`` measures.
LIVE = CpaSettings()

TONE_LABELS = ("ringback", "busy", "congestion", "sit", "fax")

#: Decode delay of the perfect recogniser (``--words-oracle``).
ORACLE_DELAY_S = 0.15
HUMAN_MACHINE = ("human", "machine")


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
        "by_truth": by_truth(items, results),
    }


def by_truth(items: Sequence[Item], results: Sequence[CpaResult]) -> dict[str, Any]:
    """Latency per true class, as a dialer feels it.

    ``human``: how long a live person waits in dead air before being judged human (handed to
    an agent): ``correct_median_s``/``correct_p95_s`` over the people judged human, and
    ``recall``, the share judged human at all (the rest are hung up on or sent the voicemail
    treatment). ``machine``: how soon a recorded greeting is released, over the machines
    judged machine. ``decision_median_s`` is over all of the class's items, right or wrong.
    """
    out: dict[str, Any] = {}
    for label in ("human", "machine"):
        pairs = [(it, r) for it, r in zip(items, results, strict=True) if it.label == label]
        if not pairs:
            continue
        right = [r.decision_s for it, r in pairs if r.label == label]
        out[label] = {"items": len(pairs), "recall": round(len(right) / len(pairs), 4),
                      "decision_median_s": _percentile([r.decision_s for _, r in pairs], 50),
                      "correct_median_s": _percentile(right, 50),
                      "correct_p95_s": _percentile(right, 95)}
    return out


def item_language(it: Item) -> str:
    """Whisper language of an evaluation item (a campaign's language is known in advance)."""
    voice = str(it.params.get("voice", ""))
    text = str(it.params.get("text", ""))
    if voice.startswith("cmn") or any("\u4e00" <= ch <= "\u9fff" for ch in text):
        return "zh"
    return "en"


def _set_info(root: Path, split: str, items: int) -> dict[str, Any]:
    return {"dir": str(root), "split": split, "items": items,
            "version": (root / "VERSION").read_text(encoding="utf-8").strip()
            if (root / "VERSION").exists() else None}
