"""FreeSWITCH event socket (ESL) wire format: pure, I/O-free parsing and serialisation.

Every ESL frame is a block of ``Key: Value`` lines, each ending in ``\\n`` (never ``\\r\\n``),
closed by an empty line. When the block has ``Content-Length: N``, exactly N bytes of body
follow. Two kinds of frame travel on the socket:

* :class:`EslMessage`, FreeSWITCH to client: ``auth/request``, ``command/reply``,
  ``api/response``, ``text/event-plain``, ``text/event-json``, ``text/disconnect-notice``, and
  on the outbound socket the reply to ``connect`` (one 120-line ``CHANNEL_DATA`` block with no
  ``Content-Length`` whose ``Content-Type`` is near its *end*: the type is looked up anywhere
  in the block, never assumed to be the first line).
* :class:`EslCommand`, client to FreeSWITCH: a command line (``auth ClueCon``, ``api status``,
  ``bgapi originate ...``, ``sendmsg``, ``sendevent SEND_MESSAGE``), optional header lines
  (``Job-UUID``, ``call-command``...), the empty line, and a body when ``Content-Length`` says so.

Header values are kept exactly as they travelled: on the outer block of the ``connect`` reply
they are URL-encoded (``Reply-Text: %2BOK%0A``), on ordinary replies they are not
(``Reply-Text: +OK accepted``). :func:`earpiece.freeswitch.esl_event.url_decode` decodes them;
an event's own headers are read with :mod:`earpiece.freeswitch.esl_event`.

``parse`` accepts only the canonical form, so ``bytes(EslMessage.parse(raw)) == raw`` for every
input it accepts (tests/test_esl_message.py checks it on every captured frame and on
arbitrary bytes); anything else raises :class:`~earpiece.errors.EslProtocolError` saying what
and where. Text is decoded as UTF-8 with ``surrogateescape`` (all captured traffic was ASCII).

:class:`EslFramer` turns a byte stream into frames; malformed frames are counted and dropped,
never raised to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from earpiece.errors import EslProtocolError

TERMINATOR = b"\n\n"
MAX_HEADER_BYTES = 1 << 20  # a SIP CHANNEL_HANGUP_COMPLETE is ~300 lines, ~15 KB
MAX_BODY_BYTES = 64 << 20  # ``show channels as json`` on a busy switch is large

# Content types FreeSWITCH sends (README "Event-socket framing").
AUTH_REQUEST = "auth/request"
COMMAND_REPLY = "command/reply"
API_RESPONSE = "api/response"
EVENT_PLAIN = "text/event-plain"
EVENT_JSON = "text/event-json"
EVENT_XML = "text/event-xml"
DISCONNECT_NOTICE = "text/disconnect-notice"
RUDE_REJECTION = "text/rude-rejection"  # the ACL refused the connection


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _check_content_length(value: str, where: str) -> int:
    if not value or not value.isascii() or not value.isdigit():
        raise EslProtocolError(f"{where}: Content-Length {value[:40]!r} is not a number")
    if len(value) > 1 and value.startswith("0"):
        raise EslProtocolError(f"{where}: Content-Length {value[:40]!r} has a leading zero")
    n = int(value)
    if n > MAX_BODY_BYTES:
        raise EslProtocolError(f"{where}: Content-Length {n} is over {MAX_BODY_BYTES}")
    return n


def parse_header_lines(text: str, *, first_line: int = 1) -> tuple[tuple[str, str], ...]:
    """``Key: Value`` lines (no trailing newline) as ordered pairs; precise errors."""
    headers: list[tuple[str, str]] = []
    for lineno, line in enumerate(text.split("\n"), first_line):
        if not line:
            raise EslProtocolError(f"line {lineno}: empty line inside a header block")
        if line.endswith("\r"):
            raise EslProtocolError(f"line {lineno}: CRLF line ending (ESL lines end in LF)")
        key, sep, value = line.partition(": ")
        if not sep:
            raise EslProtocolError(f"line {lineno}: no 'Key: Value' separator: {line[:60]!r}")
        check_header_name(key, f"line {lineno}")
        headers.append((key, value))
    return tuple(headers)


def check_header_name(key: str, where: str) -> None:
    if not key or key != key.strip() or ":" in key or "\n" in key:
        raise EslProtocolError(f"{where}: bad header name {key[:60]!r}")


def _check_value(key: str, value: str) -> None:
    if "\n" in value:
        raise EslProtocolError(f"header {key!r}: newline inside the value")
    if value.endswith("\r"):
        raise EslProtocolError(f"header {key!r}: value ends in CR")


class HeaderLookup:
    """Ordered ``(key, value)`` pairs with case-insensitive lookups (first occurrence wins)."""

    headers: tuple[tuple[str, str], ...]
    _index: dict[str, str]

    def _build_index(self) -> None:
        for key, value in reversed(self.headers):
            self._index[key.lower()] = value

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


def _check_body(headers: tuple[tuple[str, str], ...], body: bytes, where: str) -> None:
    lengths = [v for k, v in headers if k.lower() == "content-length"]
    if len(lengths) > 1:
        raise EslProtocolError(f"{where}: Content-Length appears {len(lengths)} times")
    if not lengths:
        if body:
            raise EslProtocolError(f"{where}: a body of {len(body)} bytes without Content-Length")
        return
    n = _check_content_length(lengths[0], where)
    if n != len(body):
        raise EslProtocolError(f"{where}: Content-Length {n} but the body has {len(body)} bytes")


def _split_frame(raw: bytes, what: str) -> tuple[str, bytes]:
    end = raw.find(TERMINATOR)
    if end < 0:
        raise EslProtocolError(f"{what}: no empty line ends the header block")
    if end > MAX_HEADER_BYTES:
        raise EslProtocolError(f"{what}: header block longer than {MAX_HEADER_BYTES} bytes")
    if end == 0:
        raise EslProtocolError(f"{what}: empty header block")
    return _decode(raw[:end]), raw[end + len(TERMINATOR):]


@dataclass(frozen=True)
class EslMessage(HeaderLookup):
    """One frame from FreeSWITCH: its header block (values as on the wire) and its body."""

    headers: tuple[tuple[str, str], ...]
    body: bytes = b""
    _index: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.headers:
            raise EslProtocolError("a frame needs at least one header")
        for key, value in self.headers:
            check_header_name(key, "header")
            _check_value(key, value)
        _check_body(self.headers, self.body, "frame")
        self._build_index()

    @classmethod
    def build(
        cls, pairs: Iterable[tuple[str, str]], body: bytes | str = b""
    ) -> EslMessage:
        """Headers in the given order, then ``Content-Length`` when there is a body."""
        data = _encode(body) if isinstance(body, str) else body
        headers = [(str(k), str(v)) for k, v in pairs if k.lower() != "content-length"]
        if data:
            headers.append(("Content-Length", str(len(data))))
        return cls(tuple(headers), data)

    @classmethod
    def parse(cls, raw: bytes) -> EslMessage:
        """Parse exactly one frame (header block, empty line, body of ``Content-Length``)."""
        text, body = _split_frame(raw, "frame")
        return cls(parse_header_lines(text), body)

    def __bytes__(self) -> bytes:
        return _encode("".join(f"{k}: {v}\n" for k, v in self.headers) + "\n") + self.body

    @property
    def content_type(self) -> str | None:
        return self.get("Content-Type")

    @property
    def reply_text(self) -> str | None:
        return self.get("Reply-Text")

    @property
    def text(self) -> str:
        """The body as text."""
        return _decode(self.body)

    @property
    def ok(self) -> bool:
        """A ``command/reply`` or ``api/response`` that says ``+OK`` (or any non-error)."""
        if self.content_type == COMMAND_REPLY:
            return (self.reply_text or "").startswith("+OK")
        if self.content_type == API_RESPONSE:
            return not self.text.startswith(("-ERR", "-USAGE"))
        return False

    @property
    def is_event(self) -> bool:
        return self.content_type in (EVENT_PLAIN, EVENT_JSON, EVENT_XML)


@dataclass(frozen=True)
class EslCommand(HeaderLookup):
    """One frame from the client: command line, headers, optional body."""

    command: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    _index: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.command or self.command != self.command.strip(" "):
            raise EslProtocolError(f"bad command line {self.command[:60]!r}")
        if "\n" in self.command or self.command.endswith("\r"):
            raise EslProtocolError("newline inside the command line")
        for key, value in self.headers:
            check_header_name(key, "header")
            _check_value(key, value)
        _check_body(self.headers, self.body, "command")
        self._build_index()

    @classmethod
    def build(
        cls, command: str, pairs: Iterable[tuple[str, str]] = (), body: bytes | str = b""
    ) -> EslCommand:
        data = _encode(body) if isinstance(body, str) else body
        headers = [(str(k), str(v)) for k, v in pairs if k.lower() != "content-length"]
        if data:
            headers.append(("Content-Length", str(len(data))))
        return cls(command, tuple(headers), data)

    @classmethod
    def parse(cls, raw: bytes) -> EslCommand:
        text, body = _split_frame(raw, "command")
        command, _, rest = text.partition("\n")
        headers = parse_header_lines(rest, first_line=2) if rest else ()
        return cls(command, headers, body)

    def __bytes__(self) -> bytes:
        lines = [self.command, *(f"{k}: {v}" for k, v in self.headers)]
        return _encode("\n".join(lines) + "\n\n") + self.body

    @property
    def verb(self) -> str:
        """The first word: ``auth``, ``api``, ``bgapi``, ``event``, ``sendmsg``..."""
        return self.command.partition(" ")[0]

    @property
    def argument(self) -> str:
        return self.command.partition(" ")[2]


@dataclass
class EslFramer:
    """Incremental ESL stream framer: ``feed(bytes)`` returns complete frames.

    ``commands=False`` reads FreeSWITCH's side (:class:`EslMessage`), ``commands=True`` the
    client's (:class:`EslCommand`). A malformed frame is dropped and counted in ``errors``
    (``last_error`` says why); when its block still names a usable ``Content-Length`` the body
    is skipped with it, so the stream stays in step.
    """

    commands: bool = False
    max_header: int = MAX_HEADER_BYTES
    errors: int = 0
    last_error: str = ""
    _buf: bytearray = field(default_factory=bytearray)
    _scan: int = 0
    _need: int = -1  # header block end + body length of the frame being read, once known
    _head_end: int = 0

    def feed(self, data: bytes) -> list[EslMessage | EslCommand]:
        self._buf += data
        out: list[EslMessage | EslCommand] = []
        while True:
            if self._need < 0:
                while self._buf.startswith(b"\n"):  # stray blank lines between frames
                    del self._buf[:1]
                    self._scan = max(0, self._scan - 1)
                end = self._buf.find(TERMINATOR, self._scan)
                if end < 0:
                    self._scan = max(0, len(self._buf) - len(TERMINATOR) + 1)
                    if len(self._buf) > self.max_header:
                        self._error(f"no empty line within {self.max_header} bytes; dropped")
                        self._buf.clear()
                        self._scan = 0
                    break
                self._scan = 0
                self._head_end = end + len(TERMINATOR)
                self._need = self._head_end + self._body_length(bytes(self._buf[:end]))
            if len(self._buf) < self._need:
                break
            raw = bytes(self._buf[: self._need])
            del self._buf[: self._need]
            self._need = -1
            try:
                out.append(EslCommand.parse(raw) if self.commands else EslMessage.parse(raw))
            except EslProtocolError as exc:
                self._error(str(exc))
        return out

    def _body_length(self, block: bytes) -> int:
        for line in block.split(b"\n"):
            if line.lower().startswith(b"content-length: "):
                value = line[len(b"content-length: "):].decode("ascii", "replace")
                try:
                    return _check_content_length(value, "frame")
                except EslProtocolError:
                    return 0  # parse() reports it; nothing is skipped
        return 0

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _error(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason
