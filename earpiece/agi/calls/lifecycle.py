"""Registry layer 2: outcome evidence and the call lifecycle (confirm, hang up, end).

Also the entry points that feed them: ``expect_originate``, ``tag`` and
``record_audio_verdict``. Part of :class:`~earpiece.agi.calls.registry.Registry`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from earpiece.agi.calls.call import AudioVerdict, Call, Channel, Transition
from earpiece.agi.calls.grouping import Grouping, _Expected, log
from earpiece.agi.calls.outcome import (
    AUDIO_ANSWER_LABELS,
    RANK_ANSWER,
    RANK_FALLBACK,
    Evidence,
    audio_evidence,
    best,
    cause_evidence,
)
from earpiece.events import (
    CallEnded,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    ChannelLeft,
    ChannelRole,
)


class Lifecycle(Grouping):
    """Evidence, outcome and the start/end of calls."""

    # ===================================================================== other entry points
    def expect_originate(
        self, action_id: str, *, tags: dict[str, str] | None = None, channel: str | None = None
    ) -> str:
        """Reserve a call id for an Originate we are about to send with ``ActionID: action_id``.

        ``channel`` (the Originate's ``Channel``, e.g. ``PJSIP/cust1``) lets the call carry this
        id from its first event; without it the id is bound when the ``OriginateResponse``
        arrives (an alias if the call was already announced under another id).
        """
        cid = self._new_id()
        self._expected[action_id] = _Expected(cid, dict(tags or {}), channel, self.clock())
        while len(self._expected) > self._memory_size:
            self._expected.popitem(last=False)
        return cid

    def tag(self, uniqueid_or_channel: str, tags: Mapping[str, str]) -> str | None:
        """Attach tags (FastAGI hook) to the call of a channel; returns its call id.

        Tags for a channel not seen yet are kept and applied when it appears.
        """
        call = self._by_uid.get(uniqueid_or_channel) or self._by_uid.get(
            self._by_name.get(uniqueid_or_channel, "")
        )
        if call is None:
            old = self._gone.get(uniqueid_or_channel) or self._gone_names.get(uniqueid_or_channel)
            if old is not None:
                old.tags.update(tags)
                return old.id
            pending = self._pending_tags.setdefault(uniqueid_or_channel, {})
            pending.update(tags)
            while len(self._pending_tags) > self._memory_size:
                self._pending_tags.popitem(last=False)
            return None
        self._apply_tags(call, dict(tags))
        if not call.confirmed and not call.spy and not call.awaiting_link:
            self._confirm(call)  # a channel running our tag hook is a real call
        return call.id

    def record_audio_verdict(self, call_id: str, label: str, source: str) -> bool:
        """Record what the audio (CPA/AMD) says; both it and the signalling are kept.

        ``busy``/``congestion``/``sit`` before the signalling settles count as evidence
        (ranked below specific signalling); ``human``/``machine``/``fax`` are kept beside an
        answered outcome. Returns ``False`` for an unknown call.
        """
        call = self.get(call_id) or self._calls.get(call_id)
        if call is None:
            return False
        now = self.clock()
        label = label.lower()
        if any(a.label == label and a.source == source for a in call.audio):
            return True
        call.audio.append(AudioVerdict(label, source, now))
        ev = audio_evidence(label, source, now)
        if ev is not None and call.ended is None:
            self._evidence(call, ev)
        elif label in AUDIO_ANSWER_LABELS and call.outcome is not None:
            if call.outcome is not CallState.ANSWERED:
                call.add_evidence(Evidence(CallState.ANSWERED, RANK_ANSWER, source, now))
        return True

    # ===================================================================== core: outcome
    def _cause(self, call: Call, ch: Channel, cause: int, source: str) -> None:
        # After an answer, causes are about the teardown; after a failure they corroborate.
        if ch.is_helper or call.ended is not None or call.outcome is CallState.ANSWERED:
            return
        if ch.cause is None:
            ch.cause = cause
        ev = cause_evidence(cause, source, self.clock())
        if ev is not None:
            self._evidence(call, replace(ev, channel=ch.name))

    def _evidence(self, call: Call, ev: Evidence) -> None:
        added = call.add_evidence(ev)
        if call.outcome is not None:
            if added and ev.state is not call.outcome:
                log.info(
                    "call %s: %s says %s, outcome stays %s (%s)",
                    call.id, ev.source, ev.state.value, call.outcome.value, call.outcome_source,
                )  # fmt: skip
            return
        if ev.state is CallState.ANSWERED:
            self._settle(call, ev)

    def _settle(self, call: Call, ev: Evidence | None = None) -> None:
        if call.outcome is not None:
            return
        if ev is None:
            ev = best(call.evidence)
        if ev is None:
            state = CallState.NO_ANSWER if call.state is CallState.RINGING else CallState.FAILED
            causes = sorted({ch.cause for ch in call.members() if ch.cause is not None})
            ev = Evidence(
                state,
                RANK_FALLBACK,
                f"fallback:ended before answer ({call.state.value}, causes {causes})",
                self.clock(),
            )
            call.add_evidence(ev)
        t = call.advance(ev.state, ev.source, ev.at)
        self._transition(call, t)
        if t is not None and call.confirmed:
            self._publish_outcome(call)

    def _publish_outcome(self, call: Call) -> None:
        assert call.outcome is not None and call.outcome_source is not None
        t = next(t for t in call.transitions if t.new is call.outcome)
        self.bus.publish(
            CallOutcome(
                call_id=call.id,
                at=t.at,
                outcome=call.outcome,
                source=call.outcome_source,
                detail={
                    "evidence": [e.as_dict() for e in call.evidence],
                    "disagreements": [e.as_dict() for e in call.disagreements()],
                    "audio": [{"label": a.label, "source": a.source} for a in call.audio],
                },
            )
        )

    def _transition(self, call: Call, t: Transition | None) -> None:
        if t is not None and call.confirmed:
            self.bus.publish(
                CallStateChanged(call_id=call.id, at=t.at, old=t.old, new=t.new, source=t.source)
            )

    # ===================================================================== core: lifecycle
    def _confirm(self, call: Call) -> None:
        """Announce a tentative call: CallStarted, its channels, what happened so far."""
        if call.confirmed or call.ended is not None:
            return
        call.confirmed = True
        self.stats.calls_started += 1
        customer = call.customer
        if call.direction == "inbound" and customer is not None and call.outcome is None:
            if customer.state in ("Ring", "Ringing"):  # a caller waiting to be answered
                call.advance(CallState.RINGING, f"inbound:{customer.state}", self.clock())
        first = customer or next(iter(call.channels.values()), None)
        self.bus.publish(
            CallStarted(
                call_id=call.id,
                at=call.created,
                direction=call.direction,
                channel=first.name if first else (call.dial_string or ""),
                tags=dict(call.tags),
            )
        )
        for ch in list(call.channels.values()):
            if ch.role is not ChannelRole.UNKNOWN or not ch.alive:
                self._announce(call, ch)
        for t in list(call.transitions):
            self._transition(call, t)
            if t.new is call.outcome:
                self._publish_outcome(call)
        for ch in list(call.channels.values()):
            if not ch.alive and ch.left is not None:
                self.bus.publish(
                    ChannelLeft(
                        call_id=call.id,
                        at=ch.left,
                        channel=ch.name,
                        uniqueid=ch.uniqueid,
                        cause=ch.cause,
                    )
                )

    def _hangup(self, uid: str, cause: int | None, source: str) -> None:
        if uid in self._orphans:
            orphan = self._orphans.pop(uid)
            self._forget(uid, orphan.name, None)
            return
        call = self._by_uid.get(uid)
        if call is None:
            return
        ch = call.channels[uid]
        if not ch.alive:
            return
        if cause is not None:
            self._cause(call, ch, cause, source)
            ch.cause = cause
        now = self.clock()
        ch.alive = False
        ch.left = now
        if ch.role is ChannelRole.CUSTOMER and call.outcome is None and not call.spy:
            self._settle(call)  # no answer can come any more
        if call.confirmed:
            if not ch.announced:
                self._announce(call, ch)
            self.bus.publish(
                ChannelLeft(call_id=call.id, at=now, channel=ch.name, uniqueid=uid, cause=cause)
            )
        self._forget(uid, ch.name, call)
        if ch.is_helper:
            return
        if not call.live_members():
            self._end(call, source)

    def _end(self, call: Call, source: str) -> None:
        if call.ended is not None:
            return
        now = self.clock()
        if call.spy:  # a ChanSpy pair that never attached: never a call of its own
            self._drop(call)
            for ch in call.channels.values():
                self._forget(ch.uniqueid, ch.name, None)
            return
        if call.outcome is None:
            self._settle(call)
        if not call.confirmed:
            self._confirm(call)
        cust = call.customer
        causes = [ch.cause for ch in call.members() if ch.cause is not None]
        call.hangup_cause = cust.cause if cust is not None and cust.cause is not None else (
            causes[-1] if causes else None
        )
        # Helpers (snoop, externalMedia) still up leave with the call: the fork tears them
        # down, and their later events are ignored.
        for ch in call.channels.values():
            if ch.alive:
                ch.alive = False
                ch.left = now
                if ch.announced:
                    self.bus.publish(ChannelLeft(call_id=call.id, at=now, channel=ch.name,
                                                 uniqueid=ch.uniqueid, cause=None))
                self._forget(ch.uniqueid, ch.name, call)
        self._transition(call, call.advance(CallState.ENDED, source, now))
        self.bus.publish(
            CallEnded(call_id=call.id, at=now, outcome=call.outcome, hangup_cause=call.hangup_cause)
        )
        self.stats.calls_ended += 1
        self._drop(call)
        self._history.append(call)
