"""Prometheus metrics of one running service, read from its components at scrape time.

:class:`ServiceCollector` is a ``prometheus_client`` custom collector: it holds no counters of
its own for the pipeline stages but reads, on every scrape, the statistics the components
already keep (``AmiClient.stats``, ``AriClient.stats``, ``RtpReceiver.drops`` and its streams,
``MediaFork.stats``, ``CpaFork.stats``, ``AsrService.metrics()``, ``CrmWriter`` counters, the
registry's live calls). What only the bus tells (calls started and ended, settled outcomes, AMD
verdicts) is counted by :class:`CallCounters`, a bus subscriber. Components are read duck-typed
(``getattr``): one missing or not started yet (media off, ASR disabled) gives a family with no
samples, never a failed scrape. Everything runs on the event loop, so nothing is locked.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from earpiece.bus import EventBus
from earpiece.events import (
    OUTCOME_STATES,
    CallEnded,
    CallEvent,
    CallOutcome,
    CallStarted,
    CpaDecision,
)

log = logging.getLogger(__name__)

#: AMD / call-progress labels of :class:`~earpiece.events.CpaDecision` (exported at 0 before the
#: first one, so that ``rate()`` sees every series from the start).
VERDICTS = ("human", "machine", "fax", "silence", "ringback", "busy", "congestion", "sit",
            "unknown")
DIRECTIONS = ("outbound", "inbound", "unknown")
LINKS = ("ami", "ari")


class CallCounters:
    """Counts call events from the bus (the only source of outcomes and verdicts over time)."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.started: Counter[str] = Counter(dict.fromkeys(DIRECTIONS, 0))
        self.outcomes: Counter[str] = Counter(dict.fromkeys(sorted(map(str, OUTCOME_STATES)), 0))
        self.verdicts: Counter[str] = Counter(dict.fromkeys(VERDICTS, 0))
        self.ended = 0
        self._unsubscribe: Callable[[], None] | None = None

    def start(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.bus.subscribe(CallEvent, self.on_event)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def on_event(self, ev: CallEvent) -> None:
        match ev:
            case CallStarted():
                self.started[ev.direction] += 1
            case CallOutcome():
                self.outcomes[str(ev.outcome)] += 1
            case CpaDecision():
                self.verdicts[ev.label] += 1
            case CallEnded():
                self.ended += 1


class RtpTotals:
    """A monotonic total of RTP packets taken by streams, live and finished.

    The receiver keeps its last 1000 finished streams only: a stream that leaves the view has
    its last count folded into :attr:`retired`, so the total never goes down.
    """

    def __init__(self) -> None:
        self.retired = 0
        self._last: dict[tuple[int, str, str], int] = {}

    def total(self, streams: Iterable[Any]) -> int:
        current: dict[tuple[int, str, str], int] = {}
        for s in streams:
            key = (id(s), str(getattr(s, "call_id", "")), str(getattr(s, "party", "")))
            current[key] = int(s.stats.packets)
        self.retired += sum(n for key, n in self._last.items() if key not in current)
        self._last = current
        return self.retired + sum(current.values())


def ari_app_owned(service: Any) -> bool:
    """True while the ARI websocket is up and no other client took our Stasis app over."""
    ari = getattr(service, "ari", None)
    if ari is None or not ari.connected:
        return False
    owned = getattr(ari, "app_owned", None)  # the client's own flag, where it has one
    if owned is None:
        owned = getattr(service, "ari_app_owned", True)
    return bool(owned)


def _int_fields(stats: Any) -> dict[str, int]:
    """The integer counters of a stats dataclass, by field name."""
    if not dataclasses.is_dataclass(stats):
        return {}
    return {f.name: v for f in dataclasses.fields(stats)
            if isinstance(v := getattr(stats, f.name), int) and not isinstance(v, bool)}


def _counter(name: str, doc: str, labels: Iterable[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


def _gauge(name: str, doc: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


class ServiceCollector:
    """Custom collector over one :class:`earpiece.app.Service` (duck-typed)."""

    def __init__(self, service: Any, calls: CallCounters,
                 ready: Callable[[], Mapping[str, str | None]] | None = None) -> None:
        self.service = service
        self.calls = calls
        self.ready = ready
        self.rtp = RtpTotals()

    def collect(self) -> Iterator[Metric]:
        for part in (self._calls, self._ready, self._pbx, self._media, self._asr, self._cpa,
                     self._crm):
            try:
                yield from part()
            except Exception:  # a component mid-change must not fail the whole scrape
                log.exception("metrics: %s failed", part.__name__)

    # -- calls (bus) -------------------------------------------------------------------------
    def _calls(self) -> Iterator[Metric]:
        c = self.calls
        started = _counter("earpiece_calls_started", "Calls seen starting, by direction.",
                           ["direction"])
        for direction, n in sorted(c.started.items()):
            started.add_metric([direction], n)
        yield started
        ended = _counter("earpiece_calls_ended", "Calls ended.")
        ended.add_metric([], c.ended)
        yield ended
        outcomes = _counter("earpiece_call_outcomes",
                            "Settled outcomes of dial attempts (signalling and audio).",
                            ["outcome"])
        for outcome, n in sorted(c.outcomes.items()):
            outcomes.add_metric([outcome], n)
        yield outcomes
        verdicts = _counter("earpiece_amd_verdicts",
                            "Audio call-progress / answering-machine verdicts, by label.",
                            ["verdict"])
        for verdict, n in sorted(c.verdicts.items()):
            verdicts.add_metric([verdict], n)
        yield verdicts
        active = _gauge("earpiece_calls_active", "Calls the registry is tracking now.")
        registry = getattr(self.service, "registry", None)
        if registry is not None:
            active.add_metric([], len(registry.calls))
        yield active
        bus = getattr(self.service, "bus", None)
        errors = _counter("earpiece_bus_subscriber_errors",
                          "Event-bus subscriber callbacks that raised.")
        if bus is not None:
            errors.add_metric([], bus.subscriber_errors)
        yield errors

    def _ready(self) -> Iterator[Metric]:
        ready = _gauge("earpiece_ready", "1 when the component is ready (see /readyz).",
                       ["component"])
        if self.ready is not None:
            for component, problem in sorted(self.ready().items()):
                ready.add_metric([component], 1.0 if problem is None else 0.0)
        yield ready

    # -- PBX links ---------------------------------------------------------------------------
    def _pbx(self) -> Iterator[Metric]:
        s = self.service
        up = _gauge("earpiece_pbx_link_up", "1 while the PBX link is connected (AMI logged in, "
                    "ARI events websocket open).", ["link"])
        connects = _counter("earpiece_pbx_connects", "Successful PBX (re)connections.", ["link"])
        reconnects = _counter("earpiece_pbx_reconnects",
                              "PBX reconnections after the first connection.", ["link"])
        failures = _counter("earpiece_pbx_connect_failures",
                            "PBX connection attempts that failed.", ["link"])
        auth = _counter("earpiece_pbx_auth_failures", "PBX logins refused.", ["link"])
        events = _counter("earpiece_pbx_events", "PBX events received.", ["link"])
        malformed = _counter("earpiece_pbx_malformed", "Malformed PBX messages dropped.",
                             ["link"])
        resyncs = _counter("earpiece_pbx_resyncs",
                           "Call-registry resynchronisations with the PBX.", ["link"])
        for link in LINKS:
            client = getattr(s, link, None)
            up.add_metric([link], 1.0 if client is not None and client.connected else 0.0)
            n = getattr(s, "resyncs", {}).get(link)
            if n is not None:
                resyncs.add_metric([link], n)
            if client is None:
                continue
            st = client.stats
            connects.add_metric([link], st.connects)
            # AMI counts reconnects itself; ARI counts connects (the first one is no reconnect).
            reconnects.add_metric([link], getattr(st, "reconnects", max(0, st.connects - 1)))
            failures.add_metric([link], st.connect_failures)
            auth.add_metric([link], st.auth_failures)
            events.add_metric([link], st.events)
            malformed.add_metric(
                [link], getattr(st, "malformed", getattr(st, "malformed_frames", 0)))
        yield from (up, connects, reconnects, failures, auth, events, malformed, resyncs)
        owned = _gauge("earpiece_ari_app_owned",
                       "1 while our Stasis application is registered on our ARI websocket.")
        owned.add_metric([], 1.0 if ari_app_owned(s) else 0.0)
        yield owned

    # -- media -------------------------------------------------------------------------------
    def _media(self) -> Iterator[Metric]:
        media = getattr(self.service, "media", None)
        receiver = getattr(media, "receiver", None)
        received = _counter("earpiece_rtp_packets_received",
                            "RTP datagrams received on the media ports (taken + dropped).")
        dropped = _counter("earpiece_rtp_packets_dropped",
                           "RTP datagrams that reached no stream, by reason.", ["reason"])
        streams = _gauge("earpiece_rtp_streams", "Party audio streams bound to RTP ports now.")
        if receiver is not None:
            drops = _int_fields(receiver.drops)
            for reason, n in sorted(drops.items()):
                dropped.add_metric([reason], n)
            live = list(receiver.streams())
            taken = self.rtp.total([*live, *receiver.finished])
            received.add_metric([], taken + sum(drops.values()))
            streams.add_metric([], len(live))
        yield from (received, dropped, streams)
        fork = _counter("earpiece_media_fork_events",
                        "Media fork (snoop + externalMedia) life-cycle events.", ["event"])
        for event, n in sorted(_int_fields(getattr(media, "stats", None)).items()):
            fork.add_metric([event], n)
        yield fork

    # -- ASR ---------------------------------------------------------------------------------
    def _asr(self) -> Iterator[Metric]:
        asr = getattr(self.service, "asr", None)
        m = asr.metrics() if asr is not None and hasattr(asr, "metrics") else None
        lag = _gauge("earpiece_asr_lag_seconds", "Age of the oldest final waiting for a decoder.")
        pending = _gauge("earpiece_asr_pending_finals", "Finals waiting for a decoder.")
        dropped = _counter("earpiece_asr_finals_dropped",
                           "Finals dropped because the recogniser was overloaded.")
        published = _counter("earpiece_asr_finals_published", "Final transcripts published.")
        skipped = _counter("earpiece_asr_partials_skipped",
                           "Partial decodes skipped (overload or no spare worker).")
        if m is not None:
            lag.add_metric([], m.lag_s)
            pending.add_metric([], m.pending_finals)
            dropped.add_metric([], m.dropped_finals)
            published.add_metric([], m.finals_published)
            skipped.add_metric([], m.partials_skipped)
        yield from (lag, pending, dropped, published, skipped)

    # -- CPA ---------------------------------------------------------------------------------
    def _cpa(self) -> Iterator[Metric]:
        stats = getattr(getattr(self.service, "cpa", None), "stats", None)
        fields = _int_fields(stats)
        for key, name, doc in (
            ("decisions", "earpiece_cpa_decisions", "Call-progress decisions made."),
            ("frames", "earpiece_cpa_frames", "Customer audio frames analysed."),
            ("dropped_frames", "earpiece_cpa_frames_dropped",
             "Customer audio frames not analysed: the detector's backlog was full."),
            ("words_skipped", "earpiece_cpa_words_skipped",
             "Greeting snapshots not transcribed (queue full or already decided)."),
            ("words_errors", "earpiece_cpa_words_errors", "Greeting transcriptions that failed."),
        ):
            family = _counter(name, doc)
            if key in fields:
                family.add_metric([], fields[key])
            yield family

    # -- CRM ---------------------------------------------------------------------------------
    def _crm(self) -> Iterator[Metric]:
        crm = getattr(self.service, "crm", None)
        queue = _gauge("earpiece_crm_write_queue", "Call events waiting to be written.")
        written = _counter("earpiece_crm_events_written", "Call events written to the CRM.")
        failed = _counter("earpiece_crm_failed_batches",
                          "CRM write batches dropped (database unreachable or write error).")
        retries = _counter("earpiece_crm_retries", "CRM write batches retried.")
        if crm is not None:
            q = getattr(crm, "_queue", None)  # no public depth yet
            if q is not None:
                queue.add_metric([], q.qsize())
            written.add_metric([], crm.written)
            failed.add_metric([], crm.failed_batches)
            retries.add_metric([], crm.retries)
        yield from (queue, written, failed, retries)


def make_registry(service: Any, calls: CallCounters,
                  ready: Callable[[], Mapping[str, str | None]] | None = None,
                  ) -> CollectorRegistry:
    """A private registry (not the process-global one) holding the service's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(service, calls, ready))
    return registry
