"""``earpiece emotion``: score text lines (stdin) or WAV files.

``earpiece emotion --lang en|zh --json`` reads one utterance per line and prints one JSON object
per line with ``label``, ``valence`` and ``confidence`` (and the class ``probs``).
``earpiece emotion FILE.wav...`` cuts each file (each channel of a stereo file: left =
customer, right = agent) into utterances with the same VAD as the media path and prints, per
utterance, the voice arousal against that speaker's running baseline and the fused label.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", type=Path, help="WAV files (none: text on stdin)")
    parser.add_argument("--lang", choices=("en", "zh", "auto"), default="auto")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _text(args: argparse.Namespace) -> int:
    from earpiece.emotion.text import default_text_model, language_of

    for line in sys.stdin:
        text = line.rstrip("\n")
        lang = args.lang if args.lang != "auto" else language_of(text)
        s = default_text_model(lang).score(text)
        if args.json:
            print(json.dumps({"text": text, "label": s.label, "valence": round(s.valence, 4),
                              "confidence": round(s.confidence, 4), "language": lang,
                              "probs": {k: round(v, 4) for k, v in s.probs.items()}},
                             ensure_ascii=False), flush=True)
        else:
            print(f"{s.label:8s} {s.valence:+.2f} {s.confidence:.2f}  {text}", flush=True)
    return 0


def _segments(pcm: object, rate: int) -> list[tuple[float, float]]:
    import numpy as np

    from earpiece.media.settings import VadSettings
    from earpiece.media.vad import FRAME_MS, VadSegmenter

    x = np.asarray(pcm, dtype=np.int16)
    vad = VadSegmenter(VadSettings(), rate)
    n = rate * FRAME_MS // 1000
    out = []
    for i in range(len(x) // n):
        _, seg = vad.process(x[i * n:(i + 1) * n], i)
        if seg is not None:
            out.append((seg.start_s, seg.end_s))
    last = vad.finish()
    if last is not None:
        out.append((last.start_s, last.end_s))
    return out or [(0.0, len(x) / rate)]


def _audio(args: argparse.Namespace) -> int:
    import numpy as np
    from scipy.signal import resample_poly

    from earpiece.emotion.fusion import fuse
    from earpiece.emotion.models import VoiceInput, ZScoreModel
    from earpiece.emotion.train import read_wav
    from earpiece.emotion.voice import RATE, SpeakerBaseline, voice_features

    model = ZScoreModel()
    for path in args.files:
        try:
            data, rate, ch = read_wav(path)
        except (OSError, ValueError, EOFError) as exc:
            print(f"earpiece emotion: {path}: {exc}", file=sys.stderr)
            return 2
        chans = data.reshape(-1, ch)
        for c in range(ch):
            party = "customer" if c == 0 else "agent"
            x = chans[:, c]
            if rate != RATE:
                x = resample_poly(x, RATE, rate)
            x16 = np.clip(x, -32768, 32767).astype(np.int16)
            base = SpeakerBaseline()
            for start, end in _segments(x16, RATE):
                seg = x16[int(start * RATE):int(end * RATE)]
                feats = voice_features(seg, RATE)
                r = model.predict(VoiceInput(feats, base.observe(feats)))
                f = fuse(None, r.arousal)
                row = {"file": str(path), "party": party, "start_s": round(start, 2),
                       "end_s": round(end, 2), "arousal": round(r.arousal, 4),
                       "label": f.label, "confidence": round(f.confidence, 4)}
                print(json.dumps(row) if args.json else
                      f"{path} {party} {start:7.2f}-{end:7.2f} arousal {r.arousal:+.2f} "
                      f"{f.label}")
    return 0


def main(args: argparse.Namespace) -> int:
    return _audio(args) if args.files else _text(args)
