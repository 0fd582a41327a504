"""The `bio_relation_llm` component's settings: their defaults, which of them `configure`
may change, and the one check they pass.

Kept apart from the component so that what a user can set (and what each setting means)
reads in one place: the factory's default config, `configure` on a loaded pipeline and
the command lines' overrides all go through `validate_settings`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from ..annotations.labels import BIORED_ENTITY_LABELS, BIORED_RELATION_LABELS, BIORED_TYPE_PAIRS
from ..tasks import ner
from ..tasks import relation as re_task
from ..tasks.names import TASK_ENTITIES, TASK_RELATIONS
from ..tasks.relation import DIRECT_ANSWER
from ..tasks.units import MIN_WINDOW_TOKENS
from .relation_calibration import AUTO

# Prompt tokens kept free for the instruction, chat template and entity names, on top
# of the measured instruction length, when cutting documents into windows.
PROMPT_MARGIN_TOKENS = 96
# ... and for the mention marks (~10 tokens per marked mention with SmolLM2's tokenizer):
# a "marked" prompt marks every mention of the pair in the window, a "sentence" prompt
# those of two sentences. A prompt still too long is dropped and counted.
MARK_MARGIN_TOKENS = {"named": 0, "marked": 192, "sentence": 64, "typed": 96}
BIO_SCORER = "spacy_bioreama.bio_scorer.v1"
# Generation engines by name: Hugging Face (training parity, GPUs) and llama.cpp (the
# optional `[llamacpp]` extra: quantised CPU kernels on the GGUF file).
BACKENDS = ("hf", "llama_cpp")

DEFAULT_CONFIG: dict[str, Any] = {
    "model": "default",
    "adapter": None,
    "entity_labels": list(BIORED_ENTITY_LABELS),
    "relation_labels": list(BIORED_RELATION_LABELS),
    "relation_type_pairs": list(BIORED_TYPE_PAIRS),
    "tasks": [TASK_ENTITIES, TASK_RELATIONS],
    "batch_size": 8,
    "max_new_tokens": 256,
    # NER forms decoded as copies of spans of the text (models/copy_spans.py)
    "ner_copy_constraint": False,
    "max_prompt_tokens": 1024,
    # tokens of text per NER window (null: as much as a prompt holds); training fits the
    # answer into max_length too, so an entity-dense document was cut shorter there
    "ner_window_tokens": None,
    "max_pairs_per_window": 100,
    "max_pairs_per_doc": 1000,
    # "auto": the relation prompt variant the adapter was trained on (training_meta.json),
    # else "named"; or one of "named", "marked", "sentence", "typed" (tasks/relation.py)
    "relation_prompt": AUTO,
    # "auto": the NER prompt variant the adapter was trained on (training_meta.json), else
    # "all_types"; or "all_types" (one prompt per window) or "per_type" (tasks/ner.py)
    "ner_prompt": AUTO,
    # "auto": the relation answer format the adapter was trained on (training_meta.json:
    # a rationale before the label, or the label alone), else "direct"; or "direct", or
    # "rationale" / a rationale's format, e.g. "rationale(sentences=2, negatives=quote)"
    "relation_answer": AUTO,
    "relation_threshold": 0.0,
    # "auto": the adapter's calibrated threshold (calibration.json), else 0.5
    "none_threshold": AUTO,
    "device": "auto",
    "backend": "hf",
    "trust_remote_code": False,
    "keep_pair_scores": False,
    "scorer": {"@scorers": BIO_SCORER},
}


# Settings `configure` may change on a built or loaded component (the backend's model,
# adapter and device are fixed once the component exists).
CONFIGURABLE = (
    "tasks",
    "entity_labels",
    "relation_labels",
    "relation_type_pairs",
    "batch_size",
    "max_new_tokens",
    "ner_copy_constraint",
    "max_prompt_tokens",
    "ner_window_tokens",
    "max_pairs_per_window",
    "max_pairs_per_doc",
    "relation_prompt",
    "ner_prompt",
    "relation_answer",
    "relation_threshold",
    "none_threshold",
    "keep_pair_scores",
)
LIST_SETTINGS = {"tasks", "entity_labels", "relation_labels", "relation_type_pairs"}


def validate_settings(
    *,
    tasks: Sequence[str],
    entity_labels: Sequence[str],
    relation_labels: Sequence[str],
    batch_size: int,
    max_new_tokens: int,
    max_prompt_tokens: int,
    none_threshold: float | str | None,
    max_pairs_per_window: int = 1,
    max_pairs_per_doc: int = 1,
    relation_prompt: str = AUTO,
    ner_prompt: str = AUTO,
    relation_answer: str = AUTO,
    ner_copy_constraint: bool = False,
    ner_window_tokens: int | None = None,
    relation_threshold: float = 0.0,
) -> None:
    """Raise a ValueError naming the field when component settings cannot work. The one
    check for the factory (`__init__`) and for `configure` on a loaded pipeline, so a
    command-line override is held to the same ranges as a config file."""
    unknown = set(tasks) - {TASK_ENTITIES, TASK_RELATIONS}
    if unknown or not tasks:
        raise ValueError(
            f"bio_relation_llm: tasks must be a non-empty subset of "
            f"['{TASK_ENTITIES}', '{TASK_RELATIONS}'], got {list(tasks)}"
        )
    if TASK_ENTITIES in tasks and not entity_labels:
        raise ValueError("bio_relation_llm: entity_labels is empty")
    ner.check_type_names(entity_labels, "bio_relation_llm: entity_labels")
    if TASK_RELATIONS in tasks and not relation_labels:
        raise ValueError("bio_relation_llm: relation_labels is empty")
    positive = (
        (batch_size, "batch_size"),
        (max_new_tokens, "max_new_tokens"),
        (max_pairs_per_window, "max_pairs_per_window"),
        (max_pairs_per_doc, "max_pairs_per_doc"),
    )
    for value, field in positive:
        if value < 1:
            raise ValueError(f"bio_relation_llm: {field} must be >= 1, got {value}")
    if max_prompt_tokens < 2 * PROMPT_MARGIN_TOKENS:
        raise ValueError(
            f"bio_relation_llm: max_prompt_tokens must be >= {2 * PROMPT_MARGIN_TOKENS}"
        )
    if ner_window_tokens is not None and ner_window_tokens < MIN_WINDOW_TOKENS:
        raise ValueError(
            f"bio_relation_llm: ner_window_tokens must be null or >= {MIN_WINDOW_TOKENS}, "
            f"got {ner_window_tokens}"
        )
    if not isinstance(ner_copy_constraint, bool):
        raise ValueError(
            f"bio_relation_llm: ner_copy_constraint must be true or false, "
            f"got {ner_copy_constraint!r}"
        )
    if relation_prompt != AUTO and relation_prompt not in re_task.RELATION_PROMPTS:
        raise ValueError(
            f"bio_relation_llm: relation_prompt must be {AUTO!r} or one of "
            f"{list(re_task.RELATION_PROMPTS)}, got {relation_prompt!r}"
        )
    if ner_prompt != AUTO and ner_prompt not in ner.NER_PROMPTS:
        raise ValueError(
            f"bio_relation_llm: ner_prompt must be {AUTO!r} or one of "
            f"{list(ner.NER_PROMPTS)}, got {ner_prompt!r}"
        )
    if isinstance(relation_threshold, bool) or not (
        isinstance(relation_threshold, int | float) and 0.0 <= relation_threshold <= 1.0
    ):
        raise ValueError(
            f"bio_relation_llm: relation_threshold must be a number in [0, 1], "
            f"got {relation_threshold!r}"
        )
    if relation_answer not in (AUTO, DIRECT_ANSWER):
        try:
            re_task.Rationale.from_setting(relation_answer)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"bio_relation_llm: relation_answer must be {AUTO!r}, {DIRECT_ANSWER!r} or "
                f"a rationale format: {err}"
            ) from None
    if none_threshold == AUTO:
        return
    if none_threshold is not None and (
        isinstance(none_threshold, bool | str) or not 0.0 < none_threshold <= 1.0
    ):
        raise ValueError(
            f"bio_relation_llm: none_threshold must be in (0, 1], null or {AUTO!r}, "
            f"got {none_threshold!r}"
        )


VALIDATED = frozenset(inspect.signature(validate_settings).parameters)
