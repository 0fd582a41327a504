"""Greedy free-form decoding, with the line guard.

Free-form generation is greedy, batched with left padding. The decoding loop is our own
(prompt forward pass with a KV cache, then one token per step) rather than
`model.generate`: it needs no generation config (a model's sampling defaults or repetition
penalty cannot leak in), passes explicit position ids (exact under left padding), and
drops finished rows from the batch so short answers do not pay for long ones. `logprob` is
the sum of the model's (unprocessed) log-probabilities of the generated tokens,
end-of-sequence token included.

A `LineGuard` (given by the task, which knows its answer format) is applied by
`LineEnder`: once the guard fires on an answer's unfinished last line, the next token is
forced to end that line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from .backend import CopySpans, Generation, LineGuard
from .cache_api import cache_kwargs, output_cache
from .copy_spans import SpanCopier
from .kv_room import with_room


class LineEnder:
    """Applies a `LineGuard` while decoding: after each token it looks at the answer's
    unfinished last line and says when the next token must end it. The forced token is
    the tokenizer's newline, or end-of-sequence where no single newline token exists.

    `backend` is an `HFBackend` (its tokenizer, eos ids and decoding are used).
    """

    def __init__(self, backend: Any, guard: LineGuard):
        self.guard = guard
        self._backend = backend
        newline = backend.tokenizer.encode("\n", add_special_tokens=False)
        self.token_id = int(newline[0]) if len(newline) == 1 else backend.eos_token_ids[0]

    def must_end_line(self, answer_ids: Sequence[int]) -> bool:
        """Whether the answer so far (`answer_ids`) has a last line the guard ends."""
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


class GreedyAnswers:
    """Per-prompt state of a greedy batch, indexed by the prompt's row in the batch (rows
    keep their index when finished rows are dropped from the model's batch)."""

    def __init__(self, n: int, ender: LineEnder | None, copier: SpanCopier | None = None):
        self.copier = copier
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.logprobs = [0.0] * n
        self.stopped = [False] * n
        self.ender = ender
        self.end_line = [False] * n  # the row's next token must end its line
        self.lines_ended = [0] * n

    def choose(self, rows: list[int], scores: torch.Tensor) -> torch.Tensor:
        """The next token of each of `rows` (one score row each): the argmax among the
        tokens the copy constraint allows, then the line end where the guard forces it."""
        if self.copier is not None:
            scores = self.copier.mask(rows, scores)
        next_tok = scores.argmax(dim=-1)
        self.force_line_ends(rows, next_tok)
        return next_tok

    def force_line_ends(self, rows: list[int], next_tok: torch.Tensor) -> None:
        """Replace the chosen token of the `rows` whose line must end by the line end."""
        if self.ender is not None:
            forced = [k for k, orig in enumerate(rows) if self.end_line[orig]]
            if forced:
                next_tok[torch.tensor(forced, device=next_tok.device)] = self.ender.token_id

    def add(self, rows: list[int], next_tok, tok_lp, finished) -> None:
        """Append one step's tokens (with their log-probs and eos flags) to `rows`."""
        ender = self.ender
        for orig, tok, lp, fin in zip(
            rows, next_tok.tolist(), tok_lp.tolist(), finished.tolist(), strict=True
        ):
            self.tokens[orig].append(tok)
            self.logprobs[orig] += lp
            self.stopped[orig] = fin
            if self.copier is not None:
                self.copier.advance(orig, tok)
            if ender is not None:
                self.lines_ended[orig] += self.end_line[orig]
                self.end_line[orig] = not fin and ender.must_end_line(self.tokens[orig])

    def generations(
        self, batch_ids: list[list[int]], decode: Callable[..., str]
    ) -> list[Generation]:
        """The finished answers, end-of-sequence token cut from the text."""
        results = []
        for i in range(len(batch_ids)):
            ids = self.tokens[i][:-1] if self.stopped[i] else self.tokens[i]
            text = decode(ids, skip_special_tokens=True).strip()
            results.append(
                Generation(
                    text=text,
                    logprob=float(self.logprobs[i]),
                    prompt_tokens=len(batch_ids[i]),
                    new_tokens=len(self.tokens[i]),
                    truncated=not self.stopped[i],
                    lines_ended=self.lines_ended[i],
                    copy_redirected=self.copier.blocked[i] if self.copier is not None else 0,
                )
            )
        return results


class GreedyDecoding:
    """The greedy decoding loop of `HFBackend` (a mixin; the prompt pass is `_prefill`)."""

    model: Any
    eos_token_ids: list[int]
    device: torch.device
    kv_room: bool
    _prefill: Callable[..., Any]
    _decode: Callable[..., str]

    def _greedy(
        self,
        batch_ids: list[list[int]],
        max_new_tokens: int,
        prefix: Any = None,
        line_guard: LineGuard | None = None,
        copy: CopySpans | None = None,
    ) -> list[Generation]:
        """Greedy answers for one batch of prompt ids (optionally after a shared prefix);
        with `copy` (its texts those of this batch), spans copied from the texts."""
        device = self.device
        eos = torch.tensor(self.eos_token_ids, device=device)
        logits, cache, mask, next_pos = self._prefill(batch_ids, prefix)
        if self.kv_room:  # write each step in place instead of torch.cat (see kv_room)
            cache = with_room(cache, max_new_tokens)
        ender = LineEnder(self, line_guard) if line_guard is not None else None
        answers = GreedyAnswers(len(batch_ids), ender, make_copier(self, copy))
        active = torch.arange(len(batch_ids), device=device)
        for step in range(max_new_tokens):
            logp = torch.log_softmax(logits, dim=-1)
            rows = active.tolist()
            next_tok = answers.choose(rows, logits)
            tok_lp = logp.gather(-1, next_tok[:, None])[:, 0]
            finished = torch.isin(next_tok, eos)
            answers.add(rows, next_tok, tok_lp, finished)
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
                **cache_kwargs(self.model, cache),
            )
            cache = output_cache(out)
            next_pos = next_pos + 1
            logits = out.logits[:, -1, :].float()
        return answers.generations(batch_ids, self._decode)


def make_copier(backend: Any, copy: CopySpans | None) -> SpanCopier | None:
    """The `SpanCopier` of one batch (`copy.texts` are the batch's), or None."""
    if copy is None or not any(t is not None for t in copy.texts):
        return None
    return SpanCopier(backend.tokenizer, copy, copy.texts, backend.eos_token_ids)


def batch_copy(copy: CopySpans | None, batch: Sequence[int]) -> CopySpans | None:
    """`copy` with the texts of the prompts `batch` (indices into the request)."""
    if copy is None:
        return None
    return replace(copy, texts=[copy.texts[i] for i in batch])


__all__ = ["GreedyAnswers", "GreedyDecoding", "LineEnder", "batch_copy", "make_copier"]
