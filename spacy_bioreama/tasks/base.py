"""What every task shares: the instruction example and its chat rendering.

A task module owns three things for one task family — the instruction templates
(with paraphrases), the rendering of a gold target from annotations (training) and the
parsing of a model answer (inference). This module holds the common record they all
produce, so that training data and inference prompts are built by the same code.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..models.backend import ChatPrompt


@dataclass(frozen=True)
class TaskExample:
    """One instruction example.

    `output` is the gold answer when the example is built for training (None at
    inference); `choices` lists the allowed answers for constrained decoding;
    `meta` carries what the parser needs to map the answer back (document index,
    window offsets, concept pair ...), never used in the prompt.
    """

    task: str
    instruction: str
    input: str
    output: str | None = None
    choices: tuple[str, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False)
    # which variant of the task's prompt built it (e.g. relation prompts "named",
    # "marked", "sentence"); recorded so that training can tell inference which to use
    prompt_format: str | None = None
    # how the answer is written when it is more than the choice it names (a rationale:
    # ``Evidence: ...`` before the label); recorded like `prompt_format`, None: direct
    answer_format: str | None = None
    # the exact answers constrained decoding scores, each naming one of `choices` (the
    # rationale of each label); None: the choices themselves. Recorded as ``options``,
    # so that scoring the records asks what the component asks.
    decode_choices: tuple[str, ...] | None = field(default=None, compare=False)
    # the label set the task was asked with where `choices` does not carry it (NER: the
    # source's entity types, whatever one prompt asks); recorded as ``labels``, so that
    # the component can tell when it asks for other labels than the adapter learned
    label_set: tuple[str, ...] | None = field(default=None, compare=False)

    def chat_prompt(self) -> ChatPrompt:
        """The user message a model sees (training and inference alike)."""
        return ChatPrompt(user=f"{self.instruction}\n\n{self.input}")

    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable record (instruction datasets)."""
        record: dict[str, Any] = {
            "task": self.task,
            "instruction": self.instruction,
            "input": self.input,
            "output": self.output,
        }
        if self.choices is not None:
            record["choices"] = list(self.choices)
        if self.prompt_format is not None:
            record["prompt_format"] = self.prompt_format
        if self.answer_format is not None:
            record["answer_format"] = self.answer_format
        if self.decode_choices is not None:
            record["options"] = list(self.decode_choices)
        if self.label_set is not None:
            record["labels"] = list(self.label_set)
        return record


def pick_instruction(templates: Sequence[str], rng: random.Random | None) -> str:
    """The canonical template (index 0) at inference; a seeded paraphrase in training."""
    if rng is None:
        return templates[0]
    return templates[rng.randrange(len(templates))]
