"""The operator's view of a running service (issue #16): one log line per call event carrying
the call id, and the ops HTTP endpoint (``/healthz``, ``/readyz``, ``/metrics``).

The endpoint is tested on a real socket (port 0) against tiny stand-ins exposing the attributes
the service's components have, then once end to end against the PBX simulator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from earpiece.agi.ami_client import AmiClientStats
from earpiece.agi.ari_client import AriClientStats
from earpiece.bus import EventBus
from earpiece.calllog import CallLog
from earpiece.config import HttpSettings, load_settings
from earpiece.errors import ConfigError
from earpiece.events import (
    CallEnded,
    CallOutcome,
    CallStarted,
    CallState,
    CpaDecision,
    Transcript,
)
from earpiece.logs import CallIdFilter, call_id_var
from earpiece.media.fork_parts import ForkStats
from earpiece.media.frames import StreamStats
from earpiece.media.receiver import DropStats
from earpiece.web.ops import OpsServer

# --- (8) one log line per call event ----------------------------------------------------------


def call_events(call_id: str) -> list[Any]:
    return [
        CallStarted(call_id=call_id, direction="outbound", channel="PJSIP/cust1-00000001",
                    tags={"campaign": "spring"}, at=100.0),
        CallOutcome(call_id=call_id, outcome=CallState.ANSWERED,
                    source="ami:OriginateResponse Reason=4", at=101.0),
        CpaDecision(call_id=call_id, label="machine", confidence=0.97, decision_s=1.8,
                    at=103.0),
        CallEnded(call_id=call_id, outcome=CallState.ANSWERED, hangup_cause=16, at=130.5),
    ]


def test_each_call_event_logs_one_info_line_with_the_call_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    calllog = CallLog(bus)
    calllog.start()
    caplog.set_level(logging.INFO, logger="earpiece.calls")
    # The handler the CLI installs (setup_logging): CallIdFilter + the [%(call_id)s] slot.
    lines: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = ListHandler()
    handler.addFilter(CallIdFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s [%(call_id)s] %(message)s"))
    logging.getLogger("earpiece.calls").addHandler(handler)
    try:
        for ev in call_events("c0ffee01"):
            caplog.clear()
            bus.publish(ev)
            records = [r for r in caplog.records if r.name == "earpiece.calls"]
            assert len(records) == 1, (ev, records)
            assert records[0].levelno == logging.INFO
            assert records[0].call_id == "c0ffee01"  # type: ignore[attr-defined]
        # Other call events (transcripts, state changes...) are not logged at INFO.
        caplog.clear()
        bus.publish(Transcript(call_id="c0ffee01", party="customer", text="hello", final=True,
                               start_s=0.0, end_s=1.0, language="en"))
        assert not [r for r in caplog.records if r.name == "earpiece.calls"]
    finally:
        logging.getLogger("earpiece.calls").removeHandler(handler)
    assert len(lines) == 4
    assert all(line.startswith("INFO [c0ffee01] call ") for line in lines), lines
    started, outcome, verdict, ended = lines
    assert "outbound PJSIP/cust1-00000001" in started and "campaign=spring" in started
    assert "answered" in outcome and "OriginateResponse" in outcome
    assert "machine" in verdict and "0.97" in verdict
    assert "hangup cause 16" in ended and "after 30.5 s" in ended
    assert call_id_var.get() == "-"  # reset after each line


async def test_call_log_stops() -> None:
    bus = EventBus()
    calllog = CallLog(bus)
    calllog.start()
    await calllog.stop()
    assert not bus._subs


# --- [http] settings ------------------------------------------------------------------------


def test_http_settings_defaults_and_port_range(tmp_path: Path) -> None:
    settings = load_settings(None, {})
    assert settings.http == HttpSettings(enabled=True, host="127.0.0.1", port=8780)
    path = tmp_path / "earpiece.toml"
    path.write_text("[http]\nport = 70000\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path, {})
    assert info.value.key == "http.port"
    assert "70000" in str(info.value)
    path.write_text('[http]\nenabled = false\nhost = "0.0.0.0"\nport = 9100\n')
    assert load_settings(path, {}).http == HttpSettings(enabled=False, host="0.0.0.0", port=9100)


# --- (10) the ops endpoint against stand-ins -------------------------------------------------


class FakeLink:
    def __init__(self, stats: Any) -> None:
        self.connected = False
        self.stats = stats


class FakeReceiver:
    def __init__(self) -> None:
        self.drops = DropStats()
        self.live: list[Any] = []
        self.finished: list[Any] = []

    def streams(self) -> list[Any]:
        return list(self.live)


def stream(call_id: str, party: str, packets: int) -> Any:
    return SimpleNamespace(call_id=call_id, party=party, stats=StreamStats(packets=packets))


def fake_service() -> Any:
    crm = SimpleNamespace(written=0, failed_batches=0, retries=0, _queue=asyncio.Queue(),
                          _task=None)
    asr = SimpleNamespace(m=SimpleNamespace(lag_s=0.0, pending_finals=0, dropped_finals=0,
                                            finals_published=0, partials_skipped=0))
    asr.metrics = lambda: asr.m
    return SimpleNamespace(
        bus=EventBus(), registry=SimpleNamespace(calls={}), want_media=True,
        ami=FakeLink(AmiClientStats()), ari=FakeLink(AriClientStats()), ari_app_owned=False,
        resyncs={"ami": 0, "ari": 0}, store=object(), crm=crm,
        media=SimpleNamespace(receiver=FakeReceiver(), stats=ForkStats(), _running=True),
        cpa=SimpleNamespace(stats=SimpleNamespace()), asr=asr,
    )


async def get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, Any]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
        body = await (resp.json() if path != "/metrics" else resp.text())
        return resp.status, body


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def families(text: str) -> set[str]:
    return {f.name for f in text_string_to_metric_families(text)}


NAMED_FAMILIES = {
    "earpiece_calls_started", "earpiece_calls_ended", "earpiece_call_outcomes",
    "earpiece_amd_verdicts", "earpiece_calls_active", "earpiece_pbx_link_up",
    "earpiece_pbx_connects", "earpiece_pbx_reconnects", "earpiece_pbx_connect_failures",
    "earpiece_ari_app_owned", "earpiece_rtp_packets_received", "earpiece_rtp_packets_dropped",
    "earpiece_asr_lag_seconds", "earpiece_asr_finals_dropped", "earpiece_cpa_decisions",
    "earpiece_crm_write_queue", "earpiece_crm_failed_batches", "earpiece_ready",
}


async def test_healthz_readyz_and_metrics_follow_the_components() -> None:
    svc = fake_service()
    ops = OpsServer(svc, HttpSettings(port=0))
    await ops.start()
    assert ops.port
    try:
        async with aiohttp.ClientSession() as session:
            assert await get(session, ops.port, "/healthz") == (200, {"status": "ok"})

            status, body = await get(session, ops.port, "/readyz")
            assert status == 503 and body["ready"] is False
            assert set(body["not_ready"]) == {"ami", "ari", "ari_app"}
            assert body["not_ready"]["ami"] == "not connected"
            assert body["checks"]["crm"] is True and body["checks"]["media"] is True

            svc.ami.connected = True
            svc.ari.connected = True
            status, body = await get(session, ops.port, "/readyz")
            assert status == 503
            assert body["not_ready"] == {
                "ari_app": "Stasis application taken over by another ARI client"}
            svc.ari_app_owned = True
            status, body = await get(session, ops.port, "/readyz")
            assert (status, body["ready"], body["not_ready"]) == (200, True, {})

            svc.media = None
            status, body = await get(session, ops.port, "/readyz")
            assert status == 503 and body["not_ready"] == {"media": "not started"}
            svc.want_media = False  # media off (--no-media): not required
            assert (await get(session, ops.port, "/readyz"))[0] == 200
            svc.store = None
            status, body = await get(session, ops.port, "/readyz")
            assert status == 503 and body["not_ready"] == {"crm": "store not open"}
            svc.store = object()
            svc.want_media = True
            svc.media = SimpleNamespace(receiver=FakeReceiver(), stats=ForkStats(),
                                        _running=True)

            status, text = await get(session, ops.port, "/metrics")
            assert status == 200
            assert NAMED_FAMILIES <= families(text), NAMED_FAMILIES - families(text)
            before = samples(text)
            assert before[("earpiece_pbx_link_up", (("link", "ami"),))] == 1.0
            assert before[("earpiece_ari_app_owned", ())] == 1.0
            assert before[("earpiece_call_outcomes_total", (("outcome", "busy"),))] == 0.0
            assert before[("earpiece_ready", (("component", "ami"),))] == 1.0

            # Events on the bus and the components' own counters move the numbers.
            for ev in call_events("c1"):
                svc.bus.publish(ev)
            svc.bus.publish(CallOutcome(call_id="c2", outcome=CallState.BUSY, source="x"))
            svc.ari.connected = False
            svc.ami.stats.connects, svc.ami.stats.reconnects = 3, 2
            svc.ari.stats.connects, svc.ari.stats.connect_failures = 2, 5
            receiver = svc.media.receiver
            receiver.drops.bad_ssrc, receiver.drops.no_stream = 4, 1
            receiver.live = [stream("c1", "customer", 100)]
            receiver.finished = [stream("c0", "customer", 50)]
            svc.asr.m.lag_s, svc.asr.m.dropped_finals = 2.5, 3
            svc.cpa.stats = dataclasses.make_dataclass("S", [("decisions", int)])(7)
            svc.crm.failed_batches = 2
            svc.crm._queue.put_nowait("event")
            after = samples((await get(session, ops.port, "/metrics"))[1])
    finally:
        await ops.close()

    assert after[("earpiece_calls_started_total", (("direction", "outbound"),))] == 1.0
    assert after[("earpiece_calls_ended_total", ())] == 1.0
    assert after[("earpiece_call_outcomes_total", (("outcome", "answered"),))] == 1.0
    assert after[("earpiece_call_outcomes_total", (("outcome", "busy"),))] == 1.0
    assert after[("earpiece_amd_verdicts_total", (("verdict", "machine"),))] == 1.0
    assert after[("earpiece_pbx_link_up", (("link", "ari"),))] == 0.0
    assert after[("earpiece_ari_app_owned", ())] == 0.0
    assert after[("earpiece_pbx_reconnects_total", (("link", "ami"),))] == 2.0
    assert after[("earpiece_pbx_reconnects_total", (("link", "ari"),))] == 1.0
    assert after[("earpiece_pbx_connect_failures_total", (("link", "ari"),))] == 5.0
    assert after[("earpiece_rtp_packets_dropped_total", (("reason", "bad_ssrc"),))] == 4.0
    assert after[("earpiece_rtp_packets_received_total", ())] == 155.0
    assert after[("earpiece_rtp_streams", ())] == 1.0
    assert after[("earpiece_asr_lag_seconds", ())] == 2.5
    assert after[("earpiece_asr_finals_dropped_total", ())] == 3.0
    assert after[("earpiece_cpa_decisions_total", ())] == 7.0
    assert after[("earpiece_crm_failed_batches_total", ())] == 2.0
    assert after[("earpiece_crm_write_queue", ())] == 1.0
    assert after[("earpiece_ready", (("component", "ari"),))] == 0.0
    # Closing stopped counting bus events.
    assert not svc.bus._subs


def test_rtp_total_never_goes_down_when_finished_streams_age_out() -> None:
    from earpiece.web.metrics import RtpTotals

    totals = RtpTotals()
    a, b = stream("a", "customer", 10), stream("b", "agent", 20)
    assert totals.total([a, b]) == 30
    b.stats.packets = 25
    assert totals.total([b]) == 35  # a left the receiver's bounded list: still counted
    assert totals.total([stream("c", "customer", 1)]) == 36


async def test_a_busy_port_is_logged_and_the_service_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ops = OpsServer(fake_service(), HttpSettings(port=port))
        with caplog.at_level(logging.ERROR, logger="earpiece.web.ops"):
            await ops.start()
        assert ops.port is None
        assert any("http.port" in r.getMessage() for r in caplog.records)
        await ops.close()


# --- end to end: the service on the PBX simulator --------------------------------------------


def two_calls_scenario(tmp_path: Path) -> Path:
    lines = ['name = "ops"', "[dialplan]", 'agents = ["agent1"]', "dial_timeout_s = 10",
             "[[endpoints]]", 'name = "agent1"', 'role = "agent"']
    for name, outcome in (("o_ans", "answer"), ("o_busy", "busy")):
        lines += ["[[endpoints]]", f'name = "{name}"', f'outcome = "{outcome}"', "ring_s = 0.3",
                  "hangup_after_s = 0.8"]
    lines += ["[dialer]", "enabled = true", "start_after_s = 0.2", "spacing_s = 0.3",
              "timeout_ms = 2500", 'calls = ["o_ans", "o_busy"]']
    path = tmp_path / "ops.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


async def wait_until(predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 - polling state owned by other components
            await asyncio.sleep(0.02)


async def test_service_serves_ops_endpoint_and_logs_calls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from earpiece.app import Service
    from earpiece.demo import demo_settings
    from earpiece.sim.scenario import load_scenario
    from earpiece.sim.simulator import Simulator

    caplog.set_level(logging.INFO, logger="earpiece.calls")
    sim = Simulator(load_scenario(two_calls_scenario(tmp_path)), seed=5)
    await sim.start()
    try:
        settings = dataclasses.replace(demo_settings(sim, db=str(tmp_path / "crm.sqlite3")),
                                       http=HttpSettings(port=0))
        ended: list[str] = []
        async with Service(settings, media=False) as service:
            service.bus.subscribe(CallEnded, lambda ev: ended.append(ev.call_id))
            assert service.ops is not None and service.ops.port
            port = service.ops.port
            async with aiohttp.ClientSession() as session:
                status, body = await get(session, port, "/readyz")
                assert (status, body["not_ready"]) == (200, {}), body
                assert "media" not in body["checks"]  # --no-media
                await wait_until(lambda: len(ended) >= 2)
                metrics = samples((await get(session, port, "/metrics"))[1])
        assert metrics[("earpiece_call_outcomes_total", (("outcome", "answered"),))] == 1.0
        assert metrics[("earpiece_call_outcomes_total", (("outcome", "busy"),))] == 1.0
        assert metrics[("earpiece_pbx_link_up", (("link", "ami"),))] == 1.0
        assert metrics[("earpiece_ari_app_owned", ())] == 1.0
        assert metrics[("earpiece_crm_events_written_total", ())] > 0
        # The service stopped its endpoint.
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                await get(session, port, "/healthz")
    finally:
        await sim.stop()
    for call_id in ended:
        lines = [r.getMessage() for r in caplog.records
                 if r.name == "earpiece.calls" and getattr(r, "call_id", None) == call_id]
        assert [m.split(":")[0] for m in lines] == [
            "call started", "call outcome", "call ended"], lines
