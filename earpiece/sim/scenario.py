"""Simulator scenarios: who the PBX's phones are and how each one behaves (TOML).

A scenario file describes SIP endpoints the way ``pjsip.conf`` plus scripted pjsua2 phones did
in the captures (``shared/asterisk/captures/pjsip``), the dialplan context the customer is
originated into, and optionally an internal dialer that originates calls by itself.

Format (every key optional unless noted)::

    name = "demo"

    [credentials]                  # AMI user/secret and ARI user/password
    ami_username = "assist"
    ami_secret = "assist"
    ami_read = "system,call,dtmf,dialplan"      # manager.conf read= (default: the shipped
    ami_write = "call,reporting,originate,message"  # least-privilege user); "all" for all
    ari_username = "assist"
    ari_password = "assist"
    [[credentials.ami_users]]      # more AMI users (manager.conf sections), e.g. a read-all one
    username = "fx-readall"
    secret = "assist"
    read = "all"
    write = "all"

    [dialplan]                     # Originate Context/Exten that connects an agent
    context = "dialer"
    exten = "agent"
    agents = ["agent1"]            # Dial(PJSIP/<agent>,<dial_timeout_s>), round-robin
    dial_timeout_s = 20

    [[endpoints]]                  # one per PJSIP endpoint (required: name)
    name = "cust1"
    role = "customer"              # customer | agent
    callerid_name = "Customer One" # the endpoint's own caller id (number = name)
    registered = true              # false: an offline phone (Originate fails at once)
    outcome = "answer"             # answer | busy | decline | unavailable | noanswer |
                                   # offline | congestion | sit
    ring_s = 2.0                   # 180 Ringing -> final response/answer
    early_media = "ringback"       # none | ringback | busy | sit (183 + audio before final)
    early_media_after_s = 1.0      # INVITE -> 183
    answered_by = "human"          # human | machine (truth for CPA/AMD checks)
    hangup_after_s = 8.0           # after answer; 0 = never (until hung up by a client)
    hangup_by = "customer"         # customer | agent
    says = [{wav = "demo-congrats", at_s = 0.3}]        # the customer's voice, after answer
    agent_says = [{wav = "demo-echotest", at_s = 1.0}]  # the agent's voice on this call
                                                        # (relative to the agent's answer)

    [dialer]                       # the simulator originates calls itself (like a dialer)
    enabled = true
    start_after_s = 1.0
    spacing_s = 3.0
    calls = ["cust1", "cust2"]     # customer endpoints, in order
    timeout_ms = 20000
    callerid = "Dialer <5000>"

``wav`` names are prompts under ``/usr/share/asterisk/sounds/en`` (``demo-congrats``) or
absolute paths to 8 kHz 16-bit mono WAV files.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earpiece.agi.ami_permissions import REQUIRED_READ, REQUIRED_WRITE, class_line, parse_classes
from earpiece.errors import ConfigError

OUTCOMES = ("answer", "busy", "decline", "unavailable", "noanswer", "offline", "congestion",
            "sit")
EARLY_MEDIA = ("none", "ringback", "busy", "sit")
SCENARIO_DIR = Path(__file__).with_name("scenarios")


@dataclass(frozen=True)
class Say:
    """One utterance: a prompt played ``at_s`` seconds after the party's answer."""

    wav: str
    at_s: float = 0.0


@dataclass(frozen=True)
class Endpoint:
    name: str
    role: str = "customer"
    callerid_name: str = ""
    registered: bool = True
    outcome: str = "answer"
    ring_s: float = 2.0
    early_media: str = "none"
    early_media_after_s: float = 1.0
    answered_by: str = "human"
    hangup_after_s: float = 8.0
    hangup_by: str = "customer"
    says: tuple[Say, ...] = ()
    agent_says: tuple[Say, ...] = ()

    @property
    def offline(self) -> bool:
        return not self.registered or self.outcome == "offline"


@dataclass(frozen=True)
class Dialplan:
    context: str = "dialer"
    exten: str = "agent"
    agents: tuple[str, ...] = ()
    dial_timeout_s: float = 20.0


@dataclass(frozen=True)
class DialerPlan:
    enabled: bool = False
    start_after_s: float = 1.0
    spacing_s: float = 3.0
    calls: tuple[str, ...] = ()
    timeout_ms: int = 20000
    callerid: str = "Dialer <5000>"


