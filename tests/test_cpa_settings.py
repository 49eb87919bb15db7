"""``[cpa]`` AMD operating point: profiles, overrides, validation, and the detector they build."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.config import load_settings
from earpiece.cpa.detector import CallProgressDetector, CpaOptions, CpaResult
from earpiece.cpa.evalset import bandpass, ulaw_roundtrip
from earpiece.cpa.fork import options_from_settings
from earpiece.cpa.profiles import AMD_PROFILES, AmdProfile
from earpiece.cpa.settings import MIN_AMD_MAX_S, CpaSettings
from earpiece.errors import ConfigError


def options_of(tmp_path: Path, cpa_table: str) -> CpaOptions:
    path = tmp_path / "earpiece.toml"
    path.write_text("[cpa]\n" + cpa_table)
    return options_from_settings(load_settings(path, {}).cpa)


def error_of(tmp_path: Path, cpa_table: str) -> ConfigError:
    path = tmp_path / "earpiece.toml"
    path.write_text("[cpa]\n" + cpa_table)
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    return info.value


# --------------------------------------------------------------------------------------------
# Profiles
# --------------------------------------------------------------------------------------------


def test_balanced_profile_equals_the_packaged_model_defaults() -> None:
    text = resources.files("earpiece").joinpath("data", "amd_model.json").read_text("utf-8")
    model = json.loads(text)
    assert AMD_PROFILES["balanced"] == AmdProfile(machine_p=model["machine_p"],
                                                  human_p=model["human_p"],
                                                  min_silence_s=model["min_silence_s"])
    # ...and it is what an empty [cpa] section gets.
    assert CpaSettings().amd_profile == "balanced"
    assert CpaSettings().operating_point() == AMD_PROFILES["balanced"]


def test_profiles_trade_speed_for_accuracy() -> None:
    fast, balanced, accurate = (AMD_PROFILES[n] for n in ("fast", "balanced", "accurate"))
    assert set(AMD_PROFILES) == {"fast", "balanced", "accurate"}
    assert fast.machine_p < balanced.machine_p < accurate.machine_p
    assert fast.human_p >= balanced.human_p >= accurate.human_p
    for p in AMD_PROFILES.values():
        assert 0.0 < p.human_p < p.machine_p < 1.0 and p.min_silence_s >= 0.0


def test_min_amd_max_s_is_the_detectors_own_limit() -> None:
    assert MIN_AMD_MAX_S == CpaOptions().human_silence_s
    CpaOptions(max_s=MIN_AMD_MAX_S)  # accepted by the detector
    with pytest.raises(ValueError):
        CpaOptions(max_s=MIN_AMD_MAX_S - 0.01)


@pytest.mark.parametrize("name", ["fast", "balanced", "accurate"])
def test_toml_profile_reaches_the_detector_options(tmp_path: Path, name: str) -> None:
    opts = options_of(tmp_path, f'amd_profile = "{name}"\n')
    want = AMD_PROFILES[name]
    assert (opts.machine_p, opts.human_p, opts.min_silence_s) == \
        (want.machine_p, want.human_p, want.min_silence_s)
    assert opts.words_weight == 1.0 and opts.silence_timeout_s == 4.5
    assert opts.tone_plan == "us" and opts.max_s == 4.0 and opts.amd == "model"
    det = CallProgressDetector(opts)  # the detector uses these, not the model file's
    assert (det._machine_p, det._human_p, det._min_silence_s) == \
        (want.machine_p, want.human_p, want.min_silence_s)


def test_empty_section_gives_the_shipped_operating_point(tmp_path: Path) -> None:
    opts = options_of(tmp_path, "")
    b = AMD_PROFILES["balanced"]
    assert (opts.machine_p, opts.human_p, opts.min_silence_s) == \
        (b.machine_p, b.human_p, b.min_silence_s)


# --------------------------------------------------------------------------------------------
# Overrides, words, silence timeout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "want"),
    [
        ('amd_profile = "fast"\nmachine_p = 0.85\n', (0.85, 0.15, 0.25)),
        ('amd_profile = "accurate"\nhuman_p = 0.05\n', (0.93, 0.05, 0.25)),
        ("min_silence_s = 0.4\n", (0.90, 0.10, 0.4)),
        ("min_silence_s = 0\n", (0.90, 0.10, 0.0)),
        ('amd_profile = "fast"\nmachine_p = 0.95\nhuman_p = 0.2\nmin_silence_s = 0.3\n',
         (0.95, 0.2, 0.3)),
        ("machine_p = 0.12\nhuman_p = 0.11\n", (0.12, 0.11, 0.25)),
    ],
)
def test_overrides_replace_the_profile_values(tmp_path: Path, table: str,
                                              want: tuple[float, float, float]) -> None:
    opts = options_of(tmp_path, table)
    assert (opts.machine_p, opts.human_p, opts.min_silence_s) == pytest.approx(want)


def test_words_and_silence_timeout(tmp_path: Path) -> None:
    opts = options_of(tmp_path, "words = false\nsilence_timeout_s = 6\namd_max_s = 5.5\n")
    assert opts.words_weight == 0.0
    assert opts.silence_timeout_s == 6.0 and isinstance(opts.silence_timeout_s, float)
    assert opts.max_s == 5.5
    assert options_of(tmp_path, "words = true\n").words_weight == 1.0
    # words = false ignores ordinary words but a machine phrase still decides
    det = CallProgressDetector(opts)
    det.answer()
    assert det.add_transcript("hi, who is this?") is None
    r = det.add_transcript("please leave a message after the tone")
    assert r is not None and r.label == "machine"


# --------------------------------------------------------------------------------------------
# Validation errors name the key and the file
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "fragment"),
    [
        ('amd_profile = "turbo"\n', "cpa.amd_profile",
         "unknown profile 'turbo' (known: fast, balanced, accurate)"),
        ('amd_profile = "Fast"\n', "cpa.amd_profile", "unknown profile 'Fast'"),
        ("amd_profile = 1\n", "cpa.amd_profile", "expected a string"),
        ("machine_p = 1.0\n", "cpa.machine_p", "must lie strictly between 0 and 1, got 1.0"),
        ("machine_p = 1\n", "cpa.machine_p", "must lie strictly between 0 and 1"),
        ("machine_p = 1.5\n", "cpa.machine_p", "got 1.5"),
        ("human_p = 0.0\n", "cpa.human_p", "must lie strictly between 0 and 1, got 0.0"),
        ("human_p = -0.1\n", "cpa.human_p", "got -0.1"),
        ("human_p = nan\n", "cpa.human_p", "got nan"),
        ('machine_p = "high"\n', "cpa.machine_p", "expected a number, got 'high'"),
        ("machine_p = 0.6\nhuman_p = 0.6\n", "cpa.human_p",
         "human_p 0.6 must be below machine_p 0.6"),
        ('amd_profile = "fast"\nhuman_p = 0.85\n', "cpa.human_p",
         "human_p 0.85 must be below machine_p 0.8 (profile 'fast')"),
        ("machine_p = 0.05\n", "cpa.machine_p",
         "human_p 0.1 (profile 'balanced') must be below machine_p 0.05"),
        ("min_silence_s = -0.1\n", "cpa.min_silence_s", "must not be negative, got -0.1"),
        ("silence_timeout_s = -1\n", "cpa.silence_timeout_s",
         "must be a positive number of seconds, got -1.0"),
        ("silence_timeout_s = 0\n", "cpa.silence_timeout_s", "must be a positive number"),
        ("amd_max_s = -4\n", "cpa.amd_max_s", "must be at least 0.5 s, got -4.0"),
        ("amd_max_s = 0.3\n", "cpa.amd_max_s", "must be at least 0.5 s, got 0.3"),
        ('words = "yes"\n', "cpa.words", "expected true/false"),
        ("amd_profil = \"fast\"\n", "cpa.amd_profil", "unknown key"),
    ],
)
def test_validation_errors_name_key_and_file(tmp_path: Path, table: str, key: str,
                                             fragment: str) -> None:
    err = error_of(tmp_path, table)
    file = str(tmp_path / "earpiece.toml")
    assert (err.key, err.file) == (key, file)
    assert str(err).startswith(f"{file}: {key}: ")
    assert fragment in str(err)
    assert str(err).count(key.split(".")[-1] + ":") == 1  # the key is not repeated


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^machine_p: must lie strictly between") as info:
        CpaSettings(machine_p=2.0)
    assert info.value.key == "machine_p" and info.value.file is None
    with pytest.raises(ConfigError, match="unknown profile"):
        CpaSettings(amd_profile="slow")


# --------------------------------------------------------------------------------------------
# The profile changes when the detector decides
# --------------------------------------------------------------------------------------------


def _line(x: npt.NDArray[np.float64], seed: int = 0) -> npt.NDArray[np.int16]:
    """Band-limited, G.711-coded audio with noise 30 dB below the signal (as tests/test_cpa)."""
    rng = np.random.default_rng(seed)
    y = bandpass(x)
    ref = np.sqrt((y[np.abs(y) > 100] ** 2).mean())
    n = bandpass(rng.standard_normal(y.size))
    y = ulaw_roundtrip(y + n / np.sqrt((n**2).mean()) * ref * 10 ** (-30.0 / 20))
    return np.clip(y, -32768, 32767).astype(np.int16)


def _long_greeting() -> npt.NDArray[np.int16]:
    """0.3 s of silence, then ten 0.3 s speech-like bursts 0.12 s apart (a 4 s recording)."""
    rng = np.random.default_rng(3)
    parts = [np.zeros(2400)]
    for _ in range(10):
        parts += [rng.normal(0, 2500, 2400), np.zeros(960)]
    parts.append(np.zeros(8000))
    return _line(np.concatenate(parts))


def _decide(opts: CpaOptions, pcm: npt.NDArray[np.int16]) -> CpaResult:
    """Run the fork's detector (it starts before answer) answered at the first frame."""
    det = CallProgressDetector(opts)
    det.answer()
    for i in range(0, pcm.size - 159, 160):
        r = det.feed(pcm[i:i + 160])
        if r is not None:
            return r
    return det.finish()


def test_fast_decides_a_long_greeting_no_later_than_accurate(tmp_path: Path) -> None:
    pcm = _long_greeting()
    results = {name: _decide(options_of(tmp_path, f'amd_profile = "{name}"\n'), pcm)
               for name in ("fast", "balanced", "accurate")}
    for name, r in results.items():
        assert r.label == "machine", name
        assert r.evidence["rule"] == "model", name  # the model's score, not the 3 s hard limit
        assert r.evidence["p_machine"] >= AMD_PROFILES[name].machine_p
    fast, balanced, accurate = (results[n].decision_s for n in ("fast", "balanced", "accurate"))
    assert fast <= balanced <= accurate
    # on this greeting the profiles really differ (fast decides on less evidence)
    assert fast < accurate
    assert results["fast"].evidence["p_machine"] < AMD_PROFILES["accurate"].machine_p
    # an override beats the profile: "accurate" with fast's machine_p decides like "fast"
    over = _decide(options_of(tmp_path, 'amd_profile = "accurate"\nmachine_p = 0.8\n'), pcm)
    assert over.label == "machine" and math.isclose(over.decision_s, fast)
