"""Evaluation-set generator: channel model pieces, determinism and the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from earpiece.cpa import evalset
from earpiece.media.g711 import decode_ulaw, encode_ulaw


def test_ulaw_roundtrip_matches_the_g711_codec() -> None:
    x = np.arange(-32768, 32768, 7, dtype=np.int64)
    ours = evalset.ulaw_roundtrip(x.astype(np.float64))
    ref = decode_ulaw(encode_ulaw(x.astype(np.int16)))
    diff = np.abs(ours - ref.astype(np.float64))
    # identical except at a few decision boundaries, and then by one quantisation step
    assert np.mean(diff > 0) < 0.01
    assert np.all(diff <= np.abs(x) / 16 + 16)


def test_bandpass_is_a_telephone_band() -> None:
    t = np.arange(8000) / 8000

    def gain(f: float) -> float:
        y = evalset.bandpass(np.sin(2 * np.pi * f * t))[2000:]
        return float(np.sqrt(2 * (y**2).mean()))

    assert gain(1000) > 0.9
    assert gain(100) < 0.1 and gain(3900) < 0.2


def test_channel_hits_the_requested_snr() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(16000) / 8000
    x = 3000 * np.sin(2 * np.pi * 700 * t)
    y = evalset.channel(x, rng, snr_db=20.0).astype(np.float64)
    clean = evalset.bandpass(x)
    noise = y - clean
    snr = 10 * np.log10((clean[1000:] ** 2).mean() / (noise[1000:] ** 2).mean())
    assert 17 < snr < 23


@pytest.mark.slow
@pytest.mark.skipif(not evalset.SOUNDS.exists(), reason="asterisk-core-sounds-en-wav")
def test_generate_is_deterministic_and_reused(tmp_path: Path) -> None:
    a = evalset.generate(tmp_path / "a")
    lines = (a / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
    items = [json.loads(x) for x in lines]
    labels = {i["label"] for i in items}
    assert labels == {"human", "machine", "silence", "fax", "ringback", "busy", "congestion",
                      "sit"}
    assert {i["split"] for i in items} == {"tune", "test"}
    # held-out voices and prompts never appear in the tuning split
    for i in items:
        voice = i["params"].get("voice")
        if voice in evalset.TEST_VOICES + evalset.TEST_CMN_VOICES:
            assert i["split"] == "test"
        if set(i["params"].get("prompts", [])) & set(evalset.TEST_PROMPTS):
            assert i["split"] == "test"
    # v2: 1-2 s live greetings and short recorded greetings (always with a beep) in both splits
    long_h = [i for i in items if i["params"].get("text") in evalset.HUMAN_EN_LONG]
    short_m = [i for i in items if i["params"].get("text") in evalset.MACHINE_SHORT_EN]
    assert {i["split"] for i in long_h} == {i["split"] for i in short_m} == {"tune", "test"}
    assert all(i["label"] == "human" for i in long_h)
    assert all(i["label"] == "machine" and i["params"]["beep"] for i in short_m)
    assert any(i["params"].get("beep_wav") for i in short_m)
    assert max(i["params"]["greeting_s"] for i in long_h) > 1.5
    stamp = (a / "VERSION").stat().st_mtime_ns
    assert evalset.generate(tmp_path / "a") == a
    assert (a / "VERSION").stat().st_mtime_ns == stamp  # reused, not rebuilt
    b = evalset.generate(tmp_path / "b")
    assert (b / "manifest.jsonl").read_text(encoding="utf-8") == "\n".join(lines) + "\n"
    for i in items[::40]:
        assert (a / i["file"]).read_bytes() == (b / i["file"]).read_bytes()
