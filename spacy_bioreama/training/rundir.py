"""The run directory: what it holds, whether it matches this run, where to resume.

Output directory and resume after SIGKILL
-----------------------------------------
::

    DIR/run.json            what this directory is being trained with (config + data sha256)
    DIR/checkpoints/checkpoint-N/   Trainer checkpoints (adapter, optimiser, scheduler, RNG,
                                    trainer_state.json), every `save_steps`, last
                                    `save_total_limit` (2) kept
    DIR/train_log.jsonl     one JSON line per logging step / evaluation / start / resume / end
    DIR/adapter/            the final adapter (written last, atomically)
    DIR/training_meta.json  copy of DIR/adapter/training_meta.json

Running the same command again after an interruption (SIGKILL included) resumes from the
newest COMPLETE checkpoint. `Trainer` writes a checkpoint's files in a fixed order and
``trainer_state.json`` last, so a checkpoint is complete when its ``trainer_state.json``
parses and names the checkpoint's step, its adapter config parses, its
``adapter_model.safetensors`` header reads, and optimiser and scheduler states are present;
anything else (a checkpoint killed mid-write, or one half-deleted by checkpoint rotation)
is removed before resuming. The log is cut back to the resumed step (lines about training
that was lost are dropped) and a ``{"event": "resume"}`` line is written. The final adapter
is saved into a temporary directory inside DIR and moved into place with `os.replace`, and
``run.json``/``training_meta.json`` are written through temporary files too, so a kill at
any moment leaves either no adapter or a complete one. Running the command once more after
it finished does nothing (it reports the finished run).

A directory trained with a different configuration or different data (``run.json`` differs;
the differing keys are named) is refused with `OutputDirConflict`: continuing a run with a
changed schedule, model or data would silently produce an adapter that matches neither
config. Pass ``force=True`` (CLI ``--force``) to delete that run's artefacts (run.json,
checkpoints, log, adapter, meta — nothing else) and start afresh, or use another directory.
A non-empty directory without ``run.json`` is refused likewise.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..util.files import atomic_write_json, atomic_write_text
from .config import TrainConfig
from .data import DataStats

RUN_STATE_NAME = "run.json"
CHECKPOINTS_NAME = "checkpoints"
TRAIN_LOG_NAME = "train_log.jsonl"
ADAPTER_NAME = "adapter"
META_NAME = "training_meta.json"
CHECKPOINT_PREFIX = "checkpoint-"
# What `force` may delete: only the artefacts a run writes, never other files.
RUN_ARTEFACTS = (RUN_STATE_NAME, CHECKPOINTS_NAME, TRAIN_LOG_NAME, ADAPTER_NAME, META_NAME)


class OutputDirConflict(RuntimeError):
    """The output directory holds a run with a different config/data (use `force`)."""


def timestamp() -> str:
    """Local time as ISO 8601 with the UTC offset (for run.json, the log and the meta)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ---------------------------------------------------------------------- checkpoints
def checkpoint_step(path: Path) -> int | None:
    """N of a ``checkpoint-N`` directory name, else None."""
    name = path.name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    tail = name[len(CHECKPOINT_PREFIX) :]
    return int(tail) if tail.isdigit() else None


def checkpoint_problem(path: Path) -> str | None:
    """Why checkpoint `path` cannot be resumed from (None when it is complete)."""
    step = checkpoint_step(path)
    if step is None or not path.is_dir():
        return "not a checkpoint directory"
    state_file = path / "trainer_state.json"
    if not state_file.is_file():
        return "no trainer_state.json (written last: the checkpoint was interrupted)"
    try:
        state = json.loads(state_file.read_text(encoding="utf8"))
    except (OSError, ValueError):
        return "trainer_state.json is not valid JSON"
    if state.get("global_step") != step:
        return f"trainer_state.json says global_step={state.get('global_step')}, not {step}"
    try:
        json.loads((path / "adapter_config.json").read_text(encoding="utf8"))
    except (OSError, ValueError):
        return "adapter_config.json missing or invalid"
    weights = path / "adapter_model.safetensors"
    try:
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as f:
            if not list(f.keys()):
                return "adapter_model.safetensors holds no tensors"
    except Exception:
        return "adapter_model.safetensors missing or unreadable"
    for prefix in ("optimizer", "scheduler"):
        if not any(p.stat().st_size > 0 for p in path.glob(f"{prefix}*")):
            return f"no {prefix} state"
    return None


def find_resume_checkpoint(
    checkpoints_dir: Path, *, remove_incomplete: bool = True
) -> tuple[Path | None, list[tuple[Path, str]]]:
    """The newest complete checkpoint, and the incomplete ones (removed when asked)."""
    if not checkpoints_dir.is_dir():
        return None, []
    candidates = sorted(
        (p for p in checkpoints_dir.iterdir() if checkpoint_step(p) is not None),
        key=lambda p: checkpoint_step(p) or 0,
        reverse=True,
    )
    best: Path | None = None
    bad: list[tuple[Path, str]] = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            if best is None:
                best = path
        else:
            bad.append((path, problem))
    if remove_incomplete:
        for path, _ in bad:
            shutil.rmtree(path, ignore_errors=True)
    return best, bad


