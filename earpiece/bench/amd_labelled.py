"""``earpiece bench amd --labelled DIR``: Earpiece and app_amd on your own labelled recordings.

The generated set (:mod:`earpiece.cpa.evalset`) is synthetic apart from Asterisk's prompts;
the number that matters for a campaign is the one on its own calls. Put recordings of the far
end in a directory, labelled one of two ways:

* sub-directories named after the label: ``DIR/human/*.wav``, ``DIR/machine/*.wav``,
  ``DIR/fax/``, ``DIR/silence/``, ``DIR/ringback/``, ``DIR/busy/``, ``DIR/congestion/``,
  ``DIR/sit/`` (searched recursively; other names are an error, names starting with ``.``
  are skipped), or
* ``DIR/labels.csv`` with a header ``file,label`` and optionally ``phase`` (``post_answer``
  or ``pre_answer``); ``file`` is relative to ``DIR``. When it exists it is the whole list.

Each WAV is 16-bit PCM, mono (the far end) or stereo (channel 0 = customer, as ``earpiece
analyze`` reads it). Ringback, busy, congestion and SIT recordings are analysed as early media
(before answer), everything else as the far end from the moment of answer: a recording that
starts before answer gives later decision times than the service would. Both detectors see
the same samples; the report has the shape of the generated set's (``earpiece``,
``baseline``, ``set``). A file that cannot be read is listed in ``set.skipped`` with the
reason and left out of both sides.
"""

from __future__ import annotations

import csv
import time
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from earpiece.errors import EarpieceError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from earpiece.cpa.detector import CpaResult
    from earpiece.cpa.evalset import Item

#: Labels a recording may carry (the ``earpiece analyze`` label set, less ``unknown``).
LABELS = ("human", "machine", "fax", "silence", "ringback", "busy", "congestion", "sit")
#: Labels heard before answer: their recordings are analysed as early media.
PRE_ANSWER = frozenset({"ringback", "busy", "congestion", "sit"})
PHASES = ("post_answer", "pre_answer")

#: ``(audio_8k, start, end) -> (text, decode seconds)``: the greeting recogniser.
Transcribe = Callable[["npt.NDArray[np.int16]", int, int], tuple[str, float]]


class LabelledSetError(EarpieceError):
    """The labelled directory or its ``labels.csv`` cannot be used; the message says where."""


@dataclass(frozen=True)
class LabelledFile:
    """One recording: ``path`` (relative to the set's directory), its label and phase."""

    path: str
    label: str
    phase: str  # post_answer or pre_answer


def _phase_for(label: str) -> str:
    return "pre_answer" if label in PRE_ANSWER else "post_answer"


def discover(root: str | Path) -> list[LabelledFile]:
    """The labelled recordings under ``root`` (``labels.csv`` if present, else sub-folders)."""
    base = Path(root)
    if not base.is_dir():
        raise LabelledSetError(f"{base}: not a directory")
    listing = base / "labels.csv"
    files = _from_csv(base, listing) if listing.exists() else _from_folders(base)
    if not files:
        raise LabelledSetError(
            f"{base}: no labelled WAV files; put them in sub-directories named "
            f"{', '.join(LABELS)} or list them in labels.csv (file,label[,phase])")
    return files


def _from_folders(base: Path) -> list[LabelledFile]:
    out: list[LabelledFile] = []
    for sub in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = sub.name.lower()
        if label not in LABELS:
            raise LabelledSetError(
                f"{sub}: directory name {sub.name!r} is not a label (one of {', '.join(LABELS)})")
        for wav in sorted(sub.rglob("*")):
            if wav.is_file() and wav.suffix.lower() == ".wav":
                out.append(LabelledFile(wav.relative_to(base).as_posix(), label,
                                        _phase_for(label)))
    return out


def _from_csv(base: Path, listing: Path) -> list[LabelledFile]:
    try:
        return _read_csv(base, listing)
    except UnicodeDecodeError as exc:
        raise LabelledSetError(f"{listing}: not UTF-8 text ({exc.reason} at byte "
                               f"{exc.start})") from exc
    except csv.Error as exc:
        raise LabelledSetError(f"{listing}: not a CSV file: {exc}") from exc


