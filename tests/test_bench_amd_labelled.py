"""``earpiece bench amd --labelled DIR``: both detectors on a user's own labelled recordings."""

from __future__ import annotations

import argparse
import json
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from earpiece.bench import amd as bench_amd
from earpiece.bench.amd_labelled import (
    LabelledFile,
    LabelledSetError,
    discover,
    evaluate_labelled,
)
from earpiece.cpa.amd_baseline import baseline_result
from earpiece.cpa.detector import CpaOptions, analyze_audio
from earpiece.cpa.evalset import write_wav
from earpiece.cpa.tones import synth_tone

RATE = 8000


def _speech(rng: np.random.Generator, lead_s: float, dur_s: float,
            total_s: float = 6.0) -> npt.NDArray[np.int16]:
    """Syllable-like noise bursts for ``dur_s`` after ``lead_s`` of line noise."""
    x = rng.normal(0, 15, int(total_s * RATE))
    t = lead_s
    while t < lead_s + dur_s:
        n = int(rng.uniform(0.12, 0.22) * RATE)
        s = int(t * RATE)
        x[s:s + n] += rng.normal(0, 3000, n) * np.hanning(n) ** 0.3
        t += n / RATE + rng.uniform(0.04, 0.09)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _ringback() -> npt.NDArray[np.int16]:
    one = np.concatenate([synth_tone([440.0, 480.0], 2.0, level_dbfs=-20.0),
                          np.zeros(4 * RATE, dtype=np.int16)])
    return np.concatenate([one, one]).astype(np.int16)


def _stereo(path: Path, customer: npt.NDArray[np.int16], agent: npt.NDArray[np.int16]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.stack([customer, agent], axis=1).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames.tobytes())


@pytest.fixture(scope="module")
def folder_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("labelled")
    rng = np.random.default_rng(11)
    write_wav(root / "human" / "a-hello.wav", _speech(rng, 0.4, 0.45))
    write_wav(root / "human" / "b-hi.wav", _speech(rng, 0.6, 0.35))
    _stereo(root / "human" / "c-stereo.wav", _speech(rng, 0.3, 0.5),
            _speech(rng, 3.0, 2.0))  # the agent talks later; only channel 0 is judged
    write_wav(root / "machine" / "vm" / "long.wav", _speech(rng, 0.2, 4.5))
    write_wav(root / "ringback" / "us.wav", _ringback())
    (root / "machine" / "broken.wav").write_bytes(b"RIFF....not a wav")
    (root / ".cache").mkdir()
    (root / ".cache" / "ignored.wav").write_bytes(b"")
    (root / "machine" / "notes.txt").write_text("not audio\n")
    return root


# ---- discovery ----------------------------------------------------------------------------------
def test_folders_give_labels_and_phases(folder_set: Path) -> None:
    files = discover(folder_set)
    assert [f.path for f in files] == [
        "human/a-hello.wav", "human/b-hi.wav", "human/c-stereo.wav", "machine/broken.wav",
        "machine/vm/long.wav", "ringback/us.wav"]
    assert {f.path: f.phase for f in files}["ringback/us.wav"] == "pre_answer"
    assert {f.phase for f in files if f.label != "ringback"} == {"post_answer"}


def test_unknown_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "voicemail").mkdir()
    with pytest.raises(LabelledSetError, match="'voicemail' is not a label"):
        discover(tmp_path)


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(LabelledSetError, match="no labelled WAV files"):
        discover(tmp_path)
    with pytest.raises(LabelledSetError, match="not a directory"):
        discover(tmp_path / "absent")


