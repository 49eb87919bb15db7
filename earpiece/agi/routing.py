"""Dialplan hooks served over FastAGI: ``route`` (where should this call go) and ``tag``.

``route``: ``AGI(agi://earpiece:4573/route?direction=inbound&campaign=..)`` asks a
:class:`RouteResolver` (the CRM later; :class:`RuleResolver` reads ``[[agi.routes]]`` now) and
sets channel variables the dialplan branches on::

    EARPIECE_ROUTE   the route name (always set; ``agi.default_route`` when nothing matched)
    EARPIECE_QUEUE   the rule's queue, when it has one
    EARPIECE_TRUNK   the rule's trunk, when it has one

``tag``: ``AGI(agi://earpiece:4573/tag?campaign=..&customer=..&agent=..)`` (or the same as
``key=value`` AGI arguments, or bare positional arguments campaign, customer, agent) hands the
tags to a callback ``on_tag(uniqueid, channel, tags)`` so the call registry can attach them, and
sets ``EARPIECE_TAGGED=1`` (``0`` when the callback failed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from earpiece.agi.fastagi import AgiCommand
from earpiece.agi.fastagi_server import AgiHandler, AgiSession
from earpiece.agi.settings import AgiSettings, RouteRule

log = logging.getLogger(__name__)

DIRECTIONS = ("inbound", "outbound", "any")
TAG_POSITIONAL = ("campaign", "customer", "agent")

ROUTE_VAR = "EARPIECE_ROUTE"
QUEUE_VAR = "EARPIECE_QUEUE"
TRUNK_VAR = "EARPIECE_TRUNK"
TAGGED_VAR = "EARPIECE_TAGGED"


@dataclass(frozen=True)
class RouteQuery:
    """What is known about a call when the dialplan asks for its route."""

    uniqueid: str
    channel: str
    direction: str  # inbound | outbound | "" (not said)
    exten: str
    callerid: str
    context: str
    campaign: str = ""

    @classmethod
    def from_session(cls, session: AgiSession) -> RouteQuery:
        req, env = session.request, session.env
        direction = req.param("direction").lower()
        return cls(
            uniqueid=env.uniqueid,
            channel=env.channel,
            direction=direction if direction in ("inbound", "outbound") else "",
            exten=req.param("exten") or env.extension,
            callerid=req.param("callerid") or env.callerid,
            context=env.context,
            campaign=req.param("campaign"),
        )


@dataclass(frozen=True)
class RouteDecision:
    route: str
    queue: str = ""
    trunk: str = ""
    source: str = ""  # which resolver / rule decided, for logs


class RouteResolver(Protocol):
    """Decides a call's route; returns None when it has no opinion."""

    async def resolve(self, query: RouteQuery) -> RouteDecision | None: ...


def rule_matches(rule: RouteRule, query: RouteQuery) -> bool:
    """A rule matches when every matcher it sets matches (empty matchers match anything)."""
    if rule.direction != "any" and rule.direction != query.direction:
        return False
    if rule.exten_prefix and not query.exten.startswith(rule.exten_prefix):
        return False
    if rule.callerid_prefix and not query.callerid.startswith(rule.callerid_prefix):
        return False
    if rule.context and rule.context != query.context:
        return False
    return not (rule.campaign and rule.campaign != query.campaign)


class RuleResolver:
    """First matching ``[[agi.routes]]`` rule, else ``agi.default_route``."""

    def __init__(self, settings: AgiSettings) -> None:
        for i, rule in enumerate(settings.routes):
            if rule.direction not in DIRECTIONS:
                raise ValueError(
                    f"agi.routes[{i}].direction must be one of {', '.join(DIRECTIONS)}, "
                    f"got {rule.direction!r}"
                )
            if not rule.route:
                raise ValueError(f"agi.routes[{i}].route must not be empty")
        self.rules = tuple(settings.routes)
        self.default_route = settings.default_route

    async def resolve(self, query: RouteQuery) -> RouteDecision:
        for i, rule in enumerate(self.rules):
            if rule_matches(rule, query):
                return RouteDecision(rule.route, rule.queue, rule.trunk, f"agi.routes[{i}]")
        return RouteDecision(self.default_route, source="agi.default_route")


