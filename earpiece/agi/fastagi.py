"""FastAGI wire format: pure, I/O-free parsing and serialisation.

Asterisk's ``AGI(agi://host[:port]/script?query,arg1,arg2)`` connects to a FastAGI server and
writes, one ``\\n``-terminated line each (``res_agi.c``: ``launch_netscript`` then ``setup_env``)::

    agi_network: yes
    agi_network_script: tag?campaign=spring&customer=42
    agi_request: agi://earpiece:4573/tag?campaign=spring&customer=42
    agi_channel: PJSIP/cust1-00000002
    ...
    agi_arg_1: first
                                        <- an empty line ends the environment block

Then the server sends commands (``SET VARIABLE EARPIECE_ROUTE "sales"\\n``) and Asterisk answers
each with one reply line, ``200 result=1``, ``200 result=1 (value)``, ``200 result=0
endpos=8000``, ``510 Invalid or unknown command``, ``511 Command Not Permitted on a dead
channel or intercept routine``, or the multi-line usage block::

    520-Invalid command syntax.  Proper usage follows:
    <usage text, any number of lines>
    520 End of proper usage.

When the channel hangs up while the script runs, Asterisk writes ``HANGUP\\n`` on its own,
between replies (it is not the answer to any command).

Bytes that are not UTF-8 (a Latin-1 caller name) are kept with ``surrogateescape`` so that
every parse/serialise round trip is byte-exact. Parsers raise :class:`AgiProtocolError` and
nothing else; :class:`AgiStreamFramer` and :class:`AgiCommandFramer` turn byte streams into items
and count malformed input instead of raising.

The shared codec and limits, :class:`AgiEnvironment` and :class:`AgiRequest` live in
:mod:`earpiece.agi.fastagi_env` and are re-exported here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from earpiece.agi.fastagi_env import (
    DEFAULT_PORT,
    ENCODING,
    ERRORS,
    MAX_ENV_BYTES,
    MAX_LINE_BYTES,
    MAX_USAGE_LINES,
    AgiEnvironment,
    AgiRequest,
    _check_line,
    _decode,
    _encode,
)
from earpiece.errors import AgiProtocolError

__all__ = [
    "DEFAULT_PORT",
    "ENCODING",
    "END_OF_USAGE",
    "ERRORS",
    "KNOWN_COMMANDS",
    "MAX_ENV_BYTES",
    "MAX_LINE_BYTES",
    "MAX_USAGE_LINES",
    "USAGE_FOLLOWS",
    "AgiCommand",
    "AgiCommandFramer",
    "AgiEnvironment",
    "AgiHangup",
    "AgiReply",
    "AgiRequest",
    "AgiServerItem",
    "AgiStreamFramer",
    "quote_arg",
    "split_args",
]

END_OF_USAGE = "End of proper usage."
USAGE_FOLLOWS = "Invalid command syntax.  Proper usage follows:"

_STATUS_RE = re.compile(r"([1-5][0-9][0-9])([ -])(.*)", re.DOTALL)
_RESULT_RE = re.compile(r"result=(-?[0-9]{1,10})(.*)", re.DOTALL)
_ATTR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=\S*")

# Command names Asterisk 22 knows (res_agi.c ``commands[]``), longest first for prefix matching.
KNOWN_COMMANDS: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(name.split())
            for name in (
                "ANSWER", "ASYNCAGI BREAK", "CHANNEL STATUS", "DATABASE DEL", "DATABASE DELTREE",
                "DATABASE GET", "DATABASE PUT", "EXEC", "GET DATA", "GET FULL VARIABLE",
                "GET OPTION", "GET VARIABLE", "GOSUB", "HANGUP", "NOOP", "RECEIVE CHAR",
                "RECEIVE TEXT", "RECORD FILE", "SAY ALPHA", "SAY DIGITS", "SAY NUMBER",
                "SAY PHONETIC", "SAY DATE", "SAY TIME", "SAY DATETIME", "SEND IMAGE", "SEND TEXT",
                "SET AUTOHANGUP", "SET CALLERID", "SET CONTEXT", "SET EXTENSION", "SET MUSIC",
                "SET PRIORITY", "SET VARIABLE", "STREAM FILE", "CONTROL STREAM FILE", "TDD MODE",
                "VERBOSE", "WAIT FOR DIGIT", "SPEECH CREATE", "SPEECH SET", "SPEECH DESTROY",
                "SPEECH LOAD GRAMMAR", "SPEECH UNLOAD GRAMMAR", "SPEECH ACTIVATE GRAMMAR",
                "SPEECH DEACTIVATE GRAMMAR", "SPEECH RECOGNIZE",
            )
        ),
        key=len,
        reverse=True,
    )
)




# --------------------------------------------------------------------------------------------
# Commands (server -> Asterisk)
# --------------------------------------------------------------------------------------------


def quote_arg(arg: str) -> str:
    """Quote one argument so that Asterisk's ``parse_args`` gives it back unchanged."""
    _check_line(arg, "AGI argument")
    if "\r" in arg:
        raise AgiProtocolError("AGI argument contains a carriage return")
    if arg and not any(c in arg for c in ' \t"\\'):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_args(line: str) -> list[str]:
    """Split a command line exactly as Asterisk's ``parse_args`` (res_agi.c) does.

    Blanks (space, tab) separate words outside double quotes; ``"`` toggles quoting (an opening
    quote after a blank starts a word, so ``""`` is an empty word); backslash takes the next
    character literally.
    """
    words: list[str] = []
    cur: list[str] | None = None
    quoted = escaped = False
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and cur is None:
                cur = []
                words.append("")
            continue
        if ch in " \t" and not quoted and not escaped:
            if cur is not None:
                words[-1] = "".join(cur)
                cur = None
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if cur is None:
            cur = []
            words.append("")
        cur.append(ch)
        escaped = False
    if cur is not None:
        words[-1] = "".join(cur)
    return words


