"""Loading a Hugging Face causal LM and encoding prompts for it.

- Devices: `"auto"` is CUDA with bfloat16 (float16 where bf16 is unsupported) when
  `torch.cuda.is_available()`, else CPU with float32; `"cpu"`, `"cuda"`, `"cuda:N"` are
  accepted. Adapters are merged into the base weights by default (`merge_adapter=True`),
  which makes adapter inference as fast as the base model.
- Prompts are rendered with the tokenizer's chat template
  (`apply_chat_template(messages, add_generation_prompt=True)`, system message first when
  given) and then tokenised without adding special tokens (the template already has them).
  Tokenizers without a chat template fall back to `PLAIN_PROMPT_FORMAT`, tokenised with
  the tokenizer's usual special tokens (e.g. bos).
- Too-long prompts: `generate` raises `PromptTooLongError` (a `ValueError`) naming the
  prompt index and both lengths before any generation starts. The component windows
  documents so that prompts fit; silently cutting a prompt would change the task (lose the
  instruction or the text the answer must be grounded in), so a misfit is a bug to surface.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .backend import ChatPrompt, Generation

PLAIN_PROMPT_FORMAT = "{system}### Instruction:\n{user}\n\n### Response:\n"
"""Prompt format for tokenizers without a chat template. `{system}` is the system message
followed by a blank line, or empty."""


class PromptTooLongError(ValueError):
    """A rendered prompt has more tokens than the backend's `max_prompt_tokens`."""

    def __init__(self, index: int, n_tokens: int, limit: int):
        self.index = index
        self.n_tokens = n_tokens
        self.limit = limit
        super().__init__(
            f"Prompt {index} has {n_tokens} tokens (chat template included), more than "
            f"max_prompt_tokens={limit}. Split the input into smaller windows or raise "
            "max_prompt_tokens (up to the model's context length)."
        )