@dataclass(frozen=True)
class AmiUser:
    """One manager.conf user: secret and ``read=``/``write=`` classes."""

    username: str
    secret: str
    read: frozenset[str] = REQUIRED_READ
    write: frozenset[str] = REQUIRED_WRITE


@dataclass(frozen=True)
class Credentials:
    ami_username: str = "assist"
    ami_secret: str = "assist"
    ari_username: str = "assist"
    ari_password: str = "assist"
    # manager.conf read=/write= of ami_username; the default is the shipped least privilege
    ami_read: str = field(default_factory=lambda: class_line(REQUIRED_READ))
    ami_write: str = field(default_factory=lambda: class_line(REQUIRED_WRITE))
    ami_users: tuple[AmiUser, ...] = ()

    def ami_user(self, username: str | None) -> AmiUser | None:
        """The AMI user called ``username`` (the main one or one of ``ami_users``)."""
        if username == self.ami_username:
            return AmiUser(self.ami_username, self.ami_secret, parse_classes(self.ami_read),
                           parse_classes(self.ami_write))
        return next((u for u in self.ami_users if u.username == username), None)


@dataclass(frozen=True)
class Scenario:
    name: str = "scenario"
    endpoints: tuple[Endpoint, ...] = ()
    dialplan: Dialplan = field(default_factory=Dialplan)
    dialer: DialerPlan = field(default_factory=DialerPlan)
    credentials: Credentials = field(default_factory=Credentials)

    def endpoint(self, name: str) -> Endpoint | None:
        for ep in self.endpoints:
            if ep.name == name:
                return ep
        return None

    @property
    def agents(self) -> tuple[str, ...]:
        if self.dialplan.agents:
            return self.dialplan.agents
        return tuple(ep.name for ep in self.endpoints if ep.role == "agent")

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, file: str | None = None) -> Scenario:
        """Validate and build; every problem is a :class:`ConfigError` naming the key."""
        try:
            return cls._from_dict(data, file)
        except (TypeError, ValueError, AttributeError, OverflowError) as exc:
            raise ConfigError(f"invalid value: {exc}", file=file) from None

    @classmethod
    def _from_dict(cls, data: dict[str, Any], file: str | None) -> Scenario:
        def fail(key: str, msg: str) -> ConfigError:
            return ConfigError(msg, file=file, key=key)

        if not isinstance(data, dict):
            raise fail("", "a scenario must be a table")
        for key in ("endpoints",):
            if not isinstance(data.get(key, []), list):
                raise fail(key, "must be an array of tables")

        known = {"name", "credentials", "dialplan", "endpoints", "dialer"}
        for key in data:
            if key not in known:
                raise fail(key, "unknown key")
        endpoints = tuple(_endpoint(d, i, fail) for i, d in enumerate(data.get("endpoints", [])))
        names = [ep.name for ep in endpoints]
        if len(set(names)) != len(names):
            raise fail("endpoints", "duplicate endpoint names")
        dp = _section(data, "dialplan", fail)
        for key in ("agents",):
            if not isinstance(dp.get(key, []), list):
                raise fail(f"dialplan.{key}", "must be a list of endpoint names")
        dialplan = Dialplan(
            context=str(dp.get("context", "dialer")),
            exten=str(dp.get("exten", "agent")),
            agents=tuple(str(a) for a in dp.get("agents", ())),
            dial_timeout_s=float(dp.get("dial_timeout_s", 20.0)),
        )
        for agent in dialplan.agents:
            if agent not in names:
                raise fail("dialplan.agents", f"no endpoint named {agent!r}")
        dl = _section(data, "dialer", fail)
        if not isinstance(dl.get("calls", []), list):
            raise fail("dialer.calls", "must be a list of endpoint names")
        dialer = DialerPlan(
            enabled=bool(dl.get("enabled", bool(dl))),
            start_after_s=float(dl.get("start_after_s", 1.0)),
            spacing_s=float(dl.get("spacing_s", 3.0)),
            calls=tuple(str(c) for c in dl.get("calls", ())),
            timeout_ms=int(dl.get("timeout_ms", 20000)),
            callerid=str(dl.get("callerid", "Dialer <5000>")),
        )
        for call in dialer.calls:
            if call not in names:
                raise fail("dialer.calls", f"no endpoint named {call!r}")
        cr = _section(data, "credentials", fail)
        credentials = Credentials(**{k: str(v) for k, v in cr.items()
                                     if k in Credentials.__dataclass_fields__
                                     and k != "ami_users"},
                                  ami_users=_ami_users(cr.get("ami_users", []), fail))
        for key in ("ami_read", "ami_write"):
            try:
                parse_classes(getattr(credentials, key))
            except ValueError as exc:
                raise fail(f"credentials.{key}", str(exc)) from None
        return cls(name=str(data.get("name", "scenario")), endpoints=endpoints,
                   dialplan=dialplan, dialer=dialer, credentials=credentials)


