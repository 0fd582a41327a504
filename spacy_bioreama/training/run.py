"""PEFT LoRA instruction tuning of a causal LM: `train(config, output_dir, overrides)`.

The `train` command (``python -m spacy_bioreama train CONFIG --output DIR [--section.key
value ...]``, also ``python -m spacy_bioreama.training ...``) fine-tunes a LoRA adapter on
the instruction JSONL files written by `build-instructions` and writes it to
``DIR/adapter/``, from where the `bio_relation_llm` component loads it (`adapter` setting).

Why transformers' `Trainer` + PEFT and not TRL's `SFTTrainer`
--------------------------------------------------------------
The prompt a model is trained on must be byte-for-byte the prompt it sees at inference.
Inference renders prompts with `HFBackend.render`/`encode_prompt` (the tokenizer's chat
template, system message handling, special-token rules, the plain fallback format). SFTTrainer
has its own renderer (`apply_chat_template` over a "messages" column, its own completion-only
masking and truncation rules); using it would mean two renderers that must be kept identical
by hand, and it is one more dependency (TRL is not installed here). So examples are tokenised
here with `HFBackend.encode_prompt` itself, the answer is appended, and plain `Trainer` does
the rest (optimiser, schedule, accumulation, mixed precision, checkpoints, multi-GPU through
accelerate). A hand-written loop would have to re-implement all of that; there is no
measured reason to.

Examples
--------
Each JSONL record ``{"task", "instruction", "input", "output", ...}`` becomes::

    input_ids = encode_prompt(TaskExample(task, instruction, input).chat_prompt())
                + answer tokens + [eos]
    labels    = [-100] * len(prompt)  + answer tokens + [eos]

so the loss is on the answer (and its end-of-sequence token, which teaches the model to
stop) only. The model runs with ``use_cache = False`` in training: besides saving memory,
transformers only recognises packed rows (below) when no KV cache is created. The answer
tokens are those of ``render(prompt) + output`` after the prompt's tokens, i.e. the
tokenisation the model would produce after the assistant prefix (when a
tokenizer merges across that boundary, which ChatML/Llama templates do not, the answer is
tokenised on its own).

Too-long examples (prompt + answer + eos > ``training.max_length``) are DROPPED and counted
(printed, in the log and in ``training_meta.json``); a warning is printed when more than 5%
are dropped, and an error is raised when nothing is left. Truncation would teach wrong
things: cutting the answer trains the model to stop early (or, without eos, to produce
half a list); cutting the prompt from the left removes the instruction, a prompt shape
inference never shows; cutting the text part leaves answers that mention entities absent
from the text, i.e. trains hallucination, which grounding then has to throw away. The
instruction builder windows long documents so that examples fit; a drop is a diagnostic
that `max_length` and the windowing disagree.

Batching: ``group_by_length = true`` orders each epoch in mega-batches of similar length
(transformers' `get_length_grouped_indices`, the logic of its `"group_by_length"` train
sampling strategy — in transformers 5 that is ``TrainingArguments.train_sampling_strategy``,
there is no ``group_by_length`` flag any more), so little compute goes into padding.
``packing = true`` instead concatenates the examples of a batch into one row without padding
(`DataCollatorWithFlattening`: position ids restart at every example and transformers builds
a block-diagonal attention mask from them, for sdpa/eager and flash attention alike), so no
example sees another; packed and padded batches give the same loss (tested). The sampler is
seeded per (seed, epoch), so a resumed run replays exactly the batches the killed run would
have seen.

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

Devices and precision
---------------------
``training.device = "auto"`` trains on CUDA when available, else on the CPU.
``training.bf16 = "auto"``: bf16 mixed precision (base weights loaded in bf16) on a GPU that
supports it, fp16 mixed precision on older GPUs, fp32 on the CPU; ``true``/``false`` force it.
``training.qlora = true`` loads the base in 4 bits (NF4, double quantisation, bitsandbytes)
and applies `prepare_model_for_kbit_training`; it needs a CUDA GPU and `bitsandbytes`, and
raises a clear error otherwise.

Several GPUs: ``accelerate launch --num_processes 4 -m spacy_bioreama.training CONFIG
--output DIR`` (or ``accelerate launch -m spacy_bioreama train ...``) runs data-parallel
(DDP) training; `per_device_batch_size` is per GPU, so the effective batch is
``per_device_batch_size * gradient_accumulation_steps * n_gpus``. Only the main process
writes the output directory; the others wait for it where needed.

At the end a summary line gives steps, final logged train loss, dev loss, tokens/s
(non-padding tokens through forward+backward per second of training, evaluation time
excluded) and peak RSS (and peak CUDA memory on a GPU); the same numbers go to
``training_meta.json``.

Loss computation
----------------
The model's own loss projects every position onto the vocabulary, although only answer
positions carry labels. `LoraTrainer.compute_loss` instead runs the decoder, picks the
hidden states whose (shifted) label is trained, and applies the output head to those only:
the same value (tested, and checked once on the first batch of every run, in eval mode so
no RNG is consumed; on a mismatch or for models with logit transforms such as Gemma's
soft-capping the model's own loss is used), ~15-20% faster on the CPU and without the
full ``batch x length x vocabulary`` logits (-0.7 GiB RSS at batch 2 x 768 on SmolLM2).
Under DDP (a wrapped model) the model's own loss is used, so gradient synchronisation
goes through the wrapper as it must.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from spacy import registry
from thinc.api import Config

from ..tasks.base import TaskExample
from ..util.jsonl import iter_json_objects
from ..util.resources import peak_rss_bytes

RUN_STATE_NAME = "run.json"
CHECKPOINTS_NAME = "checkpoints"
TRAIN_LOG_NAME = "train_log.jsonl"
ADAPTER_NAME = "adapter"
META_NAME = "training_meta.json"
CHECKPOINT_PREFIX = "checkpoint-"
IGNORE_INDEX = -100
DROP_WARNING_FRACTION = 0.05
# What `force` may delete: only the artefacts a run writes, never other files.
RUN_ARTEFACTS = (RUN_STATE_NAME, CHECKPOINTS_NAME, TRAIN_LOG_NAME, ADAPTER_NAME, META_NAME)


# --------------------------------------------------------------------------- errors
class TrainConfigError(ValueError):
    """The training config (or an override) is invalid: unknown key, bad value, unset path."""


class TrainingDataError(ValueError):
    """An instruction JSONL file is malformed or has no usable examples."""


class OutputDirConflict(RuntimeError):
    """The output directory holds a run with a different config/data (use `force`)."""


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
@dataclass(frozen=True)
class PathSettings:
    train: str | None = None
    dev: str | None = None
    base_model: str | None = None  # optional variable for [model] base (7B config)


@dataclass(frozen=True)
class ModelSettings:
    base: str = "default"
    adapter_init: str | None = None
    trust_remote_code: bool = False


@dataclass(frozen=True)
class TrainingSettings:
    device: str = "auto"
    max_steps: int = 200
    num_epochs: float = 1.0
    learning_rate: float = 2e-4
    per_device_batch_size: int = 4
    per_device_eval_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_length: int = 768
    warmup_ratio: float = 0.05
    lr_scheduler: str = "cosine"
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    eval_steps: int = 50
    max_dev_examples: int | None = 200
    save_steps: int = 25
    save_total_limit: int = 2
    logging_steps: int = 5
    seed: int = 0
    group_by_length: bool = True
    packing: bool = False
    qlora: bool = False
    bf16: bool | str = "auto"
    gradient_checkpointing: bool = False
    dataloader_num_workers: int = 0
    progress_bar: bool = True


_SECTIONS: dict[str, type] = {
    "paths": PathSettings,
    "model": ModelSettings,
    "training": TrainingSettings,
}
# Allowed value types per field (bool is checked before int: bool is an int subclass).
_TYPES: dict[str, tuple[type, ...]] = {
    "paths.train": (str, type(None)),
    "paths.dev": (str, type(None)),
    "paths.base_model": (str, type(None)),
    "model.base": (str,),
    "model.adapter_init": (str, type(None)),
    "model.trust_remote_code": (bool,),
    "training.device": (str,),
    "training.max_steps": (int,),
    "training.num_epochs": (int, float),
    "training.learning_rate": (int, float),
    "training.per_device_batch_size": (int,),
    "training.per_device_eval_batch_size": (int,),
    "training.gradient_accumulation_steps": (int,),
    "training.max_length": (int,),
    "training.warmup_ratio": (int, float),
    "training.lr_scheduler": (str,),
    "training.weight_decay": (int, float),
    "training.max_grad_norm": (int, float),
    "training.optim": (str,),
    "training.eval_steps": (int, type(None)),
    "training.max_dev_examples": (int, type(None)),
    "training.save_steps": (int,),
    "training.save_total_limit": (int,),
    "training.logging_steps": (int,),
    "training.seed": (int,),
    "training.group_by_length": (bool,),
    "training.packing": (bool,),
    "training.qlora": (bool,),
    "training.bf16": (bool, str),
    "training.gradient_checkpointing": (bool,),
    "training.dataloader_num_workers": (int,),
    "training.progress_bar": (bool,),
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
        return self.config.to_str()

    def as_dict(self) -> dict[str, Any]:
        """JSON-normal nested dict of the whole config (for run.json / meta)."""
        return json.loads(json.dumps(dict(self.config), default=str))


def parse_overrides(args: Sequence[str]) -> dict[str, Any]:
    """spaCy-style CLI overrides: ``["--training.max_steps", "3"]`` → ``{"training.max_steps": 3}``.

    Values are parsed as JSON where possible (numbers, booleans, null, lists), else kept as
    strings; `SPACY_CONFIG_OVERRIDES` is honoured as in spaCy.
    """
    from spacy.cli._util import parse_config_overrides

    try:
        return parse_config_overrides(list(args))
    except SystemExit as err:  # wasabi's msg.fail exits; turn it into an exception
        raise TrainConfigError(
            f"Could not parse config overrides {list(args)!r}: use '--section.key value' "
            "(e.g. --training.max_steps 3)"
        ) from err


def _flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _check_override_keys(raw: Config, overrides: Mapping[str, Any]) -> None:
    known = set(_flatten(raw))
    # Settings with defaults may be overridden even when the file leaves them out.
    known |= {f"{section}.{f.name}" for section, cls in _SECTIONS.items() for f in fields(cls)}
    for key in overrides:
        if key in known:
            continue
        close = difflib.get_close_matches(key, sorted(known), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise TrainConfigError(f"Unknown config override {key!r}: no such setting.{hint}")


def _section(name: str, values: Mapping[str, Any]) -> Any:
    cls = _SECTIONS[name]
    names = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        dotted = f"{name}.{key}"
        if key not in names:
            close = difflib.get_close_matches(key, names, n=2)
            hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise TrainConfigError(f"Unknown setting {dotted!r} in [{name}].{hint}")
        allowed = _TYPES[dotted]
        ok = isinstance(value, allowed) and not (isinstance(value, bool) and bool not in allowed)
        if not ok:
            kinds = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise TrainConfigError(f"{dotted} must be {kinds}, not {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def _validate_training(t: TrainingSettings) -> None:
    def need(cond: bool, message: str) -> None:
        if not cond:
            raise TrainConfigError(message)

    need(t.max_steps > 0 or t.num_epochs > 0, "set training.max_steps > 0 (or num_epochs > 0)")
    need(t.learning_rate > 0, "training.learning_rate must be > 0")
    need(t.per_device_batch_size >= 1, "training.per_device_batch_size must be >= 1")
    need(t.per_device_eval_batch_size >= 1, "training.per_device_eval_batch_size must be >= 1")
    need(t.gradient_accumulation_steps >= 1, "training.gradient_accumulation_steps must be >= 1")
    need(t.max_length >= 8, "training.max_length must be >= 8")
    need(0.0 <= t.warmup_ratio < 1.0, "training.warmup_ratio must be in [0, 1)")
    need(t.save_steps >= 1, "training.save_steps must be >= 1")
    need(t.save_total_limit >= 1, "training.save_total_limit must be >= 1")
    need(t.logging_steps >= 1, "training.logging_steps must be >= 1")
    need(t.eval_steps is None or t.eval_steps >= 0, "training.eval_steps must be >= 0 or null")
    need(
        t.max_dev_examples is None or t.max_dev_examples >= 1,
        "training.max_dev_examples must be >= 1 or null (all)",
    )
    need(
        t.bf16 in (True, False, "auto"),
        f'training.bf16 must be true, false or "auto", not {t.bf16!r}',
    )
    need(
        t.device == "auto" or t.device == "cpu" or t.device.startswith("cuda"),
        f'training.device must be "auto", "cpu" or "cuda[:N]", not {t.device!r}',
    )
    from transformers.trainer_utils import SchedulerType

    schedulers = [s.value for s in SchedulerType]
    need(
        t.lr_scheduler in schedulers,
        f"training.lr_scheduler {t.lr_scheduler!r} unknown; use one of {schedulers}",
    )


def load_train_config(
    config_path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Read, override, interpolate and validate a training config (no model is loaded)."""
    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"Training config {str(path)!r} does not exist")
    overrides = dict(overrides or {})
    raw = Config().from_disk(path, interpolate=False)
    _check_override_keys(raw, overrides)
    try:
        config = Config().from_disk(path, overrides=overrides, interpolate=True)
    except Exception as err:  # confection's ConfigValidationError and friends
        raise TrainConfigError(f"Could not load {path}: {err}") from err
    sections = set(config)
    unknown = sections - set(_SECTIONS) - {"lora"}
    if unknown:
        raise TrainConfigError(
            f"Unknown section(s) {sorted(unknown)} in {path}; "
            f"expected [paths], [model], [lora], [training]"
        )
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
    paths = _section("paths", config.get("paths", {}))
    model = _section("model", config.get("model", {}))
    training = _section("training", config.get("training", {}))
    _validate_training(training)
    return TrainConfig(path, config, paths, model, training, lora)


