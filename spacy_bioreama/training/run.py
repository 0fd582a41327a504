"""PEFT LoRA instruction tuning of a causal LM: `train(config, output_dir, overrides)`.

The `train` command (``python -m spacy_bioreama train CONFIG --output DIR [--section.key
value ...]``, also ``python -m spacy_bioreama.training ...``) fine-tunes a LoRA adapter on
the instruction JSONL files written by `build-instructions` and writes it to
``DIR/adapter/``, from where the `bio_relation_llm` component loads it (`adapter` setting).

`train` runs these steps, one function each: load the data (`load_data`), the training
arguments (`training_arguments`), the run directory (`training.rundir`: fresh, resume or
done), the model, encode and report (`encode_and_report`), build the trainer
(`build_trainer`), run or resume (`run_or_resume`), publish the adapter atomically
(`publish_adapter`). How examples are encoded and batched is described in
`training.data`, the output directory and resuming in `training.rundir`, devices,
precision and the loss in `training.trainer`, the settings in `training.config`.

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

Several GPUs
------------
``accelerate launch --num_processes 4 -m spacy_bioreama.training CONFIG
--output DIR`` (or ``accelerate launch -m spacy_bioreama train ...``) runs data-parallel
(DDP) training; `per_device_batch_size` is per GPU, so the effective batch is
``per_device_batch_size * gradient_accumulation_steps * n_gpus``. Only the main process
writes the output directory; the others wait for it where needed.

At the end a summary line gives steps, final logged train loss, dev loss, tokens/s
(non-padding tokens through forward+backward per second of training, evaluation time
excluded) and peak RSS (and peak CUDA memory on a GPU); the same numbers go to
``training_meta.json``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ..instructions.records import TrainingDataError, read_instruction_jsonl
from ..models.base_fingerprint import FINGERPRINT_KEY
from ..util.files import atomic_write_json, sha256_file
from ..util.resources import peak_rss_bytes
from .config import TrainConfig, TrainConfigError, load_train_config, parse_overrides
from .data import (
    DataStats,
    EncodedExample,
    SeededSampler,
    TokenizedDataset,
    encode_records,
    make_collator,
)
from .result import RunTiming, TrainResult, measure, result_from_meta, training_meta
from .rundir import (
    ADAPTER_NAME,
    CHECKPOINTS_NAME,
    META_NAME,
    TRAIN_LOG_NAME,
    OutputDirConflict,
    RunPlan,
    checkpoint_is_final,
    checkpoint_step,
    prepare_output_dir,
    run_fingerprint,
    timestamp,
)
from .trainer import (
    Precision,
    load_model,
    log_callback_class,
    mean_logged_loss,
    resolve_precision,
    restore_final_checkpoint,
    trainer_class,
    wrap_lora,
)


# ---------------------------------------------------------------------- the steps
@dataclass
class TrainingData:
    """The instruction records of both splits (dev subsampled) and their statistics."""

    train_records: list[dict]
    dev_records: list[dict]
    train_stats: DataStats
    dev_stats: DataStats | None

    @property
    def stats(self) -> dict[str, DataStats | None]:
        """``{"train": ..., "dev": ...}`` (for the run fingerprint)."""
        return {"train": self.train_stats, "dev": self.dev_stats}


def load_data(cfg: TrainConfig) -> TrainingData:
    """Read and check ``paths.train``/``paths.dev`` (a typo in a path should fail before
    any model is loaded); keep at most ``training.max_dev_examples`` dev records."""
    t = cfg.training
    if not cfg.paths.train:
        raise TrainConfigError("paths.train is not set; pass --paths.train FILE.jsonl")
    train_path = Path(cfg.paths.train)
    train_records = read_instruction_jsonl(train_path, what="paths.train")
    dev_path = Path(cfg.paths.dev) if cfg.paths.dev else None
    dev_records = read_instruction_jsonl(dev_path, what="paths.dev") if dev_path else []
    if dev_records and t.max_dev_examples is not None and len(dev_records) > t.max_dev_examples:
        keep = sorted(random.Random(t.seed).sample(range(len(dev_records)), t.max_dev_examples))
        dev_records = [dev_records[i] for i in keep]
    return TrainingData(
        train_records,
        dev_records,
        DataStats(str(train_path), sha256_file(train_path)),
        DataStats(str(dev_path), sha256_file(dev_path)) if dev_path else None,
    )


def training_arguments(cfg: TrainConfig, out: Path, precision: Precision, do_eval: bool):
    """The `transformers.TrainingArguments` of ``[training]`` (checkpoints under `out`)."""
    from transformers import TrainingArguments

    t = cfg.training
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
    return TrainingArguments(
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


def _report_plan(out: Path, plan: RunPlan, wall_start: float, is_main: bool) -> TrainResult | None:
    """Print what the run directory check decided; the result when the run is complete."""
    if plan.already_complete:
        meta = json.loads((out / ADAPTER_NAME / META_NAME).read_text(encoding="utf8"))
        result = result_from_meta(out, meta, time.perf_counter() - wall_start)
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
    return None


def encode_and_report(
    encoder: Any, data: TrainingData, max_length: int, is_main: bool
) -> tuple[list[EncodedExample], list[EncodedExample]]:
    """Tokenise both splits with the inference prompt encoder (an `HFBackend`), print
    what was used and dropped, and warn when many examples were too long."""
    train_examples = encode_records(encoder, data.train_records, max_length, data.train_stats)
    dev_examples = (
        encode_records(encoder, data.dev_records, max_length, data.dev_stats)
        if data.dev_stats
        else []
    )
    # Evaluation order does not matter: sort by length so batches pad little.
    dev_examples.sort(key=len)
    for stats in (data.train_stats, data.dev_stats):
        if stats is None or not is_main:
            continue
        print(stats.summary(max_length))
        warning = stats.drop_warning()
        if warning:
            print(warning, file=sys.stderr)
    return train_examples, dev_examples


def _prompt_encoder(model: Any, tokenizer: Any, source: Any, max_length: int):
    """The inference backend around the model being trained (it encodes the prompts)."""
    from ..models.hf import HFBackend

    encoder = HFBackend(model, tokenizer, max_prompt_tokens=max_length, name=str(source))
    if encoder.context_length is not None and max_length > encoder.context_length:
        raise TrainConfigError(
            f"training.max_length={max_length} exceeds the context length of {source} "
            f"({encoder.context_length} tokens)"
        )
    return encoder


@dataclass
class RunSetup:
    """What the steps after the run-directory check share: config, training arguments,
    output directory and its plan, precision, whether this is the main process."""

    cfg: TrainConfig
    args: Any  # TrainingArguments
    out: Path
    plan: RunPlan
    precision: Precision
    is_main: bool
    wall_start: float  # time.perf_counter() when train() began


def build_trainer(
    setup: RunSetup,
    model: Any,
    tokenizer: Any,
    pad_token_id: int,
    examples: tuple[list[EncodedExample], list[EncodedExample]],
    callbacks: Sequence[Any],
):
    """The `LoraTrainer` (seeded sampler, collator, log callback) and its log callback."""
    t = setup.cfg.training
    train_examples, dev_examples = examples
    train_data = TokenizedDataset(train_examples)
    sampler = SeededSampler(
        train_data.lengths,
        group_size=t.per_device_batch_size * t.gradient_accumulation_steps,
        seed=t.seed,
        group_by_length=t.group_by_length and not t.packing,
    )
    log_path = setup.out / TRAIN_LOG_NAME
    log_cb = log_callback_class()(log_path, setup.is_main, setup.plan.resume_from)
    trainer = trainer_class()(
        model=model,
        args=setup.args,
        train_dataset=train_data,
        eval_dataset=TokenizedDataset(dev_examples) if dev_examples else None,
        data_collator=make_collator(
            pad_token_id, t.packing, 8 if setup.precision.device == "cuda" else None
        ),
        processing_class=tokenizer,
        callbacks=[log_cb, *callbacks],
        train_sampler=sampler,
    )
    return trainer, log_cb


def run_or_resume(trainer: Any, plan: RunPlan, log_cb: Any) -> float:
    """Train (from the resume checkpoint, if any); seconds of training (0 when the run
    was only restored from its final checkpoint)."""
    if plan.resume_from is not None and checkpoint_is_final(plan.resume_from):
        # Killed after the last checkpoint but before the adapter was moved into place.
        # (Trainer.train would run one step more when resumed at max_steps.)
        restore_final_checkpoint(trainer, plan.resume_from, log_cb)
        return 0.0
    output = trainer.train(
        resume_from_checkpoint=str(plan.resume_from) if plan.resume_from else None
    )
    return log_cb.train_seconds or float(output.metrics.get("train_runtime", 0.0))


def _final_dev_loss(trainer: Any, log_cb: Any, has_dev: bool) -> float | None:
    """The dev loss at the last step: the last evaluation's, or a fresh one."""
    if not has_dev:
        return None
    state = trainer.state
    if log_cb.last_eval_step == state.global_step and log_cb.last_eval_loss is not None:
        return log_cb.last_eval_loss
    return float(trainer.evaluate()["eval_loss"])


