"""The Hugging Face backend: any local (or hub) causal LM, optionally with a LoRA adapter.

`HFBackend` is the facade; each of its concerns lives in a module of its own, mixed in:

- `hf_loading`: devices and dtypes, loading model + adapter, prompt rendering and
  tokenisation (`PromptEncoding`), `PromptTooLongError`, `GenerationStats`;
- `prefix_cache`: length-sorted batches, the left-padded prompt pass, and prompts that
  share a long prefix prefilled once (`PrefixBatching`);
- `greedy`: the greedy decoding loop and the line guard (`GreedyDecoding`, `LineEnder`);
- `choices`: exact scoring of constrained options over a token trie, and the KV budget of
  their batches (`ChoiceScoring`, `ChoiceGeneration`).

`generate` encodes and checks every prompt first, then answers the free-form prompts and
the constrained ones (each set on shared prefixes where it can, then in ordinary
batches), and puts the answers back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from .backend import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PROMPT_TOKENS,
    ChatPrompt,
    CopySpans,
    Generation,
    LineGuard,
)
from .choices import DEFAULT_CHOICE_KV_BUDGET, ChoiceScoring, resolve_choice_scoring
from .greedy import GreedyDecoding, batch_copy
from .hf_loading import (
    GenerationStats,
    PromptEncoding,
    eos_token_ids,
    load_model_and_tokenizer,
    text_config,
)
from .prefix_cache import PREFIX_MIN_FRACTION, PREFIX_MIN_TOKENS, PrefixBatching, SharedPrefix


class HFBackend(PromptEncoding, PrefixBatching, GreedyDecoding, ChoiceScoring):
    """Greedy (optionally constrained) generation with a Hugging Face causal LM.

    Implements `GenerationBackend`. Build it with `HFBackend.from_pretrained(...)` (or
    `spacy_bioreama.models.load_backend`), or wrap an already loaded model and tokenizer.

    `batch_size`: prompts per forward pass. `choice_kv_budget`: bytes the repeated KV
    caches of one batch may take (option rows, shared prefixes). `choice_scoring`: "packed",
    "repeated" or "auto" (see `choices`). `prefix_sharing`: prefill a prefix shared by
    several prompts of a call once (see `prefix_cache`).
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
        self.eos_token_ids = eos_token_ids(tokenizer, model)
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad) if pad is not None else self.eos_token_ids[0]
        self._text_config = config = text_config(model)
        limit = getattr(config, "max_position_embeddings", None)
        self.context_length: int | None = int(limit) if limit else None
        self._max_prompt_tokens = int(max_prompt_tokens)
        if self.context_length is not None:
            self._max_prompt_tokens = min(self._max_prompt_tokens, self.context_length)
        self.stats = GenerationStats()
        self._logits_to_keep = True
        self.choice_scoring = resolve_choice_scoring(choice_scoring, config)
        # Reuse the KV cache of prefixes shared by several prompts of a call (see
        # `prefix_cache`); the grouping thresholds are attributes so they can be tuned.
        self.prefix_sharing = bool(prefix_sharing)
        self.prefix_min_tokens = PREFIX_MIN_TOKENS
        self.prefix_min_fraction = PREFIX_MIN_FRACTION
        # Greedy decoding writes the KV cache in place, in a buffer with room for the
        # answer (`kv_room`); False keeps transformers' growing cache (for comparison).
        self.kv_room = True
        self._init_encoding()

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
        adapter = Path(adapter) if adapter is not None else None
        model, tokenizer = load_model_and_tokenizer(
            model_name_or_path,
            adapter,
            device=device,
            dtype=dtype,
            merge_adapter=merge_adapter,
            trust_remote_code=trust_remote_code,
        )
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

    @property
    def max_prompt_tokens(self) -> int:
        """Longest accepted prompt (chat template included), capped by the context length."""
        return self._max_prompt_tokens

    @property
    def device(self) -> torch.device:
        """The device of the model's (first) weights."""
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's (first) weights."""
        return next(self.model.parameters()).dtype

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        *,
        max_new_tokens: int,
        choices: Sequence[Sequence[str] | None] | None = None,
        line_guard: LineGuard | None = None,
        copy: CopySpans | None = None,
    ) -> list[Generation]:
        """Greedy answers for `prompts`, in order.

        `choices[i]` (a list of option strings, or None for a free-form answer) constrains
        answer i to exactly one option; those answers are `ChoiceGeneration`s, whose
        `logprob` is the log of the option's renormalised probability. `max_new_tokens`
        limits free-form answers only (options are always complete). `line_guard` ends a
        free-form answer's line (forces a newline) when it returns True for that line;
        `Generation.lines_ended` counts how often it did.
        """

        def answer(free, constrained, encoded, option_lists, results, tally) -> None:
            with torch.inference_mode():
                self._answer(
                    free, encoded, option_lists, max_new_tokens, results, tally, line_guard, copy
                )
                self._answer(constrained, encoded, option_lists, max_new_tokens, results, tally)

        return self._answer_request(prompts, choices, max_new_tokens, answer)

    def _answer(
        self,
        indices: list[int],
        encoded: list[list[int]],
        option_lists: list[list[str] | None],
        max_new_tokens: int,
        results: list[Generation | None],
        tally: GenerationStats,
        line_guard: LineGuard | None = None,
        copy: CopySpans | None = None,
    ) -> None:
        """Answer the prompts `indices` (all free-form or all constrained) into `results`.

        Groups sharing a long prefix go first, each on its prefix's KV cache prefilled once;
        the remaining prompts (and every prompt when prefix sharing is off or the model's
        cache cannot be shared) are answered whole, in ordinary length-sorted batches.
        """
        if not indices:
            return
        constrained = option_lists[indices[0]] is not None

        def run(batch: list[int], prefix: SharedPrefix | None = None) -> None:
            ids = [encoded[i] for i in batch]
            if constrained:
                outs: Sequence[Generation] = self._choose(
                    ids, [option_lists[i] for i in batch], prefix
                )
            else:
                outs = self._greedy(
                    ids, max_new_tokens, prefix, line_guard, batch_copy(copy, batch)
                )
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

    def __repr__(self) -> str:
        adapter = f", adapter={self.adapter!r}" if self.adapter else ""
        return (
            f"HFBackend({self.name!r}{adapter}, device={str(self.device)!r}, "
            f"dtype={str(self.dtype).replace('torch.', '')!r}, "
            f"max_prompt_tokens={self.max_prompt_tokens}, batch_size={self.batch_size})"
        )


__all__ = ["HFBackend"]