class ChainResolver:
    """Asks resolvers in order; the first decision wins. A resolver that raises is skipped."""

    def __init__(self, resolvers: Sequence[RouteResolver], fallback: RuleResolver) -> None:
        self.resolvers = tuple(resolvers)
        self.fallback = fallback

    async def resolve(self, query: RouteQuery) -> RouteDecision:
        for resolver in self.resolvers:
            try:
                decision = await resolver.resolve(query)
            except Exception:
                log.exception("route resolver %r failed for %s; trying the next",
                              resolver, query.channel)
                continue
            if decision is not None:
                return decision
        return await self.fallback.resolve(query)


def make_route_handler(resolver: RouteResolver, *, default_route: str = "default") -> AgiHandler:
    """The FastAGI ``route`` handler: resolve, then ``SET VARIABLE`` the decision."""

    async def route(session: AgiSession) -> None:
        query = RouteQuery.from_session(session)
        decision = await resolver.resolve(query)
        if decision is None:
            decision = RouteDecision(default_route, source="default")
        log.info("route %s (%s, exten %s, callerid %s) -> %s [%s]", query.channel,
                 query.direction or "direction?", query.exten, query.callerid, decision.route,
                 decision.source)
        await _set(session, ROUTE_VAR, decision.route)
        if decision.queue:
            await _set(session, QUEUE_VAR, decision.queue)
        if decision.trunk:
            await _set(session, TRUNK_VAR, decision.trunk)

    return route


TagCallback = Callable[[str, str, dict[str, str]], None]


def request_tags(session: AgiSession) -> dict[str, str]:
    """Tags from the query string, then ``key=value`` or positional AGI args; empty dropped."""
    tags: dict[str, str] = {}
    for key, value in session.request.params:
        tags[key] = value
    positional = iter(TAG_POSITIONAL)
    for arg in session.request.args:
        key, sep, value = arg.partition("=")
        if sep and key and key.replace("_", "").replace("-", "").isalnum():
            tags[key] = value
        else:
            name = next(positional, None)
            if name is None:
                log.warning("tag: extra positional argument %r ignored", arg)
                continue
            tags[name] = arg
    return {k: v for k, v in tags.items() if v}


def make_tag_handler(on_tag: TagCallback) -> AgiHandler:
    """The FastAGI ``tag`` handler."""

    async def tag(session: AgiSession) -> None:
        tags = request_tags(session)
        ok = True
        try:
            on_tag(session.uniqueid, session.channel, tags)
        except Exception:
            ok = False
            log.exception("tag callback failed for %s %s", session.channel, tags)
        await _set(session, TAGGED_VAR, "1" if ok else "0")

    return tag


def make_handlers(settings: AgiSettings, on_tag: TagCallback,
                  resolvers: Sequence[RouteResolver] = ()) -> dict[str, AgiHandler]:
    """``{"route": ..., "tag": ...}`` for :class:`FastAgiServer`."""
    rules = RuleResolver(settings)
    resolver: RouteResolver = ChainResolver(resolvers, rules) if resolvers else rules
    return {
        "route": make_route_handler(resolver, default_route=settings.default_route),
        "tag": make_tag_handler(on_tag),
    }


async def _set(session: AgiSession, name: str, value: str) -> None:
    """``SET VARIABLE`` and check Asterisk's ``200 result=1``; other answers are logged."""
    reply = await session.execute(AgiCommand.set_variable(name, value))
    if reply.code != 200 or reply.result != 1:
        log.warning("SET VARIABLE %s on %s answered %d %s", name, session.channel, reply.code,
                    reply.text)
