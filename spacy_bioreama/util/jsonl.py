"""JSON Lines input (instruction datasets): one object per line, errors name `file:line`.

Shared by the trainer and `evaluate-instructions`, so that both accept and reject the
same files with the same messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .text_lines import decode_utf8_line


class JsonLineError(ValueError):
    """A line of a JSON Lines input that is not a JSON object (`lineno`, `reason`)."""

    def __init__(self, lineno: int, reason: str) -> None:
        super().__init__(f"line {lineno}: {reason}")
        self.lineno = lineno
        self.reason = reason


def json_record(line: str, lineno: int) -> dict[str, Any] | None:
    """The JSON object on one line (None for a blank line). A line that is not valid
    JSON, or not an object, raises `JsonLineError`. The one line parser of every JSON
    Lines input: `json_records` uses it, and so do readers that go on past a bad line
    (`annotate-corpus`'s sources)."""
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as err:
        raise JsonLineError(lineno, f"not valid JSON ({err.msg})") from err
    if not isinstance(value, dict):
        raise JsonLineError(lineno, "a record must be a JSON object")
    return value


def json_records(lines: Iterable[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, object)` for every non-blank line; the one parsing loop for every
    JSON Lines input (instruction records, `convert jsonl`). A bad line raises
    `JsonLineError`, which each caller turns into its own error naming the file."""
    for lineno, line in enumerate(lines, 1):
        value = json_record(line, lineno)
        if value is not None:
            yield lineno, value


def iter_json_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, object)` for every non-blank line of `path`. A line that is not
    valid JSON, or not a JSON object, raises `error` naming `path:line`."""
    with path.open("rb") as f:
        try:
            yield from json_records(_decoded_lines(f))
        except JsonLineError as err:
            raise error(f"{path}:{err.lineno}: {err.reason}") from err


def _decoded_lines(raw_lines: Iterable[bytes]) -> Iterator[str]:
    """Each line as UTF-8 text; one that is not raises `JsonLineError` with its number."""
    for lineno, raw in enumerate(raw_lines, 1):
        try:
            yield decode_utf8_line(raw, lineno)
        except UnicodeDecodeError as err:
            raise JsonLineError(lineno, f"not valid UTF-8 ({err.reason})") from None
