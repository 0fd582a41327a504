"""Copy-constrained decoding: every span a free-form answer lists is a span of its text.

A small model asked to list the entities of a text writes forms that are not in it
(paraphrases, "corrections", loops on one form). `CopySpans` (given by the task, which
knows its answer format) says where in an answer a span starts and what may follow one;
`SpanCopier` then restricts each decoding step of those positions to the tokens that
continue some span of the prompt's text:

* the text is tokenised once from every word start (``" " + text[i:]``, as a span reads
  after ``": "`` or ``" ... "`` in the answer), and the token sequences go into a prefix
  tree (`TokenTrie`), cut at `max_span_tokens`;
* at a span start only the tree's first tokens (or the "no span" word) are allowed;
  inside a span, the tree's continuations, or a closer (the separator, a line end, the
  end of the answer);
* outside spans (the type names) decoding is free.

The state of each answer is kept per row and advanced with each chosen token, so the
cost per step is a dictionary lookup and a mask of the allowed ids. Both backends apply
it through `greedy.GreedyAnswers.choose`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .backend import DEFAULT_MAX_SPAN_TOKENS, CopySpans


class TokenTrie:
    """A prefix tree over token id sequences; a node is a dict of child ids."""

    def __init__(self) -> None:
        self.root: dict[int, dict] = {}

    def add(self, ids: Sequence[int]) -> None:
        node = self.root
        for token in ids:
            node = node.setdefault(int(token), {})


def word_starts(text: str) -> list[int]:
    """Offsets where a span may start: the first non-space character after a space (or
    the text start), and an alphanumeric character after punctuation ("(NIS": N)."""
    starts = []
    for i, char in enumerate(text):
        if char.isspace():
            continue
        before = text[i - 1] if i else " "
        if before.isspace() or (char.isalnum() and not before.isalnum()):
            starts.append(i)
    return starts


def span_trie(tokenizer: Any, text: str, max_span_tokens: int) -> TokenTrie:
    """The `TokenTrie` of the spans of `text` as they read in an answer (after a space)."""
    trie = TokenTrie()
    starts = word_starts(text)
    if not starts:
        return trie
    # a span of max_span_tokens tokens needs at most a few characters per token
    pieces = [" " + text[i : i + 16 * max_span_tokens] for i in starts]
    for ids in tokenizer(pieces, add_special_tokens=False)["input_ids"]:
        trie.add(ids[:max_span_tokens])
    return trie


FREE, START, INSIDE = "free", "start", "inside"


class SpanCopier:
    """Per-row copy state for one greedy batch (rows indexed as the batch's prompts).

    `tokenizer` is a Hugging Face tokenizer (the HF backend's, or the one llama.cpp's
    backend shares); `eos_ids` end an answer."""

    def __init__(
        self, tokenizer: Any, spec: CopySpans, texts: Sequence[str | None], eos_ids: Sequence[int]
    ):
        self.spec = spec
        self._decode = tokenizer.decode
        self.eos = [int(t) for t in eos_ids]
        self.newline = _single_token(tokenizer, "\n")
        self.separator = _single_token(tokenizer, spec.separator)
        self.empty = _single_token(tokenizer, spec.empty)
        self.tries = [
            span_trie(tokenizer, t, spec.max_span_tokens) if t is not None else None for t in texts
        ]
        n = len(texts)
        self.state = [FREE] * n
        self.node: list[dict | None] = [None] * n
        self.opened = [False] * n  # the line's opener was seen
        self._texts: dict[int, str] = {}
        self.blocked = [0] * n  # steps where the model's own choice was not allowed

    def _text(self, token: int) -> str:
        if token not in self._texts:
            self._texts[token] = self._decode([token], skip_special_tokens=False)
        return self._texts[token]

    def allowed(self, row: int) -> list[int] | None:
        """The token ids row `row` may choose next; None when decoding is free there."""
        trie = self.tries[row]
        state = self.state[row]
        if trie is None or state == FREE:
            return None
        if state == START:
            return [*trie.root, self.empty, self.newline, *self.eos]
        return [*self.node[row], self.separator, self.newline, *self.eos]

    def advance(self, row: int, token: int) -> None:
        """Move row `row`'s state past the chosen `token`."""
        if self.tries[row] is None:
            return
        state = self.state[row]
        if token == self.newline or "\n" in self._text(token):
            self.state[row], self.opened[row], self.node[row] = FREE, False, None
        elif state == START and token in self.tries[row].root:
            self.state[row], self.node[row] = INSIDE, self.tries[row].root[token]
        elif state == INSIDE and token in self.node[row]:
            self.node[row] = self.node[row][token]
        elif state == INSIDE and token == self.separator:
            self.state[row], self.node[row] = START, None
        elif state == START:  # "None": the rest of the line is free
            self.state[row] = FREE
        elif (
            state == FREE and not self.opened[row] and self._text(token).endswith(self.spec.opener)
        ):
            self.state[row], self.opened[row] = START, True

    def mask(self, rows: Sequence[int], scores: torch.Tensor) -> torch.Tensor:
        """`scores` (one row per entry of `rows`) with every token a row may not choose
        set to -inf; rows without a constraint are left as they are."""
        masked = None
        for k, row in enumerate(rows):
            allowed = self.allowed(row)
            if allowed is None:
                continue
            if masked is None:
                masked = scores.clone()
            keep = torch.tensor(allowed, device=scores.device)
            best = int(scores[k].argmax())
            if best not in allowed:
                self.blocked[row] += 1
            values = masked[k, keep].clone()
            masked[k].fill_(float("-inf"))
            masked[k, keep] = values
        return scores if masked is None else masked


def _single_token(tokenizer: Any, text: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(
            f"copy-constrained decoding needs {text!r} to be one token of this tokenizer, "
            f"got {len(ids)}; turn the constraint off (ner_copy_constraint = false)"
        )
    return int(ids[0])


__all__ = [
    "DEFAULT_MAX_SPAN_TOKENS",
    "CopySpans",
    "SpanCopier",
    "TokenTrie",
    "span_trie",
    "word_starts",
]