# ---------------------------------------------------------------------------- data
REQUIRED_FIELDS = ("instruction", "input", "output")


def read_instruction_jsonl(path: str | os.PathLike, *, what: str = "paths.train") -> list[dict]:
    """Records of an instruction JSONL file (blank lines skipped), validated."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: instruction file {str(path)!r} does not exist")
    records: list[dict] = []
    for lineno, record in iter_json_objects(path, TrainingDataError):
        for key in REQUIRED_FIELDS:
            if not isinstance(record.get(key), str):
                raise TrainingDataError(
                    f"{path}:{lineno}: field {key!r} is missing or not a string "
                    f"(records need {', '.join(REQUIRED_FIELDS)})"
                )
        if not record["output"].strip():
            raise TrainingDataError(f"{path}:{lineno}: empty 'output' (nothing to learn)")
        records.append(record)
    if not records:
        raise TrainingDataError(f"{what}: {path} contains no examples (empty dataset)")
    return records


def record_example(record: Mapping[str, Any]) -> TaskExample:
    """The `TaskExample` of a JSONL record (prompt side exactly as at inference)."""
    return TaskExample(
        task=str(record.get("task") or "unknown"),
        instruction=record["instruction"],
        input=record["input"],
        output=record.get("output"),
    )


@dataclass(frozen=True)
class EncodedExample:
    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    task: str

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_record(backend: Any, record: Mapping[str, Any]) -> EncodedExample:
    """Tokenise one record: the inference prompt + answer + eos, loss on the answer only.

    `backend` is an `HFBackend` (its `encode_prompt`, `render`, `tokenizer`,
    `eos_token_ids` and `has_chat_template` are used).
    """
    example = record_example(record)
    prompt = example.chat_prompt()
    prompt_ids = list(backend.encode_prompt(prompt))
    answer = record["output"]
    full = list(
        backend.tokenizer(
            backend.render(prompt) + answer, add_special_tokens=not backend.has_chat_template
        )["input_ids"]
    )
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        answer_ids = full[len(prompt_ids) :]
    else:  # the tokenizer merged across the prompt/answer boundary
        answer_ids = list(backend.tokenizer(answer, add_special_tokens=False)["input_ids"])
    target = answer_ids + [int(backend.eos_token_ids[0])]
    return EncodedExample(
        input_ids=prompt_ids + target,
        labels=[IGNORE_INDEX] * len(prompt_ids) + target,
        prompt_length=len(prompt_ids),
        task=example.task,
    )


@dataclass
class DataStats:
    """What tokenisation kept and dropped, per split."""

    file: str
    sha256: str
    records: int = 0
    used: int = 0
    dropped_too_long: int = 0
    prompt_tokens: int = 0
    answer_tokens: int = 0
    max_tokens: int = 0
    per_task: dict[str, int] = field(default_factory=dict)
    dropped_per_task: dict[str, int] = field(default_factory=dict)


def encode_records(
    backend: Any, records: Sequence[Mapping[str, Any]], max_length: int, stats: DataStats
) -> list[EncodedExample]:
    """Encode records, dropping (and counting) those longer than `max_length` tokens."""
    kept: list[EncodedExample] = []
    shortest_dropped: int | None = None
    for record in records:
        ex = encode_record(backend, record)
        stats.records += 1
        if len(ex) > max_length:
            stats.dropped_too_long += 1
            stats.dropped_per_task[ex.task] = stats.dropped_per_task.get(ex.task, 0) + 1
            shortest_dropped = (
                len(ex) if shortest_dropped is None else min(shortest_dropped, len(ex))
            )
            continue
        kept.append(ex)
        stats.used += 1
        stats.prompt_tokens += ex.prompt_length
        stats.answer_tokens += len(ex) - ex.prompt_length
        stats.max_tokens = max(stats.max_tokens, len(ex))
        stats.per_task[ex.task] = stats.per_task.get(ex.task, 0) + 1
    if not kept:
        raise TrainingDataError(
            f"{stats.file}: all {stats.records} examples are longer than "
            f"training.max_length={max_length} tokens (shortest: {shortest_dropped}); raise "
            "max_length or build the instructions with smaller windows"
        )
    return kept


class TokenizedDataset:
    """Map-style dataset of encoded examples (what `Trainer` iterates)."""

    def __init__(self, examples: Sequence[EncodedExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ex = self.examples[index]
        return {"input_ids": ex.input_ids, "labels": ex.labels}

    @property
    def lengths(self) -> list[int]:
        return [len(ex) for ex in self.examples]


class PadCollator:
    """Right-pads a batch: `input_ids` with the pad id, `labels` with -100, plus the mask."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        ids, labels, mask = [], [], []
        for f in features:
            n = len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * (width - n))
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * (width - n))
            mask.append([1] * n + [0] * (width - n))
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


