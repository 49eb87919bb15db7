"""Speech recognition with the real Whisper models (base multilingual, tiny.en).

Real recorded prompts give their words; silence, noise, DTMF and call-progress tones give no
text; Mandarin comes out in simplified characters; decoding never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from earpiece.asr.decoder import WhisperDecoder
from earpiece.asr.metrics import is_simplified_chinese, normalize_en
from earpiece.asr.model import load_model
from earpiece.asr.runner import WhisperRunner
from earpiece.asr.service import AsrService, ServiceSettings
from earpiece.asr.settings import AsrSettings
from earpiece.asr.stream import DecodeRequest
from earpiece.bus import EventBus
from earpiece.events import Transcript

SOUNDS = Path("/usr/share/asterisk/sounds/en")
RATE = 8000


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> WhisperRunner:
    cache = tmp_path_factory.mktemp("models")
    loaded = load_model(AsrSettings(model="base", cache_dir=cache, device="cpu", workers=2))
    return WhisperRunner(WhisperDecoder(loaded))


@pytest.fixture(scope="module")
def tiny() -> WhisperRunner:
    loaded = load_model(AsrSettings(model="tiny.en", device="cpu", workers=1))
    return WhisperRunner(WhisperDecoder(loaded))


def read(name: str) -> npt.NDArray[np.int16]:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


def pad(pcm: npt.NDArray[np.int16], before: float = 0.5, after: float = 1.0) -> npt.NDArray[
        np.int16]:
    z = np.zeros
    return np.concatenate([z(int(before * RATE), np.int16), pcm, z(int(after * RATE), np.int16)])


def transcribe(runner: WhisperRunner, pcm: npt.NDArray[np.int16], language: str = "en",
               rate: int = RATE) -> dict[str, object]:
    from earpiece.asr.file import transcribe_party

    return transcribe_party(pcm, rate, runner, language=language)


def tone(freqs: list[float], on: float, off: float, cycles: int, level: float = 0.25) -> \
        npt.NDArray[np.int16]:
    t = np.arange(int(on * RATE)) / RATE
    burst = sum(level * np.sin(2 * np.pi * f * t) for f in freqs)
    gap = np.zeros(int(off * RATE))
    sig = np.concatenate([np.concatenate([burst, gap]) for _ in range(cycles)])
    return (sig * 32767).astype(np.int16)


DTMF = {"1": (697, 1209), "5": (770, 1336), "9": (852, 1477), "#": (941, 1477),
        "0": (941, 1336), "*": (941, 1209)}


def dtmf(digits: str) -> npt.NDArray[np.int16]:
    return np.concatenate([tone(list(DTMF[d]), 0.1, 0.1, 1) for d in digits])


def non_speech() -> dict[str, npt.NDArray[np.int16]]:
    rng = np.random.default_rng(7)
    white = rng.normal(0, 0.05 * 32767, 4 * RATE)
    brown = np.cumsum(rng.normal(0, 1, 4 * RATE))
    brown = brown - np.convolve(brown, np.ones(400) / 400, mode="same")
    brown = brown / np.abs(brown).max() * 0.2 * 32767
    return {
        "silence": np.zeros(5 * RATE, dtype=np.int16),
        "line_noise": rng.normal(0, 40, 5 * RATE).astype(np.int16),
        "white_noise": white.astype(np.int16),
        "brown_noise": brown.astype(np.int16),
        "dtmf": dtmf("159#0*1"),
        "dial_tone_us": tone([350, 440], 3.0, 0.0, 1),
        "ringback_us": tone([440, 480], 2.0, 4.0, 1),
        "ringback_cn": tone([450], 1.0, 4.0, 1),
        "busy": tone([480, 620], 0.5, 0.5, 4),
        "sit": np.concatenate([tone([f], 0.33, 0.0, 1) for f in (913.8, 1370.6, 1776.7)]),
        "beep_prompt": read("beep"),
        "tone_1k": tone([1000], 1.0, 0.0, 1),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(non_speech()))
def test_non_speech_gives_no_text(base: WhisperRunner, kind: str) -> None:
    result = transcribe(base, pad(non_speech()[kind]))
    assert result["text"] == "", result


@pytest.mark.parametrize("kind", ["white_noise", "brown_noise", "dtmf", "busy", "silence"])
def test_filters_reject_non_speech_even_without_vad(base: WhisperRunner, kind: str) -> None:
    """A final forced on non-speech (as if the VAD had been fooled) still publishes nothing."""
    pcm = non_speech()[kind][: 3 * RATE]
    req = DecodeRequest(call_id="c", party="customer", utterance=1, final=True, audio=pcm,
                        rate=RATE, start_s=0.0, end_s=len(pcm) / RATE, language="en",
                        word_timestamps=True, created=0.0)
    result = base.run(req)
    assert not result.verdict.accepted, (result.output, result.verdict)


def test_real_prompt_gives_its_words_base(base: WhisperRunner) -> None:
    result = transcribe(base, pad(read("vm-review")))
    words = normalize_en(str(result["text"]))
    for w in ["press", "one", "accept", "this", "recording", "two", "listen", "three",
              "message"]:
        assert w in words, result["text"]
    utterances = result["utterances"]
    assert isinstance(utterances, list) and utterances
    first = utterances[0]["words"][0]
    assert 0.4 <= first["start_s"] <= 1.5  # 0.5 s of padding + the prompt's own lead-in


def test_real_prompt_gives_its_words_tiny_en(tiny: WhisperRunner) -> None:
    result = transcribe(tiny, pad(read("auth-incorrect")))
    words = normalize_en(str(result["text"]))
    for w in ["password", "incorrect", "please", "enter", "followed", "pound", "key"]:
        assert w in words, result["text"]


def _espeak_cmn(pinyin: str, tmp: Path) -> npt.NDArray[np.int16]:
    """Synthetic Mandarin from espeak-ng (pinyin input: this espeak has no Han dictionary)."""
    wav = tmp / "zh.wav"
    subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-w", str(wav), pinyin], check=True)
    out = tmp / "zh8.wav"
    subprocess.run(["sox", str(wav), "-r", "8000", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox are installed by 'make deps'")
@pytest.mark.parametrize("language", ["zh", "auto"])
def test_mandarin_comes_out_in_simplified_characters(base: WhisperRunner, tmp_path: Path,
                                                     language: str) -> None:
    pcm = _espeak_cmn("ni3 hao3, wo3 xiang3 cha2 xun2 yi2 xia4 wo3 de5 zhang4 hu4 yu2 e2.",
                      tmp_path)
    result = transcribe(base, pad(pcm), language=language)
    text = str(result["text"])
    han = [c for c in text if "\u4e00" <= c <= "\u9fff"]
    assert result["language"] == "zh"
    assert len(han) >= 6, text
    assert is_simplified_chinese(text), text
    assert "我" in text or "你" in text, text


async def test_event_loop_never_blocked_while_decoding(
        base: WhisperRunner, caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = 0.1
    caplog.set_level(logging.WARNING, logger="asyncio")
    bus = EventBus()
    q = bus.queue(Transcript)
    svc = AsrService(base, bus=bus, settings=ServiceSettings(workers=2))
    await svc.start()
    try:
        pcm = pad(np.concatenate([read("vm-review"), np.zeros(RATE, np.int16),
                                  read("auth-incorrect")]))
        ticks = 0
        for i in range(0, len(pcm), 160):  # 4x real time, 20 ms frames
            svc.feed_frame("call-9", "customer", pcm[i: i + 160], RATE, i / RATE)
            if i % 640 == 0:
                await asyncio.sleep(0.005)
                ticks += 1
        svc.close_call("call-9")
        await svc.drain()
        events = []
        while not q.empty():
            events.append(q.get_nowait())
        finals = [e for e in events if e.final]
        assert len(finals) == 2 and "accept" in finals[0].text.lower()
        assert finals[1].words and finals[1].words[0].start_s > finals[0].end_s
        assert svc.metrics().final_decodes == 2
    finally:
        await svc.stop()
        loop.set_debug(False)
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert not slow, slow


async def test_media_pipeline_to_bus_with_start_asr() -> None:
    """RTP u-law payloads -> the media fork's PartyStream (jitter, VAD) -> FrameHub ->
    start_asr -> Transcript events; the call's CallEnded closes its streams."""
    from earpiece.asr.service import start_asr
    from earpiece.events import CallEnded
    from earpiece.media.frames import FrameHub, PartyStream
    from earpiece.media.g711 import encode_ulaw

    bus = EventBus()
    q = bus.queue(Transcript)
    hub = FrameHub(bus=bus)
    stop = await start_asr(bus, hub, AsrSettings(model="tiny.en", device="cpu", workers=2))
    try:
        import time

        from earpiece.events import CallStarted

        bus.publish(CallStarted(call_id="call-7", direction="outbound", channel="PJSIP/a-1",
                                at=time.time() - 5.0))  # the call started 5 s before the media
        stream = PartyStream("call-7", "agent", "ulaw", hub, clock=lambda: 0.0)
        pcm = pad(np.concatenate([read("auth-incorrect"), np.zeros(RATE, np.int16),
                                  read("hello-world")]), after=1.5)
        payload = encode_ulaw(pcm)
        for seq, i in enumerate(range(0, len(payload) - 159, 160)):
            stream.on_rtp(seq, payload[i: i + 160], 0.0)
            if seq % 25 == 0:
                await asyncio.sleep(0)
        stream.close()
        bus.publish(CallEnded(call_id="call-7", outcome=None))
        finals: list[Transcript] = []
        deadline = asyncio.get_running_loop().time() + 30
        while len(finals) < 2 and asyncio.get_running_loop().time() < deadline:
            try:
                ev = await asyncio.wait_for(q.get(), 1.0)
            except TimeoutError:
                continue
            if ev.final:
                finals.append(ev)
        assert len(finals) == 2, finals
        assert finals[0].party == "agent" and "password" in finals[0].text.lower()
        assert "world" in finals[1].text.lower()
        assert finals[1].start_s > finals[0].end_s
        # times are relative to the call start: the party's media began ~5 s into the call
        assert 5.0 <= finals[0].start_s <= 6.5
        assert finals[0].words[0].start_s >= 5.0
    finally:
        await stop()