def _read_csv(base: Path, listing: Path) -> list[LabelledFile]:
    out: list[LabelledFile] = []
    with open(listing, newline="", encoding="utf-8-sig") as fh:  # Excel writes a BOM
        reader = csv.DictReader(fh)
        header = [h.strip() for h in reader.fieldnames or []]
        if "file" not in header or "label" not in header:
            raise LabelledSetError(f"{listing}: line 1: the header must name 'file' and "
                                   f"'label' (and optionally 'phase'), got {header}")
        for row in reader:
            line = reader.line_num
            clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()
                     if isinstance(v, str)}
            name, label = clean.get("file", ""), clean.get("label", "").lower()
            if not name and not label:
                continue
            if label not in LABELS:
                raise LabelledSetError(f"{listing}: line {line}: label {label!r} is not one of "
                                       f"{', '.join(LABELS)}")
            phase = clean.get("phase", "") or _phase_for(label)
            if phase not in PHASES:
                raise LabelledSetError(f"{listing}: line {line}: phase {phase!r} is not one of "
                                       f"{', '.join(PHASES)}")
            if not name or not (base / name).is_file():
                raise LabelledSetError(f"{listing}: line {line}: file {name!r} not found "
                                       f"under {base}")
            out.append(LabelledFile(name, label, phase))
    return out


def evaluate_labelled(root: str | Path, *, tone_plan: str = "all",
                      amd_conf: str | None = None,
                      transcribe: Transcribe | None = None,
                      words_model: str | None = None,
                      ) -> tuple[dict[str, Any], list[tuple[Item, CpaResult]]]:
    """Run both detectors over the labelled recordings; (report, [(item, Earpiece's result)]).

    ``transcribe`` turns on the greeting words for post-answer recordings (the service's
    default); ``None`` decides from timing alone.
    """
    from earpiece.asr.audio import load
    from earpiece.bench.amd_score import score
    from earpiece.cpa.amd_baseline import AmdConfig, baseline_result
    from earpiece.cpa.amd_words_run import analyze_with_words
    from earpiece.cpa.detector import CpaOptions, analyze_audio
    from earpiece.cpa.evalset import Item

    base = Path(root)
    files = discover(base)
    cfg = AmdConfig.from_file(amd_conf) if amd_conf else AmdConfig()
    options = {"post_answer": CpaOptions(tone_plan=tone_plan, phase="post_answer"),
               "pre_answer": CpaOptions(tone_plan=tone_plan, phase="pre_answer")}
    items: list[Item] = []
    ours: list[CpaResult] = []
    theirs: list[CpaResult] = []
    skipped: list[dict[str, str]] = []
    snapshots = 0
    t_ours = t_base = audio_s = 0.0
    for f in files:
        try:
            audio = load(str(base / f.path))
        except (OSError, ValueError, EOFError, wave.Error) as exc:
            skipped.append({"file": f.path, "error": str(exc) or type(exc).__name__})
            continue
        if audio.rate <= 0 or audio.customer.size == 0:
            skipped.append({"file": f.path, "error": "no audio"})
            continue
        audio_s += audio.duration_s
        t0 = time.perf_counter()
        if transcribe is not None and f.phase == "post_answer":
            r, log_ = analyze_with_words(audio.customer, audio.rate, transcribe,
                                         options=options[f.phase])
            snapshots += len(log_)
        else:
            r = analyze_audio(audio.customer, audio.rate, options=options[f.phase])
        t1 = time.perf_counter()
        theirs.append(baseline_result(audio.customer, audio.rate, cfg))
        t_base += time.perf_counter() - t1
        t_ours += t1 - t0
        ours.append(r)
        items.append(Item(f.path, f.label, "tone" if f.phase == "pre_answer" else "amd",
                          "labelled", "user"))
    if not items:
        raise LabelledSetError(f"{base}: none of the {len(files)} labelled files could be read "
                               f"(first: {skipped[0]['file']}: {skipped[0]['error']})")
    report = {
        "earpiece": {**score(items, ours), "cpu_s": round(t_ours, 2), "amd": "model",
                     "words": {"asr_model": words_model, "snapshots": snapshots}
                     if transcribe is not None else None},
        "baseline": {**score(items, theirs), "cpu_s": round(t_base, 2),
                     "algorithm": "app_amd.c isAnsweringMachine, "
                                  + (amd_conf if amd_conf else "amd.conf defaults")},
        "set": {"dir": str(base), "labelled": True, "items": len(items),
                "labels": _counts(items), "skipped": skipped, "audio_s": round(audio_s, 1)},
    }
    return report, list(zip(items, ours, strict=True))


def _counts(items: Sequence[Item]) -> dict[str, int]:
    out: dict[str, int] = {}
    for it in items:
        out[it.label] = out.get(it.label, 0) + 1
    return dict(sorted(out.items()))