def make_collator(pad_token_id: int, packing: bool, pad_to_multiple_of: int | None = None):
    """The padding collator, or the padding-free packing one."""
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    return PadCollator(pad_token_id, pad_to_multiple_of)


class SeededSampler:
    """Epoch order that depends only on (seed, epoch): random, or grouped by length.

    `Trainer` calls `set_epoch` before every epoch, so a resumed run (which fast-forwards
    through the batches it already trained on) sees exactly the order of the killed run.
    """

    def __init__(self, lengths: Sequence[int], group_size: int, seed: int, group_by_length: bool):
        self.lengths = list(lengths)
        self.group_size = max(1, int(group_size))
        self.seed = int(seed)
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator()
        generator.manual_seed(self.seed * 100_003 + self.epoch)
        if self.group_by_length and len(self.lengths) > 1:
            from transformers.trainer_pt_utils import get_length_grouped_indices

            order = get_length_grouped_indices(self.lengths, self.group_size, generator=generator)
        else:
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
        return iter(int(i) for i in order)


# ----------------------------------------------------------------- output directory
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_json(path: Path, data: Any) -> None:
    _atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def checkpoint_step(path: Path) -> int | None:
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


def _run_fingerprint(cfg: TrainConfig, data: Mapping[str, DataStats | None]) -> dict[str, Any]:
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
    resume_from: Path | None
    already_complete: bool
    removed: list[tuple[Path, str]]


