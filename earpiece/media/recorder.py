"""Per-call recordings: one mono WAV per party and, optionally, a stereo customer/agent file.

The recorder subscribes to the frame hub. Frames are buffered in memory per (call, party) and
written about once a second by a single writer thread, so the event loop never waits on the
disk. The stereo file (left = customer, right = agent) is assembled from the two mono files when
the call ends, each party placed at its stream's start time. :func:`purge_expired` deletes call
folders older than ``retention_days``.

Layout: ``<directory>/<YYYY-MM-DD>/<call_id>/{customer,agent,stereo}.wav``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
import time
import wave
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from earpiece.events import Party
from earpiece.media.frames import AudioFrame
from earpiece.media.settings import RecordingSettings

log = logging.getLogger(__name__)

FLUSH_FRAMES = 50
PARTIES: tuple[Party, Party] = ("customer", "agent")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(call_id: str) -> str:
    name = _SAFE.sub("_", call_id).strip("._")
    return name or "call"


@dataclass
class _PartyTrack:
    path: Path
    rate: int
    start: float  # seconds on the delivery clock of frame index 0
    pending: list[npt.NDArray[np.int16]] = field(default_factory=list)
    writer: wave.Wave_write | None = None
    frames: int = 0
    next_index: int = 0


@dataclass
class _CallRecording:
    call_id: str
    folder: Path
    tracks: dict[str, _PartyTrack] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordingResult:
    call_id: str
    folder: Path
    files: dict[str, Path]
    seconds: dict[str, float]


class Recorder:
    def __init__(self, settings: RecordingSettings, *, clock_wall: float | None = None) -> None:
        self.settings = settings
        self._calls: dict[str, _CallRecording] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="recorder")
        self._day = time.strftime("%Y-%m-%d", time.gmtime(clock_wall))
        self.write_errors = 0
        self.purged = 0
        self._purge_task: asyncio.Task[None] | None = None

    async def start(self, *, purge_every_s: float = 3600.0) -> None:
        """Apply the retention setting now and then every ``purge_every_s`` (writer thread)."""
        if self._purge_task is None:
            self._purge_task = asyncio.create_task(self._purge_loop(purge_every_s),
                                                   name="recordings-retention")

    async def _purge_loop(self, every_s: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            removed = await loop.run_in_executor(
                self._pool, purge_expired, Path(self.settings.directory),
                self.settings.retention_days,
            )
            if removed:
                self.purged += len(removed)
                log.info("recordings retention: removed %d call folder(s)", len(removed))
            await asyncio.sleep(every_s)

    # -- hub callback (event loop) -----------------------------------------------------------

    def start_call(self, call_id: str) -> Path | None:
        """Start recording ``call_id`` (``None`` when recordings are disabled)."""
        if not self.settings.enabled:
            return None
        rec = self._calls.get(call_id)
        if rec is None:
            folder = Path(self.settings.directory) / self._day / safe_name(call_id)
            rec = self._calls[call_id] = _CallRecording(call_id, folder)
        return rec.folder

    def on_frame(self, frame: AudioFrame) -> None:
        rec = self._calls.get(frame.call_id)
        if rec is None:
            return  # not recorded (disabled, or the call ended)
        tr = rec.tracks.get(frame.party)
        if tr is None:
            tr = rec.tracks[frame.party] = _PartyTrack(
                rec.folder / f"{frame.party}.wav", frame.rate,
                frame.delivered_at - frame.timestamp,
            )
        gap = frame.index - tr.next_index
        if gap > 0:  # frames lost before the stream's consumers: keep the timeline
            tr.pending.append(np.zeros(gap * len(frame.pcm), dtype=np.int16))
        tr.next_index = frame.index + 1
        tr.pending.append(frame.pcm)
        if len(tr.pending) >= FLUSH_FRAMES:
            self._submit(tr)

    def _submit(self, tr: _PartyTrack) -> Future[None]:
        chunk, tr.pending = tr.pending, []
        return self._pool.submit(self._write, tr, chunk)

    def end_call(self, call_id: str) -> Future[RecordingResult] | None:
        rec = self._calls.pop(call_id, None)
        if rec is None:
            return None
        for tr in rec.tracks.values():
            self._submit(tr)
        return self._pool.submit(self._finish, rec)

    async def close(self) -> None:
        if self._purge_task is not None:
            self._purge_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._purge_task
            self._purge_task = None
        futures = [f for f in (self.end_call(c) for c in list(self._calls)) if f is not None]
        for fut in futures:
            await asyncio.wrap_future(fut)
        await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown)

    # -- writer thread -----------------------------------------------------------------------

    def _write(self, tr: _PartyTrack, chunk: list[npt.NDArray[np.int16]]) -> None:
        try:
            if tr.writer is None:
                tr.path.parent.mkdir(parents=True, exist_ok=True)
                w = wave.open(str(tr.path), "wb")
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(tr.rate)
                tr.writer = w
            data = np.concatenate(chunk) if chunk else np.zeros(0, dtype=np.int16)
            tr.writer.writeframes(data.astype("<i2").tobytes())
            tr.frames += len(data)
        except OSError:
            self.write_errors += 1
            log.exception("recording write failed: %s", tr.path)

    def _finish(self, rec: _CallRecording) -> RecordingResult:
        files: dict[str, Path] = {}
        seconds: dict[str, float] = {}
        for party, tr in rec.tracks.items():
            if tr.writer is not None:
                tr.writer.close()
                tr.writer = None
                files[party] = tr.path
                seconds[party] = tr.frames / tr.rate
        if self.settings.stereo and len(files) == 2:
            try:
                files["stereo"] = self._stereo(rec)
            except (OSError, ValueError):
                self.write_errors += 1
                log.exception("stereo recording failed for %s", rec.call_id)
        return RecordingResult(rec.call_id, rec.folder, files, seconds)

    def _stereo(self, rec: _CallRecording) -> Path:
        cust, agent = rec.tracks["customer"], rec.tracks["agent"]
        if cust.rate != agent.rate:
            raise ValueError("parties recorded at different rates")
        rate = cust.rate
        t0 = min(cust.start, agent.start)
        chans = []
        for tr in (cust, agent):
            with wave.open(str(tr.path), "rb") as r:
                pcm = np.frombuffer(r.readframes(r.getnframes()), dtype="<i2")
            off = max(0, round((tr.start - t0) * rate))
            chans.append((off, pcm))
        n = max(off + len(p) for off, p in chans)
        out = np.zeros((n, 2), dtype="<i2")
        for ch, (off, pcm) in enumerate(chans):
            out[off : off + len(pcm), ch] = pcm
        path = rec.folder / "stereo.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(out.tobytes())
        return path


def purge_expired(directory: Path, retention_days: int, *, now: float | None = None) -> list[Path]:
    """Delete call folders (``<day>/<call>``) last modified more than ``retention_days`` ago.

    ``retention_days <= 0`` keeps everything. Empty day folders are removed too.
    """
    removed: list[Path] = []
    if retention_days <= 0 or not directory.is_dir():
        return removed
    cutoff = (time.time() if now is None else now) - retention_days * 86400
    for day in sorted(p for p in directory.iterdir() if p.is_dir()):
        for call in [p for p in day.iterdir() if p.is_dir()]:
            try:
                newest = max([call.stat().st_mtime] + [f.stat().st_mtime for f in call.iterdir()])
            except OSError:
                continue
            if newest < cutoff:
                shutil.rmtree(call, ignore_errors=True)
                removed.append(call)
        with contextlib.suppress(OSError):
            if not any(day.iterdir()):
                day.rmdir()
    return removed
