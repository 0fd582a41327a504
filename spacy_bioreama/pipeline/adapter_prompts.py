"""The prompt variants an adapter was trained on, read from its training_meta.json.

Training records carry the variant that built them (`TaskExample.prompt_format`); the
trainer lists them per task in ``training_meta.json`` (``data.train.prompt_formats``),
which travels in the adapter folder. The component's ``relation_prompt = "auto"`` (and
``ner_prompt = "auto"``) builds the prompts the adapter learned, so training and
inference cannot drift apart; the same holds for the relation answer format
(``data.train.answer_formats``: a rationale before the label, or the label alone).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..models.base_fingerprint import META_FILE
from ..tasks.names import NER, RE
from ..tasks.ner import DEFAULT_NER_PROMPT, NER_PROMPTS
from ..tasks.relation import DEFAULT_RELATION_PROMPT, RELATION_PROMPTS, Rationale

AUTO = "auto"


class AdapterPromptError(ValueError):
    """An adapter's training metadata names prompt variants the component cannot use."""


def _trained_entry(adapter: str | os.PathLike | None, key: str, task: str) -> tuple[Any, str]:
    """``data.train.<key>.<task>`` of the adapter's training_meta.json (None when the
    adapter, the file or the entry is missing: an adapter from before the entry), and
    where it was read (for messages). A file that cannot be read or has the wrong
    shape is an `AdapterPromptError` naming it: guessing would build prompts the
    adapter never saw, without a word."""
    if adapter is None:
        return None, ""
    path = Path(adapter) / META_FILE
    if not path.is_file():
        return None, ""
    try:
        node = json.loads(path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AdapterPromptError(
            f"{path}: cannot read the adapter's training record ({err}), so the prompts "
            f"and labels it was trained with are unknown; restore the file from its "
            f"training run (training/<run>/training_meta.json)"
        ) from err
    fields = ("data", "train", key, task)
    for depth, field in enumerate(fields):
        if not isinstance(node, dict):
            where = " > ".join(fields[:depth]) or "the file"
            raise AdapterPromptError(f"{path}: {where} must be a JSON object")
        node = node.get(field)
        if node is None:
            return None, ""
    return node, f"{path}: {' > '.join(fields)}"


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def trained_prompt_formats(
    adapter: str | os.PathLike | None, task: str, key: str = "prompt_formats"
) -> list[str]:
    """The prompt variants of `task` in the adapter's training data ([] without a
    record); with ``key="answer_formats"``, its answer formats ([]: direct answers)."""
    formats, where = _trained_entry(adapter, key, task)
    if formats is None:
        return []
    if not _strings(formats):
        raise AdapterPromptError(f"{where} must be a list of strings")
    return list(formats)


def trained_label_sets(adapter: str | os.PathLike | None, task: str) -> list[list[str]]:
    """The label sets `task` was trained with (entity types, relation labels; several
    for a multi-corpus adapter), [] without a record."""
    sets, where = _trained_entry(adapter, "label_sets", task)
    if sets is None:
        return []
    if not isinstance(sets, list) or not all(_strings(labels) for labels in sets):
        raise AdapterPromptError(f"{where} must be a list of label lists")
    return [list(labels) for labels in sets]


def untrained_labels_message(
    adapter: str | os.PathLike | None,
    task: str,
    setting: str,
    labels: list[str],
    any_subset: bool = False,
) -> str | None:
    """A warning when `labels` (the component's `setting`) is none of the label sets
    the adapter learned `task` with: its prompts then name labels, or an order, the
    adapter never saw, which costs accuracy silently. With `any_subset` (prompts that
    name one label each), any of the trained labels in any order match. None when they
    match or the adapter has no record."""
    trained = trained_label_sets(adapter, task)
    if not trained or list(labels) in trained:
        return None
    if any_subset and set(labels) <= {label for known in trained for label in known}:
        return None
    return (
        f"bio_relation_llm: {setting} {list(labels)} is not a label set adapter "
        f"{os.fspath(adapter)!r} was trained with ({trained}); its prompts name labels "
        f"(or an order) it never learned. Set {setting} to the trained one."
    )


def _prompt_for(
    adapter: str | os.PathLike | None,
    setting: str,
    task: str,
    known: tuple[str, ...],
    default: str,
    what: str,
) -> str:
    """The `task`'s prompt variant to build: `setting`, or for ``"auto"`` the one the
    adapter was trained on (`default` without a record). An adapter trained on several
    variants needs an explicit setting."""
    if setting != AUTO:
        return setting
    formats = trained_prompt_formats(adapter, task)
    if not formats:
        return default
    if len(formats) > 1:
        raise AdapterPromptError(
            f"adapter {os.fspath(adapter)!r} was trained on the {what} prompts {formats}; "
            f"set {what}_prompt to one of them"
        )
    if formats[0] not in known:
        raise AdapterPromptError(
            f"adapter {os.fspath(adapter)!r} was trained on {what} prompt {formats[0]!r}, "
            f"which this version does not know ({list(known)})"
        )
    return formats[0]


def relation_prompt_for(adapter: str | os.PathLike | None, setting: str) -> str:
    """The relation prompt variant to build (`_prompt_for`; default
    `DEFAULT_RELATION_PROMPT`)."""
    return _prompt_for(adapter, setting, RE, RELATION_PROMPTS, DEFAULT_RELATION_PROMPT, "relation")


def ner_prompt_for(adapter: str | os.PathLike | None, setting: str) -> str:
    """The NER prompt variant to build (`_prompt_for`; default `DEFAULT_NER_PROMPT`, as
    for an adapter trained before NER records carried their variant)."""
    return _prompt_for(adapter, setting, NER, NER_PROMPTS, DEFAULT_NER_PROMPT, "ner")


def relation_rationale_for(adapter: str | os.PathLike | None) -> Rationale | None:
    """The rationale the adapter's relation answers were trained with (scored the same
    way at inference), or None where it was trained on direct answers."""
    formats = trained_prompt_formats(adapter, RE, key="answer_formats")
    if not formats:
        return None
    if len(formats) > 1:
        raise AdapterPromptError(
            f"adapter {os.fspath(adapter)!r} was trained on the relation answer formats "
            f"{formats}; train on one"
        )
    try:
        return Rationale.from_answer_format(formats[0])
    except ValueError as err:
        raise AdapterPromptError(f"adapter {os.fspath(adapter)!r}: {err}") from None


__all__ = [
    "AUTO",
    "AdapterPromptError",
    "ner_prompt_for",
    "relation_prompt_for",
    "relation_rationale_for",
    "trained_label_sets",
    "trained_prompt_formats",
    "untrained_labels_message",
]
