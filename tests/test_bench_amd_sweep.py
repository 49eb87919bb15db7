"""``earpiece bench amd --sweep`` and ``--words-oracle`` on a tiny hand-made evaluation set."""

from __future__ import annotations

import argparse
import gzip
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.bench import amd as bench_amd
from earpiece.bench import amd_sweep as bench_amd_sweep
from earpiece.cpa import evalset
from earpiece.cpa.amd_model import load_default
from earpiece.cpa.amd_words_run import (
    CORE_SOUNDS_TEXT,
    OracleGreetings,
    load_prompt_words,
    spoken_words,
)
from earpiece.cpa.evalset import Item, write_wav
from earpiece.cpa.tones import synth_tone

RATE = 8000


def _syllables(rng: np.random.Generator, dur_s: float) -> npt.NDArray[np.float64]:
    """Speech-like bursts (noise syllables of 0.12-0.22 s, 0.04-0.09 s apart) for ``dur_s``."""
    out: list[npt.NDArray[np.float64]] = []
    total = 0.0
    while total < dur_s:
        syl = float(rng.uniform(0.12, 0.22))
        n = int(syl * RATE)
        out.append(rng.normal(0, 3000, n) * np.hanning(n) ** 0.3)
        gap = float(rng.uniform(0.04, 0.09))
        out.append(np.zeros(int(gap * RATE)))
        total += syl + gap
    return np.concatenate(out)


