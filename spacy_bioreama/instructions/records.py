"""Instruction records as `build-instructions` writes them and training reads them.

A record is one JSON Lines object ``{"task", "instruction", "input", "output", ...}``
(extra keys such as ``choices``, ``label`` or ``corpus`` are kept). `record_example` turns
it into the `TaskExample` whose `chat_prompt()` is the exact prompt inference renders, so
the trainer and `evaluate-instructions` see the prompts the model is used with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..tasks.base import TaskExample
from ..util.jsonl import iter_json_objects

# Fields every record must carry, as strings.
REQUIRED_FIELDS = ("instruction", "input", "output")


class TrainingDataError(ValueError):
    """An instruction JSONL file is malformed or has no usable examples."""


def read_instruction_jsonl(path: str | os.PathLike, *, what: str = "paths.train") -> list[dict]:
    """Records of an instruction JSONL file (blank lines skipped), validated.

    `what` names the setting the file came from in the messages (``paths.train``). Raises
    `FileNotFoundError` for a missing file and `TrainingDataError` (naming ``file:line``)
    for a malformed record, an empty ``output`` (nothing to learn) or an empty file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: instruction file {str(path)!r} does not exist")
    records: list[dict] = []
    for lineno, record in iter_json_objects(path, TrainingDataError):
        for key in REQUIRED_FIELDS:
            if not isinstance(record.get(key), str):
                raise TrainingDataError(
                    f"{path}:{lineno}: field {key!r} is missing or not a string "
                    f"(records need {', '.join(REQUIRED_FIELDS)})"
                )
        if not record["output"].strip():
            raise TrainingDataError(f"{path}:{lineno}: empty 'output' (nothing to learn)")
        records.append(record)
    if not records:
        raise TrainingDataError(f"{what}: {path} contains no examples (empty dataset)")
    return records


def record_example(record: Mapping[str, Any]) -> TaskExample:
    """The `TaskExample` of a JSONL record (prompt side exactly as at inference)."""
    return TaskExample(
        task=str(record.get("task") or "unknown"),
        instruction=record["instruction"],
        input=record["input"],
        output=record.get("output"),
    )


__all__ = ["REQUIRED_FIELDS", "TrainingDataError", "read_instruction_jsonl", "record_example"]