def prepare_output_dir(
    output_dir: Path, fingerprint: Mapping[str, Any], *, force: bool, is_main: bool = True
) -> RunPlan:
    """Check `output_dir` against this run; clean up and decide fresh / resume / done.

    Only the main process (`is_main`) changes anything on disk.
    """
    state_path = output_dir / RUN_STATE_NAME
    existing = [p for p in output_dir.iterdir()] if output_dir.is_dir() else []
    previous = None
    if state_path.is_file():
        try:
            previous = json.loads(state_path.read_text(encoding="utf8"))
        except ValueError:
            previous = {"unreadable": True}
    if force and is_main:
        for name in RUN_ARTEFACTS:
            target = output_dir / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        previous = None
    elif previous is None and existing and not force:
        names = sorted(p.name for p in existing)[:8]
        raise OutputDirConflict(
            f"Output directory {str(output_dir)!r} is not empty ({', '.join(names)}) and holds "
            f"no {RUN_STATE_NAME} of a training run; use an empty/new directory, or force=True "
            "(CLI --force) to train there anyway"
        )
    elif previous is not None:
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
    adapter = output_dir / ADAPTER_NAME
    if previous is not None and (adapter / META_NAME).is_file():
        return RunPlan(None, True, [])
    if is_main:
        output_dir.mkdir(parents=True, exist_ok=True)
        if previous is None:
            _atomic_write_json(
                state_path,
                {**json.loads(json.dumps(fingerprint, default=str)), "created": _now()},
            )
    resume, removed = find_resume_checkpoint(
        output_dir / CHECKPOINTS_NAME, remove_incomplete=is_main
    )
    if is_main:
        for stale in output_dir.glob(f".{ADAPTER_NAME}.tmp*"):  # a killed final save
            shutil.rmtree(stale, ignore_errors=True)
        _cut_log(output_dir / TRAIN_LOG_NAME, checkpoint_step(resume) if resume else None)
    return RunPlan(resume, False, removed)


def _cut_log(path: Path, step: int | None) -> None:
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
    _atomic_write_text(path, "".join(k + "\n" for k in kept))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ------------------------------------------------------------------------ callbacks
