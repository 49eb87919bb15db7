"""A campaign file (TOML): products, per-language prompt lines, common answers, slots, learning.

See ``config/campaigns/example.toml``. Tables:

* ``[campaign]``: ``name``, ``languages`` (e.g. ``["en", "zh"]``), ``default_language``;
* ``[recommender]``: ``threshold``, ``confidence``, ``prior = [a, b]``, ``window_days``,
  ``half_life_days`` (0 = no decay), ``explore``, ``cold_start``, ``seed``
  (:class:`~earpiece.strategy.recommender.RecommenderSettings`);
* ``[slots]``: :meth:`~earpiece.strategy.slots.SlotScheme.from_table`;
* ``[[products]]``: ``id`` and, per language, ``[products.text.<lang>]`` with ``name``,
  ``facts`` and ``talking_points``;
* ``[lines.<lang>]``: templates ``recommend`` / ``introduce`` / ``answer`` (placeholders
  ``{name}``, ``{fact}``, ``{point}``, ``{answer}``), ``discover`` (no product qualifies),
  and lists ``soothe`` and ``closing`` (negative: one of each);
* ``[[answers]]``: ``id``, ``keywords = {<lang> = [...]}``, ``text = {<lang> = "..."}``.

Every language in ``languages`` must be present in every product, every line table and every
answer; a template with an unknown placeholder is refused. Errors name the file and the key.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from earpiece.errors import ConfigError
from earpiece.strategy.recommender import DAY_S, RecommenderSettings
from earpiece.strategy.slots import SlotScheme

PLACEHOLDERS = {"name": "N", "fact": "F", "point": "P", "answer": "A"}


@dataclass(frozen=True)
class ProductText:
    name: str
    facts: tuple[str, ...]
    talking_points: tuple[str, ...]


@dataclass(frozen=True)
class Product:
    id: str
    text: Mapping[str, ProductText]


@dataclass(frozen=True)
class Lines:
    recommend: str
    introduce: str
    answer: str
    discover: str
    soothe: tuple[str, ...]
    closing: tuple[str, ...]


@dataclass(frozen=True)
class Answer:
    id: str
    keywords: Mapping[str, tuple[str, ...]]
    text: Mapping[str, str]

    def matches(self, utterance: str, language: str) -> bool:
        low = utterance.lower()
        return any(k.lower() in low for k in self.keywords.get(language, ()))


@dataclass(frozen=True)
class Campaign:
    name: str
    languages: tuple[str, ...]
    default_language: str
    products: tuple[Product, ...]
    lines: Mapping[str, Lines]
    answers: tuple[Answer, ...]
    slots: SlotScheme
    recommender: RecommenderSettings

    @property
    def product_ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self.products)

    def product(self, product_id: str) -> Product:
        for p in self.products:
            if p.id == product_id:
                return p
        raise KeyError(product_id)

    def language(self, wanted: str | None) -> str:
        """``wanted`` when the campaign has it (``zh-CN`` matches ``zh``), else the default."""
        if wanted:
            for lang in (wanted, wanted.split("-")[0].lower()):
                if lang in self.languages:
                    return lang
        return self.default_language


def load_campaign(path: str | Path) -> Campaign:
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=file) from None
    return parse_campaign(data, file=file)


def parse_campaign(data: Mapping[str, Any], *, file: str = "<campaign>") -> Campaign:
    def need(table: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in table:
            raise ConfigError("missing", file=file, key=f"{where}.{key}" if where else key)
        return table[key]

    head = data.get("campaign", {})
    languages = tuple(str(x) for x in need(head, "languages", "campaign"))
    if not languages:
        raise ConfigError("at least one language", file=file, key="campaign.languages")
    default = str(head.get("default_language", languages[0]))
    if default not in languages:
        raise ConfigError(f"{default!r} is not in languages", file=file,
                          key="campaign.default_language")

    products = []
    for i, raw in enumerate(need(data, "products", "")):
        where = f"products[{i}]"
        pid = str(need(raw, "id", where))
        texts = {}
        for lang in languages:
            t = need(need(raw, "text", where), lang, f"{where}.text")
            texts[lang] = ProductText(
                name=str(need(t, "name", f"{where}.text.{lang}")),
                facts=_strings(need(t, "facts", f"{where}.text.{lang}"), file,
                               f"{where}.text.{lang}.facts"),
                talking_points=_strings(need(t, "talking_points", f"{where}.text.{lang}"),
                                        file, f"{where}.text.{lang}.talking_points"))
        products.append(Product(id=pid, text=texts))
    ids = [p.id for p in products]
    if len(set(ids)) != len(ids) or not ids:
        raise ConfigError("product ids must be unique and at least one", file=file,
                          key="products")

    lines = {}
    for lang in languages:
        where = f"lines.{lang}"
        t = need(need(data, "lines", ""), lang, "lines")
        for key in ("recommend", "introduce", "answer", "discover"):
            _check_template(str(need(t, key, where)), file, f"{where}.{key}")
        lines[lang] = Lines(
            recommend=str(t["recommend"]), introduce=str(t["introduce"]),
            answer=str(t["answer"]), discover=str(t["discover"]),
            soothe=_strings(need(t, "soothe", where), file, f"{where}.soothe"),
            closing=_strings(need(t, "closing", where), file, f"{where}.closing"))

    answers = []
    for i, raw in enumerate(data.get("answers", [])):
        where = f"answers[{i}]"
        kw = need(raw, "keywords", where)
        text = need(raw, "text", where)
        for lang in languages:
            need(kw, lang, f"{where}.keywords")
            need(text, lang, f"{where}.text")
        answers.append(Answer(id=str(need(raw, "id", where)),
                              keywords={k: _strings(v, file, f"{where}.keywords.{k}")
                                        for k, v in kw.items()},
                              text={k: str(v) for k, v in text.items()}))

    return Campaign(name=str(head.get("name", Path(file).stem)), languages=languages,
                    default_language=default, products=tuple(products), lines=lines,
                    answers=tuple(answers),
                    slots=SlotScheme.from_table(data.get("slots", {}), file=file),
                    recommender=_recommender(data.get("recommender", {}), file))


def _strings(value: Any, file: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise ConfigError("must be a non-empty list of strings", file=file, key=key)
    return tuple(value)


def _check_template(template: str, file: str, key: str) -> None:
    try:
        template.format(**PLACEHOLDERS)
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(f"bad placeholder {exc}; use {sorted(PLACEHOLDERS)}", file=file,
                          key=key) from None


def _recommender(table: Mapping[str, Any], file: str) -> RecommenderSettings:
    known = {"threshold", "confidence", "prior", "window_days", "half_life_days", "explore",
             "cold_start", "seed"}
    extra = set(table) - known
    if extra:
        raise ConfigError(f"unknown keys {sorted(extra)}", file=file, key="recommender")
    kwargs: dict[str, Any] = {}
    try:
        for key in ("threshold", "confidence"):
            if key in table:
                kwargs[key] = float(table[key])
        if "prior" in table:
            kwargs["prior_a"], kwargs["prior_b"] = (float(x) for x in table["prior"])
        if "window_days" in table:
            kwargs["window_s"] = float(table["window_days"]) * DAY_S
        if "half_life_days" in table:
            h = float(table["half_life_days"])
            kwargs["half_life_s"] = h * DAY_S if h > 0 else None
        if "explore" in table:
            kwargs["explore"] = bool(table["explore"])
        if "cold_start" in table:
            kwargs["cold_start"] = str(table["cold_start"])
        if "seed" in table:
            kwargs["seed"] = int(table["seed"])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid value: {exc}", file=file, key="recommender") from None
    try:
        return RecommenderSettings(**kwargs)
    except ConfigError as exc:
        raise ConfigError(str(exc), file=file) from None
