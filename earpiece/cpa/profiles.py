"""Named operating points of the learned answering-machine detector (``[cpa] amd_profile``).

The timing model (:mod:`earpiece.cpa.amd_model`) gives P(machine) for the greeting heard so
far; an operating point says how confident it must be before a verdict: "machine" at
``p >= machine_p``, "human" at ``p <= human_p`` once ``min_silence_s`` of silence follows the
greeting. Higher ``machine_p`` / lower ``human_p`` wait for more evidence: more accurate, later.

The three profiles are rows of the trade-off table in ``docs/benchmarks/amd.md`` ("Operating
points on the tune split"), all chosen and measured on the evaluation set's **tune** split
(the split the model was trained on; held-out figures are lower, see that document):

========== ============================== ============== ===============
profile    machine_p / human_p / silence  tune accuracy  median decision
========== ============================== ============== ===============
fast       0.80 / 0.15 / 0.25 s           90.4 %         1.55 s
balanced   0.90 / 0.10 / 0.25 s           97.1 %         1.77 s
accurate   0.93 / 0.10 / 0.25 s           98.8 %         1.90 s
========== ============================== ============== ===============

"balanced" is the shipped point: it equals the defaults stored in the packaged model file
(``earpiece/data/amd_model.json``); a test keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AmdProfile:
    """An operating point of the timing model (probabilities in (0, 1), time in seconds)."""

    machine_p: float
    human_p: float
    min_silence_s: float


AMD_PROFILES: dict[str, AmdProfile] = {
    "fast": AmdProfile(machine_p=0.80, human_p=0.15, min_silence_s=0.25),
    "balanced": AmdProfile(machine_p=0.90, human_p=0.10, min_silence_s=0.25),
    "accurate": AmdProfile(machine_p=0.93, human_p=0.10, min_silence_s=0.25),
}

DEFAULT_PROFILE = "balanced"