def _log_callback_class():
    from transformers import TrainerCallback

    class JsonlLogCallback(TrainerCallback):
        """Appends one JSON line per log event to `train_log.jsonl` (main process only)."""

        def __init__(self, path: Path, enabled: bool, resumed_from: Path | None):
            self.path = path
            self.enabled = enabled
            self.resumed_from = resumed_from
            self.t0 = self.last_t = time.perf_counter()
            self.last_tokens = 0
            self.eval_seconds = 0.0
            self.start_tokens = 0
            self.start_step = 0
            self.train_seconds = 0.0
            self.eval_total = 0.0  # seconds of evaluation inside train()
            self.last_eval_loss: float | None = None
            self.last_eval_step: int | None = None
            self.last_loss: float | None = None

        def _write(self, record: dict[str, Any]) -> None:
            if not self.enabled:
                return
            with self.path.open("a", encoding="utf8") as f:
                f.write(json.dumps(record) + "\n")
                f.flush()

        def on_train_begin(self, args, state, control, **kwargs):
            self.t0 = self.last_t = time.perf_counter()
            self.start_tokens = self.last_tokens = int(state.num_input_tokens_seen or 0)
            self.start_step = int(state.global_step)
            event: dict[str, Any] = {
                "event": "resume" if self.resumed_from is not None else "start",
                "step": int(state.global_step),
                "max_steps": int(state.max_steps),
                "time": _now(),
            }
            if self.resumed_from is not None:
                event["checkpoint"] = self.resumed_from.name
            self._write(event)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            now = time.perf_counter()
            step = int(state.global_step)
            if "loss" in logs:
                tokens = int(state.num_input_tokens_seen or 0)
                seconds = max(now - self.last_t - self.eval_seconds, 1e-9)
                self.last_loss = float(logs["loss"])
                self._write(
                    {
                        "step": step,
                        "epoch": round(float(state.epoch or 0.0), 4),
                        "loss": float(logs["loss"]),
                        "learning_rate": float(logs.get("learning_rate", float("nan"))),
                        "grad_norm": (
                            float(logs["grad_norm"]) if logs.get("grad_norm") is not None else None
                        ),
                        "tokens_per_s": round((tokens - self.last_tokens) / seconds, 2),
                        "tokens_seen": tokens,
                        "elapsed": round(now - self.t0, 3),
                    }
                )
                self.last_t, self.last_tokens, self.eval_seconds = now, tokens, 0.0
            if "eval_loss" in logs:
                self.eval_seconds += float(logs.get("eval_runtime", 0.0))
                self.eval_total += float(logs.get("eval_runtime", 0.0))
                self.last_eval_loss = float(logs["eval_loss"])
                self.last_eval_step = step
                self._write(
                    {
                        "step": step,
                        "eval_loss": float(logs["eval_loss"]),
                        "eval_runtime": float(logs.get("eval_runtime", 0.0)),
                        "elapsed": round(now - self.t0, 3),
                    }
                )
            if "train_runtime" in logs:
                self.train_seconds = float(logs["train_runtime"])

        def on_train_end(self, args, state, control, **kwargs):
            self.train_seconds = self.train_seconds or (time.perf_counter() - self.t0)

    return JsonlLogCallback


# Config attributes of models whose logits are not just `lm_head(hidden)`.
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def answer_logits_model(model: Any) -> tuple[Any, Any] | None:
    """(decoder, output head) of a PEFT-wrapped causal LM whose logits are plainly
    ``head(decoder(...).last_hidden_state)``; None when that does not hold."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if not type(base).__name__.endswith("ForCausalLM"):
        return None
    config = getattr(base, "config", None)
    if config is None or any(getattr(config, a, None) for a in _LOGIT_TRANSFORMS):
        return None
    decoder = getattr(base, "base_model", None)
    head = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    if decoder is None or decoder is base or head is None:
        return None
    return decoder, head


def answer_only_loss(
    decoder: Any, head: Any, inputs: Mapping[str, Any], num_items_in_batch: Any = None
):
    """Causal-LM loss computing logits only where a label is trained.

    Same value as the model's own loss (`labels` shifted by one, -100 ignored, summed
    and divided by `num_items_in_batch` when given, else averaged), but the vocabulary
    projection runs on the answer positions only: prompts are most of every example, so
    this saves about a fifth of the compute and most of the logits memory.
    """
    import torch

    labels = inputs["labels"]
    extra = {k: inputs[k] for k in ("attention_mask", "position_ids") if k in inputs}
    hidden = decoder(input_ids=inputs["input_ids"], use_cache=False, **extra).last_hidden_state
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    logits = head(hidden[:, :-1][mask]).float()
    total = torch.nn.functional.cross_entropy(logits, target[mask], reduction="sum")
    if num_items_in_batch is not None:
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(total.device)
        return total / num_items_in_batch
    return total / mask.sum().clamp(min=1)


def _trainer_class():
    from transformers import Trainer

    class LoraTrainer(Trainer):
        """`Trainer` with the seeded (optionally length-grouped) epoch sampler and the
        answer-only-logits loss (checked once against the model's own loss, which is
        used instead when they disagree or the model is wrapped, e.g. by DDP)."""

        def __init__(self, *args: Any, train_sampler: SeededSampler, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self._seeded_sampler = train_sampler
            self._answer_logits = answer_logits_model(self.model)
            self._answer_logits_checked = False

        def _get_train_sampler(self, train_dataset=None):
            return self._seeded_sampler

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            fast = self._answer_logits
            if (
                fast is None
                or model is not self.model
                or self.label_smoother is not None
                or self.compute_loss_func is not None
                or "labels" not in inputs
            ):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            scaled = self.model_accepts_loss_kwargs and num_items_in_batch is not None
            items = num_items_in_batch if scaled else None
            if not self._answer_logits_checked and not self._answer_logits_agree(
                model, inputs, items, num_items_in_batch
            ):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = answer_only_loss(*fast, inputs, items)
            return (loss, {"loss": loss}) if return_outputs else loss

        def _answer_logits_agree(self, model, inputs, items, num_items_in_batch) -> bool:
            """Compare both losses once, in eval mode (no dropout: no RNG is consumed, so
            a resumed run stays exact); disable the fast path if they differ."""
            import torch

            self._answer_logits_checked = True
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    fast = answer_only_loss(*self._answer_logits, inputs, items)
                    reference = super().compute_loss(model, dict(inputs), False, num_items_in_batch)
            finally:
                model.train(was_training)
            tol = 3e-2 if (self.args.bf16 or self.args.fp16) else 1e-4
            if torch.allclose(fast.float(), reference.float(), rtol=tol, atol=tol):
                return True
            print(
                f"Answer-only logits loss {float(fast):.5f} differs from the model's loss "
                f"{float(reference):.5f}; using the model's loss",
                file=sys.stderr,
            )
            self._answer_logits = None
            return False

    return LoraTrainer


def _checkpoint_is_final(path: Path) -> bool:
    state = json.loads((path / "trainer_state.json").read_text(encoding="utf8"))
    return int(state.get("max_steps") or 0) > 0 and state["global_step"] >= state["max_steps"]


def _restore_final_checkpoint(trainer: Any, path: Path, log_cb: Any) -> None:
    """Load the adapter and trainer state of a finished run's last checkpoint."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    weights = load_file(str(path / "adapter_model.safetensors"))
    set_peft_model_state_dict(trainer.model, weights)
    trainer.state = TrainerState.load_from_json(str(path / "trainer_state.json"))
    state = trainer.state
    log_cb.start_step = state.global_step
    log_cb.start_tokens = int(state.num_input_tokens_seen or 0)
    for entry in state.log_history:
        if "loss" in entry:
            log_cb.last_loss = float(entry["loss"])
        if "eval_loss" in entry:
            log_cb.last_eval_loss = float(entry["eval_loss"])
            log_cb.last_eval_step = int(entry.get("step", -1))
    log_cb._write(
        {
            "event": "resume",
            "step": state.global_step,
            "max_steps": state.max_steps,
            "time": _now(),
            "checkpoint": path.name,
            "finished": True,
        }
    )


