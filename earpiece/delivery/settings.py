"""``[delivery]`` settings: how prompts reach the agent's desk phone."""

from __future__ import annotations

from dataclasses import dataclass

from earpiece.errors import ConfigError


@dataclass(frozen=True)
class DeliverySettings:
    phone: bool = True  # AMI MessageSend of each prompt to the agent leg's endpoint
    phone_tech: str = "pjsip"  # MessageSend technology: To = <phone_tech>:<endpoint>
    phone_from: str = ""  # e.g. '"Earpiece" <sip:earpiece@pbx>'; "": the PBX's default
    phone_max_chars: int = 120  # the text is cut at a word to fit a phone screen
    phone_json: bool = False  # send application/json (prompt, kind, reason) instead of text
    phone_timeout_s: float = 3.0  # the PBX's answer to MessageSend

    def __post_init__(self) -> None:
        if self.phone_max_chars < 16:
            raise ConfigError("must be >= 16", key="phone_max_chars")
        if self.phone_timeout_s <= 0:
            raise ConfigError("must be > 0", key="phone_timeout_s")
        if not self.phone_tech or ":" in self.phone_tech:
            raise ConfigError("must be a technology name such as pjsip", key="phone_tech")
