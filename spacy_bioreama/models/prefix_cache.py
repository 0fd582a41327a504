"""The prompt pass, and prompts that share a prefix prefilled once.

Prompts are sorted by length into batches of `batch_size`, left-padded, and run through
the model once to fill the KV cache (`_prefill`); the answers are put back in the
caller's order.

Shared prefixes (`prefix_sharing=True`, the default): the prompts of one `generate` call
often repeat a long prefix (relation extraction sends one prompt per concept pair of a
window, identical up to the final "Entity 1/Entity 2" lines), and prefilling that prefix
again for every prompt is most of the work. Prompts are grouped by the longest common
prefix of their token ids (see `prefix_groups`; working on token ids handles BPE merges at
the junction for free); each group's prefix is prefilled once (batch 1), its KV cache is
repeated across a batch of the group's prompts and only their suffixes are computed
(left-padded after the prefix, with explicit positions and attention mask), after which
free generation or option scoring proceeds exactly as without sharing. The results are the
same up to float rounding. Sharing needs a plain full-attention `DynamicCache` (every
layer a `DynamicLayer`): other caches (sliding-window, recurrent/linear attention,
quantised, legacy tuples) would see the padding hole between prefix and suffix or cannot
be repeated safely, so the backend falls back to whole prompts there.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .cache_api import cache_kwargs, output_cache

# Prompts are grouped on a shared prefix when their common token prefix is at least this
# long and at least this fraction of the shortest prompt of the group (see `prefix_groups`).
PREFIX_MIN_TOKENS = 32
PREFIX_MIN_FRACTION = 0.5


@dataclass
class SharedPrefix:
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


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token id sequences."""
    n = min(len(a), len(b))
    for k in range(n):
        if a[k] != b[k]:
            return k
    return n


def prefix_groups(
    indices: list[int], encoded: list[list[int]], min_tokens: int, min_fraction: float
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
    - at least `min_tokens` long (below that, the extra prefix pass costs about what it
      saves), and
    - at least `min_fraction` of its shortest prompt: prompts that share only
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
        lcp[k] = common_prefix_length(encoded[order[k - 1]], encoded[order[k]])

    def usable(lo: int, hi: int) -> int:
        """Prefix order[lo:hi] (two or more) shares as one group; 0 if not a group."""
        shortest = min(len(encoded[i]) for i in order[lo:hi])
        length = min(min(lcp[lo + 1 : hi]), shortest - 1)
        if length >= min_tokens and length >= min_fraction * shortest:
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


class PrefixBatching:
    """Batching and the prompt pass of `HFBackend` (a mixin): length-sorted batches,
    prefix groups, and the left-padded prefill on whole prompts or after a shared prefix."""

    model: Any
    name: str
    batch_size: int
    pad_token_id: int
    device: torch.device
    prefix_sharing: bool
    prefix_min_tokens: int
    prefix_min_fraction: float
    _logits_to_keep: bool

    def _batches(self, indices: list[int], encoded: list[list[int]]) -> list[list[int]]:
        order = sorted(indices, key=lambda i: len(encoded[i]))
        return [order[k : k + self.batch_size] for k in range(0, len(order), self.batch_size)]

    def _prefix_groups(
        self, indices: list[int], encoded: list[list[int]]
    ) -> tuple[list[tuple[int, list[int]]], list[int]]:
        """`prefix_groups` with this backend's thresholds."""
        return prefix_groups(indices, encoded, self.prefix_min_tokens, self.prefix_min_fraction)

    def _prefill_prefix(self, ids: list[int]) -> SharedPrefix | None:
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
        return SharedPrefix(len(ids), cache)

    def _prefill(self, batch_ids: list[list[int]], prefix: SharedPrefix | None = None):
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
            kwargs.update(cache_kwargs(self.model, prefix.repeated(n)))
        kwargs["attention_mask"] = mask
        out = self._forward_last_logits(kwargs)
        next_pos = mask.sum(-1)
        return out.logits[:, -1, :].float(), output_cache(out), mask, next_pos

    def _forward_last_logits(self, kwargs: dict[str, Any]) -> Any:
        """The model's forward pass, asking for the last position's logits only where the
        model takes `logits_to_keep` (it skips a (batch x length x vocab) projection, ~10% of
        the prompt pass for a small model with a large vocabulary)."""
        if self._logits_to_keep:
            try:
                return self.model(**kwargs, logits_to_keep=1)
            except TypeError:
                self._logits_to_keep = False
        return self.model(**kwargs)


__all__ = [
    "PREFIX_MIN_FRACTION",
    "PREFIX_MIN_TOKENS",
    "PrefixBatching",
    "SharedPrefix",
    "common_prefix_length",
    "prefix_groups",
]
