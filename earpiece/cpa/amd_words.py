"""Lexical evidence for answering-machine detection: the first recognised words of a greeting.

:func:`word_evidence` turns a (partial) transcript of the first second or two after answer into
a log-odds shift towards "machine" (positive) or "human" (negative), from weighted phrases:

* machine: recorded-greeting and carrier wording ("you've reached", "not available", "leave a
  message", "after the tone", "mailbox", "can't take your call", "您拨打的", "留言", "请在"...),
  including the spellings Whisper produces for them on G.711 audio ("you reach", "not
  avail", "leave your");
* human: live-answer wording: a name followed by "speaking", "who is this", "who's calling",
  "this is she", "哪位", "请讲", or a bare "hello?"/"yes?"/"喂" (one or two words, nothing
  else: what a person says before waiting).

The result is added to the timing model's logit by :class:`~earpiece.cpa.detector.
CallProgressDetector` (``CpaOptions.words_weight``). Pure computation, no I/O; the phrase
weights are fixed by hand from the wording above (not fitted to any evaluation split).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: (phrase, weight): lower-case substrings of the normalised text; positive = machine.
MACHINE_CUES: tuple[tuple[str, float], ...] = (
    ("leave a message", 5.0), ("leave your message", 5.0), ("leave me a message", 5.0),
    ("leave your name", 5.0), ("leave a", 2.5), ("leave your", 3.0), ("message", 2.0),
    ("not available", 5.0), ("unavailable", 5.0), ("not avail", 4.0), ("available", 2.0),
    ("you've reached", 5.0), ("you have reached", 5.0), ("you reached", 4.0),
    ("you reach", 4.0), ("reached", 3.0),
    ("after the tone", 5.0), ("after the beep", 5.0), ("at the tone", 4.0),
    ("voicemail", 5.0), ("voice mail", 5.0), ("mailbox", 5.0),
    ("can't take your call", 5.0), ("cannot take your call", 5.0), ("take your call", 4.0),
    ("can't come to the phone", 5.0), ("come to the phone", 4.0),
    ("the person you are calling", 5.0), ("person you are calling", 4.0),
    ("you are calling", 3.0), ("the number you have dialed", 5.0), ("you have dialed", 4.0),
    ("thank you for calling", 4.0), ("thanks for calling", 4.0), ("our office", 3.0),
    ("business hours", 4.0), ("is closed", 3.0), ("currently", 2.0),
    ("not here", 3.0), ("missed you", 3.0), ("get back to you", 4.0), ("call you back", 4.0),
    ("please try again", 4.0), ("try again later", 4.0), ("all circuits", 4.0),
    ("is busy", 2.0), ("at the moment", 2.0), ("right now", 2.0), ("the person at", 4.0),
    ("extension", 3.0), ("please leave", 4.0), ("for calling", 4.0), ("the number you", 3.0),
    ("nobody", 3.0), ("leave my", 3.0), ("reach", 3.0),
    ("您拨打的", 5.0), ("拨打", 4.0), ("留言", 5.0), ("不在服务区", 5.0), ("请在", 4.0),
    ("提示音", 5.0), ("无法接通", 5.0), ("暂时无法", 4.0), ("稍后再拨", 5.0), ("稍后", 3.0),
    ("通话中", 4.0), ("欢迎致电", 5.0), ("欢迎", 3.0), ("非工作时间", 5.0), ("不方便接听", 5.0),
    ("接听", 3.0), ("用户", 3.0), ("您好，我", 1.0),
)
HUMAN_CUES: tuple[tuple[str, float], ...] = (
    ("speaking", -4.0), ("who is this", -4.0), ("who's this", -4.0), ("who is it", -4.0),
    ("who's calling", -4.0), ("who is calling", -4.0), ("this is she", -4.0),
    ("this is he", -3.0), ("residence", -3.0), ("who's that", -3.0), ("can i help", -2.0),
    ("哪位", -4.0), ("请讲", -4.0), ("是我", -3.0), ("喂", -1.0),
)
#: A whole transcript of one or two of these words is a person waiting for an answer.
BARE_GREETINGS = frozenset({
    "hello", "hi", "hey", "yes", "yeah", "yep", "hallo", "hullo", "speaking", "good",
    "morning", "afternoon", "evening", "ok", "okay", "yo", "喂", "你好", "您好", "嗯",
})
BARE_WEIGHT = -1.5  # a partial may be the first word of a recording: weak
#: Texts Whisper produces from noise or from its own Mandarin prompt: no evidence.
_NOISE = re.compile(r"(普通话的句子|谢谢观看|字幕|subtitles|thank you for watching)")
_WORD = re.compile(r"[a-z']+|[\u4e00-\u9fff]")
_MAX_LOG_ODDS = 8.0


@dataclass(frozen=True)
class WordEvidence:
    """Log-odds towards machine (positive) or human (negative) and the cues that gave it."""

    log_odds: float
    cues: tuple[str, ...]
    text: str

    @property
    def strong_machine(self) -> bool:
        return self.log_odds >= 4.0

    @property
    def strong_human(self) -> bool:
        return self.log_odds <= -3.0


def normalise(text: str) -> str:
    """Lower-case, unify apostrophes and spacing, drop characters that carry no words."""
    t = text.lower().replace("’", "'").replace("`", "'")
    t = re.sub(r"[^a-z0-9'\u4e00-\u9fff，。？！,.?! ]+", " ", t)
    return re.sub(r"\s+", " ", t).strip()


def word_evidence(text: str) -> WordEvidence:
    """The lexical evidence in ``text`` (see module docstring). Empty text gives 0."""
    norm = normalise(text)
    if not norm or _NOISE.search(norm):
        return WordEvidence(0.0, (), norm)
    cues: list[str] = []
    machine = 0.0
    covered: list[str] = []
    for phrase, w in MACHINE_CUES:  # longest-first within a family: skip sub-phrases
        if phrase in norm and not any(phrase in c for c in covered):
            covered.append(phrase)
            cues.append(phrase)
            machine += w
    human = 0.0
    for phrase, w in HUMAN_CUES:
        if phrase in norm:
            cues.append(phrase)
            human += w
    words = _WORD.findall(norm)
    if (0 < len(words) <= 2 and all(w in BARE_GREETINGS for w in words)) \
            or norm in ("你好", "您好"):
        cues.append("bare_greeting")
        human += BARE_WEIGHT
    score = max(-_MAX_LOG_ODDS, min(_MAX_LOG_ODDS, machine + human))
    return WordEvidence(round(score, 3), tuple(cues), norm)
