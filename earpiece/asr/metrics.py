"""Text normalisation and error rates for judging speech recognition (WER, CER).

Normalisation follows the usual Whisper-evaluation habits, kept small: lower case, ASCII
apostrophes, punctuation removed, digits spelled out ("press 1" == "press one"), hyphenated
words split, a few spelling variants folded. Chinese is compared character by character with
punctuation and spaces removed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_ORDINAL_SUFFIX = re.compile(r"^(\d+)(st|nd|rd|th)$")
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth",
             "eight": "eighth", "nine": "ninth", "twelve": "twelfth"}
_VARIANTS = {
    "ok": "okay", "o.k.": "okay", "mr": "mister", "mrs": "missus", "dr": "doctor",
    "voicemail": "voice mail", "email": "e mail", "e-mail": "e mail", "hangup": "hang up",
    "login": "log in", "logon": "log on", "logoff": "log off", "percent": "percent",
    "%": "percent", "#": "pound", "*": "star", "&": "and", "+": "plus", "@": "at",
    "umute": "unmute",  # a typo in the Asterisk prompt list
}
_CONTRACTIONS = (
    (re.compile(r"\bwon't\b"), "will not"), (re.compile(r"\bcan't\b"), "can not"),
    (re.compile(r"\bcannot\b"), "can not"), (re.compile(r"n't\b"), " not"),
    (re.compile(r"'re\b"), " are"), (re.compile(r"\bi'm\b"), "i am"),
    (re.compile(r"'ve\b"), " have"), (re.compile(r"'ll\b"), " will"),
    (re.compile(r"\blet's\b"), "let us"),
)
_PUNCT = re.compile(r"[^\w\s']")
_CJK_PUNCT = re.compile(r"[\s\W_]+", re.UNICODE)


def number_to_words(n: int) -> str:
    """English words for 0 <= n < 10**12 ("twenty one", "one thousand two hundred")."""
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, rest = divmod(n, 10)
        return _TENS[tens] + ("" if rest == 0 else " " + _ONES[rest])
    for unit, name in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"),
                       (100, "hundred")):
        if n >= unit:
            head, rest = divmod(n, unit)
            words = number_to_words(head) + " " + name
            return words if rest == 0 else words + " " + number_to_words(rest)
    raise AssertionError("unreachable")


def _spell_token(tok: str) -> str:
    m = _ORDINAL_SUFFIX.match(tok)
    if m:
        words = number_to_words(int(m.group(1))).split()
        last = words[-1]
        words[-1] = _ORDINALS.get(last, (last[:-1] + "ieth") if last.endswith("y") else last + "th")
        return " ".join(words)
    if tok.isdigit() and len(tok) <= 12:
        # Phone-style digit strings (leading zero, or long) are read digit by digit.
        if (len(tok) > 1 and tok[0] == "0") or len(tok) > 4:
            return " ".join(_ONES[int(c)] for c in tok)
        return number_to_words(int(tok))
    return tok


def normalize_en(text: str) -> list[str]:
    """Words of ``text`` after case, punctuation, number and spelling normalisation."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'").replace("‘", "'")
    text = re.sub(r"\[[^\]]*\]", " ", text)  # [ascending tones], [noise] ...
    text = re.sub(r"\b((?:[a-z]\.){2,})", lambda m: m.group(1).replace(".", ""), text)  # p.m.
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)  # 1,000 -> 1000
    text = re.sub(r"(\d)\.(\d)", r"\1 point \2", text)
    for sym in ("%", "#", "*", "&", "+", "@"):
        text = text.replace(sym, f" {_VARIANTS[sym]} ")
    text = text.replace("-", " ")
    for pattern, repl in _CONTRACTIONS:
        text = pattern.sub(repl, text)
    text = _PUNCT.sub(" ", text)
    text = re.sub(r"(?<=\d)(?=[a-z])(?!(st|nd|rd|th)\b)|(?<=[a-z])(?=\d)", " ", text)
    words: list[str] = []
    for tok in text.split():
        tok = tok.strip("'")
        if not tok:
            continue
        tok = _VARIANTS.get(tok, tok)
        words.extend(_spell_token(tok).split())
    return words


def normalize_zh(text: str) -> list[str]:
    """Characters of ``text`` with punctuation and spaces removed (Latin words kept whole)."""
    text = unicodedata.normalize("NFKC", text).lower()
    out: list[str] = []
    for chunk in _CJK_PUNCT.split(text):
        for piece in re.findall(r"[a-z0-9]+|.", chunk):
            out.append(piece)
    return out


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences."""
    if not ref:
        return len(hyp)
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


@dataclass
class ErrorRate:
    """Accumulates edit errors over reference tokens (corpus-level WER or CER)."""

    errors: int = 0
    ref_tokens: int = 0
    utterances: int = 0

    def add(self, ref: Sequence[str], hyp: Sequence[str]) -> int:
        e = edit_distance(ref, hyp)
        self.errors += e
        self.ref_tokens += len(ref)
        self.utterances += 1
        return e

    @property
    def rate(self) -> float:
        return self.errors / self.ref_tokens if self.ref_tokens else 0.0


def is_simplified_chinese(text: str) -> bool:
    """True when ``text`` has CJK ideographs and none of a list of common traditional forms."""
    from earpiece.asr.zh import TRADITIONAL_TO_SIMPLIFIED

    han = [c for c in text if "\u4e00" <= c <= "\u9fff"]
    return bool(han) and not any(c in TRADITIONAL_TO_SIMPLIFIED for c in han)
