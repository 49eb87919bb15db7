"""The strategy stage on the bus: customer emotion -> throttled PromptReady per call."""

from __future__ import annotations

from pathlib import Path

import pytest

from earpiece.bus import EventBus
from earpiece.events import (
    CallEnded,
    CallStarted,
    CallState,
    CallStateChanged,
    EmotionChanged,
    EmotionScored,
    PromptReady,
    Transcript,
)
from earpiece.strategy.settings import StrategySettings
from earpiece.strategy.stage import StrategyStage

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "campaigns" / "example.toml"
T0 = 1_750_086_400.0  # Monday 16 June 2025, 16:06 in London: a weekday afternoon


def make_stage(**kw: object) -> tuple[EventBus, StrategyStage, list[PromptReady]]:
    bus = EventBus()
    settings = StrategySettings(campaign=EXAMPLE, **kw)  # type: ignore[arg-type]
    stage = StrategyStage(bus, settings, clock=lambda: T0)
    stage.start()
    prompts: list[PromptReady] = []
    bus.subscribe(PromptReady, prompts.append)
    return bus, stage, prompts


def start_call(bus: EventBus, call_id: str = "c1", tags: dict[str, str] | None = None) -> None:
    bus.publish(CallStarted(call_id=call_id, at=T0, direction="outbound",
                            channel="PJSIP/cust1-00000001", tags=tags or {}))
    bus.publish(CallStateChanged(call_id=call_id, at=T0 + 3, old=CallState.RINGING,
                                 new=CallState.ANSWERED, source="test"))


def changed(at: float, new: str, party: str = "customer", call_id: str = "c1",
            old: str = "neutral") -> EmotionChanged:
    return EmotionChanged(call_id=call_id, at=at, party=party, old=old, new=new,  # type: ignore[arg-type]
                          index=-0.6 if new == "negative" else 0.5, utterance=3)


def test_negative_customer_gets_a_soothe_prompt_with_id_and_reason() -> None:
    bus, stage, prompts = make_stage()
    start_call(bus)
    bus.publish(changed(T0 + 20, "negative"))
    (p,) = prompts
    assert p.kind == "soothe" and p.rule == "negative_soothe" and p.call_id == "c1"
    assert len(p.prompt_id) == 32 and p.slot == "weekday-afternoon"
    assert p.reason["emotion"] == "negative" and p.reason["index"] == -0.6
    assert "apologise" in p.text
    assert stage.prompts == 1


def test_agent_emotion_gives_no_prompt() -> None:
    bus, _, prompts = make_stage()
    start_call(bus)
    bus.publish(changed(T0 + 20, "negative", party="agent"))
    assert prompts == []


def test_throttle_holds_same_state_and_lets_a_change_through() -> None:
    bus, stage, prompts = make_stage()
    start_call(bus)
    bus.publish(changed(T0 + 20, "negative"))
    bus.publish(EmotionScored(call_id="c1", at=T0 + 21, party="customer", label="negative",
                              valence=-0.7, arousal=0.4, confidence=0.8, start_s=17, end_s=20,
                              index=-0.65, state="negative"))
    assert len(prompts) == 1 and stage.held["rate_limited"] == 1
    bus.publish(changed(T0 + 21.5, "neutral", old="negative"))  # within min_gap_s
    assert len(prompts) == 1 and stage.held["too_soon"] == 1
    bus.publish(changed(T0 + 24, "positive", old="neutral"))
    assert [p.kind for p in prompts] == ["soothe", "discover"]  # cold start: no product yet
    bus.publish(changed(T0 + 40, "negative", old="positive"))
    assert prompts[-1].kind == "soothe" and prompts[-1].text != prompts[0].text  # rotates


def test_customer_question_while_neutral_gets_the_answer() -> None:
    bus, _, prompts = make_stage()
    start_call(bus)
    bus.publish(Transcript(call_id="c1", at=T0 + 10, party="customer", final=True,
                           text="How much does it cost per month?", start_s=5, end_s=7,
                           language="en"))
    bus.publish(Transcript(call_id="c1", at=T0 + 11, party="agent", final=True,
                           text="what is the price", start_s=8, end_s=9, language="en"))
    (p,) = prompts
    assert p.kind == "answer" and p.reason["question"] == "price"
    assert "monthly price" in p.text


def test_call_tag_picks_the_campaign_file_of_that_name(tmp_path: Path) -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace('name = "broadband-upsell"',
                                                       'name = "retention"')
    text = text.replace("Acknowledge the problem and apologise once.", "Thank them for staying.")
    (tmp_path / "retention.toml").write_text(text, encoding="utf-8")
    bus, stage, prompts = make_stage(campaign_dir=tmp_path)
    start_call(bus, "c1", {"campaign": "retention"})
    start_call(bus, "c2", {"campaign": "nosuch"})
    bus.publish(changed(T0 + 20, "negative", call_id="c1"))
    bus.publish(changed(T0 + 20, "negative", call_id="c2"))
    assert prompts[0].text.startswith("Thank them for staying.")
    assert prompts[1].text.startswith("Acknowledge the problem")
    assert stage.engine_for({"campaign": "nosuch"}) is stage.default


def test_ended_call_is_forgotten() -> None:
    bus, stage, prompts = make_stage()
    start_call(bus)
    bus.publish(changed(T0 + 20, "negative"))
    bus.publish(CallEnded(call_id="c1", at=T0 + 30, outcome=CallState.ANSWERED))
    assert stage.throttle.calls == 0 and not stage._calls
    assert len(prompts) == 1


def test_missing_campaign_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="file not found"):
        StrategyStage(EventBus(), StrategySettings(campaign=tmp_path / "none.toml"))
