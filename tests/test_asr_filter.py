"""ASR filters (hallucinations, no-speech, tones), text normalisation, WER/CER, simplified zh."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from earpiece.asr.decoder import DecodeOptions as Opts
from earpiece.asr.decoder import DecodeOutput, compression_ratio, window_seconds
from earpiece.asr.filters import (
    is_noise,
    is_tonal,
    judge,
    spectral_flatness,
    tonal_concentration,
)
from earpiece.asr.metrics import (
    ErrorRate,
    edit_distance,
    is_simplified_chinese,
    normalize_en,
    normalize_zh,
    number_to_words,
)
from earpiece.asr.zh import to_simplified

SOUNDS = Path("/usr/share/asterisk/sounds/en")


def out(text: str, *, ns: float = 0.05, lp: float = -0.2, lang: str = "en") -> DecodeOutput:
    return DecodeOutput(text=text, language=lang, language_probability=1.0, no_speech_prob=ns,
                        avg_logprob=lp, compression_ratio=compression_ratio(text), audio_s=2.0,
                        window_s=4.0, encode_s=0.1, total_s=0.2)


def test_confident_speech_passes() -> None:
    v = judge(out("Please enter your password followed by the pound key."))
    assert v.accepted and v.text.startswith("Please enter")


@pytest.mark.parametrize("text", [
    "Thank you for watching!", "Thanks for watching.", "字幕by索兰娅",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "Subtitles by the Amara.org community", "Please subscribe to my channel.",
])
def test_strong_blocklist_always_dropped(text: str) -> None:
    v = judge(out(text, ns=0.01, lp=-0.1, lang="zh" if "字" in text or "请" in text else "en"))
    assert not v.accepted and v.reason == "blocklist"


def test_strong_blocklist_tail_is_stripped() -> None:
    v = judge(out("Your call is important to us. Thank you for watching."))
    assert v.accepted and v.text == "Your call is important to us."


def test_weak_phrase_needs_confidence() -> None:
    assert judge(out("Thank you.", ns=0.02, lp=-0.1)).accepted
    assert not judge(out("Thank you.", ns=0.4, lp=-0.3)).accepted
    assert not judge(out("you", ns=0.1, lp=-0.9)).accepted


def test_no_speech_rule_and_floors() -> None:
    assert judge(out("Hello there.", ns=0.9, lp=-1.2)).reason == "no_speech"
    assert judge(out("Hello there.", ns=0.9, lp=-0.3)).accepted  # Whisper's own rule: both
    assert judge(out("Hello there.", ns=0.1, lp=-2.0)).reason == "low_logprob"
    assert judge(out("I'm not sure if I can get the car.", ns=0.5, lp=-1.2)).reason == "doubtful"
    loop = "no more messages " * 20
    assert judge(out(loop)).reason == "compression_ratio"
    assert judge(out("")).reason == "empty"
    assert judge(out("건설")).reason == "wrong_script"
    assert judge(out("T-t-t-t-t-t-t-t-")).reason == "repetition"


def test_repeated_sentences_collapsed() -> None:
    v = judge(out("Folder nine. Folder nine. Folder nine."))
    assert v.accepted and v.text == "Folder nine. Folder nine."


def _read(name: str) -> npt.NDArray[np.float32]:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return pcm.astype(np.float32) / 32768


def _tone(freqs: list[float], dur: float, rate: int = 8000) -> npt.NDArray[np.float32]:
    t = np.arange(int(dur * rate)) / rate
    return (sum(0.3 * np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


@pytest.mark.parametrize("freqs", [[697, 1209], [941, 1477], [350, 440], [440, 480], [480, 620],
                                   [425], [450], [1000], [913.8], [1400, 2060]])
def test_tones_are_tonal(freqs: list[float]) -> None:
    assert is_tonal(_tone(freqs, 0.5), 8000)


def test_sit_and_beep_prompts_are_tonal() -> None:
    sit = np.concatenate([_tone([f], 0.33) for f in (913.8, 1370.6, 1776.7)])
    assert is_tonal(sit, 8000)
    assert is_tonal(_read("beep"), 8000)


@pytest.mark.parametrize("name", ["hello-world", "minutes", "letters/v", "digits/9", "vm-review",
                                  "auth-thankyou", "removed", "vm-Cust2", "demo-congrats"])
def test_speech_is_not_tonal(name: str) -> None:
    assert tonal_concentration(_read(name), 8000) < 0.8


def test_noise_and_silence_are_not_tonal() -> None:
    rng = np.random.default_rng(0)
    assert not is_tonal(rng.normal(0, 0.1, 8000).astype(np.float32), 8000)
    assert not is_tonal(np.zeros(8000, dtype=np.float32), 8000)


def test_dtmf_sequence_is_tonal() -> None:
    digits = [(697, 1209), (770, 1336), (852, 1477), (941, 1477), (941, 1336)]
    seq = np.concatenate([np.concatenate([_tone(list(d), 0.1), np.zeros(800, np.float32)])
                          for d in digits])
    assert is_tonal(seq, 8000)


@pytest.mark.parametrize("name", ["hello-world", "letters/x", "seconds", "letters/dash",
                                  "tt-monkeys", "vm-review"])
def test_speech_is_not_noise(name: str) -> None:
    assert spectral_flatness(_read(name), 8000) < 0.2
    assert not is_noise(_read(name), 8000)


def test_white_noise_is_noise() -> None:
    rng = np.random.default_rng(0)
    assert is_noise(rng.normal(0, 0.05, 16000).astype(np.float32), 8000)


def test_normalize_en() -> None:
    assert normalize_en("Press 1, or #.") == ["press", "one", "or", "pound"]
    assert normalize_en("P.M. 10:30 you're 2nd") == ["pm", "ten", "thirty", "you", "are",
                                                        "second"]
    assert normalize_en("re-record [beep] 1,000") == ["re", "record", "one", "thousand"]
    assert number_to_words(1234) == "one thousand two hundred thirty four"


def test_wer_and_cer() -> None:
    er = ErrorRate()
    er.add(normalize_en("press one to accept"), normalize_en("Press 1 to except."))
    assert er.errors == 1 and er.ref_tokens == 4 and er.rate == 0.25
    assert normalize_zh("你好，世界！ ok") == ["你", "好", "世", "界", "ok"]


@given(st.lists(st.sampled_from("abcd"), max_size=8), st.lists(st.sampled_from("abcd"),
                                                                 max_size=8))
def test_edit_distance_properties(a: list[str], b: list[str]) -> None:
    d = edit_distance(a, b)
    assert d == edit_distance(b, a)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert (d == 0) == (a == b)


def test_simplified_chinese() -> None:
    assert to_simplified("謝謝你們，這個問題") == "谢谢你们，这个问题"
    assert is_simplified_chinese("谢谢你们") and not is_simplified_chinese("謝謝")
    assert not is_simplified_chinese("hello")


def test_window_is_bounded() -> None:
    o = Opts()
    assert window_seconds(0.5, o) == 10  # short audio: the short-utterance minimum
    assert window_seconds(1.99, o) == 10
    assert window_seconds(2.0, o) == 4
    assert window_seconds(2.5, o) == 5
    assert window_seconds(7.2, o) == 10
    assert window_seconds(40.0, o) == 30
    flat = Opts(short_audio_s=0.0)
    assert window_seconds(0.5, flat) == 4


def test_noise_floor_padding() -> None:
    from earpiece.asr.decoder import noise_floor

    rng = np.random.default_rng(1)
    quiet = rng.normal(0, 0.001, 3200)
    loud = rng.normal(0, 0.3, 12800)
    audio = np.concatenate([quiet, loud]).astype(np.float32)
    pad = noise_floor(audio, 8000)
    assert pad.dtype == np.float32 and len(pad) == 8000
    assert 0.0005 < float(np.sqrt(np.mean(pad.astype(np.float64) ** 2))) < 0.01
    assert np.array_equal(pad, noise_floor(audio, 8000))
    assert not noise_floor(np.zeros(1600, np.float32), 100).any()


def test_zh_prompt_echo_is_removed() -> None:
    from earpiece.asr.decoder import _strip_prompt_echo

    assert _strip_prompt_echo("以下是你的帮助，再见。") == "你的帮助，再见。"
    assert _strip_prompt_echo("以下是普通话的句子。我想换手机") == "我想换手机"
    assert _strip_prompt_echo("以下两点") == "以下两点"  # too short a match to be an echo
    assert _strip_prompt_echo("你好") == "你好"
