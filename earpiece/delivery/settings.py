"""``[delivery]`` settings: how prompts reach the agent's desk phone and ear (whisper)."""

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
    whisper: bool = False  # speak each prompt to the agent only (ARI snoop whisper=out + RTP)
    whisper_command: str = "espeak-ng"  # text-to-speech program (espeak-ng command line)
    whisper_voice_en: str = "en"  # espeak-ng voice for English prompts
    whisper_voice_zh: str = "cmn"  # espeak-ng voice for Mandarin prompts
    whisper_wpm: int = 175  # speaking rate, words per minute
    whisper_max_s: float = 12.0  # longer speech is cut
    whisper_timeout_s: float = 5.0  # text-to-speech and each ARI request

    def __post_init__(self) -> None:
        if self.phone_max_chars < 16:
            raise ConfigError("must be >= 16", key="phone_max_chars")
        if self.phone_timeout_s <= 0:
            raise ConfigError("must be > 0", key="phone_timeout_s")
        if not 80 <= self.whisper_wpm <= 450:
            raise ConfigError("must be between 80 and 450", key="whisper_wpm")
        if self.whisper_max_s <= 0:
            raise ConfigError("must be > 0", key="whisper_max_s")
        if self.whisper_timeout_s <= 0:
            raise ConfigError("must be > 0", key="whisper_timeout_s")
        if not self.whisper_command:
            raise ConfigError("must name a program", key="whisper_command")
        if not self.phone_tech or ":" in self.phone_tech:
            raise ConfigError("must be a technology name such as pjsip", key="phone_tech")