@dataclass(frozen=True)
class AgiCommand:
    """One AGI command: its name words (``("SET", "VARIABLE")``) and arguments."""

    name: tuple[str, ...]
    args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise AgiProtocolError("empty command name")
        for word in self.name:
            if not word or any(c.isspace() or c in '"\\' for c in word):
                raise AgiProtocolError(f"bad command word {word[:40]!r}")
        for arg in self.args:
            quote_arg(arg)  # validates

    @property
    def verb(self) -> str:
        return " ".join(self.name).upper()

    def __bytes__(self) -> bytes:
        parts = [w.upper() for w in self.name] + [quote_arg(a) for a in self.args]
        return _encode(" ".join(parts) + "\n")

    @classmethod
    def parse(cls, raw: bytes) -> AgiCommand:
        """Parse one command line (as a fake Asterisk would); unknown commands raise."""
        if raw.endswith(b"\n"):
            raw = raw[:-1]
        if b"\n" in raw or b"\x00" in raw:
            raise AgiProtocolError("command contains a newline or NUL")
        if len(raw) > MAX_LINE_BYTES:
            raise AgiProtocolError(f"command longer than {MAX_LINE_BYTES} bytes")
        text = _decode(raw)
        if "\r" in text:
            raise AgiProtocolError("command contains a carriage return")
        words = split_args(text)
        if not words:
            raise AgiProtocolError("empty command")
        upper = [w.upper() for w in words]
        for known in KNOWN_COMMANDS:
            if tuple(upper[: len(known)]) == known:
                return cls(known, tuple(words[len(known):]))
        raise AgiProtocolError(f"unknown command {words[0][:40]!r}")

    # --- the commands Earpiece uses --------------------------------------------------------
    @classmethod
    def set_variable(cls, name: str, value: str) -> AgiCommand:
        return cls(("SET", "VARIABLE"), (name, value))

    @classmethod
    def get_variable(cls, name: str) -> AgiCommand:
        return cls(("GET", "VARIABLE"), (name,))

    @classmethod
    def verbose(cls, message: str, level: int = 1) -> AgiCommand:
        return cls(("VERBOSE",), (message, str(level)))

    @classmethod
    def noop(cls) -> AgiCommand:
        return cls(("NOOP",))

    @classmethod
    def answer(cls) -> AgiCommand:
        return cls(("ANSWER",))

    @classmethod
    def exec(cls, application: str, options: str = "") -> AgiCommand:
        return cls(("EXEC",), (application, options) if options else (application,))


# --------------------------------------------------------------------------------------------
# Replies (Asterisk -> server)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiHangup:
    """The unsolicited ``HANGUP`` line: the channel hung up while the script runs."""

    def __bytes__(self) -> bytes:
        return b"HANGUP\n"


