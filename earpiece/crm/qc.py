"""Quality control, evaluation 2, live on every final transcript: :class:`QcStage`.

For each final :class:`~earpiece.events.Transcript` of a party the call's campaign watches
(``parties``, the agent by default) the campaign's forbidden phrases and patterns
(:mod:`earpiece.crm.qc_rules`, matched by :mod:`earpiece.crm.qc_text`) raise one
:class:`~earpiece.events.QcFlag` each, with the span in the transcript's original text; the CRM
writer stores them (``qc_flags``). The campaign is the call's ``campaign`` tag (``[qc]
campaign_tag``), else the rules' default campaign.

At call end (``settle_s`` after :class:`~earpiece.events.CallEnded`, so that the recogniser's
last finals still count) the required phrases the agent never said are flagged
``required_missing``, and the call's turn-taking (:mod:`earpiece.crm.qc_timing`: response speed,
overtalk, long silences) goes into ``qc_calls`` with the flag counts, one row per call that had
any final transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from earpiece.bus import EventBus
from earpiece.crm.backend import CrmBackend, Statement
from earpiece.crm.dialect import Dialect
from earpiece.crm.qc_rules import CampaignRules, QcRules, language_of
from earpiece.crm.qc_timing import CallTiming, Utterance, measure
from earpiece.events import CallEnded, CallStarted, CallTagged, QcFlag, Transcript

log = logging.getLogger(__name__)

QC_CALL_COLUMNS = (
    "call_id", "campaign", "flags", "missing_required", "responses", "response_mean_s",
    "response_median_s", "response_max_s", "overtalks", "overtalk_s", "silences", "silence_s",
    "longest_silence_s", "agent_talk_s", "customer_talk_s", "at",
)


def qc_call_statement(dialect: Dialect, call_id: str, campaign: str, timing: CallTiming, *,
                      flags: int, missing: int, at: float) -> Statement:
    """Upsert of the call's ``qc_calls`` row (``?`` placeholders; pure)."""
    cols = ", ".join(QC_CALL_COLUMNS)
    values = ", ".join(dialect.param(c) for c in QC_CALL_COLUMNS)
    updates = ", ".join(f"{c} = excluded.{c}" for c in QC_CALL_COLUMNS[1:])
    sql = (f"INSERT INTO qc_calls ({cols}) VALUES ({values})"
           f" ON CONFLICT (call_id) DO UPDATE SET {updates}")
    return sql, (
        call_id, campaign, flags, missing, len(timing.responses), timing.response_mean_s,
        timing.response_median_s, timing.response_max_s, len(timing.overtalk),
        round(timing.overtalk_s, 3), len(timing.silences), round(timing.silence_s, 3),
        round(timing.longest_silence_s, 3), timing.agent_talk_s, timing.customer_talk_s, at,
    )


@dataclass
class _Call:
    campaign: str | None = None  # the tag's value
    utterances: list[Utterance] = field(default_factory=list)
    languages: set[str] = field(default_factory=set)  # of all finals
    agent_languages: set[str] = field(default_factory=set)
    said: set[tuple[str, str]] = field(default_factory=set)  # (language, required phrase)
    flags: int = 0


