"""The Hugging Face backend: any local (or hub) causal LM, optionally with a LoRA adapter.

Design
------
- Prompts are rendered with the tokenizer's chat template
  (`apply_chat_template(messages, add_generation_prompt=True)`, system message first when
  given) and then tokenised without adding special tokens (the template already has them).
  Tokenizers without a chat template fall back to `PLAIN_PROMPT_FORMAT`, tokenised with
  the tokenizer's usual special tokens (e.g. bos).
- Free-form generation is greedy, batched with left padding: prompts are sorted by length
  into batches of `batch_size` and the answers put back in the caller's order. The decoding
  loop is our own (prompt forward pass with a KV cache, then one token per step) rather
  than `model.generate`: it needs no generation config (a model's sampling defaults or
  repetition penalty cannot leak in), passes explicit position ids (exact under left
  padding), and drops finished rows from the batch so short answers do not pay for long
  ones. `logprob` is the sum of the model's (unprocessed) log-probabilities of the
  generated tokens, end-of-sequence token included.
- Constrained choices: each option is tokenised as it appears right after the assistant
  prefix and followed by end-of-sequence; the options form a token trie. At every trie
  node the model's distribution is renormalised over the allowed next tokens (the
  children, plus end-of-sequence where an option ends there), so the options receive a
  proper distribution (probabilities sum to 1); the answer is its most probable option,
  `logprob` the log of that probability (`exp(logprob)` is a confidence in [0, 1]) and
  `ChoiceGeneration.distribution` carries the probabilities of all options. This is the
  distribution a greedy `prefix_allowed_tokens_fn` decoder walks through, but the answer
  is the best option overall rather than the greedy path's leaf.
  All options are scored exactly in one extra forward pass on top of the prompt's KV
  cache. "packed" (sdpa/eager attention): all options of a prompt go into one row with a
  4D attention mask (each option token sees the prompt and its own earlier tokens;
  positions restart after the prompt), so the cache is never copied. "repeated" (for
  attention implementations without custom 4D masks, e.g. flash attention): one row per
  option on a copy of the prompt's cache, batches sized to `choice_kv_budget` bytes.
- Shared prefixes (`prefix_sharing=True`, the default): the prompts of one `generate` call
  often repeat a long prefix (relation extraction sends one prompt per concept pair of a
  window, identical up to the final "Entity 1/Entity 2" lines), and prefilling that prefix
  again for every prompt is most of the work. Prompts are grouped by the longest common
  prefix of their token ids (see `_prefix_groups`; working on token ids handles BPE merges
  at the junction for free); each group's prefix is prefilled once (batch 1), its KV cache
  is repeated across a batch of the group's prompts and only their suffixes are computed
  (left-padded after the prefix, with explicit positions and attention mask), after which
  free generation or option scoring proceeds exactly as without sharing. The results are
  the same up to float rounding. Sharing needs a plain full-attention `DynamicCache`
  (every layer a `DynamicLayer`): other caches (sliding-window, recurrent/linear
  attention, quantised, legacy tuples) would see the padding hole between prefix and
  suffix or cannot be repeated safely, so the backend falls back to whole prompts there.
- Too-long prompts: `generate` raises `PromptTooLongError` (a `ValueError`) naming the
  prompt index and both lengths before any generation starts. The component windows
  documents so that prompts fit; silently cutting a prompt would change the task (lose the
  instruction or the text the answer must be grounded in), so a misfit is a bug to surface.
- Devices: `"auto"` is CUDA with bfloat16 (float16 where bf16 is unsupported) when
  `torch.cuda.is_available()`, else CPU with float32; `"cpu"`, `"cuda"`, `"cuda:N"` are
  accepted. Adapters are merged into the base weights by default (`merge_adapter=True`),
  which makes adapter inference as fast as the base model.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .backend import ChatPrompt, Generation, LineGuard

DEFAULT_MAX_PROMPT_TOKENS = 2048
DEFAULT_BATCH_SIZE = 8
# How much memory (bytes) the repeated prompt KV cache may take when scoring options (and
# the shared-prefix cache once repeated across a batch).
DEFAULT_CHOICE_KV_BUDGET = 1 << 30
# Prompts are grouped on a shared prefix when their common token prefix is at least this
# long and at least this fraction of the shortest prompt of the group (see `_prefix_groups`).
PREFIX_MIN_TOKENS = 32
PREFIX_MIN_FRACTION = 0.5

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


@dataclass(frozen=True)
class ChoiceGeneration(Generation):
    """A constrained answer, with the renormalised probability of every option."""

    distribution: tuple[tuple[str, float], ...] = ()

    @property
    def probabilities(self) -> dict[str, float]:
        return dict(self.distribution)


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
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def prompt_tokens_per_second(self) -> float:
        return self.prompt_tokens / self.seconds if self.seconds > 0 else 0.0

    def reset(self) -> None:
        for name, value in asdict(GenerationStats()).items():
            setattr(self, name, value)

    def as_dict(self) -> dict[str, float]:
        out: dict[str, float] = asdict(self)
        out["new_tokens_per_second"] = self.new_tokens_per_second
        out["prompt_tokens_per_second"] = self.prompt_tokens_per_second
        return out


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """`"auto"` → `cuda` when available, else `cpu`; otherwise `torch.device(device)`."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
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


