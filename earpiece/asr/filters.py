"""Keeps Whisper from putting words in a silent caller's mouth.

Three independent guards, applied in this order:

1. :func:`is_tonal` (before decoding): DTMF, dial/busy/ringback tones, beeps and SIT tones
   are a few narrow spectral lines; a segment whose frames are mostly tonal is not decoded.
2. :func:`judge` (after decoding): Whisper's own no-speech probability and average log
   probability (its ``no_speech_threshold``/``log_prob_threshold`` rule), a hard floor on the
   log probability, the compression ratio (repetition loops), the script (English decoding
   that came out in Hangul or kanji is noise), and runs of one repeated sentence.
3. A blocklist of the phrases Whisper is known to produce from silence or noise (subtitle
   credits and YouTube outros learnt from its training data). "Strong" phrases are removed
   wherever they appear at the end of an utterance; "weak" ones ("Thank you.", "you", "Bye.")
   are real speech too, so they are dropped only when the decode was not confident.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from earpiece.asr.decoder import DecodeOutput

#: Known Whisper hallucinations on silence/noise, normalised (lower case, no punctuation).
STRONG_HALLUCINATIONS: tuple[str, ...] = (
    "thank you for watching",
    "thanks for watching",
    "thank you for watching and see you next time",
    "thank you so much for watching",
    "thank you very much for watching",
    "thanks for watching and see you next time",
    "please subscribe",
    "please subscribe to my channel",
    "like and subscribe",
    "don't forget to like and subscribe",
    "subscribe to my channel",
    "see you in the next video",
    "see you next time",
    "subtitles by the amara org community",
    "transcribed by",
    "transcription by castingwords",
    "subtitles by",
    "captions by",
    "i'll see you in the next video",
    "字幕by索兰娅",
    "字幕by索兰娅 字幕by索兰娅",
    "字幕由amara org社区提供",
    "小编字幕由amara org社区提供",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "请不吝点赞订阅转发打赏支持明镜与点点栏目",
    "明镜与点点栏目",
    "优优独播剧场 youku",
    "优优独播剧场",
    "谢谢观看",
    "感谢观看",
    "谢谢大家观看",
    "字幕志愿者 杨茜茜",
    "中文字幕",
    "ご視聴ありがとうございました",
    "시청해주셔서 감사합니다",
    "untertitel im auftrag des zdf",
    "sous titres réalisés para la communauté d'amara org",
)
#: Short phrases Whisper also invents from noise but that people really say.
WEAK_HALLUCINATIONS: frozenset[str] = frozenset({
    "you", "thank you", "thanks", "thank you very much", "thank you so much", "bye", "bye bye",
    "okay", "oh", "so", "the", "uh", "um", "hmm", "mm", "yeah", "i", "a", "and",
    "谢谢", "嗯", "啊", "好",
})

_PUNCT_RE = re.compile(r"[^\w\s']+", re.UNICODE)
_SENTENCE_RE = re.compile(r"[^.!?。！？]+[.!?。！？]*")
_FOREIGN_FOR_EN = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af\u0400-\u04ff]")


def normalize_phrase(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    return " ".join(_PUNCT_RE.sub(" ", text).split())


@dataclass(frozen=True)
class FilterSettings:
    no_speech_threshold: float = 0.6
    logprob_threshold: float = -1.0
    hard_logprob_floor: float = -1.6
    compression_ratio_threshold: float = 2.4
    weak_no_speech: float = 0.25
    weak_logprob: float = -0.7
    max_sentence_repeats: int = 2
    min_distinct_word_share: float = 0.25
    tonal_concentration: float = 0.85  # frame energy share in 2 lines that makes a tone
    noise_flatness: float = 0.35  # median spectral flatness that makes a segment noise
    # Whisper's no-speech rule (0.6 and -1.0) misses hallucinations on white noise, which come
    # out at no_speech ~0.5 and log-prob -0.9..-1.6; real speech sits below 0.3 / above -0.7.
    doubtful_no_speech: float = 0.4
    doubtful_logprob: float = -0.9


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    text: str
    reason: str = ""


def _strip_strong_tail(text: str) -> tuple[str, bool]:
    """Remove a known hallucinated phrase from the end (or the whole) of ``text``."""
    sentences = [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]
    if not sentences:
        sentences = [text.strip()]
    changed = False
    while sentences and normalize_phrase(sentences[-1]) in _STRONG:
        sentences.pop()
        changed = True
    if not changed:
        norm = normalize_phrase(text)
        for phrase in _STRONG:
            if norm == phrase or norm.replace(" ", "") == phrase.replace(" ", ""):
                return "", True
        return text, False
    return " ".join(sentences), True


_STRONG = frozenset(normalize_phrase(p) for p in STRONG_HALLUCINATIONS)


def _collapse_repeats(text: str, max_repeats: int) -> str:
    """Keep at most ``max_repeats`` consecutive copies of the same sentence."""
    sentences = [s.strip() for s in _SENTENCE_RE.findall(text) if s.strip()]
    if len(sentences) <= max_repeats:
        return text
    out: list[str] = []
    run = 0
    for s in sentences:
        if out and normalize_phrase(s) == normalize_phrase(out[-1]):
            run += 1
            if run >= max_repeats:
                continue
        else:
            run = 0
        out.append(s)
    return " ".join(out)


def judge(out: DecodeOutput, settings: FilterSettings | None = None) -> Verdict:
    """Decide whether a decode is speech worth publishing, and clean its text."""
    s = settings or FilterSettings()
    text = out.text.strip()
    if not normalize_phrase(text):
        return Verdict(False, "", "empty")
    if out.no_speech_prob > s.no_speech_threshold and out.avg_logprob < s.logprob_threshold:
        return Verdict(False, "", "no_speech")
    if out.no_speech_prob > s.doubtful_no_speech and out.avg_logprob < s.doubtful_logprob:
        return Verdict(False, "", "doubtful")
    if out.avg_logprob < s.hard_logprob_floor:
        return Verdict(False, "", "low_logprob")
    if out.compression_ratio > s.compression_ratio_threshold:
        return Verdict(False, "", "compression_ratio")
    if out.language == "en" and _FOREIGN_FOR_EN.search(text):
        return Verdict(False, "", "wrong_script")
    words = normalize_phrase(text).split()
    if len(words) >= 5 and len(set(words)) / len(words) <= s.min_distinct_word_share:
        return Verdict(False, "", "repetition")  # "T-t-t-t-t-t", "la la la la la" on noise
    text, stripped = _strip_strong_tail(text)
    if not normalize_phrase(text):
        return Verdict(False, "", "blocklist")
    text = _collapse_repeats(text, s.max_sentence_repeats)
    if normalize_phrase(text) in WEAK_HALLUCINATIONS and (
        out.no_speech_prob > s.weak_no_speech or out.avg_logprob < s.weak_logprob
    ):
        return Verdict(False, "", "weak_blocklist")
    return Verdict(True, text, "stripped_blocklist" if stripped else "")


def _loud_frames(audio: npt.NDArray[np.float32], rate: int,
                 frame_ms: int) -> npt.NDArray[np.float64] | None:
    """Power spectra (Hann window) of the frames within 20 dB of the loudest one."""
    n = int(rate * frame_ms / 1000)
    if len(audio) < 2 * n:
        return None
    frames = len(audio) // n
    x = audio[: frames * n].reshape(frames, n).astype(np.float64)
    energy = (x * x).mean(axis=1)
    loud = energy > max(1e-7, float(energy.max()) * 0.01)
    if not loud.any():
        return None
    spec: npt.NDArray[np.float64] = np.abs(np.fft.rfft(x[loud] * np.hanning(n), axis=1)) ** 2
    spec[:, :3] = 0.0  # DC and rumble
    return spec


def tonal_concentration(audio: npt.NDArray[np.float32], rate: int,
                        frame_ms: int = 64, lines: int = 2,
                        min_line_hz: float = 330.0) -> float:
    """Median, over the loud frames of ``audio``, of the share of a frame's energy held by its
    ``lines`` strongest narrow lines (+-1 bin of ~16 Hz) at or above ``min_line_hz``.

    Tones are one or two steady lines per frame: DTMF digits (any sequence of them), dial,
    ringback, busy, beeps and each segment of a SIT score > 0.9. Speech can put most of its
    energy near its fundamental (recorded prompts of a female voice hold 60-70 % within
    200-260 Hz), but a voice's fundamental lies below ~300 Hz while every call-progress tone
    and DTMF line lies above 330 Hz; above that, voiced speech spreads over many harmonics and
    formants, so only lines from ``min_line_hz`` up count.
    """
    spec = _loud_frames(audio, rate, frame_ms)
    if spec is None:
        return 0.0
    n = (spec.shape[1] - 1) * 2
    total = spec.sum(axis=1) + 1e-12
    rest = spec.copy()
    rest[:, : int(min_line_hz * n / rate)] = 0.0
    held = np.zeros(len(spec))
    rows = np.arange(len(spec))
    for _ in range(lines):
        k = np.argmax(rest, axis=1)
        for d in (-1, 0, 1):
            idx = np.clip(k + d, 0, spec.shape[1] - 1)
            held += rest[rows, idx]
            rest[rows, idx] = 0.0
    return float(np.median(held / total))


def spectral_flatness(audio: npt.NDArray[np.float32], rate: int, frame_ms: int = 32,
                      band: tuple[float, float] = (300.0, 3400.0)) -> float:
    """Median Wiener entropy (geometric / arithmetic mean of the power spectrum) of the loud
    frames, in the telephone band: ~0.5-0.6 for white noise, < 0.2 for speech."""
    spec = _loud_frames(audio, rate, frame_ms)
    if spec is None:
        return 0.0
    n = (spec.shape[1] - 1) * 2
    lo, hi = int(band[0] * n / rate), int(band[1] * n / rate)
    p = spec[:, lo:hi] + 1e-12
    flat = np.exp(np.log(p).mean(axis=1)) / p.mean(axis=1)
    return float(np.median(flat))


def is_tonal(audio: npt.NDArray[np.float32], rate: int,
             settings: FilterSettings | None = None) -> bool:
    """True when ``audio`` is a tone/DTMF/beep rather than speech (see
    :func:`tonal_concentration`)."""
    s = settings or FilterSettings()
    return tonal_concentration(audio, rate) >= s.tonal_concentration


def is_noise(audio: npt.NDArray[np.float32], rate: int,
             settings: FilterSettings | None = None) -> bool:
    """True when ``audio`` is broadband noise rather than speech (see
    :func:`spectral_flatness`)."""
    s = settings or FilterSettings()
    return spectral_flatness(audio, rate) >= s.noise_flatness
