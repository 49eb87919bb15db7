"""Settings of the PBX attachment (AMI, ARI, FastAGI, routing rules)."""

from __future__ import annotations

from dataclasses import dataclass, field

from earpiece.secret import Secret


@dataclass(frozen=True)
class AmiSettings:
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "assist"
    secret: Secret = field(default_factory=lambda: Secret(""))
    connect_timeout_s: float = 5.0
    action_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    ping_interval_s: float = 20.0


@dataclass(frozen=True)
class AriSettings:
    url: str = "http://127.0.0.1:8088"
    username: str = "assist"
    password: Secret = field(default_factory=lambda: Secret(""))
    app: str = "assist"
    subscribe_all: bool = True
    request_timeout_s: float = 10.0
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0


@dataclass(frozen=True)
class RouteRule:
    """One FastAGI ``route`` rule: the first rule whose matchers all match wins."""

    route: str
    direction: str = "any"  # inbound | outbound | any
    exten_prefix: str = ""
    callerid_prefix: str = ""
    context: str = ""
    campaign: str = ""
    # Optional extra channel variables set with the route (EARPIECE_QUEUE / EARPIECE_TRUNK).
    queue: str = ""
    trunk: str = ""


@dataclass(frozen=True)
class AgiSettings:
    host: str = "127.0.0.1"
    port: int = 4573
    default_route: str = "default"
    routes: list[RouteRule] = field(default_factory=list)
