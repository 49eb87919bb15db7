"""Text normalisation with an offset map, and the phrase / pattern matcher of QC (evaluation 2).

:func:`normalise` folds a transcript for matching: NFKC (full-width -> half-width, compatibility
forms), case folding, traditional -> simplified Chinese (OpenCC's ``t2s`` dictionaries, through
``opencc-python-reimplemented``, Apache-2.0), punctuation and white space as one space, and no
space at all next to a CJK character (so ``保证，收益`` and ``保 证 收 益`` read ``保证收益``).
Every character of the result remembers the index of the original character it came from, so a
match in the folded text maps back to exact offsets in the ORIGINAL text, whatever the widths,
variants or punctuation there.

The folding is character-local (each original character folds the same way wherever it stands;
only the spaces depend on their neighbours), which is what makes a span exact: folding the
original text of a phrase's span gives the folded phrase again (a Hypothesis property in
``tests/test_qc_text.py``). The cost is that OpenCC's phrase-level conversions are not used,
which matters for matching only when a phrase and a transcript are written in different
scripts and one of those rare phrases; both sides are folded alike either way.

:class:`PhraseMatcher` finds many phrases at once with an Aho-Corasick automaton (pyahocorasick);
a phrase that starts or ends with a letter or digit matches whole words only (``risk free`` in
``risk-free``, not in ``asterisk freebie``); CJK text matches anywhere. Regular expressions run on
the folded text too (lower case, half-width, simplified, punctuation as single spaces, ``%``
kept).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import ahocorasick
import opencc

#: Punctuation that stays (rate patterns need it): everything else of category P is a space.
KEEP = frozenset("%")

_T2S = opencc.OpenCC("t2s")


def is_cjk(ch: str) -> bool:
    """A Chinese / Japanese character: written without spaces between words."""
    o = ord(ch)
    return (0x3040 <= o <= 0x30FF or 0x3100 <= o <= 0x312F or 0x3400 <= o <= 0x4DBF
            or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x3FFFF)


def _wordy(ch: str) -> bool:
    """Part of a space-separated word (a letter, digit or mark that is not CJK)."""
    return (ch.isalnum() or unicodedata.category(ch)[0] == "M") and not is_cjk(ch)


@functools.lru_cache(maxsize=65536)
def fold_char(ch: str) -> str:
    """One original character folded: ``""`` (dropped), ``" "`` (a separator) or text."""
    out: list[str] = []
    for d in unicodedata.normalize("NFKC", ch).casefold():
        cat = unicodedata.category(d)
        if d.isspace() or (cat[0] in "PZ" and d not in KEEP):
            out.append(" ")
        elif cat[0] == "C":  # control, format (zero-width...), unassigned
            continue
        elif is_cjk(d):
            out.append(_T2S.convert(d))
        else:
            out.append(d)
    return "".join(out)


@dataclass(frozen=True)
class Normalised:
    """Folded text; ``source[i]``: index in the original text of the character that folded
    into ``text[i]``."""

    text: str
    source: tuple[int, ...]

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``[start, end)`` covering folded ``[start, end)`` (``end > start``)."""
        return self.source[start], self.source[end - 1] + 1

    def aligned(self, start: int, end: int) -> bool:
        """Whether folded ``[start, end)`` holds whole original characters' foldings."""
        src = self.source
        return ((start == 0 or src[start - 1] != src[start])
                and (end == len(src) or src[end] != src[end - 1]))


def normalise(text: str) -> Normalised:
    """``text`` folded for matching, with the offset map (see the module doc)."""
    chars: list[str] = []
    source: list[int] = []
    pending = -1  # original index of a separator run not yet written
    for i, ch in enumerate(text):
        for d in fold_char(ch):
            if d == " ":
                if pending < 0:
                    pending = i
                continue
            if pending >= 0 and chars and not (is_cjk(chars[-1]) or is_cjk(d)):
                chars.append(" ")
                source.append(pending)
            pending = -1
            chars.append(d)
            source.append(i)
    return Normalised("".join(chars), tuple(source))


def fold(text: str) -> str:
    """Only the folded text of :func:`normalise`."""
    return normalise(text).text


@dataclass(frozen=True)
class Phrase:
    """A phrase to find; ``kind`` and ``language`` are carried to the hits."""

    text: str
    kind: str = "forbidden"
    language: str = ""


@dataclass(frozen=True)
class Pattern:
    """A regular expression run on folded text (``name`` names it in flags)."""

    name: str
    regex: re.Pattern[str]
    kind: str = "pattern"
    language: str = ""


@dataclass(frozen=True)
class Hit:
    """One match: ``span`` is ``[start, end)`` in the ORIGINAL text; ``rule`` the phrase as
    written in the rules, or the pattern's name."""

    kind: str
    rule: str
    language: str
    span: tuple[int, int]
    matched: str  # the original text of the span


class PhraseMatcher:
    """Phrases (Aho-Corasick) and patterns (regular expressions) on folded text."""

    def __init__(self, phrases: Sequence[Phrase] = (), patterns: Sequence[Pattern] = ()) -> None:
        self.patterns = tuple(patterns)
        by_key: dict[str, list[Phrase]] = {}
        for phrase in phrases:
            key = fold(phrase.text)
            if key:
                by_key.setdefault(key, []).append(phrase)
        self.phrases = tuple(p for ps in by_key.values() for p in ps)
        self._automaton: ahocorasick.Automaton | None = None
        if by_key:
            automaton = ahocorasick.Automaton()
            for key, group in by_key.items():
                automaton.add_word(key, (key, tuple(group)))
            automaton.make_automaton()
            self._automaton = automaton

    def find(self, text: str) -> list[Hit]:
        """Every phrase and pattern hit in ``text``, ordered by span."""
        norm = normalise(text)
        hits = list(self._phrase_hits(text, norm)) + list(self._pattern_hits(text, norm))
        hits.sort(key=lambda h: (h.span, h.kind, h.rule))
        return hits

    def _phrase_hits(self, text: str, norm: Normalised) -> Iterator[Hit]:
        if self._automaton is None or not norm.text:
            return
        folded = norm.text
        for last, (key, group) in self._automaton.iter(folded):
            start, end = last - len(key) + 1, last + 1
            if not norm.aligned(start, end):
                continue
            if _wordy(key[0]) and start > 0 and _wordy(folded[start - 1]):
                continue
            if _wordy(key[-1]) and end < len(folded) and _wordy(folded[end]):
                continue
            s, e = norm.span(start, end)
            for phrase in group:
                yield Hit(phrase.kind, phrase.text, phrase.language, (s, e), text[s:e])

    def _pattern_hits(self, text: str, norm: Normalised) -> Iterator[Hit]:
        folded = norm.text
        for pattern in self.patterns:
            for m in pattern.regex.finditer(folded):
                start, end = m.span()
                while start < end and folded[start] == " ":
                    start += 1
                while end > start and folded[end - 1] == " ":
                    end -= 1
                if start == end:
                    continue
                s, e = norm.span(start, end)
                yield Hit(pattern.kind, pattern.name, pattern.language, (s, e), text[s:e])
