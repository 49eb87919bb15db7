"""In-process typed event bus.

Publishers call :meth:`EventBus.publish` with any event object (a frozen dataclass); subscribers
register for an event type (and its subclasses) with either a synchronous callback or an async
queue. Callbacks must be fast; anything slow subscribes with :meth:`EventBus.queue` and consumes
from its own task. A failing subscriber is logged and counted, never breaks the publisher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger(__name__)

E = TypeVar("E")


@dataclass
class _Subscription:
    event_type: type[Any]
    callback: Callable[[Any], None] | None = None
    queue: asyncio.Queue[Any] | None = None
    dropped: int = 0


@dataclass
class EventBus:
    """Synchronous fan-out; queue subscribers are bounded and drop the oldest on overflow."""

    _subs: list[_Subscription] = field(default_factory=list)
    subscriber_errors: int = 0
    published: int = 0

    def subscribe(self, event_type: type[E], callback: Callable[[E], None]) -> Callable[[], None]:
        """Call ``callback(event)`` for every published instance of ``event_type``.

        Returns a function that removes the subscription.
        """
        sub = _Subscription(event_type=event_type, callback=callback)
        self._subs.append(sub)
        return lambda: self._remove(sub)

    def queue(self, event_type: type[E], maxsize: int = 10_000) -> asyncio.Queue[E]:
        """Return a bounded queue that receives every instance of ``event_type``."""
        q: asyncio.Queue[E] = asyncio.Queue(maxsize=maxsize)
        self._subs.append(_Subscription(event_type=event_type, queue=q))
        return q

    def unsubscribe_queue(self, q: asyncio.Queue[Any]) -> None:
        self._subs = [s for s in self._subs if s.queue is not q]

    def _remove(self, sub: _Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: object) -> None:
        self.published += 1
        for sub in list(self._subs):
            if not isinstance(event, sub.event_type):
                continue
            if sub.callback is not None:
                try:
                    sub.callback(event)
                except Exception:
                    self.subscriber_errors += 1
                    log.exception("event subscriber failed on %s", type(event).__name__)
            elif sub.queue is not None:
                if sub.queue.full():
                    sub.queue.get_nowait()
                    sub.dropped += 1
                sub.queue.put_nowait(event)
