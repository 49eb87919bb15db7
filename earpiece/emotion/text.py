"""Text emotion of one utterance, English and Mandarin: positive / neutral / negative.

A linear model (scikit-learn logistic regression) over character n-grams (TF-IDF; word
boundaries respected in English, plain characters in Mandarin) and the lexicon evidence of
:mod:`earpiece.emotion.lexicon` (VADER / jieba lexicon scores, call-centre phrase hits,
question and negation cues). It is trained from the labelled set shipped in
``earpiece/emotion/data/text_<lang>.tsv`` when first used (well under a second) and keeps the
SHA-256 of the lines it was trained on in :attr:`TextModel.meta`; the held-out files
``heldout_<lang>.tsv`` are never used here (only ``earpiece bench emotion`` reads them).
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from earpiece.emotion.lexicon import LEXICON_FEATURES, lexicon_features

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
LANGUAGES: tuple[str, ...] = ("en", "zh")
TEXT_MODEL_VERSION = 1
#: Scale of the lexicon columns next to the unit-norm TF-IDF row (chosen on a dev split of
#: the training set, never on the held-out file).
LEX_WEIGHT = 1.0


@dataclass(frozen=True)
class Labelled:
    label: str
    text: str
    group: str = ""


@dataclass(frozen=True)
class TextScore:
    label: str
    valence: float  # P(positive) - P(negative), in [-1, 1]
    confidence: float  # probability of the label
    probs: dict[str, float] = field(default_factory=dict)


def data_path(name: str) -> Path:
    return Path(str(resources.files("earpiece.emotion") / "data" / name))


def read_labelled(path: str | Path) -> list[Labelled]:
    """``label<TAB>text`` or ``label<TAB>group<TAB>text`` lines; ``#`` starts a comment line."""
    out: list[Labelled] = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) == 2:
            label, text, group = parts[0], parts[1], ""
        elif len(parts) == 3:
            label, group, text = parts
        else:
            raise ValueError(f"{path}:{n}: expected label<TAB>text")
        if label not in LABELS:
            raise ValueError(f"{path}:{n}: unknown label {label!r} (known: {', '.join(LABELS)})")
        out.append(Labelled(label, text.strip(), group))
    return out


def data_hash(rows: Iterable[Labelled]) -> str:
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r.label}\t{r.text}\n".encode())
    return h.hexdigest()


class TextModel:
    """Char n-gram TF-IDF + lexicon evidence -> logistic regression, for one language."""

    def __init__(self, language: str, *, negative_phrases: Sequence[str] = (),
                 positive_phrases: Sequence[str] = (), c: float = 1.0) -> None:
        if language not in LANGUAGES:
            raise ValueError(f"unsupported language {language!r} (known: {', '.join(LANGUAGES)})")
        self.language = language
        self.negative_phrases = tuple(negative_phrases)
        self.positive_phrases = tuple(positive_phrases)
        self.c = c
        self.meta: dict[str, Any] = {}
        self._vec: Any = None
        self._clf: Any = None
        self._lock = threading.Lock()

    def _lex(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        return lexicon_features(texts, self.language, negative_phrases=self.negative_phrases,
                                positive_phrases=self.positive_phrases)

    def fit(self, rows: Sequence[Labelled]) -> TextModel:
        from scipy.sparse import csr_matrix, hstack
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        texts = [r.text for r in rows]
        if self.language == "en":
            vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), lowercase=True,
                                  sublinear_tf=True, min_df=1)
        else:
            vec = TfidfVectorizer(analyzer="char", ngram_range=(1, 3), sublinear_tf=True,
                                  min_df=1)
        x = hstack([vec.fit_transform(texts), csr_matrix(self._lex(texts) * LEX_WEIGHT)]).tocsr()
        clf = LogisticRegression(C=self.c, max_iter=2000, class_weight="balanced")
        clf.fit(x, [r.label for r in rows])
        self._vec, self._clf = vec, clf
        self.meta = {
            "kind": "text", "version": TEXT_MODEL_VERSION, "language": self.language,
            "classes": list(clf.classes_), "lines": len(rows), "data_sha256": data_hash(rows),
            "features": ["char_ngrams", *LEXICON_FEATURES[self.language]],
        }
        return self

    def predict(self, texts: Sequence[str]) -> list[TextScore]:
        from scipy.sparse import csr_matrix, hstack

        if self._clf is None:
            raise RuntimeError("TextModel is not trained")
        if not texts:
            return []
        with self._lock:  # sklearn transformers are not documented thread-safe
            x = hstack([self._vec.transform(texts),
                        csr_matrix(self._lex(texts) * LEX_WEIGHT)]).tocsr()
            probs = self._clf.predict_proba(x)
        classes = list(self._clf.classes_)
        out = []
        for p in probs:
            d = {c: float(v) for c, v in zip(classes, p, strict=True)}
            label = max(d, key=lambda k: d[k])
            out.append(TextScore(label, d.get("positive", 0.0) - d.get("negative", 0.0),
                                 d[label], d))
        return out

    def score(self, text: str) -> TextScore:
        if not text.strip():
            return TextScore("neutral", 0.0, 0.0, {})
        return self.predict([text])[0]


@functools.lru_cache(maxsize=8)
def default_text_model(language: str, negative_phrases: tuple[str, ...] = (),
                       positive_phrases: tuple[str, ...] = ()) -> TextModel:
    """The model trained on the shipped set for ``language`` (cached per phrase lists)."""
    lang = "zh" if language.lower().startswith(("zh", "cmn")) else "en"
    rows = read_labelled(data_path(f"text_{lang}.tsv"))
    return TextModel(lang, negative_phrases=negative_phrases,
                     positive_phrases=positive_phrases).fit(rows)


def language_of(text: str, hint: str = "") -> str:
    """``zh`` for text with CJK characters (or a ``zh`` hint), else ``en``."""
    if hint.lower().startswith(("zh", "cmn")):
        return "zh"
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