def _ami_users(value: Any, fail: Any) -> tuple[AmiUser, ...]:
    if not isinstance(value, list):
        raise fail("credentials.ami_users", "must be an array of tables")
    users = []
    for i, d in enumerate(value):
        key = f"credentials.ami_users[{i}]"
        if not isinstance(d, dict) or "username" not in d:
            raise fail(key, "needs username (and secret, read, write)")
        try:
            users.append(AmiUser(str(d["username"]), str(d.get("secret", "")),
                                 parse_classes(str(d.get("read", class_line(REQUIRED_READ)))),
                                 parse_classes(str(d.get("write",
                                                         class_line(REQUIRED_WRITE))))))
        except ValueError as exc:
            raise fail(key, str(exc)) from None
    return tuple(users)


def _section(data: dict[str, Any], key: str, fail: Any) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise fail(key, "must be a table")
    return value


def _says(value: Any, key: str, fail: Any) -> tuple[Say, ...]:
    if not isinstance(value, list):
        raise fail(key, "must be a list of {wav, at_s}")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(Say(item, 0.0))
        elif isinstance(item, dict) and "wav" in item:
            out.append(Say(str(item["wav"]), float(item.get("at_s", 0.0))))
        else:
            raise fail(key, f"bad entry {item!r}")
    return tuple(out)


def _endpoint(d: Any, i: int, fail: Any) -> Endpoint:
    key = f"endpoints[{i}]"
    if not isinstance(d, dict) or "name" not in d:
        raise fail(key, "each endpoint needs a name")
    fields = Endpoint.__dataclass_fields__
    for k in d:
        if k not in fields:
            raise fail(f"{key}.{k}", "unknown key")
    outcome = str(d.get("outcome", "answer"))
    if outcome not in OUTCOMES:
        raise fail(f"{key}.outcome", f"must be one of {', '.join(OUTCOMES)}")
    early = str(d.get("early_media", "none"))
    if early not in EARLY_MEDIA:
        raise fail(f"{key}.early_media", f"must be one of {', '.join(EARLY_MEDIA)}")
    role = str(d.get("role", "customer"))
    if role not in ("customer", "agent"):
        raise fail(f"{key}.role", "must be customer or agent")
    answered_by = str(d.get("answered_by", "human"))
    if answered_by not in ("human", "machine"):
        raise fail(f"{key}.answered_by", "must be human or machine")
    hangup_by = str(d.get("hangup_by", "customer"))
    if hangup_by not in ("customer", "agent"):
        raise fail(f"{key}.hangup_by", "must be customer or agent")
    says = _says(d.get("says", []), f"{key}.says", fail)
    if not says and answered_by == "machine":
        # "Nobody is available..." then "Please leave your message after the tone..." + tone
        says = (Say("vm-nobodyavail", 0.3), Say("vm-intro", 3.2))
    return Endpoint(
        name=str(d["name"]),
        role=role,
        callerid_name=str(d.get("callerid_name", "")),
        registered=bool(d.get("registered", True)),
        outcome=outcome,
        ring_s=float(d.get("ring_s", 0.5 if role == "agent" else 2.0)),
        early_media=early,
        early_media_after_s=float(d.get("early_media_after_s", 1.0)),
        answered_by=answered_by,
        hangup_after_s=float(d.get("hangup_after_s", 8.0)),
        hangup_by=hangup_by,
        says=says,
        agent_says=_says(d.get("agent_says", []), f"{key}.agent_says", fail),
    )


def load_scenario(path: str | Path) -> Scenario:
    """Load a scenario file; a bare name (``demo``) means a packaged scenario."""
    p = Path(path)
    if not p.exists() and not p.suffix:
        p = SCENARIO_DIR / f"{p.name}.toml"
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("scenario file not found", file=str(p)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(p)) from None
    return Scenario.from_dict(data, file=str(p))
