"""Fusion of text valence and voice arousal per utterance, and the smoothed per-call index.

Per utterance (:func:`fuse`): the score ``s = v - w * max(a, 0) * (1 - |v|)`` where ``v`` is
the text valence in [-1, 1] (0 with no text), ``a`` the voice arousal in [-1, 1] (0 with no
audio) and ``w`` ``[emotion] arousal_weight``: agitation pulls what reads neutral towards
negative, and matters less the clearer the words are. The label is positive above +0.25,
negative below -0.25; the confidence is the text's own when there is text, scaled by how far
``s`` lies from the nearest boundary.

Per call and party (:class:`CallIndex`): ``index = (1 - k) * index + k * s`` with
``k = smoothing``; the state becomes positive / negative when the index passes ``+/- enter``
(directly from any state), and returns to neutral only after ``neutral_dwell`` consecutive
utterances with the index inside ``+/- exit`` -- so one ambiguous utterance between two
states does not flicker through neutral.
"""

from __future__ import annotations

from dataclasses import dataclass

from earpiece.emotion.settings import EmotionSettings

BOUNDARY = 0.25


@dataclass(frozen=True)
class Fused:
    label: str
    score: float  # fused valence, [-1, 1]
    confidence: float


def fuse(valence: float | None, arousal: float | None, text_confidence: float | None = None,
         *, arousal_weight: float = 0.35) -> Fused:
    v = 0.0 if valence is None else max(-1.0, min(1.0, valence))
    a = 0.0 if arousal is None else max(-1.0, min(1.0, arousal))
    s = v - arousal_weight * max(a, 0.0) * (1.0 - abs(v))
    s = max(-1.0, min(1.0, s))
    label = "positive" if s > BOUNDARY else "negative" if s < -BOUNDARY else "neutral"
    margin = min(1.0, abs(abs(s) - BOUNDARY) / (1.0 - BOUNDARY)) if label != "neutral" \
        else min(1.0, (BOUNDARY - abs(s)) / BOUNDARY)
    base = text_confidence if text_confidence is not None else 0.5 + 0.5 * abs(a)
    confidence = max(0.0, min(1.0, 0.5 * base + 0.5 * margin))
    return Fused(label, s, confidence)


@dataclass
class CallIndex:
    """One party's smoothed emotion index and state within one call."""

    settings: EmotionSettings
    index: float = 0.0
    state: str = "neutral"
    utterances: int = 0
    _inside: int = 0

    def update(self, score: float) -> str | None:
        """Fold one utterance's fused score in; return the new state if it changed."""
        s = self.settings
        k = s.smoothing
        self.index = max(-1.0, min(1.0, (1.0 - k) * self.index + k * score))
        self.utterances += 1
        new = self.state
        if self.index >= s.enter:
            new, self._inside = "positive", 0
        elif self.index <= -s.enter:
            new, self._inside = "negative", 0
        elif abs(self.index) <= s.exit:
            self._inside += 1
            if self._inside >= s.neutral_dwell:
                new = "neutral"
        else:
            self._inside = 0
        if new != self.state:
            self.state = new
            return new
        return None
