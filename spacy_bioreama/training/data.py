"""Training examples: instruction records → token ids and labels, batches, epoch order.

Examples
--------
Each JSONL record ``{"task", "instruction", "input", "output", ...}`` becomes::

    input_ids = encode_prompt(TaskExample(task, instruction, input).chat_prompt())
                + answer tokens + [eos]
    labels    = [-100] * len(prompt)  + answer tokens + [eos]

so the loss is on the answer (and its end-of-sequence token, which teaches the model to
stop) only. The model runs with ``use_cache = False`` in training: besides saving memory,
transformers only recognises packed rows (below) when no KV cache is created. The answer
tokens are those of ``render(prompt) + output`` after the prompt's tokens, i.e. the
tokenisation the model would produce after the assistant prefix (when a
tokenizer merges across that boundary, which ChatML/Llama templates do not, the answer is
tokenised on its own).

Too-long examples (prompt + answer + eos > ``training.max_length``) are DROPPED and counted
(printed, in the log and in ``training_meta.json``); a warning is printed when more than 5%
are dropped, and an error is raised when nothing is left. Truncation would teach wrong
things: cutting the answer trains the model to stop early (or, without eos, to produce
half a list); cutting the prompt from the left removes the instruction, a prompt shape
inference never shows; cutting the text part leaves answers that mention entities absent
from the text, i.e. trains hallucination, which grounding then has to throw away. The
instruction builder windows long documents so that examples fit; a drop is a diagnostic
that `max_length` and the windowing disagree.

Batching
--------
``group_by_length = true`` orders each epoch in mega-batches of similar length
(transformers' `get_length_grouped_indices`, the logic of its `"group_by_length"` train
sampling strategy — in transformers 5 that is ``TrainingArguments.train_sampling_strategy``,
there is no ``group_by_length`` flag any more), so little compute goes into padding.
``packing = true`` instead concatenates the examples of a batch into one row without padding
(`DataCollatorWithFlattening`: position ids restart at every example and transformers builds
a block-diagonal attention mask from them, for sdpa/eager and flash attention alike), so no
example sees another; packed and padded batches give the same loss (tested). The sampler is
seeded per (seed, epoch), so a resumed run replays exactly the batches the killed run would
have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..instructions.records import TrainingDataError, record_example
from ..tasks.relation import NO_RELATION

IGNORE_INDEX = -100
# More dropped (too long) examples than this fraction of a split: print a warning.
DROP_WARNING_FRACTION = 0.05


@dataclass(frozen=True)
class EncodedExample:
    """One tokenised record: ids, labels (-100 on the prompt), where the answer starts."""

    input_ids: list[int]
    labels: list[int]
    prompt_length: int
    task: str

    def __len__(self) -> int:
        return len(self.input_ids)


def encode_record(backend: Any, record: Mapping[str, Any]) -> EncodedExample:
    """Tokenise one record: the inference prompt + answer + eos, loss on the answer only.

    `backend` is an `HFBackend` (its `encode_prompt`, `render`, `tokenizer`,
    `eos_token_ids` and `has_chat_template` are used).
    """
    example = record_example(record)
    prompt = example.chat_prompt()
    prompt_ids = list(backend.encode_prompt(prompt))
    answer = record["output"]
    full = list(
        backend.tokenizer(
            backend.render(prompt) + answer, add_special_tokens=not backend.has_chat_template
        )["input_ids"]
    )
    if full[: len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        answer_ids = full[len(prompt_ids) :]
    else:  # the tokenizer merged across the prompt/answer boundary
        answer_ids = list(backend.tokenizer(answer, add_special_tokens=False)["input_ids"])
    target = answer_ids + [int(backend.eos_token_ids[0])]
    return EncodedExample(
        input_ids=prompt_ids + target,
        labels=[IGNORE_INDEX] * len(prompt_ids) + target,
        prompt_length=len(prompt_ids),
        task=example.task,
    )


@dataclass
class DataStats:
    """What tokenisation kept and dropped, per split."""

    file: str
    sha256: str
    records: int = 0
    used: int = 0
    dropped_too_long: int = 0
    prompt_tokens: int = 0
    answer_tokens: int = 0
    max_tokens: int = 0
    per_task: dict[str, int] = field(default_factory=dict)
    dropped_per_task: dict[str, int] = field(default_factory=dict)
    # task -> the prompt variants its records were built with (`TaskExample.prompt_format`):
    # the component reads them from training_meta.json to build the same prompts
    prompt_formats: dict[str, list[str]] = field(default_factory=dict)
    # task -> the answer formats of its records (`TaskExample.answer_format`, e.g. a
    # rationale); a task whose records all answer directly has no entry
    answer_formats: dict[str, list[str]] = field(default_factory=dict)
    # task -> the label sets its records were asked with (`record_labels`): the
    # component warns when it asks for a set the adapter never learned
    label_sets: dict[str, list[list[str]]] = field(default_factory=dict)

    def summary(self, max_length: int) -> str:
        """One line: examples and tokens used, examples dropped as too long."""
        return (
            f"{self.file}: {self.used} examples ({self.prompt_tokens + self.answer_tokens} "
            f"tokens, {self.answer_tokens} in answers); dropped {self.dropped_too_long} "
            f"longer than max_length={max_length}"
        )

    def drop_warning(self) -> str | None:
        """A warning when more than `DROP_WARNING_FRACTION` of the records were dropped."""
        if self.dropped_too_long <= DROP_WARNING_FRACTION * self.records:
            return None
        return (
            f"WARNING: {self.dropped_too_long}/{self.records} examples of {self.file} "
            f"({self.dropped_too_long / self.records:.0%}) exceed max_length and were "
            "dropped; raise training.max_length or window the documents more finely"
        )


def record_labels(record: Mapping[str, Any]) -> list[str]:
    """The label set a record was asked with: its ``labels`` (NER), else its answer
    ``choices`` without the no-answer choice (relations, pairs); [] where neither."""
    labels = record.get("labels")
    if labels is None:
        labels = [c for c in record.get("choices") or [] if c != NO_RELATION]
    return [str(label) for label in labels] if isinstance(labels, list) else []


def encode_records(
    backend: Any, records: Sequence[Mapping[str, Any]], max_length: int, stats: DataStats
) -> list[EncodedExample]:
    """Encode records, dropping (and counting) those longer than `max_length` tokens."""
    kept: list[EncodedExample] = []
    shortest_dropped: int | None = None
    for record in records:
        ex = encode_record(backend, record)
        stats.records += 1
        if len(ex) > max_length:
            stats.dropped_too_long += 1
            stats.dropped_per_task[ex.task] = stats.dropped_per_task.get(ex.task, 0) + 1
            shortest_dropped = (
                len(ex) if shortest_dropped is None else min(shortest_dropped, len(ex))
            )
            continue
        kept.append(ex)
        stats.used += 1
        stats.prompt_tokens += ex.prompt_length
        stats.answer_tokens += len(ex) - ex.prompt_length
        stats.max_tokens = max(stats.max_tokens, len(ex))
        stats.per_task[ex.task] = stats.per_task.get(ex.task, 0) + 1
        for key, seen in (
            ("prompt_format", stats.prompt_formats),
            ("answer_format", stats.answer_formats),
        ):
            value = record.get(key)
            if isinstance(value, str) and value not in seen.setdefault(ex.task, []):
                seen[ex.task].append(value)
        labels = record_labels(record)
        if labels and labels not in stats.label_sets.setdefault(ex.task, []):
            stats.label_sets[ex.task].append(labels)
    if not kept:
        raise TrainingDataError(
            f"{stats.file}: all {stats.records} examples are longer than "
            f"training.max_length={max_length} tokens (shortest: {shortest_dropped}); raise "
            "max_length or build the instructions with smaller windows"
        )
    return kept


class TokenizedDataset:
    """Map-style dataset of encoded examples (what `Trainer` iterates)."""

    def __init__(self, examples: Sequence[EncodedExample]):
        self.examples = list(examples)

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        ex = self.examples[index]
        return {"input_ids": ex.input_ids, "labels": ex.labels}

    @property
    def lengths(self) -> list[int]:
        """Token count of every example (for length grouping)."""
        return [len(ex) for ex in self.examples]


class PadCollator:
    """Right-pads a batch: `input_ids` with the pad id, `labels` with -100, plus the mask."""

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        self.pad_token_id = int(pad_token_id)
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, features: Sequence[Mapping[str, Sequence[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        if self.pad_to_multiple_of:
            m = self.pad_to_multiple_of
            width = (width + m - 1) // m * m
        ids, labels, mask = [], [], []
        for f in features:
            n = len(f["input_ids"])
            ids.append(list(f["input_ids"]) + [self.pad_token_id] * (width - n))
            labels.append(list(f["labels"]) + [IGNORE_INDEX] * (width - n))
            mask.append([1] * n + [0] * (width - n))
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }


def make_collator(pad_token_id: int, packing: bool, pad_to_multiple_of: int | None = None):
    """The padding collator, or the padding-free packing one."""
    if packing:
        from transformers import DataCollatorWithFlattening

        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    return PadCollator(pad_token_id, pad_to_multiple_of)


class SeededSampler:
    """Epoch order that depends only on (seed, epoch): random, or grouped by length.

    `Trainer` calls `set_epoch` before every epoch, so a resumed run (which fast-forwards
    through the batches it already trained on) sees exactly the order of the killed run.
    """

    def __init__(self, lengths: Sequence[int], group_size: int, seed: int, group_by_length: bool):
        self.lengths = list(lengths)
        self.group_size = max(1, int(group_size))
        self.seed = int(seed)
        self.group_by_length = group_by_length
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called by `Trainer` before every epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator()
        generator.manual_seed(self.seed * 100_003 + self.epoch)
        if self.group_by_length and len(self.lengths) > 1:
            from transformers.trainer_pt_utils import get_length_grouped_indices

            order = get_length_grouped_indices(self.lengths, self.group_size, generator=generator)
        else:
            order = torch.randperm(len(self.lengths), generator=generator).tolist()
        return iter(int(i) for i in order)


__all__ = [
    "DROP_WARNING_FRACTION",
    "IGNORE_INDEX",
    "DataStats",
    "EncodedExample",
    "PadCollator",
    "SeededSampler",
    "TokenizedDataset",
    "encode_record",
    "encode_records",
    "make_collator",
]
