"""The training config: ``[paths]``, ``[model]``, ``[lora]`` and ``[training]``.

Each settings section is declared once, as a pydantic model below (types, defaults and
ranges in one place), and validated from that declaration through
`util.settings.validate_section`; ``[lora]`` is the registered function
``spacy_bioreama.lora_config.v1`` (`make_lora_config`), resolved by spaCy's registry. A
bad key or value raises `TrainConfigError` naming the dotted setting
(``training.max_steps must be int, not 'many'``), with a "Did you mean" hint for typos.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator
from spacy import registry
from thinc.api import Config

from ..util import settings
from ..util.settings import SETTINGS_MODEL_CONFIG, SettingsError


class TrainConfigError(SettingsError):
    """The training config (or an override) is invalid: unknown key, bad value, unset path."""


# ------------------------------------------------------------------------- registry
@registry.misc("spacy_bioreama.lora_config.v1")
def make_lora_config(
    r: int = 16,
    alpha: float = 32,
    dropout: float = 0.05,
    target_modules: str | list[str] = "all-linear",
    bias: str = "none",
    use_rslora: bool = False,
    modules_to_save: list[str] | None = None,
):
    """A `peft.LoraConfig` for causal-LM LoRA.

    `target_modules`: "all-linear" (every linear layer except the output head) or a list
    of module-name suffixes (e.g. ["q_proj", "v_proj"]). `alpha` is LoRA's scaling
    numerator (scale = alpha / r, or alpha / sqrt(r) with `use_rslora`).
    """
    from peft import LoraConfig

    if r < 1:
        raise TrainConfigError(f"lora.r must be >= 1, not {r}")
    if not 0.0 <= dropout < 1.0:
        raise TrainConfigError(f"lora.dropout must be in [0, 1), not {dropout}")
    return LoraConfig(
        r=int(r),
        lora_alpha=alpha,
        lora_dropout=float(dropout),
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        bias=bias,
        use_rslora=bool(use_rslora),
        modules_to_save=list(modules_to_save) if modules_to_save else None,
        task_type="CAUSAL_LM",
    )


# ---------------------------------------------------------------------- settings
class PathSettings(BaseModel):
    """``[paths]``: the instruction JSONL files (and a variable for the base model)."""

    model_config = SETTINGS_MODEL_CONFIG

    train: str | None = None
    dev: str | None = None
    base_model: str | None = None  # optional variable for [model] base (7B config)


class ModelSettings(BaseModel):
    """``[model]``: the base model (a name `resolve_model` knows, or a path/hub id) and an
    optional adapter to continue training from."""

    model_config = SETTINGS_MODEL_CONFIG

    base: str = "default"
    adapter_init: str | None = None
    trust_remote_code: bool = False


class TrainingSettings(BaseModel):
    """``[training]``: schedule, batching (`training.data`), checkpoints (`training.rundir`),
    device and precision (`training.trainer`)."""

    model_config = SETTINGS_MODEL_CONFIG

    device: str = "auto"
    max_steps: int = 200  # <= 0: train `num_epochs` epochs instead
    num_epochs: float = 1.0
    learning_rate: float = Field(2e-4, gt=0)
    per_device_batch_size: int = Field(4, ge=1)
    per_device_eval_batch_size: int = Field(8, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(768, ge=8)
    warmup_ratio: float = Field(0.05, ge=0, lt=1)
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    eval_steps: int | None = Field(50, ge=0)  # 0 or null: no evaluation during training
    max_dev_examples: int | None = Field(200, ge=1)  # null: all
    save_steps: int = Field(25, ge=1)
    save_total_limit: int = Field(2, ge=1)
    logging_steps: int = Field(5, ge=1)
    seed: int = 0
    group_by_length: bool = True
    packing: bool = False
    qlora: bool = False
    bf16: bool | str = "auto"
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    progress_bar: bool = True

    @field_validator("bf16")
    @classmethod
    def _bf16_choice(cls, value: bool | str) -> bool | str:
        if value not in (True, False, "auto"):
            raise ValueError(f'must be true, false or "auto", not {value!r}')
        return value

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not (value in ("auto", "cpu") or value.startswith("cuda")):
            raise ValueError(f'must be "auto", "cpu" or "cuda[:N]", not {value!r}')
        return value

    @field_validator("lr_scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        from transformers.trainer_utils import SchedulerType

        schedulers = [s.value for s in SchedulerType]
        if value not in schedulers:
            raise ValueError(f"{value!r} unknown; use one of {schedulers}")
        return value

    @model_validator(mode="after")
    def _some_training(self) -> TrainingSettings:
        if not (self.max_steps > 0 or self.num_epochs > 0):
            raise ValueError("set training.max_steps > 0 (or num_epochs > 0)")
        return self


SECTIONS: dict[str, type[BaseModel]] = {
    "paths": PathSettings,
    "model": ModelSettings,
    "training": TrainingSettings,
}


@dataclass
class TrainConfig:
    """A loaded, validated training config."""

    path: Path
    config: Config  # interpolated, overrides applied
    paths: PathSettings
    model: ModelSettings
    training: TrainingSettings
    lora: Any  # peft.LoraConfig

    def to_str(self) -> str:
        """The config as text (what `training_meta.json` records)."""
        return self.config.to_str()

    def as_dict(self) -> dict[str, Any]:
        """JSON-normal nested dict of the whole config (for run.json / meta)."""
        return json.loads(json.dumps(dict(self.config), default=str))


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """`util.settings.parse_overrides` raising `TrainConfigError`:
    ``["--training.max_steps", "3"]`` → ``{"training.max_steps": 3}``."""
    return settings.parse_overrides(args, TrainConfigError)


def _resolve_lora(config: Config, path: Path) -> Any:
    if "lora" not in config:
        raise TrainConfigError(f"{path} has no [lora] section")
    try:
        lora = registry.resolve({"lora": config["lora"]}, validate=True)["lora"]
    except TrainConfigError:
        raise
    except Exception as err:
        raise TrainConfigError(f"Invalid [lora] section in {path}: {err}") from err
    if not hasattr(lora, "target_modules"):
        raise TrainConfigError(
            '[lora] must be a LoRA config (@misc = "spacy_bioreama.lora_config.v1")'
        )
    return lora


def load_train_config(
    config_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Read, override, interpolate and validate a training config (no model is loaded)."""
    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"Training config {str(path)!r} does not exist")
    overrides = dict(overrides or {})
    raw = Config().from_disk(path, interpolate=False)
    known = set().union(*(settings.section_keys(name, cls) for name, cls in SECTIONS.items()))
    settings.check_override_keys(raw, overrides, known, TrainConfigError)
    try:
        config = Config().from_disk(path, overrides=overrides, interpolate=True)
    except Exception as err:  # confection's ConfigValidationError and friends
        raise TrainConfigError(f"Could not load {path}: {err}") from err
    unknown = set(config) - set(SECTIONS) - {"lora"}
    if unknown:
        raise TrainConfigError(
            f"Unknown section(s) {sorted(unknown)} in {path}; "
            f"expected [paths], [model], [lora], [training]"
        )
    lora = _resolve_lora(config, path)
    sections = {
        name: settings.validate_section(name, cls, config.get(name, {}), TrainConfigError)
        for name, cls in SECTIONS.items()
    }
    return TrainConfig(path, config, lora=lora, **sections)  # type: ignore[arg-type]


__all__ = [
    "ModelSettings",
    "PathSettings",
    "TrainConfig",
    "TrainConfigError",
    "TrainingSettings",
    "load_train_config",
    "make_lora_config",
    "parse_overrides",
]