def test_analyze_cli_gives_a_transcript_per_party(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from earpiece.cli import main as cli_main

    customer = pad(read("vm-review"))
    agent = pad(read("auth-incorrect"), after=1.0 + (len(customer) - len(pad(read(
        "auth-incorrect")))) / RATE)
    n = min(len(customer), len(agent))
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.stack([customer[:n], agent[:n]], axis=1).astype("<i2").tobytes())
    assert cli_main(["analyze", "--json", "--asr-model", "tiny.en", str(path)]) == 0
    row = json.loads(capsys.readouterr().out.splitlines()[0])
    parties = row["transcript"]["parties"]
    assert set(parties) == {"customer", "agent"}
    assert "accept" in parties["customer"]["text"].lower()
    assert "password" in parties["agent"]["text"].lower()
    assert parties["agent"]["utterances"][0]["words"]


async def test_short_greetings_through_the_streaming_pipeline(base: WhisperRunner) -> None:
    """Real one- and two-word prompts (G.711 u-law, as on a call) fed frame by frame into the
    service with the default window policy give their words; the last one is cut off by the
    end of the call (no trailing silence) and is still decoded."""
    from earpiece.media.g711 import decode_ulaw, encode_ulaw

    bus = EventBus()
    q = bus.queue(Transcript)
    svc = AsrService(base, bus=bus, settings=ServiceSettings(workers=2))
    await svc.start()
    try:
        gap = np.zeros(RATE, np.int16)
        pcm = np.concatenate([gap, read("hello"), gap, read("hello-world"), gap,
                              read("goodbye")])
        pcm = decode_ulaw(encode_ulaw(pcm))
        for i in range(0, len(pcm) - 159, 160):
            svc.feed_frame("greet", "customer", pcm[i: i + 160], RATE, i / RATE)
            if i % 3200 == 0:
                await asyncio.sleep(0)
        svc.close_call("greet")  # hang-up right after "Goodbye!"
        await svc.drain()
        finals = []
        while not q.empty():
            ev = q.get_nowait()
            if ev.final:
                finals.append(" ".join(normalize_en(ev.text)))
        assert finals == ["hello", "hello world", "goodbye"]
    finally:
        await svc.stop()
