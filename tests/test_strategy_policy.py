"""The policy's claims on the example campaign: emotion x slot -> prompt kind and product."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from earpiece.errors import ConfigError
from earpiece.events import EmotionChanged, EmotionScored, PromptReady
from earpiece.strategy.campaign import Campaign, load_campaign, parse_campaign
from earpiece.strategy.policy import Policy
from earpiece.strategy.recommender import Recommender

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "campaigns" / "example.toml"
NOW = 1_780_000_000.0
MORNING, EVENING = "weekday-morning", "weekend-evening"


@pytest.fixture(scope="module")
def campaign() -> Campaign:
    return load_campaign(EXAMPLE)


def history(campaign: Campaign) -> Recommender:
    r = Recommender(campaign.product_ids, campaign.recommender)
    for i in range(100):  # mornings: fibre sells; evenings: TV sells; mesh never does
        r.feedback("fibre500", MORNING, i < 45, NOW - 3600)
        r.feedback("tv", MORNING, i < 20, NOW - 3600)
        r.feedback("tv", EVENING, i < 50, NOW - 3600)
        r.feedback("fibre500", EVENING, i < 25, NOW - 3600)
        r.feedback("mesh", MORNING, i < 4, NOW - 3600)
        r.feedback("mesh", EVENING, i < 4, NOW - 3600)
    return r


def scored(state: str, text: str = "", party: str = "customer") -> EmotionScored:
    return EmotionScored(call_id="c1", at=NOW, party=party,  # type: ignore[arg-type]
                         label=state, valence=0.0, arousal=0.1, confidence=0.9, start_s=1.0,
                         end_s=2.5, text=text, index={"positive": 0.6, "neutral": 0.0,
                                                      "negative": -0.7}[state], state=state)


@pytest.mark.parametrize(("slot", "product", "name"), [(MORNING, "fibre500", "Fibre 500"),
                                                       (EVENING, "tv", "TV Plus")])
def test_each_emotion_gives_its_prompt_kind_with_the_slots_product(
        campaign: Campaign, slot: str, product: str, name: str) -> None:
    policy = Policy(campaign, history(campaign))
    pos = policy.decide(scored("positive"), slot)
    assert pos is not None and pos.kind == "recommend" and pos.product == product
    assert pos.text.startswith(f"Recommend {name} now")
    neu = policy.decide(scored("neutral", "right, I see"), slot)
    assert neu is not None and neu.kind == "introduce" and neu.product == product
    assert neu.text.startswith(f"Introduce {name}:")
    neg = policy.decide(scored("negative"), slot)
    assert neg is not None and neg.kind == "soothe" and neg.product is None
    assert neg.text.split(". ")[0] + "." in campaign.lines["en"].soothe
    assert neg.reason.rule == "negative_soothe" and neg.reason.emotion == "negative"


def test_every_prompt_carries_its_reason(campaign: Campaign) -> None:
    policy = Policy(campaign, history(campaign))
    p = policy.decide(scored("positive"), MORNING)
    assert p is not None
    r = p.reason
    assert (r.emotion, r.index, r.slot, r.product, r.rule) == (
        "positive", 0.6, MORNING, "fibre500", "positive_recommend")
    assert r.count == 100 and r.estimate == pytest.approx(46 / 102, rel=1e-3)
    assert r.lower is not None and r.estimate is not None
    assert r.threshold <= r.lower < r.estimate
    assert "fibre500 success 45%" in r.summary() and "100 outcomes" in r.summary()
    event = p.event()
    assert isinstance(event, PromptReady)
    assert event.kind == "recommend" and event.product == "fibre500" and event.at == NOW
    assert event.reason["evidence"] == pytest.approx(100, rel=1e-2)
    assert event.rule == "positive_recommend"


def test_neutral_question_gets_the_answer_and_the_product(campaign: Campaign) -> None:
    policy = Policy(campaign, history(campaign))
    p = policy.decide(scored("neutral", "And how much would that cost me?"), MORNING)
    assert p is not None and p.kind == "answer" and p.reason.question == "price"
    assert "monthly price" in p.text and "Fibre 500" in p.text
    zh = policy.decide(scored("neutral", "这个要多少钱"), EVENING, language="zh-CN")
    assert zh is not None and zh.language == "zh" and zh.kind == "answer"
    assert "月费" in zh.text and "电视加强包" in zh.text


def test_below_threshold_product_is_never_named(campaign: Campaign) -> None:
    r = Recommender(campaign.product_ids, campaign.recommender)
    for i in range(200):
        r.feedback("mesh", MORNING, i < 8, NOW)  # 4 %: under the campaign's 0.15
    policy = Policy(campaign, r)
    for state in ("positive", "neutral"):
        p = policy.decide(scored(state), MORNING)
        assert p is not None and p.kind == "discover" and p.product is None
        assert p.reason.rule == f"{state}_no_product"
        assert "Wi-Fi" not in p.text.replace("Wi-Fi at home", "")


def test_feedback_changes_the_prompted_product(campaign: Campaign) -> None:
    r = history(campaign)
    policy = Policy(campaign, r)
    first = policy.decide(scored("positive"), MORNING)
    assert first is not None and first.product == "fibre500"
    for i in range(300):
        r.feedback("fibre500", MORNING, False, NOW + i)
        r.feedback("tv", MORNING, i % 3 != 0, NOW + i)
    later = scored("positive")
    later = EmotionScored(**{**later.__dict__, "at": NOW + 400})
    second = policy.decide(later, MORNING)
    assert second is not None and second.product == "tv"


def test_agent_emotion_and_changed_events(campaign: Campaign) -> None:
    policy = Policy(campaign, history(campaign))
    assert policy.decide(scored("positive", party="agent"), MORNING) is None
    changed = EmotionChanged(call_id="c2", at=NOW, party="customer", old="neutral",
                             new="negative", index=-0.4, utterance=3)
    p = policy.decide(changed, EVENING)
    assert p is not None and p.kind == "soothe" and p.reason.index == -0.4


def test_lines_rotate_within_a_call(campaign: Campaign) -> None:
    policy = Policy(campaign, history(campaign))
    texts = [p.text for _ in range(2) if (p := policy.decide(scored("positive"), MORNING))]
    assert len(set(texts)) == 2
    policy.end_call("c1")
    again = policy.decide(scored("positive"), MORNING)
    assert again is not None and again.text == texts[0]


def _minimal() -> dict[str, Any]:
    return {"campaign": {"languages": ["en", "zh"]},
            "products": [{"id": "p", "text": {lang: {"name": "P", "facts": ["f"],
                                                     "talking_points": ["t"]}
                                              for lang in ("en", "zh")}}],
            "lines": {lang: {"recommend": "{name}", "introduce": "{fact}", "answer": "{answer}",
                             "discover": "d", "soothe": ["s"], "closing": ["c"]}
                      for lang in ("en", "zh")}}


def test_campaign_errors_name_the_key() -> None:
    assert parse_campaign(_minimal()).product_ids == ("p",)
    data = _minimal()
    del data["products"][0]["text"]["zh"]
    with pytest.raises(ConfigError, match=r"products\[0\]\.text\.zh"):
        parse_campaign(data, file="x.toml")
    data = _minimal()
    data["lines"]["en"]["recommend"] = "{product}"
    with pytest.raises(ConfigError, match=r"lines\.en\.recommend"):
        parse_campaign(data)
    data = _minimal()
    data["recommender"] = {"threshold": 2}
    with pytest.raises(ConfigError, match="threshold"):
        parse_campaign(data)
