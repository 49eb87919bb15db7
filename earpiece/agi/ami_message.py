"""AMI wire format: pure, I/O-free parsing and serialisation.

An AMI message is an ordered list of ``Key: Value`` lines ending in an empty line
(``\\r\\n\\r\\n``). Keys may repeat (``Output:``, ``Variable:``, ``ChanVariable:``), so headers are
kept as an ordered tuple of pairs; lookups are case-insensitive. The connection starts with a
banner line (``Asterisk Call Manager/11.0.0\\r\\n``) that is not a message.

AMI is byte-oriented: Asterisk passes caller names through as it got them, so a latin-1 name
can arrive in an otherwise valid event. Text is decoded as UTF-8 with ``surrogateescape``:
such a message is kept (a ``Hangup`` must not be lost over a caller name), the odd bytes
show up as lone surrogates, and ``bytes(msg)`` gives back the exact input bytes.

:class:`AmiFramer` turns a byte stream into messages; malformed messages are counted and
dropped, never raised to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from earpiece.errors import AmiProtocolError

TERMINATOR = b"\r\n\r\n"
MAX_MESSAGE_BYTES = 1 << 20  # a CoreShowChannels answer is many messages; one message is small
BANNER_PREFIX = "Asterisk Call Manager/"


@dataclass(frozen=True)
class AmiBanner:
    """The greeting line, e.g. ``Asterisk Call Manager/11.0.0``."""

    text: str

    @property
    def version(self) -> str:
        return self.text[len(BANNER_PREFIX):] if self.text.startswith(BANNER_PREFIX) else ""

    @classmethod
    def parse(cls, raw: bytes) -> AmiBanner:
        if not raw.endswith(b"\r\n") or b"\r\n" in raw[:-2]:
            raise AmiProtocolError("banner must be exactly one CRLF-terminated line")
        try:
            text = raw[:-2].decode("ascii")
        except UnicodeDecodeError as exc:
            raise AmiProtocolError(f"banner is not ASCII at byte {exc.start}") from None
        return cls(text)

    def __bytes__(self) -> bytes:
        return self.text.encode("ascii") + b"\r\n"


@dataclass(frozen=True)
class AmiMessage:
    """One AMI action, response or event."""

    headers: tuple[tuple[str, str], ...]
    _index: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for key, value in reversed(self.headers):
            self._index[key.lower()] = value

    @classmethod
    def from_pairs(cls, pairs: Iterable[tuple[str, str]]) -> AmiMessage:
        return cls(tuple((str(k), str(v)) for k, v in pairs))

    @classmethod
    def action(
        cls, name: str, action_id: str | None = None, **fields: str | list[str]
    ) -> AmiMessage:
        """Build an action; list values become repeated headers (``Variable``)."""
        pairs: list[tuple[str, str]] = [("Action", name)]
        if action_id is not None:
            pairs.append(("ActionID", action_id))
        for key, value in fields.items():
            if isinstance(value, list):
                pairs.extend((key, v) for v in value)
            else:
                pairs.append((key, value))
        return cls(tuple(pairs))

    @classmethod
    def parse(cls, raw: bytes) -> AmiMessage:
        """Parse one message; ``raw`` may include the terminating empty line."""
        if raw.endswith(TERMINATOR):
            raw = raw[: -len(TERMINATOR)]
        elif raw.endswith(b"\r\n"):
            raw = raw[:-2]
        if not raw:
            raise AmiProtocolError("empty message")
        if len(raw) > MAX_MESSAGE_BYTES:
            raise AmiProtocolError(f"message longer than {MAX_MESSAGE_BYTES} bytes")
        text = raw.decode("utf-8", "surrogateescape")
        headers: list[tuple[str, str]] = []
        for lineno, line in enumerate(text.split("\r\n"), 1):
            if not line:
                raise AmiProtocolError(f"line {lineno}: empty line inside a message")
            if "\r" in line or "\n" in line:
                raise AmiProtocolError(f"line {lineno}: bare CR or LF")
            key, sep, value = line.partition(": ")
            if not sep:
                if line.endswith(":"):
                    key, value = line[:-1], ""
                else:
                    raise AmiProtocolError(
                        f"line {lineno}: no 'Key: Value' separator: {line[:60]!r}"
                    )
            if not key or key != key.strip() or ":" in key:
                raise AmiProtocolError(f"line {lineno}: bad header name {key[:60]!r}")
            headers.append((key, value))
        return cls(tuple(headers))

    def __bytes__(self) -> bytes:
        return self.to_text().encode("utf-8", "surrogateescape")

    def to_text(self) -> str:
        return "".join(f"{k}: {v}\r\n" for k, v in self.headers) + "\r\n"

    # --- lookups -------------------------------------------------------------------------
    def get(self, key: str, default: str | None = None) -> str | None:
        return self._index.get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        try:
            return self._index[key.lower()]
        except KeyError:
            raise KeyError(key) from None

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._index

    def get_all(self, key: str) -> list[str]:
        k = key.lower()
        return [v for hk, v in self.headers if hk.lower() == k]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.headers)

    @property
    def event(self) -> str | None:
        return self.get("Event")

    @property
    def response(self) -> str | None:
        return self.get("Response")

    @property
    def action_name(self) -> str | None:
        return self.get("Action")

    @property
    def action_id(self) -> str | None:
        return self.get("ActionID")

    def variables(self) -> dict[str, str]:
        """``Variable: NAME=value`` / ``ChanVariable`` headers as a dict."""
        out: dict[str, str] = {}
        for key in ("Variable", "ChanVariable"):
            for item in self.get_all(key):
                name, _, value = item.partition("=")
                out[name] = value
        return out


@dataclass
class AmiFramer:
    """Incremental AMI stream framer: ``feed(bytes)`` returns complete items.

    The first line of a server stream is the banner (set ``expect_banner=False`` for the
    client-to-server direction). Malformed messages are dropped and counted in ``errors``;
    ``last_error`` holds the reason.
    """

    expect_banner: bool = True
    max_buffer: int = MAX_MESSAGE_BYTES
    errors: int = 0
    last_error: str = ""
    _buf: bytearray = field(default_factory=bytearray)
    _scan: int = 0  # the terminator is not in _buf[:_scan + 3]: resume the search there

    def feed(self, data: bytes) -> list[AmiMessage | AmiBanner]:
        self._buf += data
        out: list[AmiMessage | AmiBanner] = []
        if self.expect_banner:
            end = self._buf.find(b"\r\n")
            if end < 0:
                self._check_overflow()
                return out
            raw = bytes(self._buf[: end + 2])
            del self._buf[: end + 2]
            self.expect_banner = False
            try:
                out.append(AmiBanner.parse(raw))
            except AmiProtocolError as exc:
                self._error(str(exc))
        while True:
            # Tolerate stray blank lines between messages.
            while self._buf.startswith(b"\r\n"):
                del self._buf[:2]
                self._scan = max(0, self._scan - 2)
            end = self._buf.find(TERMINATOR, self._scan)
            if end < 0:
                # Feeding a large message in small chunks stays linear.
                self._scan = max(0, len(self._buf) - len(TERMINATOR) + 1)
                break
            raw = bytes(self._buf[: end + 4])
            del self._buf[: end + 4]
            self._scan = 0
            try:
                out.append(AmiMessage.parse(raw))
            except AmiProtocolError as exc:
                self._error(str(exc))
        self._check_overflow()
        return out

    def _check_overflow(self) -> None:
        if len(self._buf) > self.max_buffer:
            self._error(f"no message terminator within {self.max_buffer} bytes; buffer dropped")
            self._buf.clear()
            self._scan = 0

    def _error(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason
