"""Typed settings loaded from one TOML file.

Each section is a dataclass owned by the module that uses it (``earpiece.agi.settings``,
``earpiece.media.settings``, ``earpiece.cpa.settings``...); this module only validates a TOML table
against those dataclasses. Errors name the file and the dotted key (a section's ``__post_init__``
may raise ``ConfigError(message, key=field)`` for one of its fields; the loader adds the section
and the file; a plain ``ValueError`` there is reported against the whole section). Secrets
(:class:`Secret`) come from the environment (``EARPIECE_AMI_SECRET``...) or from a file named by
``<key>_file``; their value never appears in ``repr()`` or logs.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from earpiece.agi.settings import AgiSettings, AmiSettings, AriSettings
from earpiece.asr.settings import AsrSettings
from earpiece.cpa.settings import CpaSettings
from earpiece.delivery.settings import DeliverySettings
from earpiece.emotion.settings import EmotionSettings
from earpiece.errors import ConfigError
from earpiece.media.settings import MediaSettings, RecordingSettings
from earpiece.secret import Secret
from earpiece.strategy.settings import StrategySettings

T = TypeVar("T")


@dataclass(frozen=True)
class CrmSettings:
    url: str = "sqlite:///var/earpiece.sqlite3"
    password: Secret = field(default_factory=lambda: Secret(""))  # PostgreSQL only


@dataclass(frozen=True)
class QcSettings:
    """Quality control on final transcripts (:mod:`earpiece.crm.qc`, evaluation 2)."""

    enabled: bool = True
    phrases: str = ""  # phrase rules file (config/qc/example.toml); "": timing measures only
    campaign_tag: str = "campaign"  # the call tag naming the campaign
    long_silence_s: float = 5.0
    min_overtalk_s: float = 0.3
    settle_s: float = 3.0  # after a call ends, wait this long for its last finals

    def __post_init__(self) -> None:
        for name in ("long_silence_s", "min_overtalk_s", "settle_s"):
            if getattr(self, name) < 0:
                raise ConfigError("must be >= 0", key=name)


@dataclass(frozen=True)
class LogSettings:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


#: Password hash formats a dashboard user may have (:mod:`earpiece.web.auth`); never plaintext.
PASSWORD_HASH_SCHEMES = ("pbkdf2_sha256$", "scrypt$")


@dataclass(frozen=True)
class DashboardUser:
    """One login of the dashboard (``[[http.users]]``)."""

    name: str = ""
    role: Literal["agent", "supervisor"] = "agent"
    endpoint: str = ""  # agent: the SIP endpoint of their desk phone (sees only its calls)
    password_hash: str = ""  # `python -m earpiece.web.passwd`: pbkdf2_sha256$... or scrypt$...

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a dashboard user needs a name", key="name")
        if not self.password_hash.startswith(PASSWORD_HASH_SCHEMES):
            raise ConfigError("must be a password hash (python -m earpiece.web.passwd), "
                              "not a plaintext password", key="password_hash")
        if self.role == "agent" and not self.endpoint:
            raise ConfigError("an agent needs the endpoint of their phone", key="endpoint")


@dataclass(frozen=True)
class HttpSettings:
    """The service's HTTP endpoint (``/healthz``, ``/readyz``, ``/metrics``, ``/api/feed``) and
    the dashboard (``/login``, ``/live``, ``/history``; :mod:`earpiece.web.dashboard`)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8780  # 0: an ephemeral port (tests)
    #: Bearer token of the ``/api/feed`` websocket (empty: the feed is refused)
    feed_token: Secret = field(default_factory=lambda: Secret(""))
    #: Path prefix of the pages behind a reverse proxy ("/earpiece"); X-Forwarded-Prefix wins
    prefix: str = ""
    #: Secure flag of the session cookie: auto = unless plain http to a loopback host
    cookie_secure: Literal["auto", "always", "never"] = "auto"
    session_hours: float = 12.0  # a dashboard login lasts this long
    users: list[DashboardUser] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"must be a TCP port 0..65535, got {self.port!r}", key="port")
        if self.prefix and (not self.prefix.startswith("/") or self.prefix.endswith("/")):
            raise ConfigError("must start with / and not end with / (or be empty)", key="prefix")
        if self.session_hours <= 0:
            raise ConfigError("must be > 0", key="session_hours")
        names = [u.name for u in self.users]
        if len(set(names)) != len(names):
            raise ConfigError("user names must be unique", key="users")


@dataclass(frozen=True)
class Settings:
    ami: AmiSettings = field(default_factory=AmiSettings)
    ari: AriSettings = field(default_factory=AriSettings)
    agi: AgiSettings = field(default_factory=AgiSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    recordings: RecordingSettings = field(default_factory=RecordingSettings)
    cpa: CpaSettings = field(default_factory=CpaSettings)
    asr: AsrSettings = field(default_factory=AsrSettings)
    emotion: EmotionSettings = field(default_factory=EmotionSettings)
    strategy: StrategySettings = field(default_factory=StrategySettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    crm: CrmSettings = field(default_factory=CrmSettings)
    qc: QcSettings = field(default_factory=QcSettings)
    log: LogSettings = field(default_factory=LogSettings)
    http: HttpSettings = field(default_factory=HttpSettings)


# Environment variables that may supply a secret, by dotted key.
SECRET_ENV = {
    "ami.secret": "EARPIECE_AMI_SECRET",
    "ari.password": "EARPIECE_ARI_PASSWORD",
    "crm.password": "EARPIECE_CRM_PASSWORD",
    "http.feed_token": "EARPIECE_FEED_TOKEN",
}


def load_settings(path: str | Path | None, env: typing.Mapping[str, str] | None = None) -> Settings:
    """Load and validate ``path`` (``None`` gives the defaults, secrets from ``env`` only)."""
    env = os.environ if env is None else env
    file = str(path) if path is not None else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError("file not found", file=file) from None
        except OSError as exc:
            raise ConfigError(f"cannot read: {exc.strerror or exc}", file=file) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid TOML: {exc}", file=file) from None
    base = Path(path).parent if path is not None else Path.cwd()
    return build(Settings, data, file=file, prefix="", env=env, base=base)


def build(
    cls: type[T],
    table: typing.Mapping[str, Any],
    *,
    file: str,
    prefix: str,
    env: typing.Mapping[str, str],
    base: Path,
) -> T:
    """Build dataclass ``cls`` from a TOML table, checking every key and type."""
    if not isinstance(table, dict):
        raise ConfigError("expected a table", file=file, key=prefix.rstrip(".") or "<root>")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    known = set(fields) | {f"{n}_file" for n, h in hints.items() if h is Secret}
    for key in table:
        if key not in known:
            raise ConfigError(
                f"unknown key (known: {', '.join(sorted(fields))})", file=file, key=prefix + key
            )
    kwargs: dict[str, Any] = {}
    for name in fields:
        hint = hints[name]
        key = prefix + name
        if hint is Secret:
            secret = _secret(table, name, key, file=file, env=env, base=base)
            if secret is not None:
                kwargs[name] = secret
            continue
        if name in table:
            kwargs[name] = _convert(hint, table[name], file=file, key=key, env=env, base=base)
        elif dataclasses.is_dataclass(hint) and isinstance(hint, type):
            # A section left out of the file still takes its secrets from the environment.
            kwargs[name] = build(hint, {}, file=file, prefix=key + ".", env=env, base=base)
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        if exc.file is not None:
            raise
        # A section's own check that names one of its fields (``ConfigError(msg, key=field)``
        # from ``__post_init__``): qualify the key with the section and add the file.
        if exc.key is None:
            raise ConfigError(str(exc), file=file, key=prefix.rstrip(".") or "<root>") from None
        message = str(exc).removeprefix(f"{exc.key}: ")
        raise ConfigError(message, file=file, key=prefix + exc.key) from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc), file=file, key=prefix.rstrip(".") or "<root>") from None


def _secret(
    table: typing.Mapping[str, Any],
    name: str,
    key: str,
    *,
    file: str,
    env: typing.Mapping[str, str],
    base: Path,
) -> Secret | None:
    env_name = SECRET_ENV.get(key)
    if name in table:  # refused even when the environment would override it
        raise ConfigError(
            "secrets are not accepted inline; set "
            + (f"${env_name} or " if env_name else "")
            + f"{name}_file",
            file=file,
            key=key,
        )
    if env_name and env.get(env_name):
        return Secret(env[env_name])
    if f"{name}_file" in table:
        ref = table[f"{name}_file"]
        if not isinstance(ref, str):
            raise ConfigError("expected a file path string", file=file, key=key + "_file")
        p = Path(ref) if Path(ref).is_absolute() else base / ref
        try:
            return Secret(p.read_text().strip())
        except OSError as exc:
            raise ConfigError(
                f"cannot read secret file {p}: {exc.strerror}", file=file, key=key + "_file"
            ) from None
    return None


def _convert(
    hint: Any, value: Any, *, file: str, key: str, env: typing.Mapping[str, str], base: Path
) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _convert(args[0], value, file=file, key=key, env=env, base=base)
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(
                f"must be one of {', '.join(map(repr, choices))}, got {value!r}", file=file, key=key
            )
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {type(value).__name__}", file=file, key=key)
        (item,) = get_args(hint)[:1]
        items = [
            _convert(item, v, file=file, key=f"{key}[{i}]", env=env, base=base)
            for i, v in enumerate(value)
        ]
        return tuple(items) if origin is tuple else items
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build(hint, value, file=file, prefix=key + ".", env=env, base=base)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true/false, got {value!r}", file=file, key=key)
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected an integer, got {value!r}", file=file, key=key)
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", file=file, key=key)
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", file=file, key=key)
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"expected a path string, got {value!r}", file=file, key=key)
        return Path(value)
    raise ConfigError(f"unsupported setting type {hint!r}", file=file, key=key)
