"""One Whisper decode of one utterance, directly on CTranslate2 (thread-safe, no shared state).

Why not ``WhisperModel.transcribe``: it always pads the audio to a 30 s window (the encoder
then costs as much for a 1 s "yes" as for 30 s of speech), it re-seeks through the window and
can append hallucinated tails after short utterances, and its feature extractor keeps
per-call state, so it is not safe to call from several worker threads with different window
sizes. Here each utterance is encoded in a window just longer than its audio (rounded up to
whole seconds plus ``pad_s`` of trailing silence, as Whisper saw in training), decoded once
with greedy or small-beam search (no temperature fallback: the filters judge the result), and,
for finals, word-aligned with the cross-attention alignment heads.

The ``faster_whisper.WhisperModel`` object is only used for its loaded CTranslate2 model, its
tokenizer and feature extractor (both read-only here) and its ``find_alignment`` helper.
"""

from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt

from earpiece.asr.model import LoadedModel

SAMPLE_RATE = 16_000
HOP = 160  # samples per mel frame
MAX_WINDOW_S = 30
#: Prompt that steers multilingual Whisper to simplified characters for Mandarin.
ZH_PROMPT = "以下是普通话的句子。"


@dataclass(frozen=True)
class DecodeOptions:
    beam_size: int = 1
    pad_s: float = 2.0  # trailing silence in the encoder window
    min_window_s: float = 4.0
    # Audio shorter than ``short_audio_s`` gets a window of at least ``short_min_window_s``:
    # in a 4 s window Whisper garbles lone words ("Hello." -> "Hamau").
    short_audio_s: float = 2.0
    short_min_window_s: float = 10.0
    # Fill the window after the audio with the utterance's own noise floor (quietest 10 ms
    # frames) instead of digital zeros.
    pad_noise: bool = False
    max_new_tokens_base: int = 16
    max_new_tokens_per_s: float = 10.0
    suppress_blank: bool = True
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    # Decode with timestamp tokens and cut the text at the first timestamp past the audio end:
    # a window shorter than 30 s otherwise invites Whisper to repeat itself in the padding.
    timestamps: bool = True


@dataclass(frozen=True)
class DecodedWord:
    word: str
    start_s: float  # relative to the start of the decoded audio
    end_s: float
    probability: float


@dataclass(frozen=True)
class DecodeOutput:
    text: str
    language: str
    language_probability: float
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    audio_s: float
    window_s: float
    encode_s: float
    total_s: float
    words: tuple[DecodedWord, ...] = field(default_factory=tuple)
    tokens: tuple[int, ...] = ()


def default_options(multilingual: bool) -> DecodeOptions:
    """Window defaults measured on 120 G.711 prompts (``earpiece bench asr``): multilingual
    base is best with 2 s of padding in a window of at least 4 s (WER 4.9 %; 8 s: 5.2 %); the
    English-only tiny model repeats itself in short windows (WER 9.7 % at 4 s) and needs 3 s
    of padding in at least 8 s (4.8 %; full 30 s windows: 4.6 %). Audio shorter than 2 s
    (lone words, greetings) gets at least 10 s: in 4 s base garbles them ("Hello." ->
    "Hamau"); see docs/benchmarks/asr.md for the short-utterance figures."""
    if multilingual:
        return DecodeOptions()
    return DecodeOptions(pad_s=3.0, min_window_s=8.0)


def noise_floor(audio: npt.NDArray[np.float32], n: int) -> npt.NDArray[np.float32]:
    """``n`` samples of white noise at the level of the quietest 10 % of ``audio``'s 10 ms
    frames (deterministic: seeded by the length)."""
    hop = SAMPLE_RATE // 100
    frames = len(audio) // hop
    if frames == 0:
        return np.zeros(n, dtype=np.float32)
    rms = np.sqrt((audio[: frames * hop].reshape(frames, hop).astype(np.float64) ** 2)
                  .mean(axis=1))
    level = float(np.percentile(rms, 10))
    rng = np.random.default_rng(n)
    return (rng.standard_normal(n) * level).astype(np.float32)


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def window_seconds(audio_s: float, options: DecodeOptions) -> int:
    """Encoder window for ``audio_s`` of audio: whole seconds, >= audio + pad, at least
    ``min_window_s`` (``short_min_window_s`` below ``short_audio_s``), at most 30."""
    minimum = options.min_window_s
    if audio_s < options.short_audio_s:
        minimum = max(minimum, options.short_min_window_s)
    return int(min(MAX_WINDOW_S, max(minimum, math.ceil(audio_s + options.pad_s))))