@dataclass(frozen=True)
class AgiReply:
    """One reply. ``text`` is what follows the status code on the first line.

    For ``200`` replies, ``result`` is the integer after ``result=``, ``data`` the text in
    parentheses (``None`` when absent) and ``attributes`` the trailing ``key=value`` words
    (``endpos``). A multi-line ``520-`` reply has its usage lines in ``usage`` (``None`` for a
    single-line reply) and its closing line's text in ``usage_end``.
    """

    code: int
    text: str
    usage: tuple[str, ...] | None = None
    usage_end: str = END_OF_USAGE
    result: int | None = field(default=None, init=False)
    data: str | None = field(default=None, init=False)
    attributes: tuple[tuple[str, str], ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        if not 100 <= self.code <= 599:
            raise AgiProtocolError(f"bad status code {self.code}")
        _check_line(self.text, "reply text")
        if self.usage is not None:
            for line in self.usage:
                _check_line(line, "usage line")
                if _is_usage_end(line):
                    raise AgiProtocolError("usage line looks like the end of the usage block")
            _check_line(self.usage_end, "usage end")
        if self.code == 200:
            result, data, attrs = _parse_result(self.text)
            object.__setattr__(self, "result", result)
            object.__setattr__(self, "data", data)
            object.__setattr__(self, "attributes", attrs)

    @property
    def ok(self) -> bool:
        """``200`` and a non-negative result (``-1`` is Asterisk's failure)."""
        return self.code == 200 and self.result is not None and self.result >= 0

    def attribute(self, key: str) -> str | None:
        for k, v in self.attributes:
            if k == key:
                return v
        return None

    @classmethod
    def success(cls, result: int, data: str | None = None, **attributes: str) -> AgiReply:
        text = f"result={result}"
        if data is not None:
            text += f" ({data})"
        for k, v in attributes.items():
            text += f" {k}={v}"
        return cls(200, text)

    @classmethod
    def invalid_command(cls) -> AgiReply:
        return cls(510, "Invalid or unknown command")

    @classmethod
    def dead_channel(cls) -> AgiReply:
        return cls(511, "Command Not Permitted on a dead channel or intercept routine")

    @classmethod
    def show_usage(cls, usage: str) -> AgiReply:
        return cls(520, USAGE_FOLLOWS, tuple(usage.split("\n")))

    def __bytes__(self) -> bytes:
        if self.usage is None:
            return _encode(f"{self.code} {self.text}\n")
        body = "".join(f"{line}\n" for line in self.usage)
        return _encode(f"{self.code}-{self.text}\n{body}{self.code} {self.usage_end}\n")

    @classmethod
    def parse(cls, raw: bytes) -> AgiReply:
        """Parse one complete reply: one line, or a whole ``520-`` block."""
        if not raw.endswith(b"\n"):
            raise AgiProtocolError("reply must end with a newline")
        lines = raw[:-1].split(b"\n")
        code, sep, text = _parse_status_line(lines[0])
        if sep == " ":
            if len(lines) != 1:
                raise AgiProtocolError("single-line reply followed by more lines")
            return cls(code, text)
        if len(lines) < 2:
            raise AgiProtocolError("multi-line reply without its closing line")
        end_code, end_sep, end_text = _parse_status_line(lines[-1])
        if end_code != code or end_sep != " ":
            raise AgiProtocolError(f"multi-line {code} reply not closed by '{code} ...'")
        usage = tuple(_decode(line) for line in lines[1:-1])
        if len(usage) > MAX_USAGE_LINES:
            raise AgiProtocolError(f"more than {MAX_USAGE_LINES} usage lines")
        return cls(code, text, usage, end_text)


def _is_usage_end(line: str) -> bool:
    return bool(_STATUS_RE.fullmatch(line)) and line[3] == " "


def _parse_status_line(raw: bytes) -> tuple[int, str, str]:
    if len(raw) > MAX_LINE_BYTES:
        raise AgiProtocolError(f"reply line longer than {MAX_LINE_BYTES} bytes")
    if b"\x00" in raw:
        raise AgiProtocolError("reply contains a NUL byte")
    line = _decode(raw)
    m = _STATUS_RE.fullmatch(line)
    if not m:
        raise AgiProtocolError(f"not an AGI reply: {line[:60]!r}")
    return int(m.group(1)), m.group(2), m.group(3)


def _parse_result(text: str) -> tuple[int, str | None, tuple[tuple[str, str], ...]]:
    """``result=N [(data)] [key=value ...]``; data may itself contain parentheses."""
    m = _RESULT_RE.fullmatch(text)
    if not m:
        raise AgiProtocolError(f"200 reply without 'result=<integer>': {text[:60]!r}")
    result = int(m.group(1))
    rest = m.group(2)
    if not rest:
        return result, None, ()
    if not rest.startswith(" "):
        raise AgiProtocolError(f"junk after result: {rest[:60]!r}")
    rest = rest[1:]
    data: str | None = None
    if rest.startswith("("):
        # The data ends at the last ')' that is followed only by key=value words.
        end = len(rest)
        while True:
            end = rest.rfind(")", 0, end)
            if end < 0:
                raise AgiProtocolError(f"unterminated '(' in reply: {text[:60]!r}")
            tail = rest[end + 1 :]
            if not tail or (tail.startswith(" ") and _attrs_ok(tail[1:])):
                break
        data = rest[1:end]
        rest = rest[end + 2 :]
    if not rest:
        return result, data, ()
    # Attributes are key=value words; other words (SPEECH RECOGNIZE's "results=2 0 ...")
    # belong to the value before them.
    attrs: list[tuple[str, str]] = []
    for word in rest.split(" "):
        if _ATTR_RE.fullmatch(word):
            k, _, v = word.partition("=")
            attrs.append((k, v))
        elif attrs:
            k, v = attrs[-1]
            attrs[-1] = (k, f"{v} {word}")
        else:
            raise AgiProtocolError(f"bad reply attribute {word[:40]!r}")
    return result, data, tuple(attrs)


def _attrs_ok(tail: str) -> bool:
    words = tail.split(" ")
    return bool(words) and _ATTR_RE.fullmatch(words[0]) is not None


# --------------------------------------------------------------------------------------------
# Stream framers
# --------------------------------------------------------------------------------------------

AgiServerItem = AgiEnvironment | AgiReply | AgiHangup


@dataclass
class AgiStreamFramer:
    """Frames what Asterisk sends to a FastAGI server: one environment, then replies.

    ``feed(bytes)`` returns complete items. A malformed environment or reply is dropped and
    counted in ``errors`` (``last_error`` says why); after a malformed environment the stream
    cannot be trusted, so ``broken`` is set and further input is ignored.
    """

    max_env_bytes: int = MAX_ENV_BYTES
    max_line_bytes: int = MAX_LINE_BYTES
    errors: int = 0
    last_error: str = ""
    broken: bool = False
    _buf: bytearray = field(default_factory=bytearray)
    _env_done: bool = False
    _usage: list[bytes] | None = None

    def feed(self, data: bytes) -> list[AgiServerItem]:
        out: list[AgiServerItem] = []
        if self.broken:
            return out
        self._buf += data
        if not self._env_done:
            end = self._buf.find(b"\n\n")
            if end < 0:
                if self._buf == b"\n":
                    self._fail("empty AGI environment")
                elif len(self._buf) > self.max_env_bytes:
                    self._fail(f"no end of environment within {self.max_env_bytes} bytes")
                return out
            raw = bytes(self._buf[: end + 2])
            del self._buf[: end + 2]
            try:
                out.append(AgiEnvironment.parse(raw))
            except AgiProtocolError as exc:
                self._fail(str(exc))
                return out
            self._env_done = True
        while not self.broken:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.max_line_bytes:
                    self._error(f"no newline within {self.max_line_bytes} bytes; line dropped")
                    self._buf.clear()
                break
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            item = self._line(line)
            if item is not None:
                out.append(item)
        return out

    def _line(self, line: bytes) -> AgiReply | AgiHangup | None:
        if self._usage is not None:
            self._usage.append(line)
            if re.match(rb"[1-5][0-9][0-9] ", line):
                raw = b"".join(self._usage)
                self._usage = None
                return self._reply(raw)
            if len(self._usage) > MAX_USAGE_LINES + 2:
                self._usage = None
                self._error(f"usage block longer than {MAX_USAGE_LINES} lines; dropped")
            return None
        if line == b"HANGUP\n":
            return AgiHangup()
        if re.match(rb"[1-5][0-9][0-9]-", line):
            self._usage = [line]
            return None
        return self._reply(line)

    def _reply(self, raw: bytes) -> AgiReply | None:
        try:
            return AgiReply.parse(raw)
        except AgiProtocolError as exc:
            self._error(str(exc))
            return None

    def _error(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason

    def _fail(self, reason: str) -> None:
        self._error(reason)
        self.broken = True
        self._buf.clear()


@dataclass
class AgiCommandFramer:
    """Frames what a FastAGI server sends (command lines); used by fakes and the simulator.

    Unknown or malformed commands are returned as :class:`AgiProtocolError` instances so the
    caller can answer ``510`` (as Asterisk does) instead of silently losing a reply.
    """

    max_line_bytes: int = MAX_LINE_BYTES
    errors: int = 0
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[AgiCommand | AgiProtocolError]:
        self._buf += data
        out: list[AgiCommand | AgiProtocolError] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) > self.max_line_bytes:
                    self.errors += 1
                    out.append(AgiProtocolError("command line too long"))
                    self._buf.clear()
                break
            line = bytes(self._buf[: nl + 1])
            del self._buf[: nl + 1]
            try:
                out.append(AgiCommand.parse(line))
            except AgiProtocolError as exc:
                self.errors += 1
                out.append(exc)
        return out
