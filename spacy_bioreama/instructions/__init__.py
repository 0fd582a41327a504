"""Instruction datasets: the build config (`config`), the builder that asks each task
for its units (`build`), the length counters (`lengths`) and the statistics it reports
(`stats`). Sits on `tasks` (which renders every prompt and target) and below `training`
(which reads the JSON Lines it writes)."""

from .build import build_instructions, heldout_split
from .config import BuildSettings, SourceConfig, load_config, parse_config
from .lengths import (
    BackendLengthCounter,
    LengthCounter,
    TokenizerLengthCounter,
    make_length_counter,
)
from .stats import BuildReport, format_stats

__all__ = [
    "BackendLengthCounter",
    "BuildReport",
    "BuildSettings",
    "LengthCounter",
    "SourceConfig",
    "TokenizerLengthCounter",
    "build_instructions",
    "format_stats",
    "heldout_split",
    "load_config",
    "make_length_counter",
    "parse_config",
]
