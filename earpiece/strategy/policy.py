"""The prompt policy: the customer's emotion x the call's slot -> the agent's next move.

==========  ===========================================================================
state       prompt
==========  ===========================================================================
positive    ``recommend`` the best qualifying product of the slot (rule ``positive_recommend``)
neutral     ``answer`` the customer's question when the utterance matches a campaign answer
            (rule ``neutral_answer``, with the slot's product named when one qualifies),
            else ``introduce`` the slot's product's details (``neutral_introduce``)
negative    ``soothe`` and wrap up: a soothing line and a closing line (``negative_soothe``)
==========  ===========================================================================

When no product qualifies in the slot (cold start, or every product under the threshold) a
positive or neutral customer gets ``discover`` (find out their needs; rules
``positive_no_product`` / ``neutral_no_product``): a product under the threshold is never
named. Every :class:`Prompt` carries its :class:`Reason`. Facts, talking points and lines
rotate per call so that consecutive prompts differ; :meth:`Policy.end_call` forgets a call.

Input: :class:`~earpiece.events.EmotionScored` or :class:`~earpiece.events.EmotionChanged` of
the customer (the agent's emotion gives no prompt).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from earpiece.events import EmotionChanged, EmotionScored, PromptReady
from earpiece.strategy.campaign import Campaign
from earpiece.strategy.recommender import Choice, Recommender
from earpiece.strategy.slots import Slot

KINDS = ("recommend", "introduce", "answer", "discover", "soothe")


@dataclass(frozen=True)
class Reason:
    """Why a prompt was given."""

    emotion: str  # positive, neutral, negative
    index: float  # the customer's per-call emotion index
    slot: str
    rule: str  # the policy rule that fired
    product: str | None = None
    estimate: float | None = None  # posterior mean success rate of product in slot
    lower: float | None = None  # posterior lower bound, compared with the threshold
    evidence: float = 0.0  # decayed outcomes behind the estimate
    count: int = 0  # outcomes in the window
    threshold: float = 0.0
    choice: str = ""  # how the recommender chose: best_lower_bound, thompson, ...
    question: str | None = None  # id of the matched campaign answer

    def summary(self) -> str:
        head = f"{self.emotion} ({self.index:+.2f}) in {self.slot}: {self.rule}"
        if self.product is None or self.estimate is None or self.lower is None:
            return head
        return (f"{head}; {self.product} success {self.estimate:.0%} (lower bound "
                f"{self.lower:.0%} >= {self.threshold:.0%}, {self.count} outcomes)")


@dataclass(frozen=True)
class Prompt:
    call_id: str
    kind: str
    text: str
    language: str
    slot: str
    reason: Reason
    at: float
    product: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str]:
        """What makes two prompts the same (for de-duplication)."""
        return self.kind, self.product, self.text

    def event(self) -> PromptReady:
        reason: dict[str, Any] = asdict(self.reason)
        return PromptReady(call_id=self.call_id, at=self.at, kind=self.kind, text=self.text,
                           language=self.language, slot=self.slot, product=self.product,
                           rule=self.reason.rule, reason=reason)


class Policy:
    def __init__(self, campaign: Campaign, recommender: Recommender) -> None:
        self.campaign = campaign
        self.recommender = recommender
        self._turns: dict[str, defaultdict[str, int]] = {}

    def end_call(self, call_id: str) -> None:
        self._turns.pop(call_id, None)

    def _pick(self, call_id: str, what: str, options: tuple[str, ...]) -> str:
        turns = self._turns.setdefault(call_id, defaultdict(int))
        n = turns[what]
        turns[what] = n + 1
        return options[n % len(options)]

    def decide(self, event: EmotionScored | EmotionChanged, slot: Slot | str, *,
               language: str | None = None) -> Prompt | None:
        """The prompt for this emotion event, or ``None`` (agent's emotion, unknown state)."""
        if event.party != "customer":
            return None
        if isinstance(event, EmotionChanged):
            state, text = event.new, ""
        else:
            state, text = event.state, event.text
        if state not in ("positive", "neutral", "negative"):
            return None
        key = slot.key if isinstance(slot, Slot) else slot
        lang = self.campaign.language(language)
        lines = self.campaign.lines[lang]
        threshold = self.recommender.settings.threshold
        base: dict[str, Any] = {"emotion": state, "index": event.index, "slot": key,
                                "threshold": threshold}
        cid = event.call_id

        def make(kind: str, body: str, rule: str, choice: Choice | None = None,
                 question: str | None = None) -> Prompt:
            extra: dict[str, Any] = {}
            if choice is not None:
                e = choice.estimate
                extra = {"product": e.product, "estimate": e.mean, "lower": e.lower,
                         "evidence": e.evidence, "count": e.count, "choice": choice.rule}
            reason = Reason(rule=rule, question=question, **base, **extra)
            return Prompt(call_id=cid, kind=kind, text=body, language=lang, slot=key,
                          reason=reason, at=event.at,
                          product=choice.product if choice else None)

        if state == "negative":
            body = (f"{self._pick(cid, 'soothe', lines.soothe)} "
                    f"{self._pick(cid, 'closing', lines.closing)}")
            return make("soothe", body, "negative_soothe")

        choice = self.recommender.recommend(key, event.at)
        answer = None
        if state == "neutral" and text:
            answer = next((a for a in self.campaign.answers if a.matches(text, lang)), None)
        fields = {"name": "", "fact": "", "point": "", "answer": ""}
        if choice is not None:
            pt = self.campaign.product(choice.product).text[lang]
            fields["name"] = pt.name
            fields["fact"] = self._pick(cid, f"fact:{choice.product}", pt.facts)
            fields["point"] = self._pick(cid, f"point:{choice.product}", pt.talking_points)
        if answer is not None:
            fields["answer"] = answer.text[lang]
            body = lines.answer.format(**fields)
            if choice is not None:
                body = f"{body} {lines.introduce.format(**fields)}"
            return make("answer", body, "neutral_answer", choice, question=answer.id)
        if choice is None:
            return make("discover", lines.discover.format(**fields), f"{state}_no_product")
        if state == "positive":
            return make("recommend", lines.recommend.format(**fields), "positive_recommend",
                        choice)
        return make("introduce", lines.introduce.format(**fields), "neutral_introduce", choice)