class QcStage:
    """Subscribes to call events and final transcripts; publishes :class:`QcFlag` events and
    writes the per-call ``qc_calls`` row to ``store`` (after ``flush``, the CRM writer's, so
    that the call's row is there first)."""

    def __init__(self, bus: EventBus, rules: QcRules, *, store: CrmBackend | None = None,
                 flush: Callable[[], Awaitable[None]] | None = None,
                 campaign_tag: str = "campaign", long_silence_s: float = 5.0,
                 min_overtalk_s: float = 0.3, settle_s: float = 3.0) -> None:
        self.bus = bus
        self.rules = rules
        self.store = store
        self._flush = flush
        self.campaign_tag = campaign_tag
        self.long_silence_s = long_silence_s
        self.min_overtalk_s = min_overtalk_s
        self.settle_s = settle_s
        self._calls: dict[str, _Call] = {}
        self._finished: OrderedDict[str, str | None] = OrderedDict()  # call -> campaign tag
        self._waiting: dict[str, asyncio.Task[None]] = {}  # ended, settling
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe: list[Callable[[], None]] = []
        self.flags = 0
        self.calls_measured = 0

    def start(self) -> None:
        self._unsubscribe = [
            self.bus.subscribe(CallStarted, self._on_started),
            self.bus.subscribe(CallTagged, self._on_tagged),
            self.bus.subscribe(Transcript, self._on_transcript),
            self.bus.subscribe(CallEnded, self._on_ended),
        ]

    async def drain(self) -> None:
        """Wait for the calls that have ended to be finished (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop listening; calls that ended but are still settling are finished now."""
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._unsubscribe = []
        for task in self._waiting.values():
            task.cancel()
        await self.drain()
        for call_id in list(self._waiting):
            self._waiting.pop(call_id)
            await self._finish(call_id)

    # --- events ----------------------------------------------------------------------------
    def _call(self, call_id: str) -> _Call:
        call = self._calls.get(call_id)
        if call is None:
            call = self._calls[call_id] = _Call(campaign=self._finished.get(call_id))
        return call

    def _on_started(self, ev: CallStarted) -> None:
        if self.campaign_tag in ev.tags:
            self._call(ev.call_id).campaign = ev.tags[self.campaign_tag]

    def _on_tagged(self, ev: CallTagged) -> None:
        if self.campaign_tag in ev.tags:
            self._call(ev.call_id).campaign = ev.tags[self.campaign_tag]

    def _on_transcript(self, ev: Transcript) -> None:
        if not ev.final or not ev.text.strip():
            return
        late = ev.call_id in self._finished and ev.call_id not in self._calls
        call = self._call(ev.call_id)
        call.utterances.append(Utterance(ev.party, ev.start_s, ev.end_s))
        lang = language_of(ev.language)
        if lang is not None:
            call.languages.add(lang)
            if ev.party == "agent":
                call.agent_languages.add(lang)
        rules = self.rules.campaign(call.campaign)
        if ev.party == "agent":
            call.said.update((h.language, h.rule) for h in rules.required_matcher.find(ev.text))
        if ev.party in rules.parties:
            for hit in rules.matcher.find(ev.text):
                self._publish(QcFlag(
                    call_id=ev.call_id, kind=hit.kind, rule=hit.rule,
                    language=hit.language or (lang or ""), campaign=rules.name, party=ev.party,
                    span=hit.span, matched=hit.matched, text=ev.text, start_s=ev.start_s,
                    end_s=ev.end_s), call)
        if late:  # after the call was finished: flags only, no second summary
            self._calls.pop(ev.call_id, None)

    def _on_ended(self, ev: CallEnded) -> None:
        if ev.call_id in self._waiting or ev.call_id in self._finished:
            return
        self._call(ev.call_id)  # finals may still come while the call settles
        task = asyncio.get_running_loop().create_task(self._settle(ev.call_id),
                                                      name=f"qc-{ev.call_id}")
        self._waiting[ev.call_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _publish(self, flag: QcFlag, call: _Call) -> None:
        call.flags += 1
        self.flags += 1
        self.bus.publish(flag)

    # --- call end --------------------------------------------------------------------------
    async def _settle(self, call_id: str) -> None:
        try:
            await asyncio.sleep(self.settle_s)
        except asyncio.CancelledError:
            return  # close() finishes the call
        self._waiting.pop(call_id, None)
        await self._finish(call_id)

    async def _finish(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        self._finished[call_id] = call.campaign
        while len(self._finished) > 10_000:
            self._finished.popitem(last=False)
        if not call.utterances:
            return
        rules: CampaignRules = self.rules.campaign(call.campaign)
        missing = [(lang, phrase) for lang, phrase in rules.required_for(
                       call.agent_languages or call.languages)
                   if (lang, phrase) not in call.said]
        for lang, phrase in missing:
            self._publish(QcFlag(call_id=call_id, kind="required_missing", rule=phrase,
                                 language=lang, campaign=rules.name, party="agent"), call)
        timing = measure(call.utterances, long_silence_s=self.long_silence_s,
                         min_overtalk_s=self.min_overtalk_s)
        self.calls_measured += 1
        if self.store is None:
            return
        statement = qc_call_statement(self.store.dialect, call_id, rules.name, timing,
                                      flags=call.flags, missing=len(missing), at=time.time())
        try:
            if self._flush is not None:
                with contextlib.suppress(RuntimeError):  # the writer has stopped
                    await self._flush()
            await self.store.execute_many([statement])
        except Exception:
            log.exception("QC summary of call %s not written", call_id)