class WhisperDecoder:
    """Decodes 16 kHz float32 utterances with a shared, loaded Whisper model.

    Safe to call from several threads at once (up to ``num_workers`` run in parallel inside
    CTranslate2; the calls release the GIL).
    """

    def __init__(self, loaded: LoadedModel, options: DecodeOptions | None = None) -> None:
        self.loaded = loaded
        self.options = options or default_options(loaded.info.multilingual)
        self._wm: Any = loaded.model
        self._ct2: Any = self._wm.model
        self.multilingual: bool = bool(self._ct2.is_multilingual)

    @cached_property
    def _suppress(self) -> list[int]:
        tok = self._tokenizer("en")
        ids = set(tok.non_speech_tokens)
        ids.update([tok.transcribe, tok.translate, tok.sot, tok.sot_prev, tok.sot_lm,
                    tok.no_speech])
        return sorted(i for i in ids if i is not None)

    def _tokenizer(self, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        if self.multilingual:
            return Tokenizer(self._wm.hf_tokenizer, True, task="transcribe", language=language)
        return Tokenizer(self._wm.hf_tokenizer, False)

    def features(self, audio: npt.NDArray[np.float32]) -> tuple[npt.NDArray[np.float32], int,
                                                                  int]:
        """Log-mel features of ``audio`` padded with silence to its window; (features, window
        seconds, content frames)."""
        audio_s = len(audio) / SAMPLE_RATE
        window = window_seconds(audio_s, self.options)
        n = window * SAMPLE_RATE
        clip = audio[:n]
        padded = np.zeros(n, dtype=np.float32)
        if self.options.pad_noise and len(clip) < n:
            padded[len(clip):] = noise_floor(clip, n - len(clip))
        padded[: len(clip)] = clip
        feats = self._wm.feature_extractor(padded, padding=0)
        frames = window * SAMPLE_RATE // HOP
        out = np.ascontiguousarray(feats[:, :frames], dtype=np.float32)
        return out, window, min(frames, len(clip) // HOP)

    def detect_language(self, audio: npt.NDArray[np.float32]) -> tuple[str, float]:
        if not self.multilingual:
            return "en", 1.0
        feats, _, _ = self.features(audio)
        enc = self._encode(feats)
        results = self._ct2.detect_language(enc)[0]
        token, prob = results[0]
        return str(token[2:-2]), float(prob)

    def _encode(self, feats: npt.NDArray[np.float32]) -> Any:
        import ctranslate2

        sv = ctranslate2.StorageView.from_array(feats[np.newaxis])
        return self._ct2.encode(sv, to_cpu=False)

    def decode(
        self,
        audio: npt.NDArray[np.float32],
        *,
        language: str | None,
        word_timestamps: bool = False,
        beam_size: int | None = None,
    ) -> DecodeOutput:
        """Decode one utterance (16 kHz mono float32, at most 30 s).

        ``language=None`` detects it (multilingual models only). Returns the raw text and the
        confidence figures the filters need; nothing is filtered here.
        """
        started = time.monotonic()
        audio = audio[: MAX_WINDOW_S * SAMPLE_RATE]
        audio_s = len(audio) / SAMPLE_RATE
        feats, window, content_frames = self.features(audio)
        t0 = time.monotonic()
        enc = self._encode(feats)
        encode_s = time.monotonic() - t0
        lang_prob = 1.0
        if not self.multilingual:
            language = "en"
        elif language is None:
            token, prob = self._ct2.detect_language(enc)[0][0]
            language, lang_prob = str(token[2:-2]), float(prob)
        tok = self._tokenizer(language)
        prompt: list[int] = []
        if language == "zh":
            prompt = [tok.sot_prev, *tok.encode(" " + ZH_PROMPT)]
        prompt += list(tok.sot_sequence)
        if not self.options.timestamps:
            prompt.append(tok.no_timestamps)
        opts = self.options
        max_new = int(min(220, opts.max_new_tokens_base + opts.max_new_tokens_per_s * audio_s))
        result = self._ct2.generate(
            enc,
            [prompt],
            beam_size=beam_size or opts.beam_size,
            max_length=len(prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=opts.suppress_blank,
            suppress_tokens=self._suppress,
            repetition_penalty=opts.repetition_penalty,
            no_repeat_ngram_size=opts.no_repeat_ngram_size,
            max_initial_timestamp_index=50,
        )[0]
        raw = list(result.sequences_ids[0])
        seq_len = len(raw)
        if opts.timestamps:
            raw = _cut_at_audio_end(raw, tok.timestamp_begin, audio_s + 0.3)
        tokens = [t for t in raw if t < tok.eot]
        avg_logprob = float(result.scores[0]) * seq_len / (seq_len + 1) if seq_len else -10.0
        text = tok.decode(tokens).strip()
        if language == "zh":
            text = _strip_prompt_echo(text)
        words: tuple[DecodedWord, ...] = ()
        if word_timestamps and tokens:
            aligned = self._wm.find_alignment(tok, [tokens], enc, content_frames)[0]
            words = _merge_punctuation(
                [DecodedWord(word=str(w["word"]), start_s=round(float(w["start"]), 3),
                             end_s=round(float(w["end"]), 3),
                             probability=float(w["probability"])) for w in aligned],
                audio_s,
            )
        return DecodeOutput(
            text=text,
            language=language,
            language_probability=lang_prob,
            no_speech_prob=float(result.no_speech_prob),
            avg_logprob=avg_logprob,
            compression_ratio=compression_ratio(text),
            audio_s=audio_s,
            window_s=float(window),
            encode_s=encode_s,
            total_s=time.monotonic() - started,
            words=words,
            tokens=tuple(tokens),
        )


def _strip_prompt_echo(text: str) -> str:
    """Remove a copy of the start of :data:`ZH_PROMPT` that Whisper sometimes echoes."""
    n = 0
    while n < min(len(text), len(ZH_PROMPT)) and text[n] == ZH_PROMPT[n]:
        n += 1
    return text[n:].lstrip("，,。 ") if n >= 3 else text


def _cut_at_audio_end(tokens: list[int], ts_begin: int, end_s: float) -> list[int]:
    """Tokens up to the first timestamp token beyond ``end_s`` (20 ms per timestamp step)."""
    for i, t in enumerate(tokens):
        if t >= ts_begin and (t - ts_begin) * 0.02 > end_s:
            return tokens[:i]
    return tokens


_PREPEND = "\"'“¿([{-"
_APPEND = "\"'.。,，!！?？:：”)]}、"


def _merge_punctuation(words: list[DecodedWord], audio_s: float) -> tuple[DecodedWord, ...]:
    """Attach lone punctuation "words" to their neighbours and clamp times to the audio."""
    out: list[DecodedWord] = []
    pending_prefix = ""
    for w in words:
        stripped = w.word.strip()
        if stripped and all(c in _APPEND for c in stripped) and out:
            last = out[-1]
            out[-1] = DecodedWord(word=last.word + stripped, start_s=last.start_s,
                                  end_s=last.end_s, probability=last.probability)
            continue
        if stripped and all(c in _PREPEND for c in stripped):
            pending_prefix += w.word
            continue
        text = pending_prefix + w.word
        pending_prefix = ""
        end = min(w.end_s, audio_s)
        out.append(DecodedWord(word=text, start_s=min(w.start_s, end), end_s=end,
                               probability=w.probability))
    return tuple(out)
