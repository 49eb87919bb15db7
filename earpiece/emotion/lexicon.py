"""Lexicon evidence for text emotion: VADER (English), a small jieba-based Mandarin lexicon with
negation and degree words, and the call-centre phrase lists (``[emotion]`` in the config).

The Mandarin lexicon is the project's own (written for customer-service speech, not
translated); each sentiment word scores +1 / -1, a degree word before it scales it, and a
negation word within the three tokens before it flips it (and halves it: "不太好" is milder
than "差").
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

#: Call-centre phrases that carry the customer's stance without emotive words. The config's
#: ``[emotion] negative_phrases`` / ``positive_phrases`` add to these.
NEGATIVE_PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "stop calling", "not interested", "no thanks", "don't call", "take me off",
        "i'm good", "i'm fine", "all set", "we're fine", "we're covered", "don't need",
        "don't want", "complaint", "cancel", "scam", "fraud", "waste", "wasting",
        "hang up", "hanging up", "manager", "supervisor", "refund", "how did you get",
        "too expensive", "too high", "can't afford", "not today", "not now", "no means no",
        "never", "again", "fed up", "sick of", "had enough", "ridiculous", "unacceptable",
        "terrible", "awful", "useless", "rip-off", "con", "hurry", "get to the point",
        "script", "don't trust", "i said no", "charged me", "no way", "busy", "bye",
        "broke", "broken", "down for", "nobody", "other time", "doubt", "late", "again",
        "not for me", "doesn't work", "not switching", "staying where", "catch", "promised",
        "disappointed", "complain about", "still nothing", "leave me alone", "i'm done",
    ),
    "zh": (
        "不需要", "不用了", "暂时不用", "别打", "不要再", "投诉", "骗子", "诈骗", "取消",
        "退款", "退钱", "没兴趣", "不感兴趣", "太贵", "受够", "浪费", "烦", "挂了", "经理",
        "领导", "差劲", "太差", "不相信", "信不过", "扣了", "坑", "没时间", "不方便",
        "算了", "不要", "别再", "12315", "消协", "失望", "不换", "拒绝", "快点", "在忙",
        "再见", "拜拜", "负担不起", "出不起", "不会办", "又是", "说重点", "重点", "改天",
        "再说吧", "不想", "坏了", "没到", "断了", "不信", "骗人", "没用", "别了",
    ),
}
POSITIVE_PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "sign me up", "how do i apply", "how do i", "let's do it", "tell me more",
        "send me", "sounds good", "sounds great", "i'll take it", "i'm interested",
        "interested", "count me in", "where do i sign", "next step", "go ahead",
        "thank you", "thanks so much", "appreciate", "great", "perfect", "brilliant",
        "i'd like", "i want the", "how soon", "book me", "put me down", "convinced",
        "good deal", "bargain", "helpful", "works for me", "i'd consider",
    ),
    "zh": (
        "怎么办理", "怎么申请", "怎么开通", "办一个", "给我办", "我要了", "感兴趣", "有兴趣",
        "发给我", "发我", "详细说说", "了解一下", "划算", "实惠", "谢谢你", "感谢", "太好了",
        "满意", "不错", "可以考虑", "下一步", "签字", "报名", "开通", "我想", "愿意",
        "挺好", "没问题", "怎么下单", "推荐", "真棒", "解决了", "幸好", "正好", "好多了",
        "正想", "试试", "可以", "行啊", "好的", "心动", "喜欢",
    ),
}

ZH_POSITIVE = frozenset(
    "好 不错 满意 喜欢 划算 实惠 便宜 方便 感谢 谢谢 棒 厉害 合适 适合 需要 兴趣 感兴趣 "
    "优惠 值 值得 快 及时 专业 耐心 热情 放心 开心 高兴 愿意 同意 考虑 推荐 靠谱 公道 "
    "合理 正常 解决 心动 到位 强 省心 省钱 周到 幸好 好多 真棒 太好了".split()
)
ZH_NEGATIVE = frozenset(
    "差 差劲 糟 糟糕 烂 贵 慢 烦 骗 骗子 诈骗 坑 黑 投诉 失望 生气 讨厌 麻烦 垃圾 离谱 "
    "过分 乱 扯 假 坏 退 退款 取消 拒绝 浪费 耽误 受够 忍 闪退 扣 扣钱 晚 延迟 断 "
    "不满 恶心 难用 忽悠 推销 骚扰 无语 后悔 忙 坑人 坑钱 失望 糟透".split()
)
ZH_NEGATION = frozenset("不 没 没有 别 无 未 不是 不要 不用 从没 从来不 并不 绝不 甭".split())
ZH_DEGREE: dict[str, float] = {
    "太": 1.8, "非常": 1.8, "特别": 1.8, "超": 1.7, "极": 2.0, "十分": 1.7, "真": 1.5,
    "真的": 1.5, "很": 1.4, "挺": 1.2, "蛮": 1.2, "比较": 1.1, "还": 0.9, "有点": 0.7,
    "有些": 0.7, "稍微": 0.6, "一点": 0.6, "最": 1.9, "更": 1.3, "彻底": 1.8,
}

_QUESTION_EN = re.compile(
    r"^(?:\W*(?:um|uh|well|yeah|look|okay|so|oh)\W+)*(what|how|when|where|which|who|why|"
    r"is|are|do|does|can|could|would|should|will)\b", re.I)
_QUESTION_ZH = re.compile(r"(吗|呢|吧)[。？?]?$|[？?]$|什么|怎么|多少|哪|几|是不是|有没有")

#: Names of the numbers :func:`lexicon_features` returns, per language.
LEXICON_FEATURES: dict[str, tuple[str, ...]] = {
    "en": ("vader_compound", "vader_pos", "vader_neg", "phrase_neg", "phrase_pos", "question",
           "negation"),
    "zh": ("lex_score", "lex_pos", "lex_neg", "phrase_neg", "phrase_pos", "question",
           "negation"),
}


@functools.cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


@functools.cache
def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    for w in (*ZH_POSITIVE, *ZH_NEGATIVE, *ZH_NEGATION, *ZH_DEGREE):
        jieba.add_word(w)
    jieba.initialize()
    return jieba


def zh_tokens(text: str) -> list[str]:
    return [t for t in _jieba().lcut(text) if t.strip()]


def zh_lexicon_score(tokens: Sequence[str]) -> tuple[float, float, float, int]:
    """(score, positive mass, negative mass, negations seen) of jieba tokens."""
    pos = neg = 0.0
    negations = 0
    for i, tok in enumerate(tokens):
        polarity = 1.0 if tok in ZH_POSITIVE else -1.0 if tok in ZH_NEGATIVE else 0.0
        if tok in ZH_NEGATION:
            negations += 1
        if polarity == 0.0:
            continue
        weight = 1.0
        flip = False
        for prev in tokens[max(0, i - 3):i]:
            if prev in ZH_DEGREE:
                weight *= ZH_DEGREE[prev]
            if prev in ZH_NEGATION:
                flip = not flip
        value = polarity * weight * (-0.5 if flip else 1.0)
        if value > 0:
            pos += value
        else:
            neg -= value
    total = pos - neg
    return float(np.tanh(total / 2.0)), pos, neg, negations


def _phrase_hits(low: str, phrases: Sequence[str]) -> float:
    return float(sum(1 for p in phrases if p and p in low))


def lexicon_features(
    texts: Sequence[str],
    language: str,
    *,
    negative_phrases: Sequence[str] = (),
    positive_phrases: Sequence[str] = (),
) -> npt.NDArray[np.float64]:
    """One row of :data:`LEXICON_FEATURES` per text."""
    negp = (*NEGATIVE_PHRASES[language], *(p.lower() for p in negative_phrases))
    posp = (*POSITIVE_PHRASES[language], *(p.lower() for p in positive_phrases))
    rows = []
    for text in texts:
        low = text.lower().replace("’", "'")
        if language == "en":
            s = _vader().polarity_scores(text)
            neg_words = len(re.findall(r"\b(?:no|not|never|don't|won't|can't|n't)\b", low))
            row = [s["compound"], s["pos"], s["neg"],
                   _phrase_hits(low, negp), _phrase_hits(low, posp),
                   1.0 if _QUESTION_EN.search(low) or low.rstrip().endswith("?") else 0.0,
                   float(neg_words)]
        else:
            score, p, n, negs = zh_lexicon_score(zh_tokens(text))
            row = [score, p, n, _phrase_hits(low, negp), _phrase_hits(low, posp),
                   1.0 if _QUESTION_ZH.search(text) else 0.0, float(negs)]
        rows.append(row)
    return np.asarray(rows, dtype=np.float64).reshape(len(texts), len(LEXICON_FEATURES[language]))
