"""QC text folding and matching: planted phrases in English and Mandarin with exact spans in the
original text (full-width, traditional, punctuation), and the span property for any text."""

from __future__ import annotations

import re

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from test_qc import EXAMPLE

from earpiece.crm.qc_rules import load_rules
from earpiece.crm.qc_text import Pattern, Phrase, PhraseMatcher, fold, normalise

EN = [Phrase("guaranteed returns", language="en"), Phrase("risk free", language="en"),
      Phrase("you can't lose", language="en")]
ZH = [Phrase("稳赚不赔", language="zh"), Phrase("保证收益", language="zh"),
      Phrase("零风险", language="zh")]
MATCHER = PhraseMatcher(EN + ZH)


def spans(text: str, matcher: PhraseMatcher = MATCHER) -> list[tuple[str, tuple[int, int], str]]:
    return [(h.rule, h.span, h.matched) for h in matcher.find(text)]


def test_folding_keeps_an_offset_per_character() -> None:
    norm = normalise("Ｒｉｓｋ－ＦＲＥＥ！  我們保證，收益")
    assert norm.text == "risk free我们保证收益"
    assert len(norm.source) == len(norm.text)
    assert norm.source[:4] == (0, 1, 2, 3) and norm.source[4] == 4  # the "－" is the space
    assert fold("保 證 收 益") == "保证收益"  # no spaces between Chinese characters
    assert fold("  Hello,   World!! ") == "hello world"


def test_planted_english_phrases_with_exact_spans() -> None:
    text = "Sir, this fund has GUARANTEED returns and it is Risk-Free. You can't lose!"
    assert spans(text) == [
        ("guaranteed returns", (19, 37), "GUARANTEED returns"),
        ("risk free", (48, 57), "Risk-Free"),
        ("you can't lose", (59, 73), "You can't lose"),
    ]
    for _, (s, e), matched in spans(text):
        assert text[s:e] == matched


def test_full_width_english_maps_back_to_the_full_width_span() -> None:
    text = "那个ＲＩＳＫ　ＦＲＥＥ的产品"
    assert spans(text) == [("risk free", (2, 11), "ＲＩＳＫ　ＦＲＥＥ")]


def test_whole_words_only_for_latin_phrases() -> None:
    assert spans("an asterisk freebie; guaranteed returnsx") == []
    assert spans("risk freely") == []


def test_planted_mandarin_phrases_simplified_traditional_and_punctuated() -> None:
    text = "您好，这款产品稳赚不赔，我们保证收益。"
    assert spans(text) == [("稳赚不赔", (7, 11), "稳赚不赔"), ("保证收益", (14, 18), "保证收益")]
    traditional = "您好，這款產品穩賺不賠，我們保證收益。"
    assert spans(traditional) == [("稳赚不赔", (7, 11), "穩賺不賠"),
                                  ("保证收益", (14, 18), "保證收益")]
    punctuated = "我們保證，收益！還有ＺＥＲＯ零風險"
    assert spans(punctuated) == [("保证收益", (2, 7), "保證，收益"), ("零风险", (14, 17), "零風險")]
    spaced = "保 證 收 益"  # a recogniser's spaced-out characters
    assert spans(spaced) == [("保证收益", (0, 7), "保 證 收 益")]


def test_patterns_run_on_folded_text_and_map_back() -> None:
    matcher = PhraseMatcher(patterns=[
        Pattern("rate", re.compile(r"\bpromise[ds]?\b(?: \w+){0,4} \d+(?: \d+)? ?%"), "pattern",
                "en"),
        Pattern("保证收益", re.compile(r"保证.{0,8}收益"), "pattern", "zh"),
    ])
    text = "I PROMISE you 8.5％ every year; 我們保證，年年都有收益"
    assert spans(text, matcher) == [("rate", (2, 18), "PROMISE you 8.5％"),
                                    ("保证收益", (33, 42), "保證，年年都有收益")]


def test_example_rules_flag_guarantees_and_promised_rates() -> None:
    rules = load_rules(EXAMPLE).campaign(None)
    hits = rules.matcher.find("We guarantee you steady returns, locked in at 6% a year.")
    assert {(h.kind, h.rule) for h in hits} == {("pattern", "guarantee_of_returns"),
                                                ("pattern", "promised_rate")}
    zh = rules.matcher.find("我們承諾年化利率百分之八，穩賺不賠")
    assert {(h.kind, h.rule, h.matched) for h in zh} == {
        ("pattern", "承诺利率", "承諾年化利率百分之八"),
        ("forbidden", "稳赚不赔", "穩賺不賠"),
    }


TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
MIXED = st.text(alphabet=st.sampled_from(list("ab AB,，。!保證证收益ＲＩＳＫ　ｒｉｓｋ穩稳\u200b")),
                max_size=30)


@settings(max_examples=300, deadline=None)
@given(st.one_of(TEXT, MIXED), st.lists(st.one_of(TEXT, MIXED), min_size=1, max_size=4),
       st.data())
def test_spans_index_the_original_and_refold_to_the_phrase(
        text: str, phrases: list[str], data: st.DataObject) -> None:
    # phrases also drawn from the text itself, so that some of them match
    if text:
        i = data.draw(st.integers(0, len(text) - 1))
        j = data.draw(st.integers(i + 1, len(text)))
        phrases.append(text[i:j])
    matcher = PhraseMatcher([Phrase(p) for p in phrases])
    keys = {fold(p) for p in phrases}
    for hit in matcher.find(text):
        s, e = hit.span
        assert 0 <= s < e <= len(text)
        assert hit.matched == text[s:e]
        assert fold(text[s:e]) == fold(hit.rule)
        assert fold(hit.rule) in keys


@settings(max_examples=200, deadline=None)
@given(TEXT, st.one_of(TEXT, MIXED), TEXT)
def test_a_planted_phrase_between_spaces_is_found(before: str, phrase: str, after: str) -> None:
    assume(fold(phrase))
    text = f"{before} {phrase} {after}"
    hits = PhraseMatcher([Phrase(phrase)]).find(text)
    start = len(before) + 1
    assert any(start <= h.span[0] and h.span[1] <= start + len(phrase) for h in hits)
