"""The training machinery around transformers' `Trainer`: device and precision, the model
with its LoRA adapter, the JSONL log callback and the answer-only loss.

Devices and precision
---------------------
``training.device = "auto"`` trains on CUDA when available, else on the CPU.
``training.bf16 = "auto"``: bf16 mixed precision (base weights loaded in bf16) on a GPU that
supports it, fp16 mixed precision on older GPUs; on the CPU, bf16 autocast (fp32 weights)
where the CPU has native bf16 instructions (AVX512-BF16 / AMX, `util.resources.cpu_has_bf16`:
a LoRA step ~1.5x faster), else fp32; ``true``/``false`` force it. The choice is recorded
in ``training_meta.json`` (``precision``, ``cpu_bf16``).
``training.qlora = true`` loads the base in 4 bits (NF4, double quantisation, bitsandbytes)
and applies `prepare_model_for_kbit_training`; it needs a CUDA GPU and `bitsandbytes`, and
raises a clear error otherwise.

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

import json
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import TrainConfig, TrainConfigError, TrainingSettings
from .data import IGNORE_INDEX, SeededSampler
from .rundir import timestamp


# ------------------------------------------------------------------- device setup
@dataclass(frozen=True)
class Precision:
    """Where and in which precision to train (from `resolve_precision`)."""

    device: str  # "cpu" or "cuda"
    bf16: bool
    fp16: bool
    load_dtype: Any  # torch.dtype

    @property
    def name(self) -> str:
        """ "bf16", "fp16" or "fp32"."""
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "fp32"


def _device(t: TrainingSettings, cuda: bool) -> str:
    if t.device == "auto":
        return "cuda" if cuda else "cpu"
    if t.device.startswith("cuda"):
        if not cuda:
            raise TrainConfigError(f"training.device={t.device!r} but CUDA is not available")
        return "cuda"
    return "cpu"


def resolve_precision(t: TrainingSettings) -> Precision:
    """Device and mixed precision from `training.device` / `training.bf16` / `qlora`."""
    import torch

    device = _device(t, torch.cuda.is_available())
    if t.qlora and device != "cuda":
        raise TrainConfigError(
            "training.qlora = true (4-bit base through bitsandbytes) needs a CUDA GPU; this "
            "run would be on the CPU. Set training.qlora = false (plain LoRA) here."
        )
    if device == "cuda":
        bf16_ok = torch.cuda.is_bf16_supported()
    else:
        from ..util.resources import cpu_has_bf16

        bf16_ok = cpu_has_bf16()
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


def load_model(cfg: TrainConfig, precision: Precision, local_rank: int):
    """(source, tokenizer, model, fingerprint) of ``[model] base``, in the run's precision
    (4-bit with QLoRA), on this process's GPU; the KV cache is off for training. The
    fingerprint (`base_fingerprint`) is taken as loaded, before QLoRA's preparation
    casts float16 norms to float32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models import resolve_model
    from ..models.base_fingerprint import base_fingerprint
    from ..models.hf_loading import check_model_dir

    source = resolve_model(cfg.model.base)
    check_model_dir(source)
    trust = cfg.model.trust_remote_code
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust)
    kwargs: dict[str, Any] = {
        "dtype": precision.load_dtype,
        "trust_remote_code": trust,
        "use_safetensors": True,
    }
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
    fingerprint = base_fingerprint(model)
    if cfg.training.qlora:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=cfg.training.gradient_checkpointing,
            gradient_checkpointing_kwargs={"use_reentrant": False},
        )
    return source, tokenizer, model, fingerprint


def wrap_lora(cfg: TrainConfig, model: Any, fingerprint: str | None = None):
    """The PEFT model to train: a fresh ``[lora]`` adapter, or ``model.adapter_init``
    (checked against the base model's `fingerprint`, from `load_model`)."""
    from peft import PeftModel, get_peft_model

    if cfg.model.adapter_init:
        from ..models.hf_loading import check_adapter_dir

        path = Path(cfg.model.adapter_init).expanduser()
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"model.adapter_init {str(path)!r} is not a PEFT adapter directory"
            )
        check_adapter_dir(path)
        from ..models.base_fingerprint import check_base_model

        check_base_model(fingerprint, path, str(cfg.model.base))
        # The adapter's own LoRA config (rank, targets) applies; [lora] is not used.
        return PeftModel.from_pretrained(model, str(path), is_trainable=True)
    return get_peft_model(model, cfg.lora)


