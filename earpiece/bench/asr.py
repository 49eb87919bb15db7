"""``earpiece bench asr [--json] [--quick] [--prompts N] [--streams-max N]``.

Streaming speech recognition on this machine, with real recorded speech:

(a) **WER** on Asterisk's English prompts (``asterisk-core-sounds-en-wav``; words from the
    package's transcript file, case/punctuation/numbers normalised), 8 kHz through a G.711
    u-law round trip, transcribed by the streaming pipeline's parts (VAD, utterance cuts,
    short-window decoder, filters). Beside it, ``reference_wer``: plain batch faster-whisper
    (``WhisperModel.transcribe``: 30 s window, beam 5, default options) on the same clips.
(b) **Final latency**: the prompts, separated by silence, streamed in 20 ms frames at real-time
    pace through :class:`AsrService` (VAD -> scheduler -> workers -> Transcript events);
    latency = wall time of the final transcript - wall time at which the last voiced sample
    of the prompt was fed (so the VAD's hangover is included).
(c) **RTF**: decoding seconds per second of audio, for the finals of (a).
(d) **Concurrent streams**: N streams, each prompts at a 40 % speech duty cycle, all real
    time; N grows until the final latency p95 exceeds 1.5 s (or finals are dropped).
(e) **Mandarin CER** on espeak-ng ``cmn`` speech (pinyin input): *synthetic*, and espeak's
    Mandarin is weak, so this is a smoke figure, not an accuracy claim; batch reference beside.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import shutil
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from earpiece.asr.model import LoadedModel
    from earpiece.asr.runner import WhisperRunner
    from earpiece.asr.stream import StreamSettings

log = logging.getLogger(__name__)

SOUNDS = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = (
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
    Path("/usr/share/doc/asterisk-core-sounds-en-wav/core-sounds-en.txt.gz"),
)
LATENCY_TARGET_S = 1.5
RATE = 8000

#: Mandarin sentences (simplified characters) with the pinyin espeak-ng reads.
ZH_SENTENCES: tuple[tuple[str, str], ...] = (
    ("你好，我想查询一下我的账户余额。",
     "ni3 hao3, wo3 xiang3 cha2 xun2 yi2 xia4 wo3 de5 zhang4 hu4 yu2 e2."),
    ("请问你们的营业时间是几点到几点？",
     "qing3 wen4 ni3 men5 de5 ying2 ye4 shi2 jian1 shi4 ji3 dian3 dao4 ji3 dian3?"),
    ("我对这个产品很满意。", "wo3 dui4 zhe4 ge4 chan3 pin3 hen3 man3 yi4."),
    ("谢谢你的帮助，再见。", "xie4 xie4 ni3 de5 bang1 zhu4, zai4 jian4."),
    ("我现在没有时间，请稍后再打来。",
     "wo3 xian4 zai4 mei2 you3 shi2 jian1, qing3 shao1 hou4 zai4 da3 lai2."),
    ("这个价格太贵了。", "zhe4 ge4 jia4 ge2 tai4 gui4 le5."),
    ("我想换一个新的手机。", "wo3 xiang3 huan4 yi2 ge4 xin1 de5 shou3 ji1."),
    ("你们有没有优惠活动？", "ni3 men5 you3 mei2 you3 you1 hui4 huo2 dong4?"),
    ("我的电话号码是一三八一二三四五六七八。",
     "wo3 de5 dian4 hua4 hao4 ma3 shi4 yi1 san1 ba1 yi1 er4 san1 si4 wu3 liu4 qi1 ba1."),
    ("明天下午三点可以吗？", "ming2 tian1 xia4 wu3 san1 dian3 ke3 yi3 ma5?"),
    ("我不需要，谢谢。", "wo3 bu4 xu1 yao4, xie4 xie4."),
    ("请把合同发到我的邮箱。", "qing3 ba3 he2 tong5 fa1 dao4 wo3 de5 you2 xiang1."),
)


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str
    pcm: npt.NDArray[np.int16]  # 8 kHz after the G.711 round trip

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / RATE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--prompts", type=int, default=None,
                        help="prompts for the WER (default 120, quick 20)")
    parser.add_argument("--streams-max", type=int, default=None,
                        help="stop the concurrency search here (default 12, quick 4)")
    parser.add_argument("--level-seconds", type=float, default=None,
                        help="seconds of audio per concurrency level (default 40, quick 15)")
    parser.add_argument("--model", default=None, help='"base" (default), "tiny.en" or a path')
    parser.add_argument("--device", default=None, help="auto, cpu or cuda")
    parser.add_argument("--compute-type", default=None, help="int8 (default), float16...")
    parser.add_argument("--workers", type=int, default=None, help="decoding workers")
    parser.add_argument("--cpu-threads", type=int, default=None,
                        help="threads per worker (default: cores / workers)")
    parser.add_argument("--pad-s", type=float, default=None,
                        help="silence after the audio in the encoder window (decoder default)")
    parser.add_argument("--min-window-s", type=float, default=None,
                        help="shortest encoder window (decoder default)")
    parser.add_argument("--short-min-window-s", type=float, default=None,
                        help="shortest encoder window for short audio (decoder default)")
    parser.add_argument("--short-audio-s", type=float, default=None,
                        help="audio shorter than this is short (decoder default; 0: off)")
    parser.add_argument("--preroll-s", type=float, default=None,
                        help="audio kept before an utterance's first voiced frame")
    parser.add_argument("--short-prompts", type=int, default=None,
                        help="prompts of <= 1.5 s for the short-utterance WER (default 80, "
                        "quick 40)")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the batch faster-whisper reference runs")
    parser.add_argument("--skip", default="",
                        help="comma-separated parts to skip: wer,short,latency,streams,zh")


# -- data ------------------------------------------------------------------------------------

def transcript_lines() -> dict[str, str]:
    for path in TRANSCRIPTS:
        if path.is_file():
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                out: dict[str, str] = {}
                for line in fh:
                    if line.startswith(";") or ":" not in line:
                        continue
                    name, text = line.split(":", 1)
                    out[name.strip()] = text.strip()
                return out
    raise FileNotFoundError("core-sounds-en.txt.gz not found (apt install "
                            "asterisk-core-sounds-en-wav)")


def g711_round_trip(pcm: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    from earpiece.media.g711 import decode_ulaw, encode_ulaw

    return decode_ulaw(encode_ulaw(pcm))


def read_wav_8k(path: Path) -> npt.NDArray[np.int16]:
    import numpy as np

    with wave.open(str(path)) as w:
        if w.getframerate() != RATE or w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: not 8 kHz 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def load_prompts(n: int, *, seed: int = 0, max_s: float = 28.0) -> list[Prompt]:
    """``n`` prompts with words (not tones or silence), chosen reproducibly at random."""
    import numpy as np

    lines = transcript_lines()
    names = sorted(
        name for name, text in lines.items()
        if text and "[" not in text and "(" not in text and any(c.isalpha() for c in text)
        and (SOUNDS / f"{name}.wav").is_file()
    )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    out: list[Prompt] = []
    for i in order:
        name = names[int(i)]
        pcm = read_wav_8k(SOUNDS / f"{name}.wav")
        if len(pcm) / RATE > max_s or len(pcm) < RATE // 4:
            continue
        out.append(Prompt(name, lines[name], g711_round_trip(pcm)))
        if len(out) >= n:
            break
    return out


#: Short prompts always in the short-utterance set: the greetings a call opens and closes with.
GREETINGS = ("hello", "hello-world", "goodbye", "vm-goodbye")


def load_short_prompts(n: int, *, seed: int = 0, max_s: float = 1.5) -> list[Prompt]:
    """The short-utterance set: :data:`GREETINGS` plus prompts of at most ``max_s`` with
    words (single words, digits, letters, short phrases), chosen reproducibly at random, ``n``
    in all, each through the G.711 round trip."""
    import numpy as np

    lines = transcript_lines()
    names = sorted(
        name for name, text in lines.items()
        if text and not any(c in text for c in "[(<") and "..." not in text
        and any(c.isalpha() for c in text) and (SOUNDS / f"{name}.wav").is_file()
        and name not in GREETINGS
    )
    rng = np.random.default_rng(seed)
    order = [n_ for n_ in GREETINGS if n_ in lines] + [names[int(i)]
                                                     for i in rng.permutation(len(names))]
    out: list[Prompt] = []
    for name in order:
        pcm = read_wav_8k(SOUNDS / f"{name}.wav")
        if len(pcm) / RATE > max_s or len(pcm) < RATE // 4:
            continue
        out.append(Prompt(name, lines[name], g711_round_trip(pcm)))
        if len(out) >= n:
            break
    return out


def speech_bounds(pcm: npt.NDArray[np.int16], threshold_dbfs: float = -45.0) -> tuple[float,
                                                                                      float]:
    """First and last 10 ms with energy above ``threshold_dbfs`` (the prompt's speech)."""
    import numpy as np

    hop = RATE // 100
    n = len(pcm) // hop
    frames = pcm[: n * hop].astype(np.float64).reshape(n, hop)
    db = 10 * np.log10((frames ** 2).mean(axis=1) / 32768.0 ** 2 + 1e-12)
    voiced = np.flatnonzero(db > threshold_dbfs)
    if not len(voiced):
        return 0.0, 0.0
    return float(voiced[0] * hop / RATE), float((voiced[-1] + 1) * hop / RATE)


def espeak_cmn(pinyin: str, workdir: Path) -> npt.NDArray[np.int16]:
    """espeak-ng Mandarin (pinyin input) at 8 kHz after a G.711 round trip."""
    import numpy as np
    from scipy.signal import resample_poly

    wav = workdir / "zh.wav"
    subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-w", str(wav), pinyin], check=True,
                   capture_output=True)
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    g = int(np.gcd(rate, RATE))
    y = resample_poly(x, RATE // g, rate // g)
    return g711_round_trip(np.clip(np.round(y), -32768, 32767).astype(np.int16))


# -- (a) WER, (c) RTF, reference ----------------------------------------------------------------

def pipeline_text(runner: WhisperRunner, pcm: npt.NDArray[np.int16],
                  language: str, stream: StreamSettings | None = None) -> tuple[str, float]:
    """Streaming-pipeline transcript of one clip (offline pace) and the decode seconds."""
    import numpy as np

    from earpiece.asr.file import transcribe_party

    padded = np.concatenate([np.zeros(RATE // 2, np.int16), pcm, np.zeros(RATE, np.int16)])
    r = transcribe_party(padded, RATE, runner, language=language, settings=stream)
    return str(r["text"]), float(r["decode_s"])


def batch_text(loaded: LoadedModel, pcm: npt.NDArray[np.int16], language: str) -> str:
    from earpiece.asr.runner import to_16k_float

    segments, _ = loaded.model.transcribe(to_16k_float(pcm, RATE), language=language,
                                          vad_filter=False)
    return " ".join(s.text.strip() for s in segments)


def measure_wer(runner: WhisperRunner, loaded: LoadedModel, prompts: list[Prompt], *,
                reference: bool, stream: StreamSettings | None = None,
                prefix: str = "") -> dict[str, Any]:
    """WER of the pipeline (and of the batch reference) on ``prompts``; keys ``wer``,
    ``reference_wer``, ``wer_prompts``... or, with ``prefix="short"``, ``short_wer``,
    ``short_reference_wer``, ``short_prompts``..."""
    from earpiece.asr.metrics import ErrorRate, normalize_en

    ours, ref = ErrorRate(), ErrorRate()
    decode_s = audio_s = ref_s = 0.0
    worst: list[tuple[int, str, str, str]] = []
    for p in prompts:
        words = normalize_en(p.text)
        text, secs = pipeline_text(runner, p.pcm, "en", stream)
        decode_s += secs
        audio_s += p.duration_s
        e = ours.add(words, normalize_en(text))
        if e:
            worst.append((e, p.name, p.text, text))
        if reference:
            t0 = time.monotonic()
            ref.add(words, normalize_en(batch_text(loaded, p.pcm, "en")))
            ref_s += time.monotonic() - t0
    worst.sort(reverse=True)
    worst_out = [{"prompt": n, "errors": e, "ref": r, "hyp": h} for e, n, r, h in worst[:8]]
    if prefix:
        return {
            f"{prefix}_wer": round(ours.rate, 4),
            f"{prefix}_reference_wer": round(ref.rate, 4) if reference else None,
            f"{prefix}_prompts": ours.utterances,
            f"{prefix}_words": ours.ref_tokens,
            f"{prefix}_decode_s": round(decode_s / max(1, ours.utterances), 3),
            f"{prefix}_errors": [{"prompt": n, "ref": r, "hyp": h}
                                 for _, n, r, h in sorted(worst, key=lambda w: w[1])],
        }
    return {
        "wer": round(ours.rate, 4),
        "reference_wer": round(ref.rate, 4) if reference else None,
        "wer_prompts": ours.utterances,
        "wer_words": ours.ref_tokens,
        "rtf": round(decode_s / audio_s, 4) if audio_s else None,
        "reference_rtf": round(ref_s / audio_s, 4) if reference and audio_s else None,
        "wer_worst": worst_out,
    }


def measure_zh(runner: WhisperRunner, loaded: LoadedModel, n: int, *,
               reference: bool) -> dict[str, Any]:
    from earpiece.asr.metrics import ErrorRate, is_simplified_chinese, normalize_zh

    if shutil.which("espeak-ng") is None:
        return {"zh_cer": None, "zh_note": "espeak-ng not installed"}
    ours, ref = ErrorRate(), ErrorRate()
    simplified = 0
    samples = []
    with tempfile.TemporaryDirectory() as tmp:
        for hanzi, pinyin in ZH_SENTENCES[:n]:
            pcm = espeak_cmn(pinyin, Path(tmp))
            text, _ = pipeline_text(runner, pcm, "zh")
            ours.add(normalize_zh(hanzi), normalize_zh(text))
            simplified += is_simplified_chinese(text)
            samples.append({"ref": hanzi, "hyp": text})
            if reference:
                ref.add(normalize_zh(hanzi), normalize_zh(batch_text(loaded, pcm, "zh")))
    return {
        "zh_cer": round(ours.rate, 4),
        "zh_reference_cer": round(ref.rate, 4) if reference else None,
        "zh_sentences": ours.utterances,
        "zh_simplified_share": round(simplified / max(1, ours.utterances), 3),
        "zh_note": ("synthetic speech: espeak-ng cmn (pinyin input; this espeak-ng has no Han "
                    "dictionary), whose Mandarin is weak and robotic; a smoke test of the "
                    "Mandarin path and of simplified output, not an accuracy figure"),
        "zh_samples": samples[:4],
    }


# -- (b) latency and (d) concurrency: real-time streaming through AsrService -------------------

@dataclass
class _Track:
    """One stream's audio with the stream times at which each prompt's speech ends."""

    pcm: npt.NDArray[np.int16]
    speech_ends: list[float]


def build_track(prompts: list[Prompt], *, duty: float | None, gap_s: float, lead_s: float,
                seconds: float | None = None, rotate: int = 0) -> _Track:
    """Prompts separated by silence: a fixed gap, or gaps giving a ``duty`` speech share."""
    import numpy as np

    parts = [np.zeros(int(lead_s * RATE), np.int16)]
    ends: list[float] = []
    t = lead_s
    i = rotate
    while True:
        p = prompts[i % len(prompts)]
        i += 1
        _, end = speech_bounds(p.pcm)
        parts.append(p.pcm)
        ends.append(t + end)
        t += p.duration_s
        gap = gap_s if duty is None else p.duration_s * (1 - duty) / duty
        parts.append(np.zeros(int(gap * RATE), np.int16))
        t += gap
        if seconds is None and i - rotate >= len(prompts):
            break
        if seconds is not None and t >= seconds:
            break
    return _Track(np.concatenate(parts), ends)


async def stream_tracks(runner: WhisperRunner, tracks: list[_Track], *, workers: int,
                        language: str = "en",
                        stream: StreamSettings | None = None) -> dict[str, Any]:
    """Feed every track in real time (20 ms frames) into one AsrService; measure latencies."""
    import numpy as np

    from earpiece.asr.service import AsrService, ServiceSettings
    from earpiece.asr.stream import StreamSettings
    from earpiece.bus import EventBus
    from earpiece.events import Transcript

    bus = EventBus()
    finals: list[tuple[float, str, float, float]] = []  # (wall, call, start_s, end_s)
    partials = 0

    def on_transcript(ev: Transcript) -> None:
        nonlocal partials
        if ev.final:
            finals.append((time.monotonic(), ev.call_id, ev.start_s, ev.end_s))
        else:
            partials += 1

    bus.subscribe(Transcript, on_transcript)
    svc = AsrService(runner, bus=bus, settings=ServiceSettings(
        workers=workers, language=language, stream=stream or StreamSettings()))
    await svc.start()
    frame = RATE // 50
    n_frames = max(len(t.pcm) for t in tracks) // frame
    wall0 = time.monotonic() + 0.05
    fed = 0
    try:
        while fed < n_frames:
            due = min(n_frames, int((time.monotonic() - wall0) / 0.02) + 1)
            while fed < due:
                for k, tr in enumerate(tracks):
                    chunk = tr.pcm[fed * frame: (fed + 1) * frame]
                    if len(chunk) == frame:
                        svc.feed_frame(f"s{k}", "customer", chunk, RATE, fed * 0.02)
                fed += 1
            await asyncio.sleep(max(0.0, wall0 + fed * 0.02 - time.monotonic()))
        for k in range(len(tracks)):
            svc.close_call(f"s{k}")
        await svc.drain()
        metrics = svc.metrics()
    finally:
        await svc.stop()
    latencies: list[float] = []
    missed = 0
    for k, tr in enumerate(tracks):
        mine = [(start_s, end_s, wall) for wall, call, start_s, end_s in finals
                if call == f"s{k}"]
        for end in tr.speech_ends:
            if end > n_frames * 0.02:
                continue
            # the final of the utterance holding the prompt's end (a prompt without a final,
            # e.g. filtered, is missed, not matched with the next prompt's final)
            hit = [wall for start_s, end_s, wall in mine if end_s >= end - 0.3
                   and start_s <= end]
            if not hit:
                missed += 1
                continue
            latencies.append(min(hit) - (wall0 + end))
    arr = np.array(latencies) if latencies else np.array([np.nan])
    return {
        "utterances": len(latencies),
        "missed": missed,
        "p50_s": round(float(np.nanpercentile(arr, 50)), 3),
        "p95_s": round(float(np.nanpercentile(arr, 95)), 3),
        "max_s": round(float(np.nanmax(arr)), 3),
        "partials": partials,
        "dropped_finals": metrics.dropped_finals,
        "partials_skipped": metrics.partials_skipped,
        "max_lag_s": round(metrics.max_lag_s, 3),
        "filtered": metrics.filtered,
    }


def measure_latency(runner: WhisperRunner, prompts: list[Prompt], workers: int,
                    stream: StreamSettings | None = None) -> dict[str, Any]:
    track = build_track(prompts, duty=None, gap_s=1.5, lead_s=1.0)
    r = asyncio.run(stream_tracks(runner, [track], workers=workers, stream=stream))
    return {"final_latency_p50_s": r["p50_s"], "final_latency_p95_s": r["p95_s"],
            "final_latency_max_s": r["max_s"], "latency_utterances": r["utterances"],
            "latency_missed": r["missed"], "latency_partials": r["partials"]}


def measure_streams(runner: WhisperRunner, prompts: list[Prompt], workers: int,
                    streams_max: int, seconds: float,
                    stream: StreamSettings | None = None) -> dict[str, Any]:
    levels = [n for n in (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32) if n <= streams_max]
    results = []
    best = 0
    limit_reason = f"stopped at --streams-max {streams_max}"
    for n in levels:
        tracks = [build_track(prompts, duty=0.4, gap_s=0.0, lead_s=0.5 + 0.37 * k,
                              seconds=seconds, rotate=7 * k) for k in range(n)]
        r = asyncio.run(stream_tracks(runner, tracks, workers=workers, stream=stream))
        r["streams"] = n
        results.append(r)
        log.info("streams=%d: p50 %.2f s p95 %.2f s dropped %d", n, r["p50_s"], r["p95_s"],
                 r["dropped_finals"])
        ok = (r["p95_s"] <= LATENCY_TARGET_S and r["dropped_finals"] == 0
              and r["missed"] <= max(1, r["utterances"] // 20))
        if not ok:
            limit_reason = (f"{n} streams: final latency p95 {r['p95_s']} s "
                            f"(> {LATENCY_TARGET_S} s) or finals dropped/missed "
                            f"({r['dropped_finals']}/{r['missed']})")
            break
        best = n
    return {"max_realtime_streams": best, "streams_limit": limit_reason,
            "streams_levels": results}


# -- main ------------------------------------------------------------------------------------

def run_bench(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from earpiece.asr.decoder import WhisperDecoder, default_options
    from earpiece.asr.model import load_model
    from earpiece.asr.runner import WhisperRunner
    from earpiece.asr.settings import AsrSettings
    from earpiece.asr.stream import StreamSettings

    quick = bool(args.quick)
    n_prompts = args.prompts or (20 if quick else 120)
    streams_max = args.streams_max or (4 if quick else 12)
    level_s = args.level_seconds or (15.0 if quick else 40.0)
    skip = {s.strip() for s in (args.skip or "").split(",") if s.strip()}
    base = AsrSettings()
    settings = AsrSettings(model=args.model or base.model, device=args.device or "auto",
                           compute_type=args.compute_type or base.compute_type,
                           workers=args.workers or base.workers)
    started = time.monotonic()
    loaded = load_model(settings, cpu_threads=args.cpu_threads)
    options = default_options(loaded.info.multilingual)
    if args.pad_s is not None:
        options = replace(options, pad_s=args.pad_s)
    if args.min_window_s is not None:
        options = replace(options, min_window_s=args.min_window_s)
    if args.short_min_window_s is not None:
        options = replace(options, short_min_window_s=args.short_min_window_s)
    if args.short_audio_s is not None:
        options = replace(options, short_audio_s=args.short_audio_s)
    stream = StreamSettings()
    if args.preroll_s is not None:
        stream = replace(stream, preroll_s=args.preroll_s)
    runner = WhisperRunner(WhisperDecoder(loaded, options))
    out: dict[str, Any] = {
        "model": settings.model, "device": loaded.device, "compute_type": loaded.compute_type,
        "workers": loaded.num_workers, "cpu_threads": loaded.cpu_threads,
        "cores": len(os.sched_getaffinity(0)), "loadavg_start": [round(x, 2) for x in
                                                                  os.getloadavg()],
        "model_load_s": round(loaded.load_s, 2), "quick": quick,
        "window": {"pad_s": options.pad_s, "min_window_s": options.min_window_s,
                   "short_audio_s": options.short_audio_s,
                   "short_min_window_s": options.short_min_window_s,
                   "preroll_s": stream.preroll_s},
    }
    prompts = load_prompts(n_prompts)
    if "wer" not in skip:
        out.update(measure_wer(runner, loaded, prompts, reference=not args.no_reference,
                               stream=stream))
    tiny = load_short_prompts(args.short_prompts or (40 if quick else 80))
    if "short" not in skip:
        out.update(measure_wer(runner, loaded, tiny, reference=not args.no_reference,
                               stream=stream, prefix="short"))
    short = [p for p in prompts if 0.8 <= p.duration_s <= 8.0]
    if "latency" not in skip:
        out.update(measure_latency(runner, short[: 6 if quick else 24], loaded.num_workers,
                                   stream))
        # the same for lone words and greetings (their longer minimum window costs time)
        lat = measure_latency(runner, tiny[: 6 if quick else 24], loaded.num_workers, stream)
        out.update({f"short_{k}": v for k, v in lat.items()
                    if k.startswith(("final_latency", "latency_utterances", "latency_missed"))})
    if "streams" not in skip:
        out.update(measure_streams(runner, short, loaded.num_workers, streams_max, level_s,
                                   stream))
    if "zh" not in skip and loaded.info.multilingual:
        out.update(measure_zh(runner, loaded, 4 if quick else len(ZH_SENTENCES),
                              reference=not args.no_reference))
    elif "zh" not in skip:
        out.update({"zh_cer": None, "zh_note": f"{settings.model} is English-only"})
    out["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    return out


def main(args: argparse.Namespace) -> int:
    result = run_bench(args)
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
        return 0
    for key in ("model", "device", "compute_type", "workers", "cpu_threads", "wer",
                "reference_wer", "short_wer", "short_reference_wer", "short_prompts", "rtf",
                "reference_rtf", "final_latency_p50_s", "short_final_latency_p95_s",
                "final_latency_p95_s", "max_realtime_streams", "streams_limit", "zh_cer",
                "zh_reference_cer", "zh_note", "elapsed_s"):
        if key in result:
            print(f"{key:>22}: {result[key]}")
    return 0