def _eos_ids(tokenizer: Any, model: Any) -> list[int]:
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


class LineEnder:
    """Applies a `LineGuard` while decoding: after each token it looks at the answer's
    unfinished last line and says when the next token must end it. The forced token is
    the tokenizer's newline, or end-of-sequence where no single newline token exists."""

    def __init__(self, backend: HFBackend, guard: LineGuard):
        self.guard = guard
        self._backend = backend
        newline = backend.tokenizer.encode("\n", add_special_tokens=False)
        self.token_id = int(newline[0]) if len(newline) == 1 else backend.eos_token_ids[0]

    def must_end_line(self, answer_ids: Sequence[int]) -> bool:
        text = self._backend._decode(answer_ids, skip_special_tokens=True)
        return self.guard(text.rsplit("\n", 1)[-1])

    def logits_processor(self, prompt_length: int) -> Callable[[Any, Any], Any]:
        """The same rule for transformers' `generate` (batch 1): once the guard fires,
        only the line-ending token is allowed next."""

        def process(input_ids: Any, scores: Any) -> Any:
            answer = input_ids[0, prompt_length:].tolist()
            if answer and self.must_end_line(answer):
                forced = scores.new_full(scores.shape, float("-inf"))
                forced[:, self.token_id] = 0.0
                return forced
            return scores

        return process


