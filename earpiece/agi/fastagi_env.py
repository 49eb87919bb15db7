"""FastAGI wire format, first part: the shared text codec and limits, and what Asterisk sends
first (the ``agi_*`` environment block and the request it names).

Pure and I/O-free like the rest of :mod:`earpiece.agi.fastagi`, which re-exports every public
name here and holds the commands, replies and stream framers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from earpiece.errors import AgiProtocolError

ENCODING = "utf-8"
ERRORS = "surrogateescape"
MAX_LINE_BYTES = 8192
MAX_ENV_BYTES = 64 * 1024
MAX_USAGE_LINES = 200
DEFAULT_PORT = 4573

_KEY_RE = re.compile(r"agi_[A-Za-z0-9_]+")
_ARG_RE = re.compile(r"agi_arg_([1-9][0-9]*)")


def _decode(raw: bytes) -> str:
    return raw.decode(ENCODING, ERRORS)


def _encode(text: str) -> bytes:
    try:
        return text.encode(ENCODING, ERRORS)
    except UnicodeEncodeError as exc:  # a surrogate that did not come from a byte
        raise AgiProtocolError(f"text cannot be encoded at character {exc.start}") from None


def _check_line(text: str, what: str) -> None:
    if "\n" in text or "\x00" in text:
        raise AgiProtocolError(f"{what} contains a newline or NUL")


# --------------------------------------------------------------------------------------------
# Environment block and request
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgiEnvironment:
    """The ``agi_*: value`` block Asterisk sends first; keys keep their order and the prefix."""

    headers: tuple[tuple[str, str], ...]
    _index: dict[str, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.headers:
            raise AgiProtocolError("empty AGI environment")
        for key, value in self.headers:
            if not _KEY_RE.fullmatch(key):
                raise AgiProtocolError(f"bad environment key {key[:60]!r}")
            _check_line(value, f"value of {key}")
            if key in self._index:
                raise AgiProtocolError(f"duplicate environment key {key}")
            self._index[key] = value

    @classmethod
    def parse(cls, raw: bytes) -> AgiEnvironment:
        """Parse a whole block, including the terminating empty line (``...\\n\\n``)."""
        if len(raw) > MAX_ENV_BYTES:
            raise AgiProtocolError(f"environment longer than {MAX_ENV_BYTES} bytes")
        if not raw.endswith(b"\n\n"):
            raise AgiProtocolError("environment must end with an empty line")
        body = raw[:-2]
        if not body:
            raise AgiProtocolError("empty AGI environment")
        headers: list[tuple[str, str]] = []
        for lineno, line_b in enumerate(body.split(b"\n"), 1):
            if not line_b:
                raise AgiProtocolError(f"line {lineno}: empty line inside the environment")
            if b"\x00" in line_b:
                raise AgiProtocolError(f"line {lineno}: NUL byte")
            line = _decode(line_b)
            key, sep, value = line.partition(": ")
            if not sep:
                if line.endswith(":") and ":" not in line[:-1]:
                    key, value = line[:-1], ""
                else:
                    raise AgiProtocolError(
                        f"line {lineno}: no 'agi_key: value' separator: {line[:60]!r}"
                    )
            if not _KEY_RE.fullmatch(key):
                raise AgiProtocolError(f"line {lineno}: bad environment key {key[:60]!r}")
            headers.append((key, value))
        return cls(tuple(headers))

    def __bytes__(self) -> bytes:
        return b"".join(_encode(f"{k}: {v}\n") for k, v in self.headers) + b"\n"

    def get(self, key: str, default: str = "") -> str:
        """Value of ``key``; the ``agi_`` prefix may be left out (``get("channel")``)."""
        if not key.startswith("agi_"):
            key = "agi_" + key
        return self._index.get(key, default)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return (key if key.startswith("agi_") else "agi_" + key) in self._index

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.headers)

    # Fields every Asterisk sends (setup_env).
    @property
    def network(self) -> bool:
        return self.get("network") == "yes"

    @property
    def network_script(self) -> str:
        return self.get("network_script")

    @property
    def request(self) -> str:
        return self.get("request")

    @property
    def channel(self) -> str:
        return self.get("channel")

    @property
    def uniqueid(self) -> str:
        return self.get("uniqueid")

    @property
    def callerid(self) -> str:
        """Caller number; Asterisk writes ``unknown`` when there is none (mapped to "")."""
        value = self.get("callerid")
        return "" if value == "unknown" else value

    @property
    def calleridname(self) -> str:
        value = self.get("calleridname")
        return "" if value == "unknown" else value

    @property
    def dnid(self) -> str:
        value = self.get("dnid")
        return "" if value == "unknown" else value

    @property
    def context(self) -> str:
        return self.get("context")

    @property
    def extension(self) -> str:
        return self.get("extension")

    @property
    def priority(self) -> str:
        return self.get("priority")

    @property
    def accountcode(self) -> str:
        return self.get("accountcode")

    @property
    def args(self) -> tuple[str, ...]:
        """``agi_arg_1``, ``agi_arg_2``... in order (Asterisk numbers them from 1, no gaps)."""
        numbered: dict[int, str] = {}
        for key, value in self.headers:
            m = _ARG_RE.fullmatch(key)
            if m:
                numbered[int(m.group(1))] = value
        out: list[str] = []
        n = 1
        while n in numbered:
            out.append(numbered[n])
            n += 1
        return tuple(out)


@dataclass(frozen=True)
class AgiRequest:
    """What the dialplan asked for: script name, its query parameters and the AGI() args.

    ``AGI(agi://earpiece:4573/tag?campaign=spring&customer=42,agent=1001)`` gives
    ``script="tag"``, ``params=(("campaign", "spring"), ("customer", "42"))``,
    ``args=("agent=1001",)``.
    """

    script: str
    params: tuple[tuple[str, str], ...] = ()
    args: tuple[str, ...] = ()

    @classmethod
    def parse_script(cls, script: str, args: tuple[str, ...] = ()) -> AgiRequest:
        """Parse ``route`` / ``tag?campaign=..`` (the ``agi_network_script`` value)."""
        path, _, query = script.partition("?")
        path = path.strip("/")
        if not path:
            raise AgiProtocolError("AGI request names no script")
        if any(c.isspace() for c in path):
            raise AgiProtocolError(f"bad script name {path[:60]!r}")
        try:
            params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query),
                               errors="strict")
        except (ValueError, UnicodeDecodeError) as exc:
            raise AgiProtocolError(f"bad query string {query[:80]!r}: {exc}") from None
        return cls(path, tuple(params), args)

    @classmethod
    def from_environment(cls, env: AgiEnvironment) -> AgiRequest:
        script = env.network_script
        if not script:
            url = env.request
            if not url.lower().startswith("agi://"):
                raise AgiProtocolError(
                    f"neither agi_network_script nor an agi:// agi_request: {url[:80]!r}"
                )
            try:
                parts = urlsplit(url)
            except ValueError as exc:
                raise AgiProtocolError(f"bad agi_request URL {url[:80]!r}: {exc}") from None
            script = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        return cls.parse_script(script, env.args)

    def param(self, key: str, default: str = "") -> str:
        """Last value of query parameter ``key``."""
        value = default
        for k, v in self.params:
            if k == key:
                value = v
        return value