def test_labels_csv_is_the_whole_list(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    write_wav(tmp_path / "calls" / "1.wav", _speech(rng, 0.3, 0.5))
    write_wav(tmp_path / "calls" / "2.wav", _ringback())
    write_wav(tmp_path / "calls" / "3.wav", _speech(rng, 0.3, 0.5))
    (tmp_path / "human").mkdir()  # ignored: labels.csv wins
    (tmp_path / "labels.csv").write_text(  # as Excel saves it: BOM and CRLF
        "file,label,phase\r\ncalls/1.wav,Human,\r\ncalls/2.wav,ringback,\r\n\r\n"
        "calls/3.wav,busy,post_answer\r\n", encoding="utf-8-sig", newline="")
    assert discover(tmp_path) == [LabelledFile("calls/1.wav", "human", "post_answer"),
                                  LabelledFile("calls/2.wav", "ringback", "pre_answer"),
                                  LabelledFile("calls/3.wav", "busy", "post_answer")]


@pytest.mark.parametrize(("text", "message"), [
    ("name,kind\nx.wav,human\n", "line 1: the header must name 'file' and 'label'"),
    ("file,label\nx.wav,human\ny.wav,person\n", "line 3: label 'person' is not one of"),
    ("file,label\nmissing.wav,human\n", "line 2: file 'missing.wav' not found"),
    ("file,label,phase\nx.wav,human,ringing\n", "line 2: phase 'ringing' is not one of"),
])
def test_labels_csv_errors_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    write_wav(tmp_path / "x.wav", np.zeros(800, dtype=np.int16))
    write_wav(tmp_path / "y.wav", np.zeros(800, dtype=np.int16))
    (tmp_path / "labels.csv").write_text(text, encoding="utf-8")
    with pytest.raises(LabelledSetError, match=message) as err:
        discover(tmp_path)
    assert str(tmp_path / "labels.csv") in str(err.value)


_CSV_PIECES = st.sampled_from(["file", "label", "phase", ",", "\n", "\r\n", '"', "x.wav",
                                "human", "Machine", "pre_answer", "ringback", " ", "\x00",
                                "missing.wav", "\ufeff", "\xff\xfe"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.lists(_CSV_PIECES, max_size=30).map("".join),
       raw=st.binary(max_size=40))
def test_labels_csv_never_fails_otherwise(tmp_path: Path, text: str, raw: bytes) -> None:
    """Any labels.csv gives files that exist with known labels, or a LabelledSetError."""
    if not (tmp_path / "x.wav").exists():
        write_wav(tmp_path / "x.wav", np.zeros(800, dtype=np.int16))
    for body in (text.encode("utf-8", "surrogatepass"), raw, text.encode("utf-8") + raw):
        (tmp_path / "labels.csv").write_bytes(body)
        try:
            files = discover(tmp_path)
        except LabelledSetError as exc:
            assert str(tmp_path) in str(exc)
            continue
        assert files and all(f.path == "x.wav" for f in files)
        assert all(f.label in ("human", "machine", "ringback") for f in files)


# ---- evaluation ---------------------------------------------------------------------------------
def test_both_detectors_on_the_same_samples(folder_set: Path) -> None:
    report, pairs = evaluate_labelled(folder_set)
    assert report["set"]["items"] == 5
    assert report["set"]["labels"] == {"human": 3, "machine": 1, "ringback": 1}
    assert [s["file"] for s in report["set"]["skipped"]] == ["machine/broken.wav"]
    assert set(report) == {"earpiece", "baseline", "set"}
    for side in ("earpiece", "baseline"):
        for key in ("accuracy_human_machine", "decision_median_s", "decision_p95_s",
                    "tone_accuracy", "confusion", "by_truth"):
            assert key in report[side]
    # Earpiece's verdicts are exactly what the detector gives on each file's customer channel
    for item, result in pairs:
        x = _customer(folder_set / item.file)
        phase = "pre_answer" if item.label == "ringback" else "post_answer"
        direct = analyze_audio(x, RATE, options=CpaOptions(phase=phase))
        assert (result.label, result.decision_s) == (direct.label, direct.decision_s)
    # the baseline's confusion counts app_amd's own verdicts on the same audio
    base_labels = [baseline_result(_customer(folder_set / it.file), RATE).label
                   for it, _ in pairs]
    counted: dict[str, int] = {}
    for lab in base_labels:
        counted[lab] = counted.get(lab, 0) + 1
    got: dict[str, int] = {}
    for row in report["baseline"]["confusion"].values():
        for lab, n in row.items():
            got[lab] = got.get(lab, 0) + n
    assert got == counted
    assert report["earpiece"]["per_label"]["ringback"] == 1.0
    assert report["earpiece"]["words"] is None


def _customer(path: Path) -> npt.NDArray[np.int16]:
    with wave.open(str(path), "rb") as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return data.reshape(-1, w.getnchannels())[:, 0].astype(np.int16)


def test_greeting_words_reach_the_detector(folder_set: Path) -> None:
    calls: list[int] = []

    def transcribe(x: npt.NDArray[np.int16], start: int, end: int) -> tuple[str, float]:
        calls.append(end - start)
        return "Hi, you've reached the voicemail of", 0.05

    report, pairs = evaluate_labelled(folder_set, transcribe=transcribe, words_model="fake")
    assert calls and report["earpiece"]["words"] == {"asr_model": "fake",
                                                     "snapshots": len(calls)}
    machine = next(r for it, r in pairs if it.file == "machine/vm/long.wav")
    assert machine.label == "machine" and machine.evidence["rule"] == "machine_words"
    ring = next(r for it, r in pairs if it.label == "ringback")
    assert ring.label == "ringback"  # early media is never transcribed


def test_nothing_readable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "human").mkdir()
    (tmp_path / "human" / "x.wav").write_bytes(b"garbage")
    with pytest.raises(LabelledSetError, match="none of the 1 labelled files could be read"):
        evaluate_labelled(tmp_path)


# ---- command line -------------------------------------------------------------------------------
def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_amd.configure(parser)
    return parser.parse_args(argv)


def test_cli_json_table_and_errors(folder_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_amd.main(_cli(["--labelled", str(folder_set), "--no-words", "--json"])) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["set"]["labelled"] is True and report["set"]["items"] == 5
    assert "skipped machine/broken.wav" in captured.err
    assert bench_amd.main(_cli(["--labelled", str(folder_set), "--no-words", "--errors"])) == 0
    text = capsys.readouterr().out
    assert "labelled recordings" in text and "human recall" in text


@pytest.mark.parametrize("argv", [["--seed", "5"], ["--sweep"], ["--split", "tune"],
                                  ["--words-oracle"], ["--machine-p", "0.8"], ["--dir", "x"]])
def test_cli_rejects_generated_set_options(folder_set: Path, argv: list[str],
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_amd.main(_cli(["--labelled", str(folder_set), *argv])) == 2
    assert "--labelled" in capsys.readouterr().err


def test_cli_language_needs_labelled_and_bad_dir_is_reported(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_amd.main(_cli(["--dir", str(tmp_path / "never"), "--language", "zh"])) == 2
    assert "--language is for --labelled" in capsys.readouterr().err
    assert not (tmp_path / "never").exists()
    (tmp_path / "music").mkdir()
    assert bench_amd.main(_cli(["--labelled", str(tmp_path), "--no-words"])) == 2
    assert "'music' is not a label" in capsys.readouterr().err


def test_cli_missing_words_model_is_a_clear_error(folder_set: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--labelled", str(folder_set), "--asr-model", str(tmp_path / "no-such-model")]
    assert bench_amd.main(_cli(argv)) == 2
    err = capsys.readouterr().err
    assert "greeting words:" in err and "no-such-model" in err and "--no-words" in err