# ---------------------------------------------------------------------- the result
@dataclass
class TrainResult:
    """What `train` did. `meta` is the content of training_meta.json."""

    output_dir: Path
    adapter_dir: Path
    global_step: int
    resumed_from_step: int | None
    train_loss: float | None
    dev_loss: float | None
    tokens_per_second: float
    peak_rss_bytes: int
    wall_time_s: float
    already_complete: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        dev = f"{self.dev_loss:.4f}" if self.dev_loss is not None else "n/a"
        loss = f"{self.train_loss:.4f}" if self.train_loss is not None else "n/a"
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


def _result_from_meta(output_dir: Path, meta: Mapping[str, Any], wall: float) -> TrainResult:
    return TrainResult(
        output_dir=output_dir,
        adapter_dir=output_dir / ADAPTER_NAME,
        global_step=int(meta.get("global_step", 0)),
        resumed_from_step=meta.get("resumed_from_step"),
        train_loss=meta.get("train_loss"),
        dev_loss=meta.get("dev_loss"),
        tokens_per_second=float(meta.get("tokens_per_second", 0.0)),
        peak_rss_bytes=int(meta.get("peak_rss_bytes", 0)),
        wall_time_s=wall,
        already_complete=True,
        meta=dict(meta),
    )


# ------------------------------------------------------------------- device setup
@dataclass(frozen=True)
class Precision:
    device: str  # "cpu" or "cuda"
    bf16: bool
    fp16: bool
    load_dtype: Any  # torch.dtype


def resolve_precision(t: TrainingSettings) -> Precision:
    """Device and mixed precision from `training.device` / `training.bf16` / `qlora`."""
    import torch

    cuda = torch.cuda.is_available()
    if t.device == "auto":
        device = "cuda" if cuda else "cpu"
    elif t.device.startswith("cuda"):
        if not cuda:
            raise TrainConfigError(f"training.device={t.device!r} but CUDA is not available")
        device = "cuda"
    else:
        device = "cpu"
    if t.qlora and device != "cuda":
        raise TrainConfigError(
            "training.qlora = true (4-bit base through bitsandbytes) needs a CUDA GPU; this "
            "run would be on the CPU. Set training.qlora = false (plain LoRA) here."
        )
    bf16_ok = device == "cuda" and torch.cuda.is_bf16_supported()
    if t.bf16 == "auto":
        bf16, fp16 = bf16_ok, device == "cuda" and not bf16_ok
    elif t.bf16:
        if device == "cuda" and not bf16_ok:
            raise TrainConfigError("training.bf16 = true but this GPU has no bf16 support")
        bf16, fp16 = True, False
    else:
        bf16, fp16 = False, False
    if device == "cuda" and bf16:
        load_dtype = torch.bfloat16
    elif device == "cuda" and fp16:
        load_dtype = torch.float16
    else:
        load_dtype = torch.float32
    return Precision(device, bf16, fp16, load_dtype)


def _load_model(cfg: TrainConfig, precision: Precision, local_rank: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import resolve_model

    source = resolve_model(cfg.model.base)
    trust = cfg.model.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
    kwargs: dict[str, Any] = {"dtype": precision.load_dtype, "trust_remote_code": trust}
    if precision.device == "cuda":
        kwargs["device_map"] = {"": local_rank}
    if cfg.training.qlora:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as err:
            raise ImportError(
                "training.qlora = true needs bitsandbytes: pip install bitsandbytes"
            ) from err
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=precision.load_dtype,
        )
    model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    model.config.use_cache = False
    if cfg.training.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.training.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return source, tokenizer, model


def _wrap_lora(cfg: TrainConfig, model: Any):
    from peft import PeftModel, get_peft_model

    if cfg.model.adapter_init:
        path = Path(cfg.model.adapter_init).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"model.adapter_init {str(path)!r} is not a PEFT adapter directory"
            )
        # The adapter's own LoRA config (rank, targets) applies; [lora] is not used.
        return PeftModel.from_pretrained(model, str(path), is_trainable=True)
    return get_peft_model(model, cfg.lora)


