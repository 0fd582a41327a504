"""How long an instruction example is, in the unit of ``max_length``.

The builder windows documents and drops too-long examples by these counts, so they must
count what the trainer will see: the prompt as the backend renders it (chat template
included) plus the answer and its end-of-turn token. Without a tokenizer, whitespace
words stand in (fast and approximate: tests and drafts).
"""

from __future__ import annotations

import os
from typing import Any

from ..tasks.base import TaskExample


class LengthCounter:
    """Whitespace-word lengths (no tokenizer): fast, approximate, for tests and drafts.

    `prompt` measures the user message; `answer` the answer plus one end-of-turn token."""

    unit = "whitespace words"

    def text(self, text: str) -> int:
        """The length of a piece of text (windowing budgets)."""
        return len(text.split())

    def prompt(self, example: TaskExample) -> int:
        """The length of the prompt the model sees for `example`."""
        return len(example.chat_prompt().user.split())

    def answer(self, answer: str) -> int:
        """The length of `answer` plus its end-of-turn token."""
        return len(answer.split()) + 1


class BackendLengthCounter(LengthCounter):
    """Lengths from a backend with `count_prompt_tokens` (chat template included) and
    `count_tokens`, e.g. `HFBackend`."""

    def __init__(self, backend: Any, name: str | None = None):
        self.backend = backend
        self.unit = f"tokens ({name or getattr(backend, 'name', type(backend).__name__)})"

    def text(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def prompt(self, example: TaskExample) -> int:
        return self.backend.count_prompt_tokens(example.chat_prompt())

    def answer(self, answer: str) -> int:
        return self.backend.count_tokens(answer) + 1


class TokenizerLengthCounter(LengthCounter):
    """Lengths from a Hugging Face tokenizer, prompts rendered as `HFBackend.render`
    renders them (the chat template when the tokenizer has one)."""

    def __init__(self, tokenizer: Any, name: str | None = None):
        self.tokenizer = tokenizer
        self.has_chat_template = bool(getattr(tokenizer, "chat_template", None))
        self.unit = f"tokens ({name or getattr(tokenizer, 'name_or_path', 'tokenizer')})"

    def text(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, example: TaskExample) -> int:
        prompt = example.chat_prompt()
        if self.has_chat_template:
            messages = []
            if prompt.system:
                messages.append({"role": "system", "content": prompt.system})
            messages.append({"role": "user", "content": prompt.user})
            rendered = self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=False
            )
            return len(self.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        from ..models.hf_loading import PLAIN_PROMPT_FORMAT

        system = f"{prompt.system}\n\n" if prompt.system else ""
        rendered = PLAIN_PROMPT_FORMAT.format(system=system, user=prompt.user)
        return len(self.tokenizer(rendered)["input_ids"])

    def answer(self, answer: str) -> int:
        return self.text(answer) + 1


def make_length_counter(tokenizer: Any = None) -> LengthCounter:
    """A `LengthCounter` for: None (whitespace words), a `LengthCounter`, a backend with
    `count_prompt_tokens`, a Hugging Face tokenizer, or a model name/directory (its
    tokenizer is loaded; "default" = the embedded SmolLM2)."""
    if tokenizer is None:
        return LengthCounter()
    if isinstance(tokenizer, LengthCounter):
        return tokenizer
    if hasattr(tokenizer, "count_prompt_tokens") and hasattr(tokenizer, "count_tokens"):
        return BackendLengthCounter(tokenizer)
    if isinstance(tokenizer, str | os.PathLike):
        from transformers import AutoTokenizer

        from ..models import resolve_model

        location = resolve_model(tokenizer)
        return TokenizerLengthCounter(
            AutoTokenizer.from_pretrained(location), name=os.fspath(tokenizer)
        )
    if callable(tokenizer) and hasattr(tokenizer, "apply_chat_template"):
        return TokenizerLengthCounter(tokenizer)
    raise ValueError(
        f"tokenizer: expected None, a model name/path, a backend or a Hugging Face "
        f"tokenizer, got {type(tokenizer).__name__}"
    )


__all__ = [
    "BackendLengthCounter",
    "LengthCounter",
    "TokenizerLengthCounter",
    "make_length_counter",
]
