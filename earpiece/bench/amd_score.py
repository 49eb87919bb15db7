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
#: A late revision within this long of the first verdict counts as right (issue #18).
LATE_OK_S = 3.0


def _percentile(xs: Sequence[float], q: float) -> float | None:
    import numpy as np

    return round(float(np.percentile(np.asarray(xs), q)), 3) if xs else None


def score(items: Sequence[Item], results: Sequence[CpaResult],
          late: Sequence[CpaResult | None] | None = None) -> dict[str, Any]:
    """Accuracy, latency and confusion of ``results`` against the items' labels.

    ``late`` (optional, per item): the detector's revision of the verdict
    (:attr:`~earpiece.cpa.detector.CallProgressDetector.late`) or None.
    ``tone_accuracy`` counts tones as early media and fax (as since v1);
    ``after_answer_tone_accuracy`` the "answered, then tone" items (group ``answer_tone``).
    """
    confusion: dict[str, dict[str, int]] = {}
    hm_ok = hm_n = tone_ok = tone_n = ok = at_ok = at_n = 0
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
        elif it.group == "answer_tone":
            at_n += 1
            at_ok += hit
        elif it.label in TONE_LABELS:
            tone_n += 1
            tone_ok += hit
    return {
        "items": len(items),
        "accuracy_human_machine": round(hm_ok / hm_n, 4) if hm_n else None,
        "decision_median_s": _percentile(times, 50),
        "decision_p95_s": _percentile(times, 95),
        "tone_accuracy": round(tone_ok / tone_n, 4) if tone_n else None,
        "after_answer_tone_accuracy": round(at_ok / at_n, 4) if at_n else None,
        "accuracy_all": round(ok / len(items), 4) if items else None,
        "per_label": {k: round(v[0] / v[1], 4) for k, v in sorted(per_label.items())},
        "confusion": confusion,
        "by_truth": by_truth(items, results, late),
        **_revised(items, results, late),
    }


def _final(it: Item, r: CpaResult, lt: CpaResult | None) -> str:
    """The verdict that counts with revisions: a revision within LATE_OK_S replaces it."""
    if lt is None or float(lt.evidence.get("after_s", 1e9)) > LATE_OK_S:
        return r.label
    return "machine" if lt.label == "machine_late" else lt.label


def _revised(items: Sequence[Item], results: Sequence[CpaResult],
             late: Sequence[CpaResult | None] | None) -> dict[str, Any]:
    """Accuracies counting revisions within LATE_OK_S of the first verdict as the verdict."""
    if late is None:
        return {}
    hm = at = hm_ok = at_ok = 0
    for it, r, lt in zip(items, results, late, strict=True):
        hit = int(_final(it, r, lt) == it.label)
        if it.label in HUMAN_MACHINE:
            hm, hm_ok = hm + 1, hm_ok + hit
        elif it.group == "answer_tone":
            at, at_ok = at + 1, at_ok + hit
    return {"accuracy_human_machine_revised": round(hm_ok / hm, 4) if hm else None,
            "after_answer_tone_accuracy_revised": round(at_ok / at, 4) if at else None,
            "revisions": sum(1 for lt in late if lt is not None)}


def by_truth(items: Sequence[Item], results: Sequence[CpaResult],
             late: Sequence[CpaResult | None] | None = None) -> dict[str, Any]:
    """Latency per true class, as a dialer feels it.

    ``human``: how long a live person waits in dead air before being judged human (handed to
    an agent): ``correct_median_s``/``correct_p95_s`` over the people judged human, and
    ``recall``, the share judged human at all (the rest are hung up on or sent the voicemail
    treatment). ``machine``: how soon a recorded greeting is released, over the machines
    judged machine. ``decision_median_s`` is over all of the class's items, right or wrong.

    With ``late`` (the revisions): ``human.revised_to_machine`` counts people wrongly revised;
    ``machine.caught_late`` the machines first judged human and revised to ``machine_late``
    (``late_after_median_s``/``late_after_max_s``: how long after the first verdict), and
    ``recall_revised``/``release_median_s``/``release_p95_s`` count those caught within
    LATE_OK_S as released at the revision.
    """
    lates: Sequence[CpaResult | None] = late if late is not None else [None] * len(items)
    out: dict[str, Any] = {}
    for label in ("human", "machine"):
        pairs = [(it, r, lt) for it, r, lt in zip(items, results, lates, strict=True)
                 if it.label == label]
        if not pairs:
            continue
        right = [r.decision_s for it, r, _ in pairs if r.label == label]
        row: dict[str, Any] = {
            "items": len(pairs), "recall": round(len(right) / len(pairs), 4),
            "decision_median_s": _percentile([r.decision_s for _, r, _ in pairs], 50),
            "correct_median_s": _percentile(right, 50), "correct_p95_s": _percentile(right, 95)}
        if late is not None:
            revised = [(r, lt) for _, r, lt in pairs
                       if r.label == "human" and lt is not None and lt.label == "machine_late"]
            if label == "human":
                row["revised_to_machine"] = len(revised)
            else:
                after = [float(lt.evidence.get("after_s", 0.0)) for _, lt in revised]
                ok = [lt.decision_s for _, lt in revised
                      if float(lt.evidence.get("after_s", 1e9)) <= LATE_OK_S]
                row.update(caught_late=len(revised), late_after_median_s=_percentile(after, 50),
                           late_after_max_s=round(max(after), 3) if after else None,
                           recall_revised=round((len(right) + len(ok)) / len(pairs), 4),
                           release_median_s=_percentile(right + ok, 50),
                           release_p95_s=_percentile(right + ok, 95))
        out[label] = row
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
