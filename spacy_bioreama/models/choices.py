"""Constrained choices: scoring a fixed list of options exactly.

Each option is tokenised as it appears right after the assistant prefix and followed by
end-of-sequence; the options form a token trie. At every trie node the model's
distribution is renormalised over the allowed next tokens (the children, plus
end-of-sequence where an option ends there), so the options receive a proper distribution
(probabilities sum to 1); the answer is its most probable option, `logprob` the log of
that probability (`exp(logprob)` is a confidence in [0, 1]) and
`ChoiceGeneration.distribution` carries the probabilities of all options. This is the
distribution a greedy `prefix_allowed_tokens_fn` decoder walks through, but the answer is
the best option overall rather than the greedy path's leaf.

All options are scored exactly in one extra forward pass on top of the prompt's KV cache.
"packed" (sdpa/eager attention): all options of a prompt go into one row with a 4D
attention mask (each option token sees the prompt and its own earlier tokens; positions
restart after the prompt), so the cache is never copied. "repeated" (for attention
implementations without custom 4D masks, e.g. flash attention): one row per option on a
copy of the prompt's cache, batches sized to `choice_kv_budget` bytes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .backend import Generation
from .cache_api import cache_kwargs

# How much memory (bytes) the repeated prompt KV cache may take when scoring options (and
# the shared-prefix cache once repeated across a batch).
DEFAULT_CHOICE_KV_BUDGET = 1 << 30

CHOICE_SCORINGS = ("packed", "repeated")


@dataclass(frozen=True)
class ChoiceGeneration(Generation):
    """A constrained answer, with the renormalised probability of every option."""

    distribution: tuple[tuple[str, float], ...] = ()

    @property
    def probabilities(self) -> dict[str, float]:
        """Option -> probability (they sum to 1)."""
        return dict(self.distribution)


def resolve_choice_scoring(choice_scoring: str, text_config: Any) -> str:
    """`"auto"` → "packed" where the attention takes a custom 4D mask (sdpa, eager), else
    "repeated"; "packed" and "repeated" are kept; anything else is a `ValueError`."""
    attn = getattr(text_config, "_attn_implementation", None) or "eager"
    if choice_scoring == "auto":
        choice_scoring = "packed" if attn in ("sdpa", "eager") else "repeated"
    if choice_scoring not in CHOICE_SCORINGS:
        raise ValueError(
            f"choice_scoring must be 'auto', 'packed' or 'repeated', not {choice_scoring!r}"
        )
    return choice_scoring


def kv_bytes_per_token(text_config: Any, dtype: torch.dtype) -> int:
    """Bytes one token takes in the KV cache (keys and values of every layer)."""
    cfg = text_config
    layers = getattr(cfg, "num_hidden_layers", None) or 32
    heads = getattr(cfg, "num_attention_heads", None) or 32
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or (
        getattr(cfg, "hidden_size", 4096) // max(1, heads)
    )
    elem = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    return 2 * layers * kv_heads * head_dim * elem


def trie_log_probs(
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


def trie_nodes(seqs: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """The non-empty prefixes of `seqs` (the nodes of their token trie), each once,
    every parent before its children."""
    nodes: dict[tuple[int, ...], None] = {}
    for seq in seqs:
        for j in range(1, len(seq) + 1):
            nodes.setdefault(seq[:j])
    return list(nodes)


class ChoiceScoring:
    """Option scoring and KV-budget batching of `HFBackend` (a mixin; the prompt pass is
    `_prefill`, the option ids `option_token_ids`)."""

    model: Any
    batch_size: int
    choice_kv_budget: int
    choice_scoring: str
    pad_token_id: int
    eos_token_ids: list[int]
    device: torch.device
    dtype: torch.dtype
    _text_config: Any
    _prefill: Callable[..., Any]
    _batches: Callable[..., list[list[int]]]
    option_token_ids: Callable[[str], tuple[int, ...]]

    def _kv_bytes_per_token(self) -> int:
        return kv_bytes_per_token(self._text_config, self.dtype)

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

    def _score_packed(self, seqs_per_prompt, cache, mask, next_pos, node_logp) -> None:
        """All options of a prompt in one packed row after its cached prompt ("tree attention").

        The row holds each node of the options' token trie once: options that share a
        beginning (a rationale's evidence before its label) share its tokens. A 4D mask
        lets each token see the prompt and its trie ancestors only, and its position id is
        its depth after the prompt, so each option is scored exactly as if alone, without
        copying the prompt's KV cache.
        """
        device = self.device
        n, width = mask.shape
        nodes_per_prompt = [trie_nodes(seqs) for seqs in seqs_per_prompt]
        total = max(len(nodes) for nodes in nodes_per_prompt)
        inp = torch.full((n, total), self.pad_token_id, dtype=torch.long)
        pos = torch.zeros((n, total), dtype=torch.long)
        allowed = torch.zeros((n, total, width + total), dtype=torch.bool)
        allowed[:, :, :width] = mask.bool().cpu()[:, None, :]
        base = next_pos.cpu()
        for b, nodes in enumerate(nodes_per_prompt):
            index: dict[tuple[int, ...], int] = {}
            for k, prefix in enumerate(nodes):
                index[prefix] = k
                inp[b, k] = prefix[-1]
                pos[b, k] = base[b] + len(prefix) - 1
                if len(prefix) > 1:  # the parent's view (prompt and ancestors), then itself
                    allowed[b, k] = allowed[b, index[prefix[:-1]]]
                allowed[b, k, width + k] = True
            for q in range(len(nodes), total):  # padding queries: attend to themselves only
                allowed[b, q, width + q] = True
                pos[b, q] = base[b]
        attn = torch.zeros(allowed.shape, dtype=self.dtype)
        attn.masked_fill_(~allowed, torch.finfo(self.dtype).min)
        out = self.model(
            input_ids=inp.to(device),
            attention_mask=attn[:, None].to(device),
            position_ids=pos.to(device),
            **cache_kwargs(self.model, cache),
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (prompts, total, vocab)
        for b, nodes in enumerate(nodes_per_prompt):
            for k, prefix in enumerate(nodes):
                node_logp[b].setdefault(prefix, logp[b, k])

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
            **cache_kwargs(self.model, cache),
        )
        logp = torch.log_softmax(out.logits.float(), dim=-1)  # (rows, length, vocab)
        for r, (b, seq) in enumerate(rows):
            for j in range(1, len(seq) + 1):
                node_logp[b].setdefault(seq[:j], logp[r, j - 1])

    def _choose(
        self,
        batch_ids: list[list[int]],
        batch_options: list[list[str] | None],
        prefix: Any = None,
    ) -> list[ChoiceGeneration]:
        """The best option of each prompt of one batch (optionally after a shared prefix)."""
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
            seq_score = trie_log_probs(seqs_per_prompt[b], node_logp[b], eos)
            assert opts is not None
            scores = [seq_score[self.option_token_ids(o)] for o in opts]
            results.append(best_option(opts, scores, len(batch_ids[b]), self.option_token_ids))
        return results


def best_option(
    opts: list[str],
    scores: list[float],
    prompt_tokens: int,
    option_token_ids: Callable[[str], tuple[int, ...]],
) -> ChoiceGeneration:
    """The answer for options `opts` with trie log-probabilities `scores` (shared by every
    backend that scores options, so their answers are built the same way)."""
    best = max(range(len(opts)), key=lambda k: scores[k])
    return ChoiceGeneration(
        text=opts[best],
        logprob=min(0.0, scores[best]),
        prompt_tokens=prompt_tokens,
        new_tokens=len(option_token_ids(opts[best])) + 1,
        truncated=False,
        distribution=tuple((o, math.exp(sc)) for o, sc in zip(opts, scores, strict=True)),
    )


__all__ = [
    "DEFAULT_CHOICE_KV_BUDGET",
    "ChoiceGeneration",
    "ChoiceScoring",
    "best_option",
    "kv_bytes_per_token",
    "resolve_choice_scoring",
    "trie_log_probs",
    "trie_nodes",
]
