"""The ``earpiece`` command line.

Each subcommand lives in its own module that exposes ``configure(parser)`` (cheap: no heavy
imports) and ``main(args) -> int``. ``bench`` has its own sub-subcommands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from earpiece import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("earpiece.app", "attach to a PBX and run the service"),
    "sim": ("earpiece.sim.cmd", "run the PBX simulator alone"),
    "demo": ("earpiece.demo", "simulator + service + SQLite in one command"),
    "doctor": ("earpiece.doctor", "check AMI, ARI, websocket, FastAGI and CRM settings"),
    "analyze": ("earpiece.analyze", "analyse WAV files (call progress, transcript)"),
    "emotion": ("earpiece.emotion.cmd", "emotion of text lines (stdin) or WAV files"),
    "train": ("earpiece.emotion.train", "train a model: `earpiece train emotion --data FILE`"),
}
BENCHES: dict[str, tuple[str, str]] = {
    "media": ("earpiece.bench.media", "RTP receive/jitter/decode/VAD throughput"),
    "amd": ("earpiece.bench.amd", "call-progress and answering-machine detection"),
    "asr": ("earpiece.bench.asr", "streaming speech recognition"),
    "sim": ("earpiece.bench.sim", "PBX simulator RTP sender throughput"),
    "crm": ("earpiece.bench.crm", "CRM write throughput and loop stalls (SQLite/PostgreSQL)"),
    "soak": ("earpiece.bench.soak", "the service for minutes with PBX/Earpiece/ARI faults"),
    "emotion": ("earpiece.bench.emotion", "text emotion F1 (en/zh) and voice arousal ordering"),
    "strategy": ("earpiece.bench.strategy", "recommender regret vs oracle and fixed mapping"),
}


def _add(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, target: str,
         help_: str) -> None:
    try:
        module = importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name != target:
            raise
        return  # command not built yet in this checkout
    parser = sub.add_parser(name, help=help_, description=help_)
    module.configure(parser)
    parser.set_defaults(_module=target)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="earpiece", description=__doc__)
    parser.add_argument("--version", action="version", version=f"earpiece {__version__}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (target, help_) in COMMANDS.items():
        _add(sub, name, target, help_)
    bench = sub.add_parser("bench", help="benchmarks", description="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    for name, (target, help_) in BENCHES.items():
        _add(bench_sub, name, target, help_)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level:
        from earpiece.logs import setup_logging

        setup_logging(args.log_level)
    module = importlib.import_module(args._module)
    result: int = module.main(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
