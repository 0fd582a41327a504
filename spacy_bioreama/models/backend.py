"""The generation backend protocol the component talks to.

A backend turns a batch of chat prompts into answers. It knows nothing about tasks:
tasks render prompts and parse answers, the backend only generates. Keeping this
boundary small lets the Hugging Face backend, spacy-llm models and test doubles be
swapped freely.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Defaults a backend is built with (`load_backend`, `HFBackend`); defined here, in the
# torch-free protocol module, so that `spacy_bioreama.models` can name them cheaply.
DEFAULT_MAX_PROMPT_TOKENS = 2048
DEFAULT_BATCH_SIZE = 8


@dataclass(frozen=True)
class ChatPrompt:
    """One prompt: a user message (and optional system message) in chat form."""

    user: str
    system: str | None = None


@dataclass(frozen=True)
class Generation:
    """A generated answer with its confidence.

    `logprob` is the sum of the log-probabilities of the generated tokens (under the
    constraint, if one applied); `prompt_tokens` / `new_tokens` feed throughput stats;
    `lines_ended` counts the lines a `line_guard` ended.
    """

    text: str
    logprob: float
    prompt_tokens: int
    new_tokens: int
    truncated: bool = False
    lines_ended: int = 0
    # decoding steps where the copy constraint overruled the model's first choice
    copy_redirected: int = 0


# spans longer than this (in tokens) cannot be copied: longer than any BioRED mention
DEFAULT_MAX_SPAN_TOKENS = 24


@dataclass(frozen=True)
class CopySpans:
    """The copy constraint of a request, applied by `copy_spans.SpanCopier`: a task's
    answer grammar for copying. A line's span list begins after the first `opener` on
    the line, spans are separated by `separator`, and a list with no span is `empty`.
    `texts[i]` is the text prompt i copies from (None: no constraint)."""

    texts: Sequence[str | None]
    opener: str = ":"
    separator: str = " ..."
    empty: str = " None"
    max_span_tokens: int = DEFAULT_MAX_SPAN_TOKENS


# Called with the unfinished last line of a free-form answer after each generated token;
# True ends that line (the task knows its answer format, the backend does not).
LineGuard = Callable[[str], bool]


@runtime_checkable
class GenerationBackend(Protocol):
    """What the component needs from a model."""

    def generate(
        self,
        prompts: Sequence[ChatPrompt],
        *,
        max_new_tokens: int,
        choices: Sequence[Sequence[str]] | None = None,
        line_guard: LineGuard | None = None,
        copy: CopySpans | None = None,
    ) -> list[Generation]:
        """Greedy answers for `prompts`, in order.

        With `choices`, answer i is constrained to exactly one of `choices[i]`
        (constrained decoding over the tokenised options), and its `logprob` is the
        log-probability of that option renormalised over the allowed tokens.
        With `line_guard`, a free-form answer's line is ended (a newline is forced) as
        soon as the guard returns True for the unfinished line. With `copy`
        (`copy_spans.CopySpans`), the spans a free-form answer lists are copied from
        `copy.texts[i]`.
        """
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens `text` takes (without special tokens)."""
        ...

    @property
    def max_prompt_tokens(self) -> int:
        """The longest prompt (chat template included) the backend accepts."""
        ...
