"""Recordings: per-party WAVs, a stereo file aligned on stream start, retention purge."""

from __future__ import annotations

import asyncio
import os
import time
import wave
from pathlib import Path

import numpy as np

from earpiece.media.frames import AudioFrame
from earpiece.media.recorder import Recorder, purge_expired, safe_name
from earpiece.media.settings import RecordingSettings


def frame(call: str, party: str, index: int, value: int, start: float) -> AudioFrame:
    pcm = np.full(160, value, dtype=np.int16)
    return AudioFrame(call, party, index, pcm, 8000,  # type: ignore[arg-type]
                      index * 0.02, False, False, start + index * 0.02)


def read(path: Path) -> tuple[np.ndarray, int, int]:
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
        return data.reshape(-1, w.getnchannels()), w.getnchannels(), w.getframerate()


async def test_mono_and_stereo_alignment(tmp_path: Path) -> None:
    rec = Recorder(RecordingSettings(directory=tmp_path, stereo=True))
    folder = rec.start_call("call/../1")
    assert folder is not None
    assert folder.name == safe_name("call/../1") == "call_.._1"
    assert folder.parent.parent == tmp_path and safe_name("..") == "call"
    for i in range(120):  # customer: 2.4 s from t=100.0
        rec.on_frame(frame("call/../1", "customer", i, 1000, 100.0))
    for i in range(100):  # agent: joined 0.5 s later; frames 40..49 lost before us
        if not 40 <= i < 50:
            rec.on_frame(frame("call/../1", "agent", i, -2000, 100.5))
    rec.on_frame(frame("other", "agent", 0, 5, 0.0))  # a call not being recorded: ignored
    fut = rec.end_call("call/../1")
    assert fut is not None
    result = await asyncio.wrap_future(fut)
    assert set(result.files) == {"customer", "agent", "stereo"}
    assert result.seconds == {"customer": 2.4, "agent": 2.0}
    cust, ch, rate = read(result.files["customer"])
    assert (ch, rate, len(cust)) == (1, 8000, 120 * 160)
    agent, _, _ = read(result.files["agent"])
    assert len(agent) == 100 * 160  # the gap is kept as silence
    assert (agent[40 * 160 : 50 * 160] == 0).all() and (agent[:160] == -2000).all()
    st, ch, _ = read(result.files["stereo"])
    assert ch == 2 and len(st) == max(120 * 160, 4000 + 100 * 160)
    assert (st[: 120 * 160, 0] == 1000).all()
    assert (st[:4000, 1] == 0).all() and st[4000, 1] == -2000  # agent placed 0.5 s in
    await rec.close()
    assert not (tmp_path / "other").exists()


async def test_no_stereo_when_disabled_or_one_party(tmp_path: Path) -> None:
    rec = Recorder(RecordingSettings(directory=tmp_path, stereo=False))
    rec.start_call("a")
    for i in range(60):
        rec.on_frame(frame("a", "customer", i, 1, 0.0))
        rec.on_frame(frame("a", "agent", i, 2, 0.0))
    fut = rec.end_call("a")
    assert fut is not None
    assert set((await asyncio.wrap_future(fut)).files) == {"customer", "agent"}
    await rec.close()


def test_purge_expired_respects_retention(tmp_path: Path) -> None:
    now = time.time()
    old = tmp_path / "2020-01-01" / "old-call"
    new = tmp_path / "2026-11-23" / "new-call"
    for d, age_days in ((old, 40), (new, 1)):
        d.mkdir(parents=True)
        f = d / "customer.wav"
        f.write_bytes(b"RIFF")
        t = now - age_days * 86400
        os.utime(f, (t, t))
        os.utime(d, (t, t))
    assert purge_expired(tmp_path, 30, now=now) == [old]
    assert not old.exists() and not old.parent.exists() and new.exists()
    assert purge_expired(tmp_path, 0, now=now + 1e9) == []  # 0 = keep forever
    assert purge_expired(tmp_path / "missing", 30) == []


async def test_disabled_records_nothing_and_retention_runs_on_start(tmp_path: Path) -> None:
    off = Recorder(RecordingSettings(directory=tmp_path, enabled=False))
    assert off.start_call("x") is None
    off.on_frame(frame("x", "customer", 0, 1, 0.0))
    assert off.end_call("x") is None
    await off.close()
    stale = tmp_path / "2001-01-01" / "c"
    stale.mkdir(parents=True)
    os.utime(stale, (0, 0))
    rec = Recorder(RecordingSettings(directory=tmp_path, retention_days=7))
    await rec.start()
    for _ in range(100):
        if rec.purged:
            break
        await asyncio.sleep(0.01)
    await rec.close()
    assert rec.purged == 1 and not stale.exists()