def _clip(body: npt.NDArray[np.float64], lead_s: float, total_s: float,
          rng: np.random.Generator) -> npt.NDArray[np.int16]:
    x = np.zeros(int(total_s * RATE))
    s = int(lead_s * RATE)
    x[s:s + body.size] = body[: x.size - s]
    x += rng.normal(0, 15, x.size)
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight items: people, machines (one with a beep, one with no text), a ringback, silence."""
    root = tmp_path_factory.mktemp("evalset")
    rng = np.random.default_rng(7)
    items: list[Item] = []

    def add(label: str, group: str, x: npt.NDArray[np.int16], params: dict[str, Any]) -> None:
        rel = f"{label}/{label}-{sum(it.label == label for it in items):04d}.wav"
        write_wav(root / rel, x)
        items.append(Item(rel, label, group, "test", "synthetic", params))

    for text, dur, lead in (("Hello?", 0.45, 0.4), ("Hello, this is Mary speaking.", 1.3, 0.3),
                            ("喂，你好。", 0.7, 0.5)):
        body = _syllables(rng, dur)
        add("human", "amd", _clip(body, lead, 6.0, rng),
            {"text": text, "lead_s": lead, "greeting_s": round(body.size / RATE, 3)})
    for text, dur, lead, beep in (
            ("Hi, you've reached the voicemail of John Smith. Please leave a message.", 3.6,
             0.2, False),
            ("Please leave a message after the tone.", 1.6, 0.3, True),
            ("Hello, this is Sarah. I'm not available at the moment.", 2.2, 0.25, False)):
        body = _syllables(rng, dur)
        g = body.size / RATE
        if beep:
            body = np.concatenate([body, np.zeros(int(0.3 * RATE)),
                                   synth_tone([1000.0], 0.5, level_dbfs=-12.0)])
        add("machine", "amd", _clip(body, lead, 6.0, rng),
            {"text": text, "lead_s": lead, "greeting_s": round(g, 3), "beep": beep})
    add("machine", "amd", _clip(_syllables(rng, 5.0), 0.3, 6.0, rng), {"kind": "music"})
    ring = np.concatenate([synth_tone([440.0, 480.0], 2.0, level_dbfs=-20.0),
                           np.zeros(4 * RATE)] * 2)
    add("ringback", "tone", _clip(ring, 0.0, 12.0, rng), {"country": "us"})
    add("silence", "amd", _clip(np.zeros(1), 0.0, 6.0, rng), {})
    with open(root / "manifest.jsonl", "w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps(asdict(it), ensure_ascii=False) + "\n")
    # the stamp generate() checks: the CLI reuses this directory instead of rebuilding it
    (root / "VERSION").write_text(f"{evalset.VERSION} seed={evalset.SEED}\n")
    return root


@pytest.fixture(scope="module")
def curve(tiny_set: Path) -> dict[str, Any]:
    return bench_amd_sweep.sweep(tiny_set, "test")


# ---- sweep ------------------------------------------------------------------------------------
def test_sweep_grid_uses_the_models_own_human_p() -> None:
    model = load_default()
    grid = bench_amd_sweep.sweep_grid(model.human_p)
    assert grid[:9] == [(m, model.human_p) for m in bench_amd_sweep.SWEEP_MACHINE_P]
    assert all(m == 0.9 for m, _ in grid[9:])
    assert {h for _, h in grid[9:]} | {model.human_p} == set(bench_amd_sweep.SWEEP_HUMAN_P) | {
        model.human_p}
    assert len(grid) == len(set(grid))  # (0.9, model's human_p) is listed once
    assert (model.machine_p, model.human_p) in grid


def test_sweep_report_structure(curve: dict[str, Any], tiny_set: Path) -> None:
    model = load_default()
    assert set(curve) >= {"points", "baseline", "summary", "set"}
    grid = bench_amd_sweep.sweep_grid(model.human_p)
    assert [(p["machine_p"], p["human_p"]) for p in curve["points"]] == grid
    for p in curve["points"]:
        assert p["items"] == 7  # human/machine items only
        assert 0.0 <= p["accuracy_human_machine"] <= 1.0
        assert 0.0 < p["decision_median_s"] <= p["decision_p95_s"] < 8.0
        assert p["default"] == (p["machine_p"] == model.machine_p
                                and p["human_p"] == model.human_p)
    assert sum(p["default"] for p in curve["points"]) == 1
    assert curve["set"]["human_machine_items"] == 7 and curve["set"]["items"] == 9
    assert curve["others"]["items"] == 2 and curve["others"]["tone_accuracy"] == 1.0
    assert curve["words"] is None
    # a higher machine_p can only hold a machine verdict back: never an earlier median
    by_m = [p for p in curve["points"] if p["human_p"] == model.human_p]
    meds = [p["decision_median_s"] for p in by_m]
    assert meds == sorted(meds)


def test_sweep_points_and_baseline_equal_evaluate(curve: dict[str, Any], tiny_set: Path) -> None:
    keys = ("accuracy_human_machine", "decision_median_s", "decision_p95_s")
    report, _ = bench_amd.evaluate(tiny_set, "test")
    assert {k: curve["baseline"][k] for k in keys} == {k: report["baseline"][k] for k in keys}
    for p in (curve["points"][0], curve["points"][-1]):
        one, _ = bench_amd.evaluate(tiny_set, "test", machine_p=p["machine_p"],
                                    human_p=p["human_p"])
        assert {k: p[k] for k in keys} == {k: one["earpiece"][k] for k in keys}


def test_summary_picks_by_its_definition(curve: dict[str, Any]) -> None:
    b = curve["baseline"]
    s = curve["summary"]
    ok = [p for p in curve["points"]
          if p["accuracy_human_machine"] >= b["accuracy_human_machine"]]
    fast = s["fastest_at_least_as_accurate_as_baseline"]
    if ok:
        assert fast is not None
        assert fast["decision_median_s"] == min(p["decision_median_s"] for p in ok)
        assert fast["accuracy_human_machine"] >= b["accuracy_human_machine"]
        assert fast["dominates_baseline"] == (
            fast["accuracy_human_machine"] > b["accuracy_human_machine"]
            and fast["decision_median_s"] < b["decision_median_s"])
    else:
        assert fast is None


def test_summary_on_a_known_list() -> None:
    def pt(m: float, acc: float, med: float, p95: float = 3.0) -> dict[str, Any]:
        return {"machine_p": m, "human_p": 0.1, "accuracy_human_machine": acc,
                "decision_median_s": med, "decision_p95_s": p95}

    points = [pt(0.5, 0.70, 1.30), pt(0.6, 0.80, 1.50), pt(0.7, 0.75, 1.40),
              pt(0.8, 0.90, 1.70), pt(0.9, 0.97, 1.90), pt(0.95, 0.97, 1.90, 2.5)]
    base = {"accuracy_human_machine": 0.75, "decision_median_s": 1.6, "decision_p95_s": 2.4}
    s = bench_amd_sweep.summarise_sweep(points, base)
    fast = s["fastest_at_least_as_accurate_as_baseline"]
    assert fast is not None and fast["machine_p"] == 0.7  # 0.75 >= 0.75 at 1.40 s
    assert fast["dominates_baseline"] is False  # not strictly more accurate
    acc = s["most_accurate_at_least_as_fast_as_baseline"]
    assert acc is not None and acc["machine_p"] == 0.6  # 80 % at 1.50 <= 1.6 s
    assert acc["dominates_baseline"] is True
    # nothing as fast: None; ties on accuracy and median go to the lower p95
    s2 = bench_amd_sweep.summarise_sweep(points, {**base, "decision_median_s": 1.0,
                                                  "accuracy_human_machine": 0.97})
    assert s2["most_accurate_at_least_as_fast_as_baseline"] is None
    tie = s2["fastest_at_least_as_accurate_as_baseline"]
    assert tie is not None and tie["machine_p"] == 0.95 and not tie["dominates_baseline"]


def test_sweep_with_perfect_words(tiny_set: Path) -> None:
    grid = [(0.9, 0.1), (0.97, 0.1)]
    plain = bench_amd_sweep.sweep(tiny_set, "test", grid=grid)
    words = bench_amd_sweep.sweep(tiny_set, "test", grid=grid, words_oracle=True,
                                  oracle_delay_s=0.1)
    assert words["words"]["oracle"] is True and words["words"]["delay_s"] == 0.1
    assert words["words"]["items_without_text"] == 1  # the music item
    assert words["baseline"] == {**plain["baseline"], "cpu_s": words["baseline"]["cpu_s"]}
    for p in words["points"]:
        assert p["snapshots"] >= p["snapshots_with_words"] > 0


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench_amd.configure(parser)
    return parser.parse_args(argv)


def test_cli_sweep_json_and_table(tiny_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid_len = len(bench_amd_sweep.sweep_grid(load_default().human_p))
    assert bench_amd.main(_cli(["--dir", str(tiny_set), "--sweep", "--json"])) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["points"]) == grid_len and out["set"]["split"] == "test"
    assert bench_amd.main(_cli(["--dir", str(tiny_set), "--sweep"])) == 0
    text = capsys.readouterr().out
    assert "app_amd" in text and "(model's own point)" in text
    assert "fastest_at_least_as_accurate_as_baseline" in text


def test_cli_words_oracle_report(tiny_set: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--dir", str(tiny_set), "--words-oracle", "--oracle-delay", "0.2", "--json"]
    assert bench_amd.main(_cli(argv)) == 0
    w = json.loads(capsys.readouterr().out)["earpiece"]["words"]
    assert w["oracle"] is True and w["delay_s"] == 0.2 and w["decode_median_s"] == 0.2
    assert w["machine_p"] == bench_amd.WORDS_MACHINE_P and w["snapshots"] > 0


@pytest.mark.parametrize("argv", [["--sweep", "--machine-p", "0.8"], ["--sweep", "--words"],
                                  ["--sweep", "--amd", "rules"], ["--words", "--words-oracle"],
                                  ["--oracle-delay", "0.2"],
                                  ["--words-oracle", "--oracle-delay", "-1"]])
def test_cli_rejects_contradictory_options(argv: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_amd.main(_cli(["--dir", str(tmp_path / "never-built"), *argv])) == 2
    assert "earpiece bench amd:" in capsys.readouterr().err
    assert not (tmp_path / "never-built").exists()


# ---- the perfect recogniser ---------------------------------------------------------------------
def _item(params: dict[str, Any], name: str = "x/x-0000.wav") -> Item:
    return Item(name, "human", "amd", "test", "synthetic", params)


def _at(oracle: OracleGreetings, name: str, start_s: float, end_s: float) -> str:
    text, delay = oracle.for_item(name, "en")(np.zeros(1, dtype=np.int16),
                                              round(start_s * RATE), round(end_s * RATE))
    assert delay == oracle.delay_s
    return text


def test_oracle_english_prefixes_by_characters() -> None:
    # 29 characters over 2.9 s: 0.1 s a character, speech from 0.5 s
    it = _item({"text": "Hello, this is Mary speaking.", "lead_s": 0.5, "greeting_s": 2.9})
    o = OracleGreetings([it], delay_s=0.15)
    assert _at(o, it.file, 0.2, 0.5) == ""
    assert _at(o, it.file, 0.2, 0.94) == ""  # 4.4 characters: "Hell" is no word yet
    assert _at(o, it.file, 0.2, 1.0) == "Hello,"  # 5 characters, with its comma
    assert _at(o, it.file, 0.2, 1.8) == "Hello, this"  # 13: "is" ends at 14
    assert _at(o, it.file, 0.2, 1.9) == "Hello, this is"
    assert _at(o, it.file, 0.2, 2.5) == "Hello, this is Mary"
    assert _at(o, it.file, 0.2, 3.3) == "Hello, this is Mary speaking."  # its full stop too
    assert _at(o, it.file, 0.2, 6.0) == "Hello, this is Mary speaking."  # said once
    # a snapshot that starts 0.9 s into the greeting has lost "Hello, this"
    assert _at(o, it.file, 1.4, 3.4) == "is Mary speaking."
    assert o.snapshots == 9 and o.with_words == 7


def test_oracle_chinese_by_characters() -> None:
    it = _item({"text": "喂，你好。", "lead_s": 0.2, "greeting_s": 1.0})
    o = OracleGreetings([it])
    assert _at(o, it.file, 0.0, 0.3) == ""  # half a character
    assert _at(o, it.file, 0.0, 0.4) == "喂，"
    assert _at(o, it.file, 0.0, 0.7) == "喂，"  # 2.5 characters: 你 not finished
    assert _at(o, it.file, 0.0, 0.8) == "喂，你"
    assert _at(o, it.file, 0.0, 1.0) == "喂，你好。"


def test_oracle_without_known_text_hears_nothing() -> None:
    items = [_item({"kind": "music"}, "m.wav"), _item({"text": "", "greeting_s": 1.0}, "e.wav"),
             _item({"text": "Hello.", "lead_s": 0.1}, "nodur.wav"),
             _item({"prompts": ["hello", "no-such-prompt"], "lead_s": 0.1, "greeting_s": 1.0},
                   "p.wav")]
    o = OracleGreetings(items, prompt_words={"hello": "Hello."})
    for it in items:
        assert _at(o, it.file, 0.0, 5.0) == ""
    assert o.text_of(items[3]) is None
    with pytest.raises(KeyError):
        o.for_item("not-in-the-set.wav", "en")
    with pytest.raises(ValueError, match="delay_s"):
        OracleGreetings(items, delay_s=-0.1)


def test_oracle_prompt_items_use_the_prompt_list(tmp_path: Path) -> None:
    listing = tmp_path / "core-sounds-en.txt.gz"
    listing.write_bytes(gzip.compress(
        b"; Core Asterisk Sounds in English\n\nvm-theperson: The person at extension\n"
        b"digits/4: four\ndigits/2: two\nvm-isunavail: is unavailable\n"
        b"vm-intro: Please leave your message after the tone. (simple tone sound plays)\n"))
    words = load_prompt_words(listing)
    assert words["vm-intro"] == "Please leave your message after the tone."
    it = _item({"prompts": ["vm-theperson", "digits/4", "digits/2", "vm-isunavail"],
                "lead_s": 0.3, "greeting_s": 4.7})
    o = OracleGreetings([it], sounds_text=listing)
    full = "The person at extension four two is unavailable"  # 47 characters, 0.1 s each
    assert o.text_of(it) == full
    assert _at(o, it.file, 0.0, 0.3 + 2.4) == "The person at extension"
    assert _at(o, it.file, 0.0, 9.0) == full


@pytest.mark.skipif(not CORE_SOUNDS_TEXT.exists(), reason="asterisk-core-sounds-en docs")
def test_real_prompt_list_has_the_sets_prompts() -> None:
    words = load_prompt_words()
    for name in (*evalset.TUNE_PROMPTS, *evalset.TEST_PROMPTS, "digits/7"):
        assert words.get(name), name
    assert words["digits/7"] == "seven"
    assert "(" not in words["vm-intro"]


def test_spoken_words_bounds() -> None:
    assert spoken_words("", 0.0, 1.0) == ""
    assert spoken_words("Hi there.", -3.0, 7.0) == "Hi there."
    assert spoken_words("Hi there.", 0.5, 0.2) == ""
    assert spoken_words("Who's this?", 0.0, 0.5) == "Who's"


@pytest.mark.parametrize(("argv", "words"), [
    ([], True), (["--no-words"], False), (["--words"], True), (["--sweep"], False),
    (["--words-oracle"], False), (["--amd", "rules"], False),
])
def test_cli_measures_the_services_words_by_default(argv: list[str], words: bool) -> None:
    args = _cli(argv)
    assert bench_amd._check_args(args) is None
    assert args.words is words
