"""``[strategy]`` settings: the campaign file and the per-call prompt throttle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from earpiece.errors import ConfigError


@dataclass(frozen=True)
class StrategySettings:
    enabled: bool = True
    #: The default campaign (relative paths: to the working directory). A call tagged
    #: ``campaign=<name>`` uses ``<campaign_dir>/<name>.toml`` when that file exists.
    campaign: Path | None = Path("config/campaigns/example.toml")
    campaign_dir: Path | None = None  # None: the default campaign's directory
    history_csv: Path | None = None  # past outcomes ``at,slot,product,accepted`` (optional)
    min_interval_s: float = 10.0  # at most one prompt per call this often ...
    min_gap_s: float = 2.0  # ... unless the emotion state changed, but never closer than this
    repeat_after_s: float = 0.0  # an identical prompt again after this long (0: never)

    def __post_init__(self) -> None:
        if self.min_interval_s < 0:
            raise ConfigError("must be >= 0", key="min_interval_s")
        if not 0 <= self.min_gap_s <= self.min_interval_s:
            raise ConfigError("must be between 0 and min_interval_s", key="min_gap_s")
        if self.repeat_after_s < 0:
            raise ConfigError("must be >= 0", key="repeat_after_s")