def publish_adapter(out: Path, tmp_dir: Path, meta: Mapping[str, Any]) -> None:
    """Move the saved adapter in `tmp_dir` to ``out/adapter`` atomically, with its
    training_meta.json (and a copy of it next to the adapter)."""
    (tmp_dir / "training_args.bin").unlink(missing_ok=True)  # a pickle; not shipped
    atomic_write_json(tmp_dir / META_NAME, meta)
    final = out / ADAPTER_NAME
    if final.exists():  # only possible under force races; keep the swap atomic
        old = out / f".{ADAPTER_NAME}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp_dir, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp_dir, final)
    atomic_write_json(out / META_NAME, meta)


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

    Writes `output_dir` as described in `training.rundir`; resumes from the newest
    complete checkpoint when the directory holds an interrupted run of the same config
    and data; does nothing when that run already finished. `force` deletes a previous
    run's artefacts first (needed when config or data changed). `callbacks` are extra
    `transformers.TrainerCallback`s.
    """
    wall_start = time.perf_counter()
    cfg = load_train_config(config_path, overrides)
    out = Path(output_dir)
    data = load_data(cfg)
    precision = resolve_precision(cfg.training)
    if precision.device == "cpu":
        from ..util.resources import limit_torch_threads

        limit_torch_threads()
    do_eval = bool(data.dev_records) and bool(cfg.training.eval_steps)
    args = training_arguments(cfg, out, precision, do_eval)
    is_main = args.process_index == 0
    fingerprint = run_fingerprint(cfg, data.stats)
    with args.main_process_first(desc="preparing the output directory"):
        plan = prepare_output_dir(out, fingerprint, force=force, is_main=is_main)
    done = _report_plan(out, plan, wall_start, is_main)
    if done is not None:
        return done
    setup = RunSetup(cfg, args, out, plan, precision, is_main, wall_start)
    trainer, log_cb, source, base_print = _model_and_trainer(setup, data, callbacks)
    train_seconds = run_or_resume(trainer, plan, log_cb)
    # Evaluation time inside train() only: the final dev loss below runs after train_seconds
    # stopped, so it must not be taken off the training time.
    eval_in_train_seconds = log_cb.eval_total
    dev_loss = _final_dev_loss(trainer, log_cb, trainer.eval_dataset is not None)
    timing = measure(trainer, log_cb, precision, train_seconds, eval_in_train_seconds)
    base = (source, base_print)
    return _save_and_report(setup, trainer, log_cb, base, data, timing, dev_loss)


def _model_and_trainer(setup: RunSetup, data: TrainingData, callbacks: Sequence[Any]):
    """Load the model, encode the data with its prompt encoder, add LoRA, build the
    trainer: (trainer, log callback, model source, the base model's fingerprint)."""
    from transformers import set_seed

    cfg, t = setup.cfg, setup.cfg.training
    set_seed(t.seed)
    source, tokenizer, model, base_print = load_model(
        cfg, setup.precision, setup.args.local_process_index
    )
    encoder = _prompt_encoder(model, tokenizer, source, t.max_length)
    examples = encode_and_report(encoder, data, t.max_length, setup.is_main)
    set_seed(t.seed)  # LoRA initialisation does not depend on what ran before
    model = wrap_lora(cfg, model, base_print)
    if setup.is_main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        print(f"LoRA: {trainable:,} trainable of {total:,} parameters ({source})")
    trainer, log_cb = build_trainer(
        setup, model, tokenizer, encoder.pad_token_id, examples, callbacks
    )
    return trainer, log_cb, source, base_print


def _save_and_report(
    setup: RunSetup,
    trainer: Any,
    log_cb: Any,
    base: tuple[Any, str | None],
    data: TrainingData,
    timing: RunTiming,
    dev_loss: float | None,
) -> TrainResult:
    """Save the adapter (all ranks), publish it with its meta, log and print the end.
    `base` is the base model's source and fingerprint."""
    out, plan = setup.out, setup.plan
    source, base_print = base
    # Final adapter: write to a temporary directory, then move it into place.
    tmp_dir = out / f".{ADAPTER_NAME}.tmp"  # the same on every rank
    if setup.is_main and tmp_dir.exists():
        shutil.rmtree(tmp_dir)
    trainer.save_model(str(tmp_dir))
    result = TrainResult(
        output_dir=out,
        adapter_dir=out / ADAPTER_NAME,
        global_step=int(trainer.state.global_step),
        resumed_from_step=checkpoint_step(plan.resume_from) if plan.resume_from else None,
        train_loss=log_cb.last_loss,
        train_loss_mean=mean_logged_loss(trainer.state.log_history),
        dev_loss=dev_loss,
        tokens_per_second=timing.tokens_per_second,
        peak_rss_bytes=peak_rss_bytes(),
        wall_time_s=time.perf_counter() - setup.wall_start,
    )
    if setup.is_main:
        stats = (data.train_stats, data.dev_stats)
        meta = training_meta(setup.cfg, source, result, stats, setup.precision, setup.args, timing)
        meta["answer_only_logits"] = trainer.uses_answer_only_logits
        meta[FINGERPRINT_KEY] = base_print
        result.meta = meta
        publish_adapter(out, tmp_dir, meta)
        log_cb.write(
            {
                "event": "end",
                "step": result.global_step,
                "dev_loss": dev_loss,
                "tokens_per_s": round(result.tokens_per_second, 2),
                "peak_rss_bytes": result.peak_rss_bytes,
                "time": timestamp(),
            }
        )
        print(result.summary())
    trainer.accelerator.wait_for_everyone()
    return result


# ------------------------------------------------------------------------ __main__
USAGE = (
    "usage: python -m spacy_bioreama.training CONFIG --output DIR [--force] "
    "[--section.key VALUE ...]"
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spacy_bioreama.training CONFIG --output DIR [--force] [--a.b value ...]``
    (also the entry point for ``accelerate launch -m spacy_bioreama.training ...``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    force = "--force" in argv
    argv = [a for a in argv if a != "--force"]
    output: str | None = None
    for flag in ("--output", "-o"):
        if flag in argv:
            i = argv.index(flag)
            if i + 1 >= len(argv):
                print(USAGE, file=sys.stderr)
                return 2
            output = argv[i + 1]
            del argv[i : i + 2]
    if not argv or output is None or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    config_path, rest = argv[0], argv[1:]
    try:
        train(config_path, output, parse_overrides(rest), force=force)
    except (TrainConfigError, TrainingDataError, OutputDirConflict, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


__all__ = [
    "TrainResult",
    "TrainingData",
    "build_trainer",
    "encode_and_report",
    "load_data",
    "main",
    "publish_adapter",
    "run_or_resume",
    "train",
    "training_arguments",
]

if __name__ == "__main__":
    sys.exit(main())
