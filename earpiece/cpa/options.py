"""Options and verdicts of call-progress analysis: :class:`CpaOptions` (the detector's
tunables), :class:`CpaResult` (a verdict), the label set and the wording that marks a machine
or an intercept. Pure data; :mod:`earpiece.cpa.detector` re-exports every name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from earpiece.cpa.tones import plans_for

LABELS = ("human", "machine", "fax", "silence", "ringback", "busy", "congestion", "sit",
          "unknown", "machine_late")
TONE_LABELS = frozenset({"ringback", "busy", "congestion", "sit", "fax"})

#: Wording that marks a recorded greeting / carrier announcement (lower-case substrings).
MACHINE_PHRASES = (
    "leave a message", "leave your message", "leave me a message", "not available",
    "unavailable", "after the tone", "after the beep", "can't take your call",
    "cannot take your call", "can't come to the phone", "voicemail", "voice mail",
    "mailbox", "您拨打的", "留言", "无法接通", "不在服务区", "暂时无法", "请在",
)
#: Intercept wording in early media (before answer) -> sit.
INTERCEPT_PHRASES = (
    "not in service", "has been disconnected", "cannot be completed", "no longer in service",
    "check the number", "您拨打的", "空号", "已停机", "不存在",
)

#: Intercept wording that ends a call after answer (not shared with voicemail wording).
intercept_after_answer = tuple(p for p in INTERCEPT_PHRASES if p not in MACHINE_PHRASES)


def phrase_in(text: str, phrases: tuple[str, ...]) -> str | None:
    norm = re.sub(r"\s+", " ", text.replace("’", "'"))
    for p in phrases:
        if p in norm:
            return p
    return None


@dataclass(frozen=True)
class CpaOptions:
    """Tunables of :class:`CallProgressDetector` (times in seconds)."""

    tone_plan: str = "all"  # comma-separated country codes: us, cn, uk, eu, or all
    phase: Literal["pre_answer", "post_answer"] = "post_answer"  # phase at construction
    long_greeting_s: float = 1.2
    human_silence_s: float = 0.5
    short_greeting_s: float = 0.7
    human_silence_short_s: float = 0.35
    utterance_gap_s: float = 0.45
    word_gap_s: float = 0.1
    min_utterance_s: float = 0.08
    max_human_bursts: int = 3
    # longer than one T.30 CNG cycle (0.5 s on, 3 s off, +-15 %) after a late answer, so a
    # calling fax whose first burst comes late is not taken for dead air
    silence_timeout_s: float = 4.5
    max_s: float = 4.0
    tone_max_s: float = 12.0
    vad_margin_db: float = 5.0
    vad_min_dbfs: float = -50.0
    beep_min_s: float = 0.16
    beep_max_s: float = 2.5
    pure_fraction: float = 0.8
    # "model": learned scorer + early rules; "rules": fixed timing rules only; "off": no
    # human/machine verdicts (tones, beeps-as-evidence and greeting features only)
    amd: Literal["model", "rules", "off"] = "model"
    model_path: str | None = None  # a model JSON instead of the packaged one
    machine_p: float | None = None  # operating point; None = the model file's
    human_p: float | None = None
    min_silence_s: float | None = None
    hard_long_greeting_s: float = 3.0
    # no "machine" from the model on less greeting than this: at a greeting's onset the
    # linear model extrapolates (it saw too few frames there to be trusted)
    min_machine_span_s: float = 0.6
    # recognised words (add_transcript): their log-odds (earpiece.cpa.amd_words) times this
    # weight are added to the timing model's logit; 0 ignores them (beyond machine phrases)
    words_weight: float = 1.0
    # > 0: words are expected (ASR runs beside the detector): the timing model's "machine" is
    # held until a transcript has arrived or this long after the first speech
    words_wait_s: float = 0.0
    # after the first verdict: tones (SIT first) may revise any verdict, and a beep, a
    # monologue running this long past a "human" verdict, or machine wording -> machine_late;
    # the watch lasts revise_s (or until the agent spoke and the customer answered); 0 = off
    revise_s: float = 4.0
    late_monologue_s: float = 2.5  # longer than a live greeting said twice

    def __post_init__(self) -> None:
        plans_for(self.tone_plan)  # validates the names
        if self.human_silence_s <= 0 or self.long_greeting_s <= 0:
            raise ValueError("cpa times must be positive")
        if self.max_s < self.human_silence_s:
            raise ValueError("cpa max_s must exceed human_silence_s")
        if self.amd not in ("model", "rules", "off"):
            raise ValueError(f"cpa amd must be model, rules or off, not {self.amd!r}")
        for p in (self.machine_p, self.human_p):
            if p is not None and not 0.0 <= p <= 1.0:
                raise ValueError("cpa machine_p/human_p must lie in [0, 1]")


@dataclass(frozen=True)
class CpaResult:
    """A call-progress verdict. ``decision_s`` counts from answer (or stream start before it)."""

    label: str
    confidence: float
    decision_s: float
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": round(self.confidence, 3),
                "decision_s": round(self.decision_s, 3), "evidence": self.evidence}
