"""The strategy stage of the service: the customer's emotion -> :class:`PromptReady` on the bus.

:class:`StrategyStage` follows every call on the bus (``CallStarted`` time and tags, the answer,
``CallEnded``) and, for the customer's ``EmotionScored`` / ``EmotionChanged`` (and final
``Transcript`` that asks one of the campaign's common questions while the customer is neutral),
runs the call's campaign policy in the call's time slot, passes the prompt through the per-call
:class:`~earpiece.strategy.throttle.PromptThrottle` and publishes what it admits as
:class:`~earpiece.events.PromptReady` with a fresh ``prompt_id``. Delivery stages subscribe to
that.

The campaign: the call's ``campaign`` tag names ``<campaign_dir>/<tag>.toml`` when that file
exists (loaded once, then kept), else the default campaign of ``[strategy] campaign``. The slot:
the campaign's slot scheme at the call's answer (or start) time, with the elapsed time since
then for campaigns that split slots by call phase.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from earpiece.bus import EventBus
from earpiece.errors import EarpieceError
from earpiece.events import (
    CallEnded,
    CallStarted,
    CallState,
    CallStateChanged,
    CallTagged,
    EmotionChanged,
    EmotionScored,
    PromptReady,
    Transcript,
)
from earpiece.strategy.campaign import Campaign, load_campaign
from earpiece.strategy.policy import Policy
from earpiece.strategy.recommender import CsvHistory, Recommender
from earpiece.strategy.settings import StrategySettings
from earpiece.strategy.slots import Slot
from earpiece.strategy.throttle import PromptThrottle

log = logging.getLogger(__name__)


@dataclass
class Engine:
    """One campaign with its recommender and policy."""

    campaign: Campaign
    recommender: Recommender
    policy: Policy

    @classmethod
    def load(cls, path: Path, *, history_csv: Path | None = None,
             now: float | None = None) -> Engine:
        campaign = load_campaign(path)
        recommender = Recommender(campaign.product_ids, campaign.recommender)
        if history_csv is not None and now is not None:
            scheme = campaign.slots
            n = recommender.load(CsvHistory(history_csv, lambda t: scheme.slot(t).key), now)
            log.info("campaign %s: %d past outcomes from %s", campaign.name, n, history_csv)
        return cls(campaign, recommender, Policy(campaign, recommender))


@dataclass
class _Call:
    started: float
    engine: Engine
    answered: float | None = None
    tags: dict[str, str] = field(default_factory=dict)
    state: str = "neutral"  # the customer's emotion state as last seen
    index: float = 0.0
    language: str | None = None


class StrategyStage:
    """Emotion events in, throttled prompts out (see the module docstring)."""

    def __init__(self, bus: EventBus, settings: StrategySettings, *,
                 engine: Engine | None = None, clock: Callable[[], float] | None = None) -> None:
        self.bus = bus
        self.settings = settings
        self._clock = clock or time.time
        if engine is None:
            if settings.campaign is None:
                raise ValueError("no campaign: set [strategy] campaign")
            engine = Engine.load(settings.campaign, history_csv=settings.history_csv,
                                 now=self._clock())
        self.default = engine
        self.campaign_dir = settings.campaign_dir or (
            settings.campaign.parent if settings.campaign is not None else None)
        self.throttle = PromptThrottle(settings.min_interval_s, settings.min_gap_s,
                                       settings.repeat_after_s or None)
        self._engines: dict[str, Engine] = {engine.campaign.name: engine}
        self._calls: dict[str, _Call] = {}
        self._unsubscribe: list[Callable[[], None]] = []
        self.prompts = 0  # published
        self.held: Counter[str] = Counter()  # throttle verdicts that held a prompt back

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        sub = self.bus.subscribe
        self._unsubscribe = [
            sub(CallStarted, self._on_started), sub(CallTagged, self._on_tagged),
            sub(CallStateChanged, self._on_state), sub(CallEnded, self._on_ended),
            sub(EmotionScored, self._on_emotion), sub(EmotionChanged, self._on_emotion),
            sub(Transcript, self._on_transcript),
        ]

    async def stop(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []

    # --- calls -------------------------------------------------------------------------------
    def engine_for(self, tags: dict[str, str]) -> Engine:
        """The engine of the campaign named by ``tags["campaign"]``, else the default one."""
        name = tags.get("campaign", "").strip()
        if not name:
            return self.default
        if name in self._engines:
            return self._engines[name]
        engine = self.default
        path = self.campaign_dir / f"{name}.toml" if self.campaign_dir is not None else None
        if path is not None and "/" not in name and path.is_file():
            try:
                engine = Engine.load(path, history_csv=self.settings.history_csv,
                                     now=self._clock())
            except (EarpieceError, OSError, ValueError) as exc:
                log.error("campaign %r (%s) not usable, using %s: %s", name, path,
                          self.default.campaign.name, exc)
        else:
            log.warning("no campaign file for tag campaign=%r; using %s", name,
                        self.default.campaign.name)
        self._engines[name] = engine
        return engine

    def _call(self, call_id: str, at: float) -> _Call:
        call = self._calls.get(call_id)
        if call is None:  # a call that started before us: its slot from now on
            call = self._calls[call_id] = _Call(started=at, engine=self.default)
        return call

    def _on_started(self, ev: CallStarted) -> None:
        self._calls[ev.call_id] = _Call(started=ev.at, engine=self.engine_for(ev.tags),
                                        tags=dict(ev.tags), language=ev.tags.get("language"))

    def _on_tagged(self, ev: CallTagged) -> None:
        call = self._call(ev.call_id, ev.at)
        call.tags.update(ev.tags)
        if "campaign" in ev.tags:
            call.engine = self.engine_for(call.tags)
        if "language" in ev.tags:
            call.language = ev.tags["language"]

    def _on_state(self, ev: CallStateChanged) -> None:
        if ev.new == CallState.ANSWERED:
            call = self._call(ev.call_id, ev.at)
            if call.answered is None:
                call.answered = ev.at

    def _on_ended(self, ev: CallEnded) -> None:
        call = self._calls.pop(ev.call_id, None)
        self.throttle.end_call(ev.call_id)
        if call is not None:
            call.engine.policy.end_call(ev.call_id)

    def slot(self, call_id: str, at: float) -> Slot:
        call = self._call(call_id, at)
        base = call.answered if call.answered is not None else call.started
        return call.engine.campaign.slots.slot(base, elapsed_s=max(0.0, at - base))

    # --- prompts -----------------------------------------------------------------------------
    def _on_emotion(self, ev: EmotionScored | EmotionChanged) -> None:
        self.decide(ev)

    def decide(self, ev: EmotionScored | EmotionChanged) -> PromptReady | None:
        """Decide for one emotion event; the published prompt, or None."""
        if ev.party != "customer":
            return None
        call = self._call(ev.call_id, ev.at)
        call.state = ev.new if isinstance(ev, EmotionChanged) else ev.state
        call.index = ev.index
        prompt = call.engine.policy.decide(ev, self.slot(ev.call_id, ev.at),
                                           language=call.language)
        if prompt is None:
            return None
        verdict = self.throttle.admit(ev.call_id, prompt.key, call.state, ev.at)
        if not verdict:
            self.held[verdict.why] += 1
            log.debug("[%s] prompt %s held: %s", ev.call_id, prompt.kind, verdict.why)
            return None
        event = replace(prompt.event(), prompt_id=uuid.uuid4().hex)
        self.prompts += 1
        log.info("[%s] prompt %s (%s): %s", ev.call_id, event.kind, event.rule, event.text)
        self.bus.publish(event)
        return event

    def _on_transcript(self, ev: Transcript) -> None:
        """A customer's final utterance that asks a campaign question while neutral."""
        if ev.party != "customer" or not ev.final or not ev.text.strip():
            return
        call = self._call(ev.call_id, ev.at)
        if call.language is None and ev.language:
            call.language = ev.language
        campaign = call.engine.campaign
        lang = campaign.language(call.language)
        if call.state != "neutral" or not any(a.matches(ev.text, lang)
                                              for a in campaign.answers):
            return
        self.decide(EmotionScored(
            call_id=ev.call_id, at=ev.at, party="customer", label="neutral", valence=0.0,
            arousal=None, confidence=0.0, start_s=ev.start_s, end_s=ev.end_s, text=ev.text,
            index=call.index, state="neutral"))