class HFBackend:
    """Greedy (optionally constrained) generation with a Hugging Face causal LM.

    Implements `GenerationBackend`. Build it with `HFBackend.from_pretrained(...)` (or
    `spacy_bioreama.models.load_backend`), or wrap an already loaded model and tokenizer.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        choice_kv_budget: int = DEFAULT_CHOICE_KV_BUDGET,
        choice_scoring: str = "auto",
        prefix_sharing: bool = True,
        name: str | None = None,
        adapter: str | None = None,
    ):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if max_prompt_tokens < 1:
            raise ValueError("max_prompt_tokens must be >= 1")
        self.model = model
        self.model.eval()
        self.tokenizer = tokenizer
        self.batch_size = int(batch_size)
        self.choice_kv_budget = int(choice_kv_budget)
        self.name = name or str(getattr(model, "name_or_path", "") or "model")
        self.adapter = adapter
        self.eos_token_ids = _eos_ids(tokenizer, model)
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.eos_token_ids[0]
        config = (
            model.config.get_text_config()
            if hasattr(model.config, "get_text_config")
            else model.config
        )
        self._text_config = config
        limit = getattr(config, "max_position_embeddings", None)
        self.context_length: int | None = int(limit) if limit else None
        self._max_prompt_tokens = int(max_prompt_tokens)
        if self.context_length is not None:
            self._max_prompt_tokens = min(self._max_prompt_tokens, self.context_length)
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.stats = GenerationStats()
        self._option_cache: dict[str, tuple[int, ...]] = {}
        self._logits_to_keep = True
        attn = getattr(config, "_attn_implementation", None) or "eager"
        if choice_scoring == "auto":
            choice_scoring = "packed" if attn in ("sdpa", "eager") else "repeated"
        if choice_scoring not in ("packed", "repeated"):
            raise ValueError(
                f"choice_scoring must be 'auto', 'packed' or 'repeated', not {choice_scoring!r}"
            )
        self.choice_scoring = choice_scoring
        # Reuse the KV cache of prefixes shared by several prompts of a call (see the
        # module docstring); the grouping thresholds are attributes so they can be tuned.
        self.prefix_sharing = bool(prefix_sharing)
        self.prefix_min_tokens = PREFIX_MIN_TOKENS
        self.prefix_min_fraction = PREFIX_MIN_FRACTION
        self._probe_text = self.render(ChatPrompt(user="x"))
        self._probe_ids = self._encode_rendered(self._probe_text)

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        model_name_or_path: str | Path,
        adapter: str | Path | None = None,
        *,
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        max_prompt_tokens: int = DEFAULT_MAX_PROMPT_TOKENS,
        batch_size: int = DEFAULT_BATCH_SIZE,
        merge_adapter: bool = True,
        choice_kv_budget: int = DEFAULT_CHOICE_KV_BUDGET,
        choice_scoring: str = "auto",
        prefix_sharing: bool = True,
        trust_remote_code: bool = False,
    ) -> HFBackend:
        """Load a causal LM (local directory or hub id) and an optional LoRA adapter.

        The tokenizer comes from the adapter directory when it has one (training may have
        saved it there), else from the base model.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, dev)
        tok_source: str | Path = model_name_or_path
        if adapter is not None:
            adapter = Path(adapter)
            _check_adapter_dir(adapter)
            if (adapter / "tokenizer_config.json").exists():
                tok_source = adapter
        tokenizer = AutoTokenizer.from_pretrained(tok_source, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            model_name_or_path,
            dtype=torch_dtype,
            # Load straight onto the GPU rather than through CPU memory.
            device_map=str(dev) if dev.type == "cuda" else None,
            trust_remote_code=trust_remote_code,
        )
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter), is_trainable=False)
            if merge_adapter:
                model = model.merge_and_unload()
        model.to(dev)
        model.eval()
        return cls(
            model,
            tokenizer,
            max_prompt_tokens=max_prompt_tokens,
            batch_size=batch_size,
            choice_kv_budget=choice_kv_budget,
            choice_scoring=choice_scoring,
            prefix_sharing=prefix_sharing,
            name=str(model_name_or_path),
            adapter=str(adapter) if adapter is not None else None,
        )

    # --------------------------------------------------------------- properties
    @property
    def max_prompt_tokens(self) -> int:
        """Longest accepted prompt (chat template included), capped by the context length."""
        return self._max_prompt_tokens

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # ------------------------------------------------------------ tokenisation
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

    # --------------------------------------------------------------- generation
    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        *,
        max_new_tokens: int,
        choices: Sequence[Sequence[str] | None] | None = None,
        line_guard: LineGuard | None = None,
    ) -> list[Generation]:
        """Greedy answers for `prompts`, in order.

        `choices[i]` (a list of option strings, or None for a free-form answer) constrains
        answer i to exactly one option; those answers are `ChoiceGeneration`s, whose
        `logprob` is the log of the option's renormalised probability. `max_new_tokens`
        limits free-form answers only (options are always complete). `line_guard` ends a
        free-form answer's line (forces a newline) when it returns True for that line;
        `Generation.lines_ended` counts how often it did.
        """
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be >= 1")
        prompts = list(prompts)
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

        start = time.perf_counter()
        results: list[Generation | None] = [None] * len(prompts)
        free = [i for i in range(len(prompts)) if option_lists[i] is None]
        constrained = [i for i in range(len(prompts)) if option_lists[i] is not None]
        tally = GenerationStats()  # this call's counts, added to self.stats on success
        with torch.inference_mode():
            self._answer(free, encoded, option_lists, max_new_tokens, results, tally, line_guard)
            self._answer(constrained, encoded, option_lists, max_new_tokens, results, tally)
        elapsed = time.perf_counter() - start

        final = [r for r in results if r is not None]
        assert len(final) == len(prompts)
        n_prompt_tokens = sum(len(ids) for ids in encoded)
        self.stats.calls += 1
        self.stats.batches += tally.batches
        self.stats.prompts += len(prompts)
        self.stats.choice_prompts += len(constrained)
        self.stats.prompt_tokens += n_prompt_tokens
        self.stats.prompt_tokens_computed += n_prompt_tokens - tally.prefix_tokens_reused
        self.stats.prefix_tokens_reused += tally.prefix_tokens_reused
        self.stats.shared_prefixes += tally.shared_prefixes
        self.stats.new_tokens += sum(g.new_tokens for g in final)
        self.stats.seconds += elapsed
        return final

    def _answer(
        self,
        indices: list[int],
        encoded: list[list[int]],
        option_lists: list[list[str] | None],
        max_new_tokens: int,
        results: list[Generation | None],
        tally: GenerationStats,
        line_guard: LineGuard | None = None,
    ) -> None:
        """Answer the prompts `indices` (all free-form or all constrained) into `results`.

        Groups sharing a long prefix go first, each on its prefix's KV cache prefilled once;
        the remaining prompts (and every prompt when prefix sharing is off or the model's
        cache cannot be shared) are answered whole, in ordinary length-sorted batches.
        """
        if not indices:
            return
        constrained = option_lists[indices[0]] is not None

        def run(batch: list[int], prefix: _SharedPrefix | None = None) -> None:
            ids = [encoded[i] for i in batch]
            if constrained:
                outs: Sequence[Generation] = self._choose(
                    ids, [option_lists[i] for i in batch], prefix
                )
            else:
                outs = self._greedy(ids, max_new_tokens, prefix, line_guard)
            for i, out in zip(batch, outs, strict=True):
                results[i] = out
            tally.batches += 1

        def rows(i: int) -> int:
            # KV-cache rows a prompt takes while it is answered: one per option when options
            # are scored on repeated caches, else one.
            if constrained and self.choice_scoring == "repeated":
                return len(option_lists[i] or ())
            return 1

        rest = list(indices)
        if self.prefix_sharing:
            groups, rest = self._prefix_groups(indices, encoded)
            for k, (length, members) in enumerate(groups):
                prefix = self._prefill_prefix(encoded[members[0]][:length])
                if prefix is None:  # this model's cache cannot be shared: no group can
                    rest.extend(i for _, group in groups[k:] for i in group)
                    break
                tally.shared_prefixes += 1
                tally.prefix_tokens_reused += (len(members) - 1) * length
                for batch in self._budget_batches(members, encoded, rows):
                    run(batch, prefix)
                del prefix
        batches = (
            self._choice_batches(rest, encoded, option_lists)
            if constrained
            else self._batches(rest, encoded)
        )
        for batch in batches:
            run(batch)

    def _prefix_groups(
        self, indices: list[int], encoded: list[list[int]]
    ) -> tuple[list[tuple[int, list[int]]], list[int]]:
        """Groups of prompts that share a prefix worth prefilling once, and the others.

        Returns `(groups, rest)`, each group as `(prefix_length, members)`: at least two
        prompts whose token ids all start with the same `prefix_length` ids.

        The rule. Sorted by token ids, prompts with a common prefix are neighbours, and the
        common prefix of a run of sorted prompts is the smallest common prefix of adjacent
        ones; cutting a run where that smallest value occurs gives runs with longer common
        prefixes (the LCP-interval tree). A run qualifies as a group when its shared prefix,
        stopped one token before the end of its shortest prompt (every prompt keeps at least
        one token to compute: its logits start the answer), is
        - at least `prefix_min_tokens` long (below that, the extra prefix pass costs about
          what it saves), and
        - at least `prefix_min_fraction` of its shortest prompt: prompts that share only
          boilerplate (chat template, instruction) but differ in their text stay apart.
        From the whole sorted list down, a run is kept as one group when that saves at least
        as many prompt tokens ((members - 1) x prefix) as the best split into its sub-runs;
        so one prompt that shares a shorter prefix cannot drag a large group down to it.
        Comparing token ids rather than strings handles BPE merges at the junction: the
        prefix ends where the tokenisations diverge.
        """
        order = sorted(indices, key=lambda i: encoded[i])
        n = len(order)
        lcp = [0] * n  # lcp[k]: common prefix length of order[k - 1] and order[k]
        for k in range(1, n):
            lcp[k] = _common_prefix_length(encoded[order[k - 1]], encoded[order[k]])

        def usable(lo: int, hi: int) -> int:
            """Prefix order[lo:hi] (two or more) shares as one group; 0 if not a group."""
            shortest = min(len(encoded[i]) for i in order[lo:hi])
            length = min(min(lcp[lo + 1 : hi]), shortest - 1)
            if length >= self.prefix_min_tokens and length >= self.prefix_min_fraction * shortest:
                return length
            return 0

        # Post-order walk of the LCP-interval tree (iterative: nesting can be deep).
        # best[lo, hi]: (prompt tokens saved, groups as (prefix length, lo, hi)).
        best: dict[tuple[int, int], tuple[int, list[tuple[int, int, int]]]] = {}
        stack = [(0, n, False)]
        while stack:
            lo, hi, children_done = stack.pop()
            if hi - lo < 2:
                best[lo, hi] = (0, [])
                continue
            low = min(lcp[lo + 1 : hi])
            cuts = [lo] + [k for k in range(lo + 1, hi) if lcp[k] == low] + [hi]
            parts = list(zip(cuts, cuts[1:], strict=False))
            if not children_done:
                stack.append((lo, hi, True))
                stack.extend((a, b, False) for a, b in parts)
                continue
            split_saved = sum(best[p][0] for p in parts)
            length = usable(lo, hi)
            if length and (hi - lo - 1) * length >= split_saved:
                best[lo, hi] = ((hi - lo - 1) * length, [(length, lo, hi)])
            else:
                best[lo, hi] = (split_saved, [g for p in parts for g in best[p][1]])
        groups = [(length, order[lo:hi]) for length, lo, hi in best[0, n][1]] if n else []
        grouped = {i for _, members in groups for i in members}
        return groups, [i for i in order if i not in grouped]

    def _prefill_prefix(self, ids: list[int]) -> _SharedPrefix | None:
        """Prefill a shared prefix (batch 1); None where the model's cache cannot be shared.

        The first unsupported cache turns `prefix_sharing` off for this backend (with a
        warning), so later calls do not prefill prefixes in vain.
        """
        _, cache, _, _ = self._prefill([ids])
        if not _is_shareable_cache(cache):
            self.prefix_sharing = False
            warnings.warn(
                f"{type(cache).__name__} of {self.name} cannot be shared across prompts "
                "(only full-attention DynamicCache layers can); prefix sharing is off.",
                stacklevel=3,
            )
            return None
        return _SharedPrefix(len(ids), cache)

    def _batches(self, indices: list[int], encoded: list[list[int]]) -> list[list[int]]:
        order = sorted(indices, key=lambda i: len(encoded[i]))
        return [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]

    def _kv_bytes_per_token(self) -> int:
        cfg = self._text_config
        layers = getattr(cfg, "num_hidden_layers", None) or 32
        heads = getattr(cfg, "num_attention_heads", None) or 32
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or (
            getattr(cfg, "hidden_size", 4096) // max(1, heads)
        )
        elem = torch.finfo(self.dtype).bits // 8 if self.dtype.is_floating_point else 4
        return 2 * layers * kv_heads * head_dim * elem

    def _budget_batches(
        self, indices: list[int], encoded: list[list[int]], rows: Callable[[int], int]
    ) -> list[list[int]]:
        """Length-sorted batches of at most `batch_size` prompts whose KV caches stay within
        `choice_kv_budget`: prompt i takes `rows(i)` cache rows, each as wide as the batch's
        longest prompt (a batch always holds at least one prompt)."""
        per_token = self._kv_bytes_per_token()
        batches: list[list[int]] = []
        current: list[int] = []
        n_rows = 0
        for i in sorted(indices, key=lambda i: len(encoded[i])):
            width = len(encoded[i])  # sorted ascending: the newest prompt is the longest
            if current and (
                len(current) >= self.batch_size
                or (n_rows + rows(i)) * width * per_token > self.choice_kv_budget
            ):
                batches.append(current)
                current, n_rows = [], 0
            current.append(i)
            n_rows += rows(i)
        if current:
            batches.append(current)
        return batches

    def _choice_batches(
        self,
        indices: list[int],
        encoded: list[list[int]],
        option_lists: list[list[str] | None],
    ) -> list[list[int]]:
        """Length-sorted batches; with repeated rows, the copied KV caches stay in budget."""
        if self.choice_scoring == "packed":
            return self._batches(indices, encoded)
        return self._budget_batches(indices, encoded, lambda i: len(option_lists[i] or ()))

    def _prefill(self, batch_ids: list[list[int]], prefix: _SharedPrefix | None = None):
        """Left-padded prompt pass: last logits, KV cache, attention mask, next positions.

        With a shared `prefix` (whose ids every prompt starts with), only the tokens after
        it are computed, on a copy of its cache repeated for the batch. They are left-padded
        after the prefix, so the padding is a hole between prefix and suffix; the attention
        mask hides it and the explicit positions skip it, exactly as for leading padding,
        so the logits and cache are those of the whole prompts.
        """
        device = self.device
        start = prefix.length if prefix is not None else 0
        tails = [ids[start:] for ids in batch_ids]
        n, width = len(tails), max(len(t) for t in tails)
        input_ids = torch.full((n, width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for row, ids in enumerate(tails):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        position_ids = start + (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = dict(
            input_ids=input_ids, position_ids=position_ids, use_cache=True
        )
        if prefix is not None:
            mask = torch.cat([mask.new_ones((n, start)), mask], dim=-1)
            kwargs["past_key_values"] = prefix.repeated(n)
        kwargs["attention_mask"] = mask
        if self._logits_to_keep:
            # Only the last position's logits are needed: skips a (batch x length x vocab)
            # projection, ~10% of the prompt pass for a small model with a large vocabulary.
            try:
                out = self.model(**kwargs, logits_to_keep=1)
            except TypeError:
                self._logits_to_keep = False
                out = self.model(**kwargs)
        else:
            out = self.model(**kwargs)
        next_pos = mask.sum(-1)
        return out.logits[:, -1, :].float(), out.past_key_values, mask, next_pos

    def _greedy(
        self,
        batch_ids: list[list[int]],
        max_new_tokens: int,
        prefix: _SharedPrefix | None = None,
        line_guard: LineGuard | None = None,
    ) -> list[Generation]:
        device = self.device
        n = len(batch_ids)
        eos = torch.tensor(self.eos_token_ids, device=device)
        logits, cache, mask, next_pos = self._prefill(batch_ids, prefix)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs = [0.0] * n
        stopped = [False] * n
        ender = LineEnder(self, line_guard) if line_guard is not None else None
        end_line = [False] * n  # the row's next token must end its line
        lines_ended = [0] * n
        active = torch.arange(n, device=device)
        for step in range(max_new_tokens):
            logp = torch.log_softmax(logits, dim=-1)
            next_tok = logits.argmax(dim=-1)
            rows = active.tolist()
            if ender is not None:
                forced = [k for k, orig in enumerate(rows) if end_line[orig]]
                if forced:
                    next_tok[torch.tensor(forced, device=device)] = ender.token_id
            tok_lp = logp.gather(-1, next_tok[:, None])[:, 0]
            finished = torch.isin(next_tok, eos)
            for orig, tok, lp, fin in zip(
                rows, next_tok.tolist(), tok_lp.tolist(), finished.tolist(), strict=True
            ):
                tokens[orig].append(tok)
                logprobs[orig] += lp
                stopped[orig] = fin
                if ender is not None:
                    lines_ended[orig] += end_line[orig]
                    end_line[orig] = not fin and ender.must_end_line(tokens[orig])
            if step == max_new_tokens - 1:
                break
            keep = ~finished
            if not bool(keep.any()):
                break
            if not bool(keep.all()):
                keep_idx = keep.nonzero()[:, 0]
                cache.reorder_cache(keep_idx)
                active, mask = active[keep_idx], mask[keep_idx]
                next_tok, next_pos = next_tok[keep_idx], next_pos[keep_idx]
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=-1)
            out = self.model(
                input_ids=next_tok[:, None],
                attention_mask=mask,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
            )
            cache = out.past_key_values
            next_pos = next_pos + 1
            logits = out.logits[:, -1, :].float()
        results = []
        for i in range(n):
            ids = tokens[i][:-1] if stopped[i] else tokens[i]
            text = self._decode(ids, skip_special_tokens=True).strip()
            results.append(
                Generation(
                    text=text,
                    logprob=float(logprobs[i]),
                    prompt_tokens=len(batch_ids[i]),
                    new_tokens=len(tokens[i]),
                    truncated=not stopped[i],
                    lines_ended=lines_ended[i],
                )
            )
        return results

    def _score_packed(self, seqs_per_prompt, cache, mask, next_pos, node_logp) -> None:
        """All options of a prompt in one packed row after its cached prompt ("tree attention").

        A 4D mask lets each option token see the prompt and the earlier tokens of its own
        option only, and position ids restart after the prompt for every option, so each
        option is scored exactly as if alone, without copying the prompt's KV cache.
        """
        device = self.device
        n, width = mask.shape
        total = max(sum(len(seq) for seq in seqs) for seqs in seqs_per_prompt)
        inp = torch.full((n, total), self.pad_token_id, dtype=torch.long)
        pos = torch.zeros((n, total), dtype=torch.long)
        allowed = torch.zeros((n, total, width + total), dtype=torch.bool)
        allowed[:, :, :width] = mask.bool().cpu()[:, None, :]
        starts: list[list[int]] = []
        base = next_pos.cpu()
        for b, seqs in enumerate(seqs_per_prompt):
            offset, row_starts = 0, []
            for seq in seqs:
                length = len(seq)
                row_starts.append(offset)
                if length:
                    sl = slice(offset, offset + length)
                    inp[b, sl] = torch.tensor(seq, dtype=torch.long)
                    pos[b, sl] = base[b] + torch.arange(length)
                    allowed[b, sl, width + offset : width + offset + length] = torch.ones(
                        (length, length), dtype=torch.bool
                    ).tril()
                offset += length
            starts.append(row_starts)
            for q in range(offset, total):  # padding queries: attend to themselves only
                allowed[b, q, width + q] = True
                pos[b, q] = base[b]
        attn = torch.zeros(allowed.shape, dtype=self.dtype)
        attn.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        out = self.model(
            input_ids=inp.to(device),
            attention_mask=attn[:, None].to(device),
            position_ids=pos.to(device),
            past_key_values=cache,
            use_cache=True,
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (prompts, total, vocab)
        for b, seqs in enumerate(seqs_per_prompt):
            for seq, offset in zip(seqs, starts[b], strict=True):
                for j in range(1, len(seq) + 1):
                    node_logp[b].setdefault(seq[:j], logp[b, offset + j - 1])

    def _score_repeated(self, seqs_per_prompt, cache, mask, next_pos, node_logp) -> None:
        """One row per option, each on its own copy of the prompt's KV cache (fallback for
        attention implementations that take no custom 4D mask, e.g. flash attention)."""
        device = self.device
        rows = [(b, seq) for b, seqs in enumerate(seqs_per_prompt) for seq in seqs if seq]
        length = max(len(seq) for _, seq in rows)
        prompt_idx = torch.tensor([b for b, _ in rows], device=device)
        inp = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        opt_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for r, (_, seq) in enumerate(rows):
            inp[r, : len(seq)] = torch.tensor(seq, dtype=torch.long)
            opt_mask[r, : len(seq)] = 1
        inp, opt_mask = inp.to(device), opt_mask.to(device)
        cache.reorder_cache(prompt_idx)
        out = self.model(
            input_ids=inp,
            attention_mask=torch.cat([mask[prompt_idx], opt_mask], dim=-1),
            position_ids=next_pos[prompt_idx][:, None] + torch.arange(length, device=device),
            past_key_values=cache,
            use_cache=True,
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (rows, length, vocab)
        for r, (b, seq) in enumerate(rows):
            for j in range(1, len(seq) + 1):
                node_logp[b].setdefault(seq[:j], logp[r, j - 1])

    def _choose(
        self,
        batch_ids: list[list[int]],
        batch_options: list[list[str] | None],
        prefix: _SharedPrefix | None = None,
    ) -> list[ChoiceGeneration]:
        device = self.device
        eos = torch.tensor(self.eos_token_ids, device=device)
        last_logits, cache, mask, next_pos = self._prefill(batch_ids, prefix)
        root_logp = torch.log_softmax(last_logits, dim=-1)

        seqs_per_prompt = [
            list(dict.fromkeys(self.option_token_ids(o) for o in opts or ()))
            for opts in batch_options
        ]
        # Log-probability vectors at every trie node: the root's from the prompt pass,
        # deeper nodes' from the option pass (first option through the node).
        node_logp: list[dict[tuple[int, ...], torch.Tensor]] = [
            {(): root_logp[b]} for b in range(len(batch_ids))
        ]
        if any(seq for seqs in seqs_per_prompt for seq in seqs):
            if self.choice_scoring == "packed":
                self._score_packed(seqs_per_prompt, cache, mask, next_pos, node_logp)
            else:
                self._score_repeated(seqs_per_prompt, cache, mask, next_pos, node_logp)

        results = []
        for b, opts in enumerate(batch_options):
            seq_score = _trie_log_probs(seqs_per_prompt[b], node_logp[b], eos)
            assert opts is not None
            scores = [seq_score[self.option_token_ids(o)] for o in opts]
            best = max(range(len(opts)), key=lambda k: scores[k])
            best_ids = self.option_token_ids(opts[best])
            results.append(
                ChoiceGeneration(
                    text=opts[best],
                    logprob=min(0.0, scores[best]),
                    prompt_tokens=len(batch_ids[b]),
                    new_tokens=len(best_ids) + 1,
                    truncated=False,
                    distribution=tuple(
                        (o, math.exp(sc)) for o, sc in zip(opts, scores, strict=True)
                    ),
                )
            )
        return results

    def __repr__(self) -> str:
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return (
            f"HFBackend({self.name!r}{adapter}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).replace('torch.', '')!r}, "
            f"max_prompt_tokens={self.max_prompt_tokens}, batch_size={self.batch_size})"
        )


@dataclass
class _SharedPrefix:
    """The KV cache (batch 1) of `length` prompt tokens shared by a group of prompts."""

    length: int
    cache: Any

    def repeated(self, n: int) -> Any:
        """A fresh copy of the cache with `n` identical rows. Each batch needs its own: the
        forward pass extends the cache object it is given, and the prefix is reused by the
        group's next batch."""
        cache = copy.deepcopy(self.cache)
        cache.batch_repeat_interleave(n)
        return cache


def _is_shareable_cache(cache: Any) -> bool:
    """Whether a prefix cache can be repeated across a batch and extended after a padding
    hole: a `DynamicCache` of plain full-attention layers. Sliding-window layers drop old
    tokens (the hole would shift what the window keeps), recurrent/linear-attention states
    would absorb the padding tokens, quantised and legacy caches have no safe copy."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError:  # pragma: no cover - very old transformers
        return False
    layers = getattr(cache, "layers", None)
    return (
        isinstance(cache, DynamicCache)
        and bool(layers)
        and all(type(layer) is DynamicLayer for layer in layers)
    )


def _common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token id sequences."""
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def _trie_log_probs(
    seqs: list[tuple[int, ...]],
    node_logp: dict[tuple[int, ...], torch.Tensor],
    eos: torch.Tensor,
) -> dict[tuple[int, ...], float]:
    """Log-probability of each option under per-node renormalisation of the token trie.

    `node_logp[prefix]` is the model's next-token log-distribution after `prefix`. At each
    node, the allowed continuations are the children's tokens plus "end" (any eos token)
    where an option ends; their probabilities are renormalised to sum to 1, so the
    returned probabilities sum to 1 over the options.
    """
    children: dict[tuple[int, ...], set[int]] = {}
    for seq in seqs:
        for j in range(len(seq)):
            children.setdefault(seq[:j], set()).add(seq[j])
    ends = set(seqs)
    cache: dict[tuple[int, ...], tuple[dict[int, float], float, float]] = {}

    def node(prefix: tuple[int, ...]) -> tuple[dict[int, float], float, float]:
        """(child token -> log-prob, end log-prob, log normaliser) at `prefix`."""
        if prefix not in cache:
            lp = node_logp[prefix]
            kids = sorted(children.get(prefix, ()))
            kid_lp = lp[kids]
            end_lp = torch.logsumexp(lp[eos], dim=0)
            allowed = torch.cat([kid_lp, end_lp[None]]) if prefix in ends else kid_lp
            norm = float(torch.logsumexp(allowed, dim=0))
            cache[prefix] = (dict(zip(kids, kid_lp.tolist(), strict=True)), float(end_lp), norm)
        return cache[prefix]

    scores = {}
    for seq in seqs:
        total = 0.0
        for j in range(len(seq)):
            kid_lp, _, norm = node(seq[:j])
            total += kid_lp[seq[j]] - norm
        _, end_lp, norm = node(seq)
        scores[seq] = total + end_lp - norm
    return scores


def _check_adapter_dir(adapter: Path) -> None:
    if not (adapter / "adapter_config.json").exists():
        raise FileNotFoundError(
            f"{adapter} is not a PEFT adapter directory (no adapter_config.json)"
        )
    if not any(adapter.glob("adapter_model*.safetensors")):
        raise ValueError(
            f"{adapter} has no adapter_model.safetensors; only safetensors adapters are loaded"
        )


__all__ = [
    "ChoiceGeneration",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_MAX_PROMPT_TOKENS",
    "GenerationStats",
    "HFBackend",
    "PLAIN_PROMPT_FORMAT",
    "PromptTooLongError",
    "resolve_device",
    "resolve_dtype",
]