# ------------------------------------------------------------------------ callbacks
class RunLog:
    """The run's log, `train_log.jsonl`: one JSON line per start/resume, logging step and
    evaluation (main process only, `enabled`), plus what the summary needs: last
    losses, tokens and training/evaluation seconds. `log_callback_class` makes it a
    `TrainerCallback`."""

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

    def write(self, record: dict[str, Any]) -> None:
        """Append one record to the log (nothing on other processes)."""
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf8") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def begin(self, state: Any) -> None:
        """Training starts (or resumes) at `state.global_step`."""
        self.t0 = self.last_t = time.perf_counter()
        self.start_tokens = self.last_tokens = int(state.num_input_tokens_seen or 0)
        self.start_step = int(state.global_step)
        event: dict[str, Any] = {
            "event": "resume" if self.resumed_from is not None else "start",
            "step": int(state.global_step),
            "max_steps": int(state.max_steps),
            "time": timestamp(),
        }
        if self.resumed_from is not None:
            event["checkpoint"] = self.resumed_from.name
        self.write(event)

    def log(self, state: Any, logs: Mapping[str, Any]) -> None:
        """One `Trainer` log event: a training loss, an evaluation, or the final runtime."""
        now = time.perf_counter()
        step = int(state.global_step)
        if "loss" in logs:
            self._log_loss(state, logs, now, step)
        if "eval_loss" in logs:
            self.eval_seconds += float(logs.get("eval_runtime", 0.0))
            self.eval_total += float(logs.get("eval_runtime", 0.0))
            self.last_eval_loss = float(logs["eval_loss"])
            self.last_eval_step = step
            self.write(
                {
                    "step": step,
                    "eval_loss": float(logs["eval_loss"]),
                    "eval_runtime": float(logs.get("eval_runtime", 0.0)),
                    "elapsed": round(now - self.t0, 3),
                }
            )
        if "train_runtime" in logs:
            self.train_seconds = float(logs["train_runtime"])

    def _log_loss(self, state: Any, logs: Mapping[str, Any], now: float, step: int) -> None:
        tokens = int(state.num_input_tokens_seen or 0)
        seconds = max(now - self.last_t - self.eval_seconds, 1e-9)
        self.last_loss = float(logs["loss"])
        grad_norm = logs.get("grad_norm")
        self.write(
            {
                "step": step,
                "epoch": round(float(state.epoch or 0.0), 4),
                "loss": float(logs["loss"]),
                "learning_rate": float(logs.get("learning_rate", float("nan"))),
                "grad_norm": float(grad_norm) if grad_norm is not None else None,
                "tokens_per_s": round((tokens - self.last_tokens) / seconds, 2),
                "tokens_seen": tokens,
                "elapsed": round(now - self.t0, 3),
            }
        )
        self.last_t, self.last_tokens, self.eval_seconds = now, tokens, 0.0

    def end(self) -> None:
        """Training ended: keep its duration when `Trainer` did not log one."""
        self.train_seconds = self.train_seconds or (time.perf_counter() - self.t0)


def mean_logged_loss(log_history: list[Mapping[str, Any]]) -> float | None:
    """The training loss averaged over every step of the run, resumed parts included:
    each logged loss is the mean of the steps since the previous one, so it is weighted
    by their number. (The last logged loss alone covers only `logging_steps` examples:
    with batch 1 it moves by a factor of two between runs that learned alike.)"""
    total = 0.0
    steps = previous = 0
    for entry in log_history:
        if "loss" not in entry or "step" not in entry:
            continue
        step = int(entry["step"])
        total += float(entry["loss"]) * (step - previous)
        steps += step - previous
        previous = step
    return total / steps if steps else None


def log_callback_class():
    """`RunLog` as a `transformers.TrainerCallback` (defined lazily: transformers loads
    on first use)."""
    from transformers import TrainerCallback

    class JsonlLogCallback(RunLog, TrainerCallback):
        """Writes `train_log.jsonl` as training runs (see `RunLog`)."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.begin(state)

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.log(state, logs or {})

        def on_train_end(self, args, state, control, **kwargs):
            self.end()

    return JsonlLogCallback


def restore_final_checkpoint(trainer: Any, path: Path, log_cb: RunLog) -> None:
    """Load the adapter and trainer state of a finished run's last checkpoint.

    For a run killed after its last checkpoint but before the adapter was moved into
    place (`Trainer.train` would run one step more when resumed at max_steps)."""
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
    log_cb.write(
        {
            "event": "resume",
            "step": state.global_step,
            "max_steps": state.max_steps,
            "time": timestamp(),
            "checkpoint": path.name,
            "finished": True,
        }
    )


# ----------------------------------------------------------------------------- loss
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


def trainer_class():
    """The `LoraTrainer` class (defined lazily: transformers loads on first use)."""
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

        @property
        def uses_answer_only_logits(self) -> bool:
            """Whether the fast loss is (still) in use."""
            return self._answer_logits is not None

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


__all__ = [
    "Precision",
    "RunLog",
    "answer_logits_model",
    "answer_only_loss",
    "load_model",
    "log_callback_class",
    "resolve_precision",
    "restore_final_checkpoint",
    "trainer_class",
    "wrap_lora",
]
