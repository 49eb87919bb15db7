"""FreeSWITCH events: the body of a ``text/event-plain`` or ``text/event-json`` frame.

*Plain.* ``Name: value`` lines with URL-encoded values, an empty line, then the event's own
body when its headers include ``Content-Length`` (a BACKGROUND_JOB: ``Content-Length: 41`` then
``+OK <uuid>\\n``). *JSON.* One compact JSON object with plain string values; the event body is
under ``_body``. Header names may repeat (``CHANNEL_HANGUP_COMPLETE`` carries ``Hangup-Cause``
twice); in JSON that is a repeated key, which :func:`json.loads` would silently merge, so the
object is read as ordered pairs.

:class:`EslEvent` holds *decoded* values in wire order, with its ``Content-Length`` header as one
of them (the last one, when a ``sendevent`` left its own earlier in the list). Serialising
reproduces FreeSWITCH's bytes exactly on every captured event (tests/test_esl_message.py):
plain values are encoded as ``switch_url_encode`` does (the characters of
``SWITCH_URL_UNSAFE``, controls and non-ASCII bytes, uppercase hex), JSON as
``cJSON_PrintUnformatted`` (compact, non-ASCII unescaped). One deliberate difference: we always
encode ``%``; FreeSWITCH leaves a ``%`` that already starts an uppercase ``%XX`` alone, so its
value ``%41`` reads back as ``A``. None of the captures has such a value.

An array header (``switch_event_add_header`` with an ``ARRAY::a|:b`` value) is a string in plain
form and a JSON array in JSON form; here it is always the plain string, and the JSON writer turns
it back into the array.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from earpiece.errors import EslProtocolError
from earpiece.freeswitch.esl_message import (
    EVENT_JSON,
    EVENT_PLAIN,
    EslMessage,
    HeaderLookup,
    check_header_name,
    parse_header_lines,
)

#: ``SWITCH_URL_UNSAFE`` of FreeSWITCH 1.10 (src/include/switch_utils.h).
URL_UNSAFE = frozenset(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_HEX = "0123456789ABCDEF"
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")
ARRAY_PREFIX = "ARRAY::"
ARRAY_SEP = "|:"


def url_encode(value: str) -> str:
    """Encode as ``switch_url_encode`` does, except that ``%`` is always encoded."""
    out: list[str] = []
    for b in value.encode("utf-8", "surrogateescape"):
        if b < 0x20 or b > 0x7E or b in URL_UNSAFE:
            out.append(f"%{_HEX[b >> 4]}{_HEX[b & 15]}")
        else:
            out.append(chr(b))
    return "".join(out)


def url_decode(value: str) -> str:
    """``%XX`` (either case) to its byte; everything else, ``+`` included, as it is."""
    raw = value.encode("utf-8", "surrogateescape")
    return _PCT.sub(lambda m: bytes([int(m.group(1), 16)]), raw).decode(
        "utf-8", "surrogateescape"
    )


def _json_string(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


@dataclass(frozen=True)
class EslEvent(HeaderLookup):
    """One event: decoded headers in wire order (``Content-Length`` included) and its body."""

    headers: tuple[tuple[str, str], ...]
    body: str = ""
    _index: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key, _ in self.headers:
            check_header_name(key, "event header")
        # The last Content-Length is the body's: a SEND_MESSAGE event also carries the one of
        # the ``sendevent`` command that made it, earlier in its headers.
        lengths = [v for k, v in self.headers if k.lower() == "content-length"]
        blen = len(self.body.encode("utf-8", "surrogateescape"))
        if lengths and lengths[-1] != str(blen):
            raise EslProtocolError(
                f"event: Content-Length {lengths[-1][:20]!r} but the body has {blen} bytes"
            )
        if not lengths and self.body:
            raise EslProtocolError("event: a body without Content-Length")
        self._build_index()

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]], body: str = "") -> EslEvent:
        headers = [(str(k), str(v)) for k, v in pairs if k.lower() != "content-length"]
        if body:
            headers.append(("Content-Length", str(len(body.encode("utf-8", "surrogateescape")))))
        return cls(tuple(headers), body)

    # --- plain ---------------------------------------------------------------------------
    @classmethod
    def parse_plain(cls, raw: bytes) -> EslEvent:
        end = raw.find(b"\n\n")
        if end < 0:
            raise EslProtocolError("plain event: no empty line ends the headers")
        if end == 0:
            raise EslProtocolError("plain event: no headers")
        text = raw[:end].decode("utf-8", "surrogateescape")
        pairs = parse_header_lines(text)
        for key, value in pairs:
            if "%" in value and not _canonical_pct(value):
                raise EslProtocolError(f"plain event: header {key!r}: bad %-escape")
        body = raw[end + 2:].decode("utf-8", "surrogateescape")
        return cls(tuple((k, url_decode(v)) for k, v in pairs), body)

    def to_plain(self) -> bytes:
        lines = "".join(f"{k}: {url_encode(v)}\n" for k, v in self.headers)
        return (lines + "\n" + self.body).encode("utf-8", "surrogateescape")

    # --- json ----------------------------------------------------------------------------
    @classmethod
    def parse_json(cls, raw: bytes) -> EslEvent:
        try:
            pairs = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs)
        except (UnicodeDecodeError, ValueError) as exc:
            raise EslProtocolError(f"json event: not JSON: {exc}") from None
        if not isinstance(pairs, _PairList):
            raise EslProtocolError("json event: not a JSON object")
        headers: list[tuple[str, str]] = []
        body = ""
        for key, value in pairs:
            if key == "_body":
                if not isinstance(value, str):
                    raise EslProtocolError("json event: _body is not a string")
                body = value
                continue
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = ARRAY_PREFIX + ARRAY_SEP.join(value)
            if not isinstance(value, str):
                raise EslProtocolError(f"json event: header {key!r} is not a string")
            headers.append((key, value))
        return cls(tuple(headers), body)

    def to_json(self) -> bytes:
        items = []
        for key, value in self.headers:
            if value.startswith(ARRAY_PREFIX):
                parts = value[len(ARRAY_PREFIX):].split(ARRAY_SEP)
                enc = "[" + ",".join(_json_string(p) for p in parts) + "]"
            else:
                enc = _json_string(value)
            items.append(f"{_json_string(key)}:{enc}")
        if self.body:
            items.append(f'"_body":{_json_string(self.body)}')
        return ("{" + ",".join(items) + "}").encode("utf-8", "surrogateescape")

    # --- from a frame --------------------------------------------------------------------
    @classmethod
    def from_message(cls, message: EslMessage) -> EslEvent:
        if message.content_type == EVENT_PLAIN:
            return cls.parse_plain(message.body)
        if message.content_type == EVENT_JSON:
            return cls.parse_json(message.body)
        raise EslProtocolError(f"not an event frame: Content-Type {message.content_type!r}")

    def to_message(self, content_type: str = EVENT_PLAIN) -> EslMessage:
        body = self.to_plain() if content_type == EVENT_PLAIN else self.to_json()
        return EslMessage(
            (("Content-Length", str(len(body))), ("Content-Type", content_type)), body
        )

    # --- what the rest of Earpiece reads -------------------------------------------------
    @property
    def name(self) -> str:
        """``Event-Name``; for CUSTOM events the ``Event-Subclass`` (``sofia::register``)."""
        name = self.get("Event-Name", "") or ""
        if name == "CUSTOM":
            return self.get("Event-Subclass") or name
        return name

    @property
    def unique_id(self) -> str | None:
        return self.get("Unique-ID")

    @property
    def job_uuid(self) -> str | None:
        return self.get("Job-UUID")

    def variable(self, name: str) -> str | None:
        return self.get(f"variable_{name}")


class _PairList(list[tuple[str, Any]]):
    """A JSON object as ordered pairs (repeated keys kept)."""


def _pairs(pairs: list[tuple[str, Any]]) -> _PairList:
    return _PairList(pairs)


def _canonical_pct(value: str) -> bool:
    """Every ``%`` starts an uppercase ``%XX`` (what FreeSWITCH writes)."""
    i = value.find("%")
    while i >= 0:
        hx = value[i + 1: i + 3]
        if len(hx) != 2 or any(c not in _HEX for c in hx):
            return False
        i = value.find("%", i + 3)
    return True
