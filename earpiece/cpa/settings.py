"""Settings of call-progress analysis and answering-machine detection (``[cpa]``)."""

from __future__ import annotations

from dataclasses import dataclass

from earpiece.cpa.profiles import AMD_PROFILES, DEFAULT_PROFILE, AmdProfile
from earpiece.errors import ConfigError

#: The detector refuses an analysis window shorter than its human-silence wait
#: (``CpaOptions.human_silence_s``; a test keeps the two equal).
MIN_AMD_MAX_S = 0.5


@dataclass(frozen=True)
class CpaSettings:
    enabled: bool = True
    tone_plan: str = "us"
    amd_max_s: float = 4.0
    # Operating point of the answering-machine detector: a named profile of
    # earpiece.cpa.profiles.AMD_PROFILES ("fast", "balanced", "accurate"; see
    # docs/benchmarks/amd.md), each of its three numbers optionally overridden below.
    amd_profile: str = DEFAULT_PROFILE
    machine_p: float | None = None  # "machine" once P(machine) >= this, in (0, 1)
    human_p: float | None = None  # "human" once P(machine) <= this, below machine_p
    min_silence_s: float | None = None  # ...and this much silence followed the greeting
    # The customer's recognised words (ASR transcripts) count as evidence; false: only
    # machine phrases ("leave a message") still decide, other words are ignored.
    words: bool = True
    # Greeting snapshots (earpiece.cpa.words): while undecided after answer, the greeting
    # is transcribed words_first_s after its first speech, then every words_step_s, at most
    # words_max_snapshots times; 0 snapshots = only the ASR service's own partials count.
    # words_model "auto": tiny.en for an English campaign ([asr] language), else [asr] model;
    # or "base", "tiny.en", a CTranslate2 directory.
    words_model: str = "auto"
    words_first_s: float = 0.7
    words_step_s: float = 0.3
    words_max_snapshots: int = 3
    silence_timeout_s: float = 4.5  # no speech at all this long after answer -> "silence"

    def __post_init__(self) -> None:
        if self.amd_profile not in AMD_PROFILES:
            raise ConfigError(f"unknown profile {self.amd_profile!r} (known: "
                              f"{', '.join(AMD_PROFILES)})", key="amd_profile")
        for name, p in (("machine_p", self.machine_p), ("human_p", self.human_p)):
            if p is not None and not 0.0 < p < 1.0:
                raise ConfigError(f"must lie strictly between 0 and 1, got {p!r}", key=name)
        if not self.amd_max_s >= MIN_AMD_MAX_S:
            raise ConfigError(f"must be at least {MIN_AMD_MAX_S} s, got {self.amd_max_s!r}",
                              key="amd_max_s")
        if not self.silence_timeout_s > 0.0:
            raise ConfigError(f"must be a positive number of seconds, got "
                              f"{self.silence_timeout_s!r}", key="silence_timeout_s")
        if not self.words_first_s >= 0.0:
            raise ConfigError(f"must not be negative, got {self.words_first_s!r}",
                              key="words_first_s")
        if not self.words_step_s > 0.0:
            raise ConfigError(f"must be a positive number of seconds, got "
                              f"{self.words_step_s!r}", key="words_step_s")
        if not 0 <= self.words_max_snapshots <= 20:
            raise ConfigError(f"must be between 0 and 20, got {self.words_max_snapshots!r}",
                              key="words_max_snapshots")
        if not self.words_model.strip():
            raise ConfigError("must name a model (auto, base, tiny.en or a CTranslate2 "
                              "directory)", key="words_model")
        if self.min_silence_s is not None and not self.min_silence_s >= 0.0:
            raise ConfigError(f"must not be negative, got {self.min_silence_s!r}",
                              key="min_silence_s")
        point = self.operating_point()
        if point.human_p >= point.machine_p:
            profile = f" (profile {self.amd_profile!r})"
            raise ConfigError(
                f"human_p {point.human_p}{'' if self.human_p is not None else profile} must be "
                f"below machine_p {point.machine_p}"
                f"{'' if self.machine_p is not None else profile}",
                key="human_p" if self.human_p is not None else "machine_p")

    def operating_point(self) -> AmdProfile:
        """The profile ``amd_profile`` with the explicit overrides applied."""
        base = AMD_PROFILES[self.amd_profile]
        return AmdProfile(
            machine_p=base.machine_p if self.machine_p is None else self.machine_p,
            human_p=base.human_p if self.human_p is None else self.human_p,
            min_silence_s=base.min_silence_s if self.min_silence_s is None
            else self.min_silence_s)
