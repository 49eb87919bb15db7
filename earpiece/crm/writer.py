"""Writes bus events into the CRM store, batched, from its own task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from earpiece.bus import EventBus
from earpiece.crm.backend import CrmBackend, Statement
from earpiece.crm.dialect import SQLITE, Dialect
from earpiece.errors import CrmConnectionError
from earpiece.events import (
    CallEnded,
    CallEvent,
    CallOutcome,
    CallStarted,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelLeft,
    CpaDecision,
    EmotionChanged,
    EmotionScored,
    PromptDelivered,
    PromptReady,
    QcFlag,
    Transcript,
)

log = logging.getLogger(__name__)


def statements_for(event: CallEvent, dialect: Dialect = SQLITE, *,
                   owner: str = "") -> list[Statement]:
    """SQL (``?`` placeholders) for one event in ``dialect`` (pure: testable without a
    database); ``owner``: the ARI app of the Earpiece writing it (kept with each call)."""
    d = dialect
    match event:
        case CallStarted():
            return [(
                d.insert_ignore("calls",
                                ("id", "direction", "channel", "tags", "started", "owner")),
                (event.call_id, event.direction, event.channel, json.dumps(event.tags), event.at,
                 owner or None),
            )]
        case ChannelJoined():
            return [(
                d.insert_ignore("legs", ("call_id", "uniqueid", "channel", "role", "joined")),
                (event.call_id, event.uniqueid, event.channel, str(event.role), event.at),
            )]
        case ChannelLeft():
            return [(
                "UPDATE legs SET left_at = ?, cause = ? WHERE call_id = ? AND uniqueid = ?",
                (event.at, event.cause, event.call_id, event.uniqueid),
            )]
        case CallStateChanged():
            out: list[Statement] = [(
                d.insert("state_changes", ("call_id", "at", "old", "new", "source")),
                (event.call_id, event.at, str(event.old), str(event.new), event.source),
            ), ("UPDATE calls SET state = ? WHERE id = ?", (str(event.new), event.call_id))]
            if event.new == "answered":
                out.append((
                    "UPDATE calls SET answered = ? WHERE id = ? AND answered IS NULL",
                    (event.at, event.call_id),
                ))
            return out
        case CallOutcome():
            return [(
                "UPDATE calls SET outcome = ?, outcome_source = ? WHERE id = ?",
                (str(event.outcome), event.source, event.call_id),
            )]
        case CallTagged():
            return [(
                f"UPDATE calls SET tags = {d.json_merge('tags')} WHERE id = ?",
                (json.dumps(event.tags), event.call_id),
            )]
        case CallEnded():
            return [(
                "UPDATE calls SET ended = ?, hangup_cause = ?,"
                " outcome = COALESCE(outcome, ?), end_reason = ? WHERE id = ? AND ended IS NULL",
                (
                    event.at,
                    event.hangup_cause,
                    str(event.outcome) if event.outcome is not None else None,
                    event.reason or None,
                    event.call_id,
                ),
            )]
        case CpaDecision():
            rows: list[Statement] = [(
                d.insert("cpa_verdicts",
                         ("call_id", "at", "label", "confidence", "decision_s", "evidence")),
                (
                    event.call_id, event.at, event.label, event.confidence, event.decision_s,
                    json.dumps(event.evidence, default=str),
                ),
            )]
            if event.label == "sit" and event.evidence.get("phase") in ("post_answer",
                                                                        "after_verdict"):
                # SIT / intercept after a (false) answer: the number is invalid; the verdict
                # row above keeps the SIT segments as evidence
                rows.append(("UPDATE calls SET outcome = ?, outcome_source = ? WHERE id = ?",
                             ("invalid_number", f"audio:cpa {event.evidence.get('rule')}",
                              event.call_id)))
            return rows
        case EmotionScored():
            return [(
                d.insert("emotion_utterances",
                         ("call_id", "party", "start_s", "end_s", "label", "valence", "arousal",
                          "confidence", "emotion_index", "text", "at")),
                (event.call_id, event.party, event.start_s, event.end_s, event.label,
                 event.valence, event.arousal, event.confidence, event.index, event.text,
                 event.at),
            ), (
                "INSERT INTO emotion_calls (call_id, party, state, emotion_index, utterances,"
                " updated) VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (call_id, party) DO UPDATE SET"
                " state = excluded.state, emotion_index = excluded.emotion_index,"
                " utterances = emotion_calls.utterances + 1, updated = excluded.updated",
                (event.call_id, event.party, event.state, event.index, event.at),
            )]
        case EmotionChanged():
            return [(
                "UPDATE emotion_calls SET changes = changes + 1 WHERE call_id = ? AND party = ?",
                (event.call_id, event.party),
            )]
        case QcFlag():
            span = event.span or (None, None)
            return [(
                d.insert("qc_flags",
                         ("call_id", "kind", "rule", "language", "campaign", "party",
                          "span_start", "span_end", "matched", "text", "start_s", "end_s",
                          "at")),
                (event.call_id, event.kind, event.rule, event.language, event.campaign,
                 event.party, span[0], span[1], event.matched, event.text, event.start_s,
                 event.end_s, event.at),
            )]
        case PromptReady():
            return [(
                d.insert_ignore("prompts",
                                ("id", "call_id", "at", "kind", "text", "language", "slot",
                                 "product", "rule", "reason")),
                (prompt_row_id(event.call_id, event.prompt_id, event.at), event.call_id,
                 event.at, event.kind, event.text, event.language, event.slot, event.product,
                 event.rule, json.dumps(event.reason, default=str)),
            )]
        case PromptDelivered():
            status = {"status": event.status, "target": event.target, "detail": event.detail,
                      "at": event.at, "latency_s": event.latency_s}
            return [(
                f"UPDATE prompts SET delivery = {d.json_merge('delivery')} WHERE id = ?",
                (json.dumps({event.channel: status}),
                 prompt_row_id(event.call_id, event.prompt_id, None)),
            )]
        case Transcript() if event.final:
            return [(
                d.insert("utterances",
                         ("call_id", "party", "start_s", "end_s", "text", "language", "at")),
                (
                    event.call_id, event.party, event.start_s, event.end_s, event.text,
                    event.language, event.at,
                ),
            )]
    return []


def prompt_row_id(call_id: str, prompt_id: str, at: float | None) -> str:
    """The ``prompts.id`` of a prompt (its ``prompt_id``; one without: the call and time)."""
    return prompt_id or f"{call_id}@{at}"


class CrmWriter:
    """Subscribes to call events and writes them in batches.

    A batch that fails because the database is unreachable (a PostgreSQL restart or network
    outage; :class:`~earpiece.errors.CrmConnectionError`) is retried with exponential backoff
    for up to ``retry_for_s`` while new events wait in the queue; any other failure, or an
    outage that outlasts ``retry_for_s``, drops the batch and counts it in ``failed_batches``.
    While closing, an unreachable database drops what is left at once instead of waiting.
    """

    def __init__(
        self,
        bus: EventBus,
        store: CrmBackend,
        *,
        max_batch: int = 500,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 30.0,
        retry_for_s: float = 300.0,
        owner: str = "",
    ) -> None:
        self._bus = bus
        self._owner = owner
        self._store = store
        self._queue: asyncio.Queue[CallEvent] = bus.queue(CallEvent, maxsize=100_000)
        self._max_batch = max_batch
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._retry_for_s = retry_for_s
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._unreachable_at_close = False
        self.written = 0
        self.failed_batches = 0
        self.retries = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="crm-writer")

    async def _loop(self) -> None:
        while True:
            first = await self._queue.get()
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[CallEvent]) -> None:
        dialect = self._store.dialect
        statements = [s for ev in batch for s in statements_for(ev, dialect, owner=self._owner)]
        if not statements:
            return
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._retry_for_s
        delay = self._retry_initial_s
        while True:
            if self._unreachable_at_close:
                self.failed_batches += 1
                return
            try:
                await self._store.execute_many(statements)
                self.written += len(batch)
                return
            except CrmConnectionError as exc:
                if self._closing.is_set() or loop.time() + delay > give_up_at:
                    self._unreachable_at_close = self._closing.is_set()
                    self.failed_batches += 1
                    log.error("CRM write of %d events dropped, database unreachable: %s",
                              len(batch), exc)
                    return
                self.retries += 1
                log.warning("CRM database unreachable (%s); retrying %d events in %.1f s",
                            exc, len(batch), delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                delay = min(delay * 2, self._retry_max_s)
            except Exception:
                self.failed_batches += 1
                log.exception("CRM write of %d events failed", len(batch))
                return

    async def flush(self) -> None:
        """Wait until everything published so far is written."""
        if self._task is None or self._task.done():
            raise RuntimeError("CrmWriter is not running")
        await self._queue.join()

    async def close(self) -> None:
        """Write what is queued, then stop (dropping it if the database is unreachable)."""
        self._closing.set()
        if self._task is not None:
            if not self._task.done():
                await self._queue.join()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._bus.unsubscribe_queue(self._queue)
