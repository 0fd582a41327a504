"""What a training run reports: `TrainResult` (returned by `train`, summarised in one
line) and the content of ``training_meta.json`` (config, data statistics, losses,
throughput, memory, versions), written next to the adapter."""

from __future__ import annotations

import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..util.resources import cpu_description, cpu_has_bf16
from .config import TrainConfig
from .data import DataStats
from .rundir import ADAPTER_NAME, timestamp
from .trainer import Precision


@dataclass
class TrainResult:
    """What `train` did. `meta` is the content of training_meta.json."""

    output_dir: Path
    adapter_dir: Path
    global_step: int
    resumed_from_step: int | None
    train_loss: float | None  # the last logged loss (its `logging_steps` steps only)
    dev_loss: float | None
    tokens_per_second: float
    peak_rss_bytes: int
    wall_time_s: float
    already_complete: bool = False
    train_loss_mean: float | None = None  # over every step of the run
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        """The one-line report printed at the end of training."""
        dev = f"{self.dev_loss:.4f}" if self.dev_loss is not None else "n/a"
        loss = f"{self.train_loss:.4f}" if self.train_loss is not None else "n/a"
        if self.train_loss_mean is not None:
            loss = f"{loss} (last steps; mean {self.train_loss_mean:.4f})"
        resumed = (
            f" (resumed from step {self.resumed_from_step})"
            if self.resumed_from_step is not None
            else ""
        )
        return (
            f"Trained {self.global_step} steps{resumed}: train loss {loss}, dev loss {dev}, "
            f"{self.tokens_per_second:.0f} tokens/s, peak RSS "
            f"{self.peak_rss_bytes / 2**30:.2f} GiB, wall {self.wall_time_s:.0f} s "
            f"-> {self.adapter_dir}"
        )


def result_from_meta(output_dir: Path, meta: Mapping[str, Any], wall: float) -> TrainResult:
    """The result of a run that had already finished, from its training_meta.json."""
    return TrainResult(
        output_dir=output_dir,
        adapter_dir=output_dir / ADAPTER_NAME,
        global_step=int(meta.get("global_step", 0)),
        resumed_from_step=meta.get("resumed_from_step"),
        train_loss=meta.get("train_loss"),
        train_loss_mean=meta.get("train_loss_mean"),
        dev_loss=meta.get("dev_loss"),
        tokens_per_second=float(meta.get("tokens_per_second", 0.0)),
        peak_rss_bytes=int(meta.get("peak_rss_bytes", 0)),
        wall_time_s=wall,
        already_complete=True,
        meta=dict(meta),
    )


@dataclass
class RunTiming:
    """Measurements of this run (this process's share after a resume)."""

    train_seconds: float  # inside train(), evaluations included
    eval_seconds: float  # all evaluations, the final dev loss included
    eval_in_train_seconds: float
    steps_run: int
    tokens: int  # non-padding tokens trained this run
    cuda_peak: int | None

    @property
    def tokens_per_second(self) -> float:
        """Throughput of training proper: evaluation inside train() is not counted."""
        step_seconds = max(self.train_seconds - self.eval_in_train_seconds, 0.0)
        return self.tokens / step_seconds if step_seconds > 0 else 0.0


def measure(
    trainer: Any, log_cb: Any, precision: Precision, train_seconds: float, eval_in_train: float
) -> RunTiming:
    """Steps, tokens and seconds of this run from the trainer state and the log callback
    (call after the final dev loss: its evaluation counts in `eval_seconds`)."""
    import torch

    state = trainer.state
    return RunTiming(
        train_seconds=train_seconds,
        eval_seconds=log_cb.eval_total,
        eval_in_train_seconds=eval_in_train,
        steps_run=state.global_step - log_cb.start_step,
        tokens=int(state.num_input_tokens_seen or 0) - log_cb.start_tokens,
        cuda_peak=(int(torch.cuda.max_memory_allocated()) if precision.device == "cuda" else None),
    )


def _versions() -> dict[str, str]:
    import accelerate
    import peft
    import spacy
    import torch
    import transformers

    from .. import __version__ as package_version

    return {
        "spacy_bioreama": package_version,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "accelerate": accelerate.__version__,
        "spacy": spacy.__version__,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def training_meta(
    cfg: TrainConfig,
    source: Any,
    result: TrainResult,
    data: tuple[DataStats, DataStats | None],
    precision: Precision,
    args: Any,
    timing: RunTiming,
) -> dict[str, Any]:
    """The content of training_meta.json: config, data (train, dev), losses, speed,
    memory and versions. `args` are the run's `TrainingArguments`."""
    t = cfg.training
    train_stats, dev_stats = data
    steps_run = timing.steps_run
    step_seconds = timing.train_seconds - timing.eval_in_train_seconds
    return {
        "base_model": str(cfg.model.base),
        "base_model_path": str(source),
        "adapter_init": cfg.model.adapter_init,
        "config": cfg.as_dict(),
        "config_str": cfg.to_str(),
        "config_file": str(cfg.path),
        "global_step": result.global_step,
        "max_steps": int(args.max_steps),
        "resumed_from_step": result.resumed_from_step,
        "steps_this_run": steps_run,
        "train_loss": result.train_loss,
        "train_loss_mean": result.train_loss_mean,
        "dev_loss": result.dev_loss,
        "data": {
            "train": asdict(train_stats),
            "dev": asdict(dev_stats) if dev_stats is not None else None,
        },
        "effective_batch_size": t.per_device_batch_size
        * t.gradient_accumulation_steps
        * max(1, int(args.world_size)),
        "world_size": int(args.world_size),
        "device": precision.device,
        "precision": precision.name,
        "cpu_bf16": cpu_has_bf16(),
        "cpu": cpu_description(),
        "torch_threads": _torch_threads(),
        "qlora": t.qlora,
        "train_runtime_s": round(timing.train_seconds, 3),
        "eval_runtime_s": round(timing.eval_seconds, 3),
        "eval_in_train_runtime_s": round(timing.eval_in_train_seconds, 3),
        "wall_time_s": round(result.wall_time_s, 3),
        "tokens_trained_this_run": timing.tokens,
        "tokens_per_second": round(result.tokens_per_second, 2),
        "seconds_per_step": round(step_seconds / steps_run, 4) if steps_run else None,
        "peak_rss_bytes": result.peak_rss_bytes,
        "peak_cuda_bytes": timing.cuda_peak,
        "finished": timestamp(),
        "versions": _versions(),
    }


__all__ = ["RunTiming", "TrainResult", "measure", "result_from_meta", "training_meta"]
