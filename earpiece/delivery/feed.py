"""The live feed: call state, both parties' transcripts, emotion and prompts, as JSON messages.

:class:`FeedHub` subscribes to the bus and turns each feed event into one JSON text
(``{"type": "PromptReady", "call_id": ..., "at": ..., ...}``: the event's fields, enums as
their values) that it puts on the bounded queue of every subscriber that wants the call (one
call id, or all calls). A slow subscriber loses its oldest messages, never blocks the bus.
Each prompt's fan-out is reported as :class:`~earpiece.events.PromptDelivered` with
``channel="feed"`` (``sent`` to N subscribers, or ``skipped`` when none listens).
:mod:`earpiece.web.feed` serves it as the ``/api/feed`` websocket.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from earpiece.bus import EventBus
from earpiece.events import (
    CallEnded,
    CallEvent,
    CallOutcome,
    CallStarted,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelLeft,
    EmotionChanged,
    EmotionScored,
    PromptDelivered,
    PromptReady,
    Transcript,
)

log = logging.getLogger(__name__)

FEED_EVENTS: tuple[type[CallEvent], ...] = (
    CallStarted, CallTagged, CallStateChanged, CallOutcome, CallEnded, ChannelJoined,
    ChannelLeft, Transcript, EmotionScored, EmotionChanged, PromptReady, PromptDelivered,
)


def feed_message(event: CallEvent) -> dict[str, Any]:
    """The JSON-ready dict of one event: ``type`` plus its fields."""
    return {"type": type(event).__name__, **asdict(event)}


def feed_json(event: CallEvent) -> str:
    return json.dumps(feed_message(event), ensure_ascii=False, default=str)


@dataclass(eq=False)
class FeedSubscription:
    call_id: str | None  # None: every call
    queue: asyncio.Queue[str] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
    dropped: int = 0

    def put(self, text: str) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(text)


class FeedHub:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.subscribers: set[FeedSubscription] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self.messages = 0

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(CallEvent, self._on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def subscribe(self, call_id: str | None = None) -> FeedSubscription:
        sub = FeedSubscription(call_id=call_id or None)
        self.subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: FeedSubscription) -> None:
        self.subscribers.discard(sub)

    def _on_event(self, event: CallEvent) -> None:
        if not isinstance(event, FEED_EVENTS):
            return
        text = feed_json(event)
        n = 0
        for sub in list(self.subscribers):
            if sub.call_id is None or sub.call_id == event.call_id:
                sub.put(text)
                n += 1
        self.messages += 1
        if isinstance(event, PromptReady):
            report = PromptDelivered(
                call_id=event.call_id, prompt_id=event.prompt_id, channel="feed",
                status="sent" if n else "skipped",
                detail=f"to {n} feed subscribers" if n else "no feed subscribers",
                latency_s=0.0)
            # after every subscriber has seen the prompt itself (the CRM writes it first)
            asyncio.get_running_loop().call_soon(self.bus.publish, report)
