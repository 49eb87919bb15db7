"""The dashboard's live state: what each call looks like now, and who may see it.

:class:`LiveBoard` follows the feed's events (:data:`earpiece.delivery.feed.FEED_EVENTS`, plus
:class:`~earpiece.events.QcFlag`) on the bus and keeps, per call, its state, the endpoints of its
agent legs (from :class:`~earpiece.events.ChannelJoined`; ``PJSIP/agent1-0001`` -> ``agent1``),
both parties' transcripts (finals; a party's partial replaced by the next partial or its final),
the scored utterances, each party's emotion state, the prompts, the QC flags and the alerts
(customer turned negative, QC flag). Ended calls stay a while (the last :attr:`keep_ended`).

Each dashboard websocket is a :class:`BoardSubscription` of one session: it gets the event
messages (:func:`earpiece.delivery.feed.feed_message`) of the calls that session may see; the
first message about a call it could not see before (an agent's call before the agent leg
joined) is the whole call (``{"type": "call", "call": {...}}``). A slow browser loses its oldest
messages, never blocks the bus.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from earpiece.bus import EventBus
from earpiece.delivery.feed import FEED_EVENTS, FeedSubscription, feed_message
from earpiece.delivery.phone import endpoint_of
from earpiece.events import (
    CallEnded,
    CallEvent,
    CallOutcome,
    CallStarted,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelRole,
    EmotionChanged,
    EmotionScored,
    PromptReady,
    QcFlag,
    Transcript,
)
from earpiece.web.auth import Session

BOARD_EVENTS: tuple[type[CallEvent], ...] = (*FEED_EVENTS, QcFlag)
MAX_LINES = 500  # transcript lines / scored utterances kept per call


def new_call(call_id: str, at: float) -> dict[str, Any]:
    return {"id": call_id, "direction": "unknown", "state": "dialing", "outcome": None,
            "started": at, "answered": None, "ended": None, "channel": "", "tags": {},
            "agents": [], "transcript": [], "emotions": [], "emotion": {}, "prompts": [],
            "qc": [], "alerts": []}


def apply_event(call: dict[str, Any], msg: dict[str, Any]) -> None:
    """Update one call's dict with one feed message (the dashboard's JS does the same)."""
    kind, at = msg["type"], msg.get("at")
    if kind == "CallStarted":
        call.update(direction=msg["direction"], channel=msg["channel"], started=at,
                    tags=dict(msg.get("tags") or {}))
    elif kind == "CallTagged":
        call["tags"].update(msg.get("tags") or {})
    elif kind == "CallStateChanged":
        call["state"] = msg["new"]
        if msg["new"] == "answered" and call["answered"] is None:
            call["answered"] = at
    elif kind == "CallOutcome":
        call["outcome"] = msg["outcome"]
    elif kind == "CallEnded":
        call.update(ended=at, outcome=msg.get("outcome") or call["outcome"])
    elif kind == "ChannelJoined" and msg["role"] == ChannelRole.AGENT.value:
        endpoint = endpoint_of(msg["channel"])
        if endpoint and endpoint not in call["agents"]:
            call["agents"].append(endpoint)
    elif kind == "Transcript":
        line = {k: msg[k] for k in ("party", "text", "final", "start_s", "end_s", "at")}
        lines = call["transcript"]
        lines[:] = [x for x in lines if x["final"] or x["party"] != msg["party"]]
        lines.append(line)
        del lines[:-MAX_LINES]
    elif kind == "EmotionScored":
        call["emotions"].append({k: msg[k] for k in (
            "party", "label", "valence", "index", "state", "start_s", "end_s", "text", "at")})
        del call["emotions"][:-MAX_LINES]
        call["emotion"][msg["party"]] = {"state": msg["state"], "index": msg["index"]}
    elif kind == "EmotionChanged":
        call["emotion"][msg["party"]] = {"state": msg["new"], "index": msg["index"]}
        if msg["party"] == "customer" and msg["new"] == "negative":
            call["alerts"].append({"kind": "negative", "at": at,
                                   "text": "customer turned negative"})
    elif kind == "PromptReady":
        call["prompts"].append({k: msg.get(k) for k in (
            "prompt_id", "kind", "text", "rule", "product", "slot", "reason", "at")})
        call["prompts"][-1]["delivery"] = {}
    elif kind == "PromptDelivered":
        for prompt in call["prompts"]:
            if prompt["prompt_id"] == msg["prompt_id"]:
                prompt["delivery"][msg["channel"]] = msg["status"]
    elif kind == "QcFlag":
        call["qc"].append({k: msg.get(k) for k in (
            "kind", "rule", "party", "matched", "text", "at")})
        call["alerts"].append({"kind": "qc", "at": at, "text": f"QC {msg['kind']}: "
                                                               f"{msg['rule']}"})


@dataclass(eq=False, kw_only=True)
class BoardSubscription(FeedSubscription):
    """A feed subscription of one dashboard session (``call_id`` None: every call the session
    may see)."""

    session: Session
    known: set[str] = field(default_factory=set)


class LiveBoard:
    """Live calls as the dashboard shows them, and the dashboard websockets' fan-out."""

    def __init__(self, bus: EventBus, keep_ended: int = 50) -> None:
        self.bus = bus
        self.keep_ended = keep_ended
        self.calls: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.subscribers: set[BoardSubscription] = set()
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(CallEvent, self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def may_see(self, session: Session, call_id: str) -> bool | None:
        """Whether ``session`` may see the live call; None when the board does not know it."""
        call = self.calls.get(call_id)
        if call is None:
            return None
        return session.may_see(set(call["agents"]))

    def visible(self, session: Session) -> list[dict[str, Any]]:
        return [c for c in self.calls.values() if session.may_see(set(c["agents"]))]

    def subscribe(self, session: Session, call_id: str | None) -> BoardSubscription:
        sub = BoardSubscription(session=session, call_id=call_id)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: BoardSubscription) -> None:
        self.subscribers.discard(sub)

    def _on_event(self, event: CallEvent) -> None:
        if not isinstance(event, BOARD_EVENTS):
            return
        msg = feed_message(event)
        call = self.calls.get(event.call_id)
        if call is None:
            if not isinstance(event, CallStarted | ChannelJoined | CallStateChanged
                              | CallOutcome | CallTagged | Transcript | EmotionScored
                              | EmotionChanged | PromptReady | QcFlag):
                return  # an ended call's stragglers (PromptDelivered, CallEnded twice)
            call = self.calls[event.call_id] = new_call(event.call_id, event.at)
        apply_event(call, msg)
        if isinstance(event, CallEnded):
            self._forget_old()
        text: str | None = None
        agents = set(call["agents"])
        for sub in list(self.subscribers):
            if sub.call_id is not None and sub.call_id != event.call_id:
                continue
            if not sub.session.may_see(agents):
                continue
            if event.call_id not in sub.known:
                sub.known.add(event.call_id)
                sub.put(json.dumps({"type": "call", "call": call}, default=str,
                                   ensure_ascii=False))
                continue
            if text is None:
                text = json.dumps(msg, default=str, ensure_ascii=False)
            sub.put(text)

    def _forget_old(self) -> None:
        ended = [cid for cid, c in self.calls.items() if c["ended"] is not None]
        for cid in ended[:max(0, len(ended) - self.keep_ended)]:
            del self.calls[cid]