def checkpoint_is_final(path: Path) -> bool:
    """Whether a (complete) checkpoint was saved at the run's last step."""
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf8"))
    return int(state.get("max_steps") or 0) > 0 and state["global_step"] >= state["max_steps"]


# ---------------------------------------------------------------- the run directory
def run_fingerprint(cfg: TrainConfig, data: Mapping[str, DataStats | None]) -> dict[str, Any]:
    """What run.json records: the config (data paths aside) and the data files' sha256."""
    config = cfg.as_dict()
    # The data files are identified by content, not by how their path is spelled.
    for key in ("train", "dev"):
        config.get("paths", {}).pop(key, None)
    return {
        "config": config,
        "data_sha256": {k: (v.sha256 if v is not None else None) for k, v in data.items()},
    }


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


@dataclass
class RunPlan:
    """What to do in an output directory: resume from a checkpoint, start, or nothing."""

    resume_from: Path | None
    already_complete: bool
    removed: list[tuple[Path, str]]


def _read_run_state(state_path: Path) -> dict[str, Any] | None:
    if not state_path.is_file():
        return None
    try:
        return json.loads(state_path.read_text(encoding="utf8"))
    except ValueError:
        return {"unreadable": True}


def _remove_artefacts(output_dir: Path) -> None:
    for name in RUN_ARTEFACTS:
        target = output_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def _check_same_run(output_dir: Path, previous: Mapping[str, Any], fingerprint: Any) -> None:
    expected = json.loads(json.dumps(fingerprint, default=str))
    prev = {k: previous.get(k) for k in ("config", "data_sha256")}
    if prev != expected:
        diff = _diff_keys(prev, expected)
        shown = ", ".join(diff[:10]) + (" ..." if len(diff) > 10 else "")
        raise OutputDirConflict(
            f"{str(output_dir)!r} holds a run with a different config or data "
            f"(differs: {shown}). Use another output directory, or force=True "
            "(CLI --force) to delete that run's checkpoints/adapter and start afresh"
        )


def prepare_output_dir(
    output_dir: Path, fingerprint: Mapping[str, Any], *, force: bool, is_main: bool = True
) -> RunPlan:
    """Check `output_dir` against this run; clean up and decide fresh / resume / done.

    Only the main process (`is_main`) changes anything on disk.
    """
    state_path = output_dir / RUN_STATE_NAME
    existing = [p for p in output_dir.iterdir()] if output_dir.is_dir() else []
    previous = _read_run_state(state_path)
    if force and is_main:
        _remove_artefacts(output_dir)
        previous = None
    elif previous is None and existing and not force:
        names = sorted(p.name for p in existing)[:8]
        raise OutputDirConflict(
            f"Output directory {str(output_dir)!r} is not empty ({', '.join(names)}) and holds "
            f"no {RUN_STATE_NAME} of a training run; use an empty/new directory, or force=True "
            "(CLI --force) to train there anyway"
        )
    elif previous is not None:
        _check_same_run(output_dir, previous, fingerprint)
    adapter = output_dir / ADAPTER_NAME
    if previous is not None and (adapter / META_NAME).is_file():
        return RunPlan(None, True, [])
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if previous is None:
            atomic_write_json(
                state_path,
                {**json.loads(json.dumps(fingerprint, default=str)), "created": timestamp()},
            )
    resume, removed = find_resume_checkpoint(
        output_dir / CHECKPOINTS_NAME, remove_incomplete=is_main
    )
    if is_main:
        for stale in output_dir.glob(f".{ADAPTER_NAME}.tmp*"):  # a killed final save
            shutil.rmtree(stale, ignore_errors=True)
        cut_log(output_dir / TRAIN_LOG_NAME, checkpoint_step(resume) if resume else None)
    return RunPlan(resume, False, removed)


def cut_log(path: Path, step: int | None) -> None:
    """Keep the log lines up to the resumed step (all lost steps and torn lines dropped)."""
    if not path.exists():
        return
    if step is None:
        path.unlink()
        return
    kept: list[str] = []
    for line in path.read_text(encoding="utf8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line torn by the kill
        if isinstance(record, dict) and int(record.get("step", 0) or 0) <= step:
            kept.append(json.dumps(record))
    atomic_write_text(path, "".join(k + "\n" for k in kept))


__all__ = [
    "ADAPTER_NAME",
    "CHECKPOINTS_NAME",
    "META_NAME",
    "RUN_STATE_NAME",
    "TRAIN_LOG_NAME",
    "OutputDirConflict",
    "RunPlan",
    "checkpoint_is_final",
    "checkpoint_problem",
    "checkpoint_step",
    "cut_log",
    "find_resume_checkpoint",
    "prepare_output_dir",
    "run_fingerprint",
    "timestamp",
]