# --------------------------------------------------------------------------- train
def train(
    config_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    overrides: Mapping[str, Any] | None = None,
    *,
    force: bool = False,
    callbacks: Sequence[Any] = (),
) -> TrainResult:
    """Fine-tune a LoRA adapter as `config_path` (+ dotted `overrides`) says.

    Writes `output_dir` as described in the module docstring; resumes from the newest
    complete checkpoint when the directory holds an interrupted run of the same config
    and data; does nothing when that run already finished. `force` deletes a previous
    run's artefacts first (needed when config or data changed). `callbacks` are extra
    `transformers.TrainerCallback`s.
    """
    wall_start = time.perf_counter()
    cfg = load_train_config(config_path, overrides)
    out = Path(output_dir)
    t = cfg.training

    # Data files first: a typo in a path should fail before any model is loaded.
    if not cfg.paths.train:
        raise TrainConfigError("paths.train is not set; pass --paths.train FILE.jsonl")
    train_path = Path(cfg.paths.train)
    train_records = read_instruction_jsonl(train_path, what="paths.train")
    dev_path = Path(cfg.paths.dev) if cfg.paths.dev else None
    dev_records = read_instruction_jsonl(dev_path, what="paths.dev") if dev_path else []
    if dev_records and t.max_dev_examples is not None and len(dev_records) > t.max_dev_examples:
        keep = sorted(random.Random(t.seed).sample(range(len(dev_records)), t.max_dev_examples))
        dev_records = [dev_records[i] for i in keep]
    train_stats = DataStats(str(train_path), _sha256(train_path))
    dev_stats = DataStats(str(dev_path), _sha256(dev_path)) if dev_path else None

    precision = resolve_precision(t)
    from transformers import TrainingArguments, set_seed

    do_eval = bool(dev_records) and bool(t.eval_steps)
    # transformers 5.x renamed gradient checkpointing to activation checkpointing.
    ckpt = (
        "activation_checkpointing"
        if "activation_checkpointing" in {f.name for f in fields(TrainingArguments)}
        else "gradient_checkpointing"
    )
    checkpointing = {
        ckpt: t.gradient_checkpointing and not t.qlora,  # QLoRA: prepare_model_for_kbit_training
        f"{ckpt}_kwargs": {"use_reentrant": False},
    }
    args = TrainingArguments(
        output_dir=str(out / CHECKPOINTS_NAME),
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        num_train_epochs=t.num_epochs,
        learning_rate=t.learning_rate,
        per_device_train_batch_size=t.per_device_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=float(t.warmup_ratio),  # a float in [0, 1) is a ratio in transformers 5
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optim,
        eval_strategy="steps" if do_eval else "no",
        eval_steps=t.eval_steps if do_eval else None,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_strategy="steps",
        logging_steps=t.logging_steps,
        logging_first_step=True,
        seed=t.seed,
        data_seed=t.seed,
        bf16=precision.bf16,
        fp16=precision.fp16,
        use_cpu=precision.device == "cpu",
        dataloader_num_workers=t.dataloader_num_workers,
        remove_unused_columns=False,
        prediction_loss_only=True,
        include_num_input_tokens_seen="non_padding",
        report_to="none",
        disable_tqdm=not t.progress_bar,
        ddp_find_unused_parameters=False,
        save_only_model=False,
        **checkpointing,
    )
    is_main = args.process_index == 0
    fingerprint = _run_fingerprint(cfg, {"train": train_stats, "dev": dev_stats})
    with args.main_process_first(desc="preparing the output directory"):
        plan = prepare_output_dir(out, fingerprint, force=force, is_main=is_main)
    if plan.already_complete:
        meta = json.loads((out / ADAPTER_NAME / META_NAME).read_text(encoding="utf8"))
        result = _result_from_meta(out, meta, time.perf_counter() - wall_start)
        if is_main:
            print(
                f"Training in {out} is already complete ({result.global_step} steps); "
                f"adapter: {result.adapter_dir}. Use --force to train again."
            )
        return result
    if is_main:
        for path, problem in plan.removed:
            print(f"Removed incomplete checkpoint {path.name}: {problem}")
        if plan.resume_from is not None:
            print(f"Resuming from {plan.resume_from} (step {checkpoint_step(plan.resume_from)})")

    # Model, tokenizer and the inference-side prompt encoder.
    set_seed(t.seed)
    source, tokenizer, model = _load_model(cfg, precision, args.local_process_index)
    from ..models.hf import HFBackend

    encoder = HFBackend(model, tokenizer, max_prompt_tokens=t.max_length, name=str(source))
    if encoder.context_length is not None and t.max_length > encoder.context_length:
        raise TrainConfigError(
            f"training.max_length={t.max_length} exceeds the context length of {source} "
            f"({encoder.context_length} tokens)"
        )
    train_examples = encode_records(encoder, train_records, t.max_length, train_stats)
    dev_examples = (
        encode_records(encoder, dev_records, t.max_length, dev_stats) if dev_stats else []
    )
    # Evaluation order does not matter: sort by length so batches pad little.
    dev_examples.sort(key=len)
    for stats in (train_stats, dev_stats):
        if stats is None or not is_main:
            continue
        print(
            f"{stats.file}: {stats.used} examples ({stats.prompt_tokens + stats.answer_tokens} "
            f"tokens, {stats.answer_tokens} in answers); dropped {stats.dropped_too_long} "
            f"longer than max_length={t.max_length}"
        )
        if stats.dropped_too_long > DROP_WARNING_FRACTION * stats.records:
            print(
                f"WARNING: {stats.dropped_too_long}/{stats.records} examples of {stats.file} "
                f"({stats.dropped_too_long / stats.records:.0%}) exceed max_length and were "
                "dropped; raise training.max_length or window the documents more finely",
                file=sys.stderr,
            )

    set_seed(t.seed)  # LoRA initialisation does not depend on what ran before
    model = _wrap_lora(cfg, model)
    if is_main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        print(f"LoRA: {trainable:,} trainable of {total:,} parameters ({source})")

    train_data = TokenizedDataset(train_examples)
    sampler = SeededSampler(
        train_data.lengths,
        group_size=t.per_device_batch_size * t.gradient_accumulation_steps,
        seed=t.seed,
        group_by_length=t.group_by_length and not t.packing,
    )
    log_cb = _log_callback_class()(out / TRAIN_LOG_NAME, is_main, plan.resume_from)
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=TokenizedDataset(dev_examples) if dev_examples else None,
        data_collator=make_collator(
            encoder.pad_token_id, t.packing, 8 if precision.device == "cuda" else None
        ),
        processing_class=tokenizer,
        callbacks=[log_cb, *callbacks],
        train_sampler=sampler,
    )
    if plan.resume_from is not None and _checkpoint_is_final(plan.resume_from):
        # Killed after the last checkpoint but before the adapter was moved into place.
        # (Trainer.train would run one step more when resumed at max_steps.)
        _restore_final_checkpoint(trainer, plan.resume_from, log_cb)
        train_seconds = 0.0
    else:
        output = trainer.train(
            resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None
        )
        train_seconds = log_cb.train_seconds or float(output.metrics.get("train_runtime", 0.0))
    # Evaluation time inside train() only: the final dev loss below runs after train_seconds
    # stopped, so it must not be taken off the training time.
    eval_in_train_seconds = log_cb.eval_total
    state = trainer.state

    dev_loss: float | None = None
    if dev_examples:
        if log_cb.last_eval_step == state.global_step and log_cb.last_eval_loss is not None:
            dev_loss = log_cb.last_eval_loss
        else:
            dev_loss = float(trainer.evaluate()["eval_loss"])

    # Final adapter: write to a temporary directory, then move it into place.
    tmp_dir = out / f".{ADAPTER_NAME}.tmp"  # the same on every rank
    if is_main and tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    trainer.save_model(str(tmp_dir))
    tokens = int(state.num_input_tokens_seen or 0) - log_cb.start_tokens
    # Throughput of training proper: evaluation inside train() is not counted.
    step_seconds = max(train_seconds - eval_in_train_seconds, 0.0)
    tokens_per_second = tokens / step_seconds if step_seconds > 0 else 0.0
    steps_run = state.global_step - log_cb.start_step
    rss = peak_rss_bytes()
    import torch

    cuda_peak = int(torch.cuda.max_memory_allocated()) if precision.device == "cuda" else None
    train_loss = log_cb.last_loss
    result = TrainResult(
        output_dir=out,
        adapter_dir=out / ADAPTER_NAME,
        global_step=int(state.global_step),
        resumed_from_step=checkpoint_step(plan.resume_from) if plan.resume_from else None,
        train_loss=train_loss,
        dev_loss=dev_loss,
        tokens_per_second=tokens_per_second,
        peak_rss_bytes=rss,
        wall_time_s=time.perf_counter() - wall_start,
    )
    if is_main:
        meta = _training_meta(
            cfg,
            source,
            result,
            train_stats,
            dev_stats,
            precision,
            args,
            train_seconds=train_seconds,
            eval_seconds=log_cb.eval_total,
            eval_in_train_seconds=eval_in_train_seconds,
            steps_run=steps_run,
            tokens=tokens,
            cuda_peak=cuda_peak,
        )
        meta["answer_only_logits"] = getattr(trainer, "_answer_logits", None) is not None
        result.meta = meta
        (tmp_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; not shipped
        _atomic_write_json(tmp_dir / META_NAME, meta)
        final = out / ADAPTER_NAME
        if final.exists():  # only possible under force races; keep the swap atomic
            old = out / f".{ADAPTER_NAME}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp_dir, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp_dir, final)
        _atomic_write_json(out / META_NAME, meta)
        log_cb._write(
            {
                "event": "end",
                "step": result.global_step,
                "dev_loss": dev_loss,
                "tokens_per_s": round(tokens_per_second, 2),
                "peak_rss_bytes": rss,
                "time": _now(),
            }
        )
        print(result.summary())
    trainer.accelerator.wait_for_everyone()
    return result


def _training_meta(
    cfg: TrainConfig,
    source: Any,
    result: TrainResult,
    train_stats: DataStats,
    dev_stats: DataStats | None,
    precision: Precision,
    args: Any,
    *,
    train_seconds: float,
    eval_seconds: float,
    eval_in_train_seconds: float,
    steps_run: int,
    tokens: int,
    cuda_peak: int | None,
) -> dict[str, Any]:
    import accelerate
    import peft
    import spacy
    import torch
    import transformers

    from .. import __version__ as package_version

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
        "dev_loss": result.dev_loss,
        "data": {
            "train": asdict(train_stats),
            "dev": asdict(dev_stats) if dev_stats is not None else None,
        },
        "effective_batch_size": cfg.training.per_device_batch_size
        * cfg.training.gradient_accumulation_steps
        * max(1, int(args.world_size)),
        "world_size": int(args.world_size),
        "device": precision.device,
        "precision": "bf16" if precision.bf16 else "fp16" if precision.fp16 else "fp32",
        "qlora": cfg.training.qlora,
        "train_runtime_s": round(train_seconds, 3),
        "eval_runtime_s": round(eval_seconds, 3),
        "eval_in_train_runtime_s": round(eval_in_train_seconds, 3),
        "wall_time_s": round(result.wall_time_s, 3),
        "tokens_trained_this_run": tokens,
        "tokens_per_second": round(result.tokens_per_second, 2),
        "seconds_per_step": (
            round((train_seconds - eval_in_train_seconds) / steps_run, 4) if steps_run else None
        ),
        "peak_rss_bytes": result.peak_rss_bytes,
        "peak_cuda_bytes": cuda_peak,
        "finished": _now(),
        "versions": {
            "spacy_bioreama": package_version,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "accelerate": accelerate.__version__,
            "spacy": spacy.__version__,
        },
    }


