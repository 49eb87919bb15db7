"""QC stage fed through the bus: flags published and stored, required phrases missing at call
end, the per-call timing row; the rules file."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_crm import crm_url, pg_admin_url, pg_url  # noqa: F401  (fixtures, used by name)

from earpiece.bus import EventBus
from earpiece.crm.backend import open_store
from earpiece.crm.qc import QcStage
from earpiece.crm.qc_rules import load_rules, parse_rules
from earpiece.crm.writer import CrmWriter
from earpiece.errors import ConfigError
from earpiece.events import CallEnded, CallStarted, CallState, QcFlag, Transcript

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "qc" / "example.toml"


def final(call_id: str, party: str, text: str, start: float, end: float,
          language: str = "en") -> Transcript:
    return Transcript(call_id=call_id, party=party, text=text, final=True,  # type: ignore[arg-type]
                      start_s=start, end_s=end, language=language)


def test_example_rules_load() -> None:
    rules = load_rules(EXAMPLE)
    assert set(rules.campaigns) == {"default", "loans"} and rules.default == "default"
    assert rules.campaign("nope").name == "default"
    assert rules.campaign("loans").required["en"] == ("this call may be recorded",
                                                      "subject to approval")


@pytest.mark.parametrize(("data", "key"), [
    ({"campaigns": {"x": {"forbidden": {"fr": ["a"]}}}}, "campaigns.x.forbidden.fr"),
    ({"campaigns": {"x": {"forbidden": {"en": "a"}}}}, "campaigns.x.forbidden.en"),
    ({"campaigns": {"x": {"patterns": [{"name": "p", "regex": "("}]}}},
     "campaigns.x.patterns[0].regex"),
    ({"campaigns": {"x": {"parties": ["boss"]}}}, "campaigns.x.parties"),
    ({"campain": {}}, "campain"),
])
def test_bad_rules_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_rules(data, file="qc.toml")
    assert info.value.key == key and info.value.file == "qc.toml"


async def test_stage_through_the_bus_flags_stores_and_measures(crm_url: str) -> None:  # noqa: F811
    bus = EventBus()
    store = await open_store(crm_url)
    writer = CrmWriter(bus, store)
    writer.start()
    stage = QcStage(bus, load_rules(EXAMPLE), store=store, flush=writer.flush, settle_s=0.05)
    stage.start()
    seen: list[QcFlag] = []
    bus.subscribe(QcFlag, seen.append)
    try:
        bus.publish(CallStarted(call_id="c1", direction="outbound", channel="PJSIP/c-1",
                                tags={"campaign": "loans"}))
        bus.publish(final("c1", "agent", "Hello, this call may be recorded.", 0.0, 2.0))
        bus.publish(final("c1", "customer", "I need a loan, no credit check?", 2.5, 4.0))
        bus.publish(Transcript(call_id="c1", party="agent", text="No Credit Check", final=False,
                               start_s=4.3, end_s=5.0, language="en"))  # partials are ignored
        bus.publish(final("c1", "agent", "Yes: NO CREDIT CHECK, guaranteed approval!",
                          4.3, 7.0))
        bus.publish(final("c1", "agent", "不查徵信，包過。", 7.2, 9.0, "zh"))
        bus.publish(CallEnded(call_id="c1", outcome=CallState.ANSWERED))
        bus.publish(final("c1", "customer", "ok bye", 9.5, 10.0))  # a last final after hangup
        await asyncio.sleep(0.1)
        await stage.drain()
        await writer.flush()
        live = [(f.kind, f.rule, f.party, f.span, f.matched) for f in seen]
        assert live == [
            ("forbidden", "no credit check", "agent", (5, 20), "NO CREDIT CHECK"),
            ("forbidden", "guaranteed approval", "agent", (22, 41), "guaranteed approval"),
            ("forbidden", "不查征信", "agent", (0, 4), "不查徵信"),
            ("forbidden", "包过", "agent", (5, 7), "包過"),
            ("required_missing", "subject to approval", "agent", None, ""),
            ("required_missing", "本次通话可能会被录音", "agent", None, ""),
            ("required_missing", "以审批结果为准", "agent", None, ""),
        ]  # the customer's "no credit check" is not the agent's script
        assert all(f.campaign == "loans" for f in seen)
        rows = await store.query("SELECT kind, rule, party, span_start, span_end, matched,"
                                 " start_s FROM qc_flags ORDER BY kind, rule")
        assert [(r["kind"], r["rule"], r["span_start"], r["span_end"]) for r in rows] == \
            sorted((k, r, s[0] if s else None, s[1] if s else None) for k, r, _, s, _ in live)
        assert {r["start_s"] for r in rows if r["rule"] == "no credit check"} == {4.3}
        (qc,) = await store.query("SELECT * FROM qc_calls")
        assert (qc["call_id"], qc["campaign"], qc["flags"], qc["missing_required"]) == \
            ("c1", "loans", 7, 3)
        # customer ends 4.0 -> agent 4.3; customer ends 10.0 -> no agent reply
        assert qc["responses"] == 1 and qc["response_mean_s"] == pytest.approx(0.3)
        assert qc["overtalks"] == 0 and qc["silences"] == 0
        assert qc["agent_talk_s"] == pytest.approx(2.0 + 2.7 + 1.8)
    finally:
        await stage.close()
        await writer.close()
        await store.close()


async def test_default_campaign_and_customer_speech_not_flagged() -> None:
    bus = EventBus()
    stage = QcStage(bus, load_rules(EXAMPLE), settle_s=0)
    stage.start()
    seen: list[QcFlag] = []
    bus.subscribe(QcFlag, seen.append)
    bus.publish(final("c2", "customer", "is it risk free?", 0.0, 1.0))
    bus.publish(final("c2", "agent", "本次通話可能會被錄音。它是零風險的", 1.5, 3.0, "zh"))
    bus.publish(CallEnded(call_id="c2", outcome=CallState.ANSWERED))
    await asyncio.sleep(0)
    await stage.close()
    # the call spoke Mandarin only: the English required phrase is not asked for
    assert [(f.kind, f.rule, f.matched, f.campaign) for f in seen] == [
        ("forbidden", "零风险", "零風險", "default")]
    assert stage.calls_measured == 1


async def test_close_finishes_calls_still_settling() -> None:
    bus = EventBus()
    stage = QcStage(bus, parse_rules({"campaigns": {"default": {
        "required": {"en": ["thank you"]}}}}), settle_s=60)
    stage.start()
    seen: list[QcFlag] = []
    bus.subscribe(QcFlag, seen.append)
    bus.publish(final("c3", "agent", "hello", 0.0, 1.0))
    bus.publish(CallEnded(call_id="c3", outcome=CallState.ANSWERED))
    await asyncio.wait_for(stage.close(), 5)
    assert [(f.kind, f.rule) for f in seen] == [("required_missing", "thank you")]
