"""QC phrase rules per campaign, from a TOML file (``[qc] phrases``; see config/qc/example.toml).

::

    default_campaign = "default"        # used when a call's campaign tag names no campaign

    [campaigns.default]
    parties = ["agent"]                 # whose speech the forbidden phrases / patterns apply to
    [campaigns.default.forbidden]
    en = ["guaranteed returns"]
    zh = ["稳赚不赔"]
    [campaigns.default.required]        # flagged missing at call end if the agent never said it
    en = ["this call may be recorded"]
    zh = ["本次通话可能会被录音"]
    [[campaigns.default.patterns]]      # regular expressions on the folded text (qc_text)
    name = "guaranteed_rate"
    language = "en"                     # optional, carried to the flags
    regex = 'guarantee[ds]? .{0,30}\\d+ ?%'

Forbidden phrases and patterns of every language are matched on every final transcript (calls
switch language); required phrases are checked in the languages the agent's transcripts were
in (else the customer's; ``zh...`` -> zh, ``en...`` -> en; both when none is known).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from earpiece.crm.qc_text import Pattern, Phrase, PhraseMatcher
from earpiece.errors import ConfigError

LANGUAGES = ("en", "zh")
PARTIES = ("agent", "customer")


def language_of(tag: str) -> str | None:
    """The rules language of a transcript's language tag (``None``: not one of them)."""
    low = tag.lower()
    if low.startswith(("zh", "cmn", "yue")):
        return "zh"
    if low.startswith("en"):
        return "en"
    return None


@dataclass(frozen=True)
class CampaignRules:
    name: str
    matcher: PhraseMatcher = field(default_factory=PhraseMatcher)  # forbidden + patterns
    required: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # language -> phrases
    required_matcher: PhraseMatcher = field(default_factory=PhraseMatcher)
    parties: frozenset[str] = frozenset({"agent"})

    def required_for(self, languages: Iterable[str]) -> list[tuple[str, str]]:
        """(language, phrase) of the required phrases in ``languages`` (all when empty)."""
        langs = set(languages) or set(LANGUAGES)
        return [(lang, p) for lang in LANGUAGES if lang in langs
                for p in self.required.get(lang, ())]


@dataclass(frozen=True)
class QcRules:
    campaigns: Mapping[str, CampaignRules]
    default: str = "default"

    def campaign(self, name: str | None) -> CampaignRules:
        """The rules of campaign ``name``, else of the default campaign (else none)."""
        if name and name in self.campaigns:
            return self.campaigns[name]
        return self.campaigns.get(self.default) or CampaignRules(self.default)


def empty_rules() -> QcRules:
    return QcRules(campaigns={})


def load_rules(path: str | Path) -> QcRules:
    """Read and check a rules file; errors are :class:`ConfigError` naming file and key."""
    file = str(path)
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("QC phrase file not found", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", file=file) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=file) from None
    return parse_rules(data, file=file)


def parse_rules(data: Mapping[str, Any], *, file: str = "<rules>") -> QcRules:
    _known(data, {"default_campaign", "campaigns"}, file, "")
    default = data.get("default_campaign", "default")
    if not isinstance(default, str) or not default:
        raise ConfigError("expected a campaign name", file=file, key="default_campaign")
    campaigns = data.get("campaigns", {})
    if not isinstance(campaigns, dict):
        raise ConfigError("expected a table of campaigns", file=file, key="campaigns")
    out = {name: _campaign(name, table, file) for name, table in campaigns.items()}
    return QcRules(campaigns=out, default=default)


def _known(table: Mapping[str, Any], known: set[str], file: str, prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"unknown key (known: {', '.join(sorted(known))})", file=file,
                              key=prefix + key)


def _strings(value: Any, file: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("expected a list of strings", file=file, key=key)
    return tuple(value)


def _by_language(table: Any, file: str, key: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(table, dict):
        raise ConfigError("expected a table of en / zh lists", file=file, key=key)
    _known(table, set(LANGUAGES), file, key + ".")
    return {lang: _strings(v, file, f"{key}.{lang}") for lang, v in table.items()}


def _campaign(name: str, table: Any, file: str) -> CampaignRules:
    key = f"campaigns.{name}"
    if not isinstance(table, dict):
        raise ConfigError("expected a table", file=file, key=key)
    _known(table, {"parties", "forbidden", "required", "patterns"}, file, key + ".")
    parties = _strings(table.get("parties", ["agent"]), file, key + ".parties")
    for party in parties:
        if party not in PARTIES:
            raise ConfigError(f"unknown party {party!r} (known: agent, customer)", file=file,
                              key=key + ".parties")
    forbidden = _by_language(table.get("forbidden", {}), file, key + ".forbidden")
    required = _by_language(table.get("required", {}), file, key + ".required")
    patterns = table.get("patterns", [])
    if not isinstance(patterns, list):
        raise ConfigError("expected an array of tables", file=file, key=key + ".patterns")
    compiled = [_pattern(p, file, f"{key}.patterns[{i}]") for i, p in enumerate(patterns)]
    phrases = [Phrase(p, "forbidden", lang) for lang, ps in forbidden.items() for p in ps]
    needed = [Phrase(p, "required", lang) for lang, ps in required.items() for p in ps]
    return CampaignRules(name=name, matcher=PhraseMatcher(phrases, compiled), required=required,
                         required_matcher=PhraseMatcher(needed), parties=frozenset(parties))


def _pattern(item: Any, file: str, key: str) -> Pattern:
    if not isinstance(item, dict):
        raise ConfigError("expected a table with name and regex", file=file, key=key)
    _known(item, {"name", "regex", "language"}, file, key + ".")
    name, regex, language = item.get("name"), item.get("regex"), item.get("language", "")
    if not isinstance(name, str) or not name:
        raise ConfigError("expected a name", file=file, key=key + ".name")
    if not isinstance(regex, str) or not regex:
        raise ConfigError("expected a regular expression", file=file, key=key + ".regex")
    if language not in ("", *LANGUAGES):
        raise ConfigError("expected en or zh", file=file, key=key + ".language")
    try:
        compiled = re.compile(regex)
    except re.error as exc:
        raise ConfigError(f"invalid regular expression: {exc}", file=file,
                          key=key + ".regex") from None
    return Pattern(name=name, regex=compiled, language=language)
