"""G.711 tables (bit-exact against the reference algorithm) and the streaming resampler."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from earpiece.media import g711
from earpiece.media.resample import Resampler, resample


def test_known_ulaw_alaw_values() -> None:
    assert g711.ulaw_to_linear(0xFF) == 0 and g711.ulaw_to_linear(0x7F) == 0
    assert g711.ulaw_to_linear(0x00) == -32124 and g711.ulaw_to_linear(0x80) == 32124
    assert g711.alaw_to_linear(0xD5) == 8 and g711.alaw_to_linear(0x55) == -8
    assert g711.alaw_to_linear(0xAA) == 32256 and g711.alaw_to_linear(0x2A) == -32256
    assert g711.linear_to_ulaw(0) == 0xFF
    assert g711.linear_to_alaw(0) == 0xD5


def test_tables_match_audioop_when_available() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        audioop = pytest.importorskip("audioop")
    b = bytes(range(256))
    assert (np.frombuffer(audioop.ulaw2lin(b, 2), np.int16) == g711.decode_ulaw(b)).all()
    assert (np.frombuffer(audioop.alaw2lin(b, 2), np.int16) == g711.decode_alaw(b)).all()
    x = np.arange(-32768, 32768, dtype=np.int16)
    assert audioop.lin2ulaw(x.tobytes(), 2) == g711.encode_ulaw(x)
    assert audioop.lin2alaw(x.tobytes(), 2) == g711.encode_alaw(x)


def test_decode_encode_is_identity_on_codewords() -> None:
    b = bytes(range(256))
    # u-law has two zero codes (0x7F, 0xFF): both decode to 0, which encodes to 0xFF.
    re_u = g711.encode_ulaw(g711.decode_ulaw(b))
    assert [i for i in range(256) if re_u[i] != i] == [0x7F]
    assert g711.encode_alaw(g711.decode_alaw(b)) == b


@given(arrays(np.int16, st.integers(1, 400)))
def test_quantisation_error_is_bounded(x: np.ndarray) -> None:
    for enc, dec in ((g711.encode_ulaw, g711.decode_ulaw), (g711.encode_alaw, g711.decode_alaw)):
        y = dec(enc(x)).astype(np.int32)
        err = np.abs(y - x.astype(np.int32))
        # logarithmic quantiser: error within ~1/16 of the magnitude (plus the small-step floor)
        assert (err <= np.abs(x.astype(np.int32)) // 16 + 140).all()


def tone(freq: float, rate: int, seconds: float = 1.0, amp: float = 10000) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


@pytest.mark.parametrize(("rin", "rout"), [(16000, 8000), (8000, 16000), (8000, 48000),
                                           (48000, 16000)])
def test_streaming_equals_one_block(rin: int, rout: int) -> None:
    x = tone(440, rin)
    whole = Resampler(rin, rout).process(x)
    r = Resampler(rin, rout)
    step = rin // 50
    parts = np.concatenate([r.process(x[i : i + step]) for i in range(0, len(x), step)])
    assert len(whole) == len(parts) == len(x) * rout // rin
    assert (whole == parts).all()


def test_passband_kept_and_alias_rejected() -> None:
    r = Resampler(16000, 8000)
    y = r.process(tone(1000, 16000)).astype(float)[200:]
    assert abs(np.sqrt(np.mean(y**2)) - 10000 / np.sqrt(2)) < 150  # 1 kHz passes
    y = Resampler(16000, 8000).process(tone(6000, 16000)).astype(float)[200:]
    assert np.sqrt(np.mean(y**2)) < 30  # 6 kHz would alias to 2 kHz by decimation: removed
    # the delay reported is the real one
    up = Resampler(8000, 16000)
    z = up.process(tone(300, 8000)).astype(float)
    ref = tone(300, 16000).astype(float)
    d = round(up.delay)
    assert np.corrcoef(z[d + 100 :], ref[100 : len(z) - d])[0, 1] > 0.999


def test_one_shot_resample_and_identity() -> None:
    x = tone(500, 8000)
    assert resample(x, 8000, 8000) is x
    y = resample(x, 8000, 16000)
    assert len(y) == 16000
    assert Resampler(8000, 8000).process(x) is x
    with pytest.raises(ValueError):
        Resampler(0, 8000)
