"""``earpiece analyze``: one JSON line per file, mono or stereo, analysers pluggable.

Speech recognition (the ``transcript`` analyser) is switched off here: these tests are about
the file handling and the ``cpa`` key; the ASR tests cover the transcript.
"""

from __future__ import annotations

import argparse
import json
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from earpiece import analyze
from earpiece.cli import main as cli_main
from earpiece.cpa.detector import LABELS
from earpiece.cpa.tones import synth_tone


def _write(path: Path, channels: list[npt.NDArray[np.float64]], rate: int = 8000) -> Path:
    data = np.stack(channels, axis=1) if len(channels) > 1 else channels[0][:, None]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(data, -32768, 32767).astype("<i2").tobytes())
    return path


def _busy() -> npt.NDArray[np.float64]:
    parts = [np.zeros(1600)]
    for i in range(8):
        parts.append(synth_tone([480, 620], 0.5, level_dbfs=-20) if i % 2 == 0
                     else np.zeros(4000))
    return np.concatenate(parts)


def test_cli_json_lines_mono_and_stereo(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    mono = _write(tmp_path / "busy.wav", [_busy()])
    rng = np.random.default_rng(0)
    quiet = rng.normal(0, 3, _busy().size)
    stereo = _write(tmp_path / "stereo.wav", [quiet, _busy()])  # agent = channel 1
    rc = cli_main(["analyze", "--json", "--no-transcript", str(mono), str(stereo)])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["file"] for r in lines] == [str(mono), str(stereo)]
    assert lines[0]["cpa"]["label"] == "busy"
    assert lines[0]["channels"] == 1
    # stereo: the customer (channel 0) is analysed, the agent's tone is ignored
    assert lines[1]["channels"] == 2
    assert lines[1]["cpa"]["label"] == "silence"
    for r in lines:
        assert set(r["cpa"]) >= {"label", "confidence", "decision_s", "evidence"}
        assert r["cpa"]["label"] in LABELS


def test_cli_bad_file_reports_error_and_continues(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav")
    good = _write(tmp_path / "good.wav", [_busy()])
    rc = cli_main(["analyze", "--json", "--no-transcript", str(bad), str(good)])
    assert rc == 1
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert "error" in lines[0] and lines[1]["cpa"]["label"] == "busy"


def test_analysers_are_pluggable(tmp_path: Path) -> None:
    from scipy.signal import resample_poly

    wide = resample_poly(_busy(), 2, 1)  # the same busy tone at 16 kHz
    path = _write(tmp_path / "x.wav", [wide], rate=16000)

    def length(audio: analyze.AudioInput, args: argparse.Namespace) -> tuple[str, float]:
        return "samples", float(audio.customer.size)

    args = argparse.Namespace(tone_plan="us", pre_answer=True, no_transcript=True)
    row = analyze.analyse_file(str(path), args, [analyze.cpa_analyser, length])
    assert row["samples"] == wide.size
    assert row["cpa"]["label"] == "busy"
    assert row["cpa"]["evidence"]["phase"] == "pre_answer"


def test_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "b.wav", [_busy()])
    assert cli_main(["analyze", "--no-transcript", str(path)]) == 0
    assert "busy" in capsys.readouterr().out


SOUNDS = Path("/usr/share/asterisk/sounds/en")


@pytest.mark.skipif(not (SOUNDS / "vm-intro.wav").exists(), reason="asterisk-core-sounds-en-wav")
def test_cpa_uses_the_greeting_words_as_the_service_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with wave.open(str(SOUNDS / "vm-intro.wav")) as w:  # "Please leave your message after..."
        prompt = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    rng = np.random.default_rng(2)
    x = np.concatenate([np.zeros(3200), prompt, np.zeros(16000)])
    path = _write(tmp_path / "vm.wav", [x + rng.normal(0, 20, x.size)])
    assert cli_main(["analyze", "--json", "--no-transcript", "--no-words", str(path)]) == 0
    timing = json.loads(capsys.readouterr().out)["cpa"]
    assert "words" not in timing and timing["label"] == "machine"
    args = argparse.Namespace(tone_plan="all", pre_answer=False, no_transcript=False,
                              no_words=False, asr_model=None, language="en")
    key, cpa = analyze.cpa_analyser(analyze.load(str(path)), args)
    assert key == "cpa" and cpa["label"] == "machine"
    assert cpa["words"]["model"] == "tiny.en" and cpa["words"]["snapshots"]
    first = cpa["words"]["snapshots"][0]
    assert "leave" in str(first["text"]).lower()
    assert cpa["decision_s"] < timing["decision_s"]  # the words decided it earlier


def _speech_like(f0: float, level: float, seconds: float, rate: int = 8000,
                 ) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * rate)) / rate
    voiced = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2  # syllable-like level changes
    return np.asarray(level * 12000 * voiced * envelope)


def test_emotion_key_voice_only_per_party(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    gap = np.zeros(4000)
    calm = [_speech_like(120, 0.2, 1.0), gap, _speech_like(125, 0.2, 1.0), gap]
    agitated = [_speech_like(240, 0.8, 1.0), gap, _speech_like(250, 0.8, 1.0), gap]
    customer = np.concatenate([gap, *calm, *agitated])
    agent = np.concatenate([gap, *calm, *calm])
    path = _write(tmp_path / "call.wav", [customer, agent])
    assert cli_main(["analyze", "--json", "--no-transcript", str(path)]) == 0
    emotion = json.loads(capsys.readouterr().out)["emotion"]
    assert emotion["source"] == "voice" and set(emotion["parties"]) == {"customer", "agent"}
    assert -1.0 <= emotion["index"] <= 1.0
    assert emotion["state"] in ("positive", "neutral", "negative")
    cust = emotion["parties"]["customer"]["utterances"]
    assert len(cust) >= 3
    for u in cust:
        assert u["label"] in ("positive", "neutral", "negative")
        assert -1.0 <= u["valence"] <= 1.0 and 0.0 <= u["confidence"] <= 1.0
    assert cust[-1]["arousal"] > cust[0]["arousal"]  # louder and higher than the baseline


def test_emotion_uses_the_transcript_text(tmp_path: Path) -> None:
    path = _write(tmp_path / "far.wav", [np.concatenate([np.zeros(800),
                                                         _speech_like(150, 0.3, 2.0)])])
    lines = ["this is ridiculous, stop calling me", "I want to make a complaint"]

    def transcript(audio: analyze.AudioInput, args: argparse.Namespace) -> tuple[str, Any]:
        return "transcript", {"parties": {"far": {"utterances": [
            {"start_s": 0.1 + i, "end_s": 1.0 + i, "text": t, "language": "en"}
            for i, t in enumerate(lines)]}}}

    row = analyze.analyse_file(str(path), argparse.Namespace(),
                               [transcript, analyze.emotion_analyser])
    emotion = row["emotion"]
    assert emotion["source"] == "voice+text" and list(emotion["parties"]) == ["customer"]
    utts = emotion["parties"]["customer"]["utterances"]
    assert [u["text"] for u in utts] == lines
    assert all(u["label"] == "negative" for u in utts)
    assert emotion["index"] < 0 and emotion["state"] == "negative"
    skipped = analyze.analyse_file(str(path), argparse.Namespace(no_emotion=True),
                                   [analyze.emotion_analyser])
    assert skipped["emotion"] is None


def test_analyze_parser_does_not_import_numpy() -> None:
    import subprocess
    import sys

    code = ("import argparse, sys; from earpiece import analyze; "
            "analyze.configure(argparse.ArgumentParser()); "
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False"
