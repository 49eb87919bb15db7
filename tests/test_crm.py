"""CRM store and writer: events published on the bus end up as rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from earpiece.bus import EventBus
from earpiece.crm.store import CrmStore, sqlite_path
from earpiece.crm.writer import CrmWriter
from earpiece.errors import ConfigError
from earpiece.events import (
    CallEnded,
    CallOutcome,
    CallStarted,
    CallState,
    CallStateChanged,
    CallTagged,
    ChannelJoined,
    ChannelRole,
    CpaDecision,
    Transcript,
)


def test_sqlite_url_parsing() -> None:
    assert sqlite_path("sqlite:///var/x.db") == "var/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite://:memory:") == ":memory:"
    with pytest.raises(ConfigError, match=r"crm\.url.*postgres"):
        sqlite_path("postgres://db/earpiece")


async def test_writer_persists_a_call(tmp_path: Path) -> None:
    bus = EventBus()
    store = CrmStore(f"sqlite:///{tmp_path}/crm.sqlite3")
    await store.open()
    writer = CrmWriter(bus, store)
    writer.start()
    bus.publish(CallStarted(call_id="c1", direction="outbound", channel="PJSIP/cust1-1", at=10.0))
    bus.publish(ChannelJoined(call_id="c1", channel="PJSIP/cust1-1", uniqueid="u1",
                              role=ChannelRole.CUSTOMER, at=10.0))
    bus.publish(CallStateChanged(call_id="c1", old=CallState.DIALING, new=CallState.ANSWERED,
                                 source="ami:OriginateResponse Reason=4", at=12.0))
    bus.publish(CallOutcome(call_id="c1", outcome=CallState.ANSWERED,
                            source="ami:OriginateResponse Reason=4", at=12.0))
    bus.publish(CallTagged(call_id="c1", tags={"campaign": "spring"}, at=12.5))
    bus.publish(CpaDecision(call_id="c1", label="human", confidence=0.9, decision_s=1.2,
                            evidence={"bursts": 1}, at=13.2))
    bus.publish(Transcript(call_id="c1", party="customer", text="hello", final=False,
                           start_s=1.0, end_s=1.5, language="en", at=13.0))
    bus.publish(Transcript(call_id="c1", party="customer", text="hello there", final=True,
                           start_s=1.0, end_s=2.0, language="en", at=14.0))
    bus.publish(CallEnded(call_id="c1", outcome=CallState.ANSWERED, hangup_cause=16, at=20.0))
    await writer.close()
    calls = await store.calls()
    assert len(calls) == 1
    call = calls[0]
    assert call["outcome"] == "answered"
    assert call["answered"] == 12.0 and call["ended"] == 20.0 and call["hangup_cause"] == 16
    assert call["tags"] == {"campaign": "spring"}
    legs = await store.query("SELECT role, channel FROM legs")
    assert legs == [{"role": "customer", "channel": "PJSIP/cust1-1"}]
    utts = await store.query("SELECT text FROM utterances")
    assert utts == [{"text": "hello there"}]  # partials are not stored
    cpa = await store.query("SELECT label, decision_s FROM cpa_verdicts")
    assert cpa == [{"label": "human", "decision_s": 1.2}]
    await store.close()
