"""Emotion of one recorded call, offline: the ``emotion`` key of ``earpiece analyze``.

Per party (a mono file is the customer; a stereo file's channel 0 the customer, channel 1 the
agent) the utterances are the transcript's (when ``earpiece analyze`` recognised speech) or
else the media path's VAD segments (voice only). Each utterance gets its voice parameters
against the speaker's running baseline (the default ``zscore`` arousal), its text emotion
when it has words, and the fused ``label`` / ``valence`` / ``confidence``; the party's call
index and state are those of the live stage (:class:`~earpiece.emotion.fusion.CallIndex`).
The top-level ``index`` and ``state`` are the customer's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from earpiece.emotion.fusion import CallIndex, fuse
from earpiece.emotion.models import VoiceInput, ZScoreModel
from earpiece.emotion.settings import EmotionSettings
from earpiece.emotion.text import default_text_model, language_of
from earpiece.emotion.voice import RATE, SpeakerBaseline, voice_features

if TYPE_CHECKING:
    import numpy.typing as npt

    from earpiece.asr.audio import AudioInput

#: transcript party name -> emotion party name (a mono file's far end is the customer)
_PARTY = {"far": "customer", "customer": "customer", "agent": "agent"}


def _to_8k(pcm: npt.NDArray[np.int16], rate: int) -> npt.NDArray[np.int16]:
    if rate == RATE:
        return pcm
    from scipy.signal import resample_poly

    y = np.asarray(resample_poly(pcm.astype(np.float64), RATE, rate), dtype=np.float64)
    out: npt.NDArray[np.int16] = np.clip(np.round(y), -32768, 32767).astype(np.int16)
    return out


def _utterances(transcript: Any, party: str) -> list[tuple[float, float, str, str]] | None:
    """(start, end, text, language hint) of ``party`` in an ``analyze`` transcript, if any."""
    if not isinstance(transcript, Mapping):
        return None
    parties = transcript.get("parties")
    if not isinstance(parties, Mapping):
        return None
    for name, p in parties.items():
        if _PARTY.get(name) == party and isinstance(p, Mapping):
            return [(float(u["start_s"]), float(u["end_s"]), str(u.get("text", "")),
                     str(u.get("language") or "")) for u in p.get("utterances", [])]
    return None


def analyse_party(pcm: npt.NDArray[np.int16], rate: int,
                  utterances: list[tuple[float, float, str, str]] | None, *,
                  language: str | None = None,
                  settings: EmotionSettings | None = None) -> dict[str, Any]:
    """One party's utterances (or, with ``None``, its VAD segments) scored and indexed."""
    from earpiece.emotion.cmd import _segments

    s = settings or EmotionSettings()
    x = _to_8k(np.asarray(pcm, dtype=np.int16), rate)
    if utterances is None:
        utterances = [(a, b, "", "") for a, b in _segments(x, RATE)] if x.size else []
    model = ZScoreModel()
    baseline = SpeakerBaseline()
    index = CallIndex(s)
    rows = []
    for start, end, text, hint in utterances:
        seg = x[max(0, int(start * RATE)):max(0, int(end * RATE))]
        feats = voice_features(seg, RATE)
        voice = model.predict(VoiceInput(feats, baseline.observe(feats),
                                         seg.astype(np.float64) / 32768.0))
        tscore = None
        if text.strip():
            lang = language_of(text, language or hint)
            tscore = default_text_model(lang, tuple(s.negative_phrases),
                                        tuple(s.positive_phrases)).score(text)
        fused = fuse(tscore.valence if tscore is not None else voice.valence, voice.arousal,
                     tscore.confidence if tscore is not None else None,
                     arousal_weight=s.arousal_weight)
        index.update(fused.score)
        rows.append({"start_s": round(start, 2), "end_s": round(end, 2), "text": text,
                     "label": fused.label, "valence": round(fused.score, 4),
                     "arousal": round(voice.arousal, 4),
                     "confidence": round(fused.confidence, 4),
                     "index": round(index.index, 4), "state": index.state})
    return {"index": round(index.index, 4), "state": index.state,
            "utterances": rows}


def analyse_emotion(audio: AudioInput, transcript: Any = None, *,
                    language: str | None = None,
                    settings: EmotionSettings | None = None) -> dict[str, Any]:
    """The ``emotion`` value of ``earpiece analyze`` for one file (``transcript``: the value
    of its ``transcript`` key, or ``None`` for voice only)."""
    if language in (None, "", "auto"):
        language = None
    channels = {"customer": audio.customer}
    if audio.agent is not None:
        channels["agent"] = audio.agent
    parties = {name: analyse_party(pcm, audio.rate, _utterances(transcript, name),
                                   language=language, settings=settings)
               for name, pcm in channels.items()}
    customer = parties["customer"]
    return {"index": customer["index"], "state": customer["state"],
            "source": "voice+text" if _utterances(transcript, "customer") is not None
            else "voice", "parties": parties}
