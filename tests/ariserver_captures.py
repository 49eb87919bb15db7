"""Test helper: the recorded ARI traffic and Asterisk's ARI Swagger (read-only fixtures).

The fixtures live outside the repository, in ``../shared/asterisk`` (override with the
environment variable ``EARPIECE_ASTERISK_DIR``). Tests that need them skip when absent.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def asterisk_dir() -> Path | None:
    env = os.environ.get("EARPIECE_ASTERISK_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO.parent / "shared" / "asterisk", REPO / "shared" / "asterisk"]
    for cand in candidates:
        if (cand / "ari-api-docs").is_dir() and (cand / "captures").is_dir():
            return cand
    return None


def require_asterisk_dir() -> Path:
    found = asterisk_dir()
    if found is None:
        pytest.skip("Asterisk fixtures (../shared/asterisk) not found; set EARPIECE_ASTERISK_DIR")
    return found


def ari_capture_files() -> list[Path]:
    root = require_asterisk_dir() / "captures"
    files = sorted((root / "ari").glob("*.jsonl")) + sorted(
        (root / "pjsip" / "ari").glob("*.jsonl")
    )
    assert files, f"no ARI captures under {root}"
    return files


@cache
def load_capture(path: Path) -> tuple[dict[str, Any], ...]:
    with open(path, encoding="utf-8") as fh:
        return tuple(json.loads(line) for line in fh if line.strip())


@dataclass
class Exchange:
    """One recorded REST request and its response."""

    file: str
    request: dict[str, Any]
    response: dict[str, Any]

    @property
    def label(self) -> str:
        case = self.request.get("case")
        extra = f" ({case})" if case else ""
        return f"{self.file}:{self.request['method']} {self.request['target']}{extra}"


def rest_exchanges(*, websocket: bool = False) -> list[Exchange]:
    """Every request paired with the next response of the same method and path."""
    out: list[Exchange] = []
    for path in ari_capture_files():
        lines = load_capture(path)
        used: set[int] = set()
        for i, line in enumerate(lines):
            if line["kind"] != "request" or bool(line.get("websocket")) != websocket:
                continue
            for j in range(i + 1, len(lines)):
                other = lines[j]
                if (
                    j not in used
                    and other["kind"] == "response"
                    and other["method"] == line["method"]
                    and other["path"] == line["path"]
                ):
                    used.add(j)
                    out.append(Exchange(path.name, line, other))
                    break
            else:
                raise AssertionError(f"{path.name}: no response to {line['target']}")
    return out


def captured_events() -> list[tuple[str, dict[str, Any], str]]:
    """``(file, decoded event, raw frame text)`` of every websocket event."""
    out = []
    for path in ari_capture_files():
        for line in load_capture(path):
            if line["kind"] == "event":
                out.append((path.name, line["event"], line["raw"]))
    return out


def events_by_file() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, _event, raw in captured_events():
        out.setdefault(name, []).append(raw)
    return out


# ------------------------------------------------------------------------------- Swagger


@cache
def swagger_files() -> tuple[dict[str, Any], ...]:
    docs = require_asterisk_dir() / "ari-api-docs"
    return tuple(json.loads(p.read_text(encoding="utf-8")) for p in sorted(docs.glob("*.json")))


@cache
def swagger_models() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for doc in swagger_files():
        out.update(doc.get("models", {}))
    return out


@dataclass
class SwaggerOp:
    path: str  # e.g. /channels/{channelId}/snoop
    method: str
    nickname: str
    response_class: str
    params: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> param
    regex: re.Pattern[str] = field(default=re.compile(""))
    literal_segments: int = 0


@cache
def swagger_ops() -> tuple[SwaggerOp, ...]:
    ops = []
    for doc in swagger_files():
        for api in doc.get("apis", []):
            template = api["path"]
            pattern = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
            literal = sum(1 for seg in template.split("/") if seg and not seg.startswith("{"))
            for op in api["operations"]:
                ops.append(
                    SwaggerOp(
                        path=template,
                        method=op["httpMethod"],
                        nickname=op["nickname"],
                        response_class=op.get("responseClass", "void"),
                        params={p["name"]: p for p in op.get("parameters", [])},
                        regex=re.compile(pattern),
                        literal_segments=literal,
                    )
                )
    return tuple(ops)


def swagger_op_for(method: str, path: str) -> SwaggerOp | None:
    """The Swagger operation of ``method path`` (``path`` under ``/ari``, encoded segments)."""
    if path.startswith("/ari/"):
        path = path[4:]
    matches = [op for op in swagger_ops() if op.method == method and op.regex.match(path)]
    if not matches:
        return None
    # A literal segment beats a template: /channels/externalMedia over /channels/{channelId}.
    return max(matches, key=lambda op: op.literal_segments)