# ------------------------------------------------------------------------ __main__
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spacy_bioreama.training CONFIG --output DIR [--force] [--a.b value ...]``
    (also the entry point for ``accelerate launch -m spacy_bioreama.training ...``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: python -m spacy_bioreama.training CONFIG --output DIR [--force] "
        "[--section.key VALUE ...]"
    )
    force = "--force" in argv
    argv = [a for a in argv if a != "--force"]
    output: str | None = None
    for flag in ("--output", "-o"):
        if flag in argv:
            i = argv.index(flag)
            if i + 1 >= len(argv):
                print(usage, file=sys.stderr)
                return 2
            output = argv[i + 1]
            del argv[i : i + 2]
    if not argv or output is None or argv[0].startswith("-"):
        print(usage, file=sys.stderr)
        return 2
    config_path, rest = argv[0], argv[1:]
    try:
        train(config_path, output, parse_overrides(rest), force=force)
    except (TrainConfigError, TrainingDataError, OutputDirConflict, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "DataStats",
    "EncodedExample",
    "OutputDirConflict",
    "PadCollator",
    "SeededSampler",
    "TokenizedDataset",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "TrainingDataError",
    "checkpoint_problem",
    "encode_record",
    "find_resume_checkpoint",
    "load_train_config",
    "main",
    "make_collator",
    "make_lora_config",
    "parse_overrides",
    "read_instruction_jsonl",
    "train",
]

if __name__ == "__main__":
    sys.exit(main())