@dataclass
class GenerationStats:
    """Running totals over `generate` calls (for throughput reports).

    `prompt_tokens` counts every prompt's full length; of those, `prefix_tokens_reused`
    were not computed because a shared prefix's KV cache was reused, and
    `prompt_tokens_computed` (= `prompt_tokens - prefix_tokens_reused`) went through the
    model (padding excluded). `shared_prefixes` counts the prefixes prefilled once for a
    group of prompts (those passes are not counted in `batches`, the batches of prompts).
    `prompt_tokens_per_second` is over all prompt tokens, reused ones included.
    """

    calls: int = 0
    prompts: int = 0
    choice_prompts: int = 0
    prompt_tokens: int = 0
    prompt_tokens_computed: int = 0
    prefix_tokens_reused: int = 0
    shared_prefixes: int = 0
    new_tokens: int = 0
    seconds: float = 0.0
    batches: int = 0

    @property
    def new_tokens_per_second(self) -> float:
        """Generated tokens per second of generation time."""
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def prompt_tokens_per_second(self) -> float:
        """Prompt tokens (reused prefix tokens included) per second of generation time."""
        return self.prompt_tokens / self.seconds if self.seconds > 0 else 0.0

    def reset(self) -> None:
        """Set every counter back to zero."""
        for name, value in asdict(GenerationStats()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        """The counters and both rates, for JSON reports."""
        out: dict[str, float] = asdict(self)
        out["new_tokens_per_second"] = self.new_tokens_per_second
        out["prompt_tokens_per_second"] = self.prompt_tokens_per_second
        return out

    def add_call(
        self,
        tally: GenerationStats,
        *,
        prompts: int,
        choice_prompts: int,
        prompt_tokens: int,
        new_tokens: int,
        seconds: float,
    ) -> None:
        """Add one finished `generate` call: its batch and prefix counts (`tally`) and its
        totals. `prompt_tokens_computed` is what the reused prefixes did not cover."""
        self.calls += 1
        self.batches += tally.batches
        self.prompts += prompts
        self.choice_prompts += choice_prompts
        self.prompt_tokens += prompt_tokens
        self.prompt_tokens_computed += prompt_tokens - tally.prefix_tokens_reused
        self.prefix_tokens_reused += tally.prefix_tokens_reused
        self.shared_prefixes += tally.shared_prefixes
        self.new_tokens += new_tokens
        self.seconds += seconds


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` → `cuda` when available, else `cpu`; otherwise `torch.device(device)`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:  # torch's message lists every device type it knows
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """`"auto"` → bfloat16 on CUDA (float16 without bf16 support), float32 elsewhere."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
        "float16": torch.float16,
        "fp16": torch.float16,
    }
    if dtype not in names:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of 'auto', {sorted(names)}")
    return names[dtype]


def eos_token_ids(tokenizer: Any, model: Any) -> list[int]:
    """Every end-of-sequence id the tokenizer or the model's generation config names (a
    chat model often ends its turn with a token other than the tokenizer's eos)."""
    ids: list[int] = []
    candidates: list[Any] = [tokenizer.eos_token_id]
    gen_config = getattr(model, "generation_config", None)
    if gen_config is not None:
        candidates.append(gen_config.eos_token_id)
    for cand in candidates:
        if cand is None:
            continue
        for i in cand if isinstance(cand, (list, tuple)) else [cand]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    if not ids:
        raise ValueError("The tokenizer/model define no end-of-sequence token")
    return ids


def text_config(model: Any) -> Any:
    """The config of the model's text part (multimodal models nest it)."""
    config = model.config
    return config.get_text_config() if hasattr(config, "get_text_config") else config


# How to turn a pickled PyTorch weights file into safetensors once, where it is trusted.
_CONVERT_HINT = (
    'Convert it once, on a machine where you trust the file: python -c "import torch, '
    "safetensors.torch as st; st.save_file(torch.load('{src}', weights_only=True), "
    "'{dst}')\""
)


# what PEFT says when an adapter's weights or target modules are not the base model's
_MISMATCH_MESSAGES = ("size mismatch", "Target modules", "not found in the base model")


def _adapter_mismatch(err: Exception) -> bool:
    return any(text in str(err) for text in _MISMATCH_MESSAGES)


def check_adapter_dir(adapter: Path) -> None:
    """Fail early, with a clear message, on a folder that is not a safetensors PEFT adapter.
    A pickled ``adapter_model.bin`` is refused: unpickling can run arbitrary code."""
    if not (adapter / "adapter_config.json").exists():
        inner = adapter / "adapter"  # a training run folder holds its adapter there
        hint = f"; did you mean {inner}?" if (inner / "adapter_config.json").exists() else ""
        raise FileNotFoundError(
            f"{adapter} is not a PEFT adapter directory (no adapter_config.json){hint}"
        )
    if not (adapter / "adapter_model.safetensors").is_file():  # the one name PEFT reads
        pickled = adapter / "adapter_model.bin"
        why = ""
        if pickled.exists():
            hint = _CONVERT_HINT.format(src=pickled, dst=adapter / "adapter_model.safetensors")
            why = (
                f"; {pickled.name} is a pickle file, and loading a pickle can run arbitrary "
                f"code. {hint}"
            )
        raise ValueError(
            f"{adapter} has no adapter_model.safetensors; only safetensors adapters are loaded{why}"
        )


def check_model_dir(model: str | Path) -> None:
    """Refuse, before transformers reads anything, a local model folder whose weights are
    only pickled PyTorch files (``pytorch_model*.bin``): unpickling can run arbitrary
    code. Hub ids are held to the same rule by ``use_safetensors=True``."""
    folder = Path(model).expanduser()
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickled = sorted(folder.glob("pytorch_model*.bin"))
    if pickled:
        hint = _CONVERT_HINT.format(src=pickled[0], dst=folder / "model.safetensors")
        raise ValueError(
            f"{folder} has only pickled weights ({pickled[0].name}); models are loaded from "
            f"safetensors only, since loading a pickle can run arbitrary code. {hint} "
            "(sharded checkpoints: load and save_pretrained them once with transformers)"
        )


def load_model_and_tokenizer(
    model_name_or_path: str | Path,
    adapter: Path | None,
    *,
    device: str | torch.device,
    dtype: str | torch.dtype,
    merge_adapter: bool,
    trust_remote_code: bool,
) -> tuple[Any, Any]:
    """Load a causal LM (local directory or hub id) in eval mode on `device`, with the
    LoRA `adapter` applied (merged into the weights unless `merge_adapter=False`).

    The tokenizer comes from the adapter directory when it has one (training may have
    saved it there), else from the base model.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    tok_source: str | Path = model_name_or_path
    if adapter is not None:
        check_adapter_dir(adapter)
        if (adapter / "tokenizer_config.json").exists():
            tok_source = adapter
    check_model_dir(model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(
        model_name_or_path,
        dtype=torch_dtype,
        use_safetensors=True,
        # Load straight onto the GPU rather than through CPU memory.
        device_map=str(dev) if dev.type == "cuda" else None,
        trust_remote_code=trust_remote_code,
    )
    if adapter is not None:
        from peft import PeftModel

        from .base_fingerprint import base_fingerprint, check_base_model

        check_base_model(base_fingerprint(model), adapter, str(model_name_or_path))
        try:
            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
        except (RuntimeError, ValueError) as err:
            if isinstance(err, torch.OutOfMemoryError) or not _adapter_mismatch(err):
                raise
            # PEFT's own message is a page of tensor shapes; the cause fits one line
            raise ValueError(
                f"adapter {adapter} does not fit base model {model_name_or_path} (was it "
                f"trained on another model?): {str(err).strip().splitlines()[0]}"
            ) from err
        if merge_adapter:
            model = model.merge_and_unload()
    model.to(dev)
    model.eval()
    return model, tokenizer


class PromptEncoding:
    """Prompt rendering and tokenisation, and the frame of `generate`, for `HFBackend` and
    `LlamaCppBackend` (a mixin): both see the same token ids.

    The host sets `tokenizer` and calls `_init_encoding()` once.
    """

    tokenizer: Any
    has_chat_template: bool
    max_prompt_tokens: int
    stats: GenerationStats

    def _init_encoding(self) -> None:
        self.has_chat_template = bool(getattr(self.tokenizer, "chat_template", None))
        self._option_cache: dict[str, tuple[int, ...]] = {}
        # A rendered prompt whose answer options are tokenised in place (option_token_ids).
        self._probe_text = self.render(ChatPrompt(user="x"))
        self._probe_ids = self._encode_rendered(self._probe_text)

    def render(self, prompt: ChatPrompt) -> str:
        """The prompt text exactly as the model sees it (ending with the assistant prefix)."""
        if self.has_chat_template:
            messages = []
            if prompt.system:
                messages.append({"role": "system", "content": prompt.system})
            messages.append({"role": "user", "content": prompt.user})
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
        system = f"{prompt.system}\n\n" if prompt.system else ""
        return PLAIN_PROMPT_FORMAT.format(system=system, user=prompt.user)

    def _encode_rendered(self, text: str) -> list[int]:
        # A chat template writes its own special tokens; the plain format relies on the
        # tokenizer's defaults (e.g. a bos token).
        enc = self.tokenizer(text, add_special_tokens=not self.has_chat_template)
        return list(enc["input_ids"])

    def encode_prompt(self, prompt: ChatPrompt) -> list[int]:
        """Token ids of the rendered prompt."""
        return self._encode_rendered(self.render(prompt))

    def count_prompt_tokens(self, prompt: ChatPrompt) -> int:
        """Tokens the whole rendered prompt takes (compare with `max_prompt_tokens`)."""
        return len(self.encode_prompt(prompt))

    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` takes (without special tokens)."""
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _decode(self, ids: Sequence[int], skip_special_tokens: bool) -> str:
        return self.tokenizer.decode(
            list(ids),
            skip_special_tokens=skip_special_tokens,
            clean_up_tokenization_spaces=False,
        )

    def option_token_ids(self, option: str) -> tuple[int, ...]:
        """Token ids of `option` as the model would write it right after the assistant prefix."""
        cached = self._option_cache.get(option)
        if cached is not None:
            return cached
        probe = self._probe_ids
        full = self._encode_rendered(self._probe_text + option)
        ids: list[int] | None = None
        if full[: len(probe)] == probe:
            ids = full[len(probe) :]
            if self._decode(ids, skip_special_tokens=False) != option:
                ids = None
        if ids is None:
            ids = list(self.tokenizer(option, add_special_tokens=False)["input_ids"])
        if self._decode(ids, skip_special_tokens=False) != option:
            raise ValueError(f"Option {option!r} does not survive tokenisation round trip")
        result = tuple(int(i) for i in ids)
        self._option_cache[option] = result
        return result

    def _answer_request(
        self,
        prompts: Sequence[ChatPrompt],
        choices: Sequence[Sequence[str] | None] | None,
        max_new_tokens: int,
        answer: Callable[..., None],
    ) -> list[Generation]:
        """The frame of every backend's `generate`: check and encode the whole request
        first, let `answer(free, constrained, encoded, option_lists, results, tally)` fill
        `results` (free and constrained are prompt indices), then count the call in
        `self.stats` (a failed call counts nothing)."""
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        prompts = list(prompts)
        encoded, option_lists = self._encode_request(prompts, choices)
        start = time.perf_counter()
        results: list[Generation | None] = [None] * len(prompts)
        free = [i for i in range(len(prompts)) if option_lists[i] is None]
        constrained = [i for i in range(len(prompts)) if option_lists[i] is not None]
        tally = GenerationStats()  # this call's counts, added to self.stats on success
        answer(free, constrained, encoded, option_lists, results, tally)
        final = [r for r in results if r is not None]
        assert len(final) == len(prompts)
        self.stats.add_call(
            tally,
            prompts=len(prompts),
            choice_prompts=len(constrained),
            prompt_tokens=sum(len(ids) for ids in encoded),
            new_tokens=sum(g.new_tokens for g in final),
            seconds=time.perf_counter() - start,
        )
        return final

    def _encode_request(
        self,
        prompts: list[ChatPrompt],
        choices: Sequence[Sequence[str] | None] | None,
    ) -> tuple[list[list[int]], list[list[str] | None]]:
        """Token ids of every prompt and its deduplicated options (None: free-form), checked
        before any generation starts: lengths, empty option lists, options that do not
        survive tokenisation."""
        if choices is not None and len(choices) != len(prompts):
            raise ValueError(f"{len(choices)} choice lists for {len(prompts)} prompts")
        encoded = [self.encode_prompt(p) for p in prompts]
        for i, ids in enumerate(encoded):
            if len(ids) > self.max_prompt_tokens:
                raise PromptTooLongError(i, len(ids), self.max_prompt_tokens)
        option_lists: list[list[str] | None] = []
        for i in range(len(prompts)):
            opts = None if choices is None else choices[i]
            if opts is not None:
                opts = list(dict.fromkeys(opts))  # dedupe, keep order
                if not opts:
                    raise ValueError(f"Prompt {i}: empty list of choices")
                for opt in opts:
                    self.option_token_ids(opt)
            option_lists.append(opts)
        return encoded, option_lists


__all__ = [
    "PLAIN_PROMPT_FORMAT",
    "GenerationStats",
    "PromptEncoding",
    "PromptTooLongError",
    "check_adapter_dir",
    "check_model_dir",
    "eos_token_ids",
    "load_model_and_tokenizer",
    "resolve_device",
    "resolve_dtype",
    "text_config",
]
