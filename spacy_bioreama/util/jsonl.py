"""JSON Lines input (instruction datasets): one object per line, errors name `file:line`.

Shared by the trainer and `evaluate-instructions`, so that both accept and reject the
same files with the same messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def iter_json_objects(path: Path, error: type[Exception]) -> Iterator[tuple[int, dict[str, Any]]]:
    """`(line number, object)` for every non-blank line of `path`. A line that is not
    valid JSON, or not a JSON object, raises `error` naming `path:line`."""
    with path.open(encoding="utf8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as err:
                raise error(f"{path}:{lineno}: not valid JSON ({err.msg})") from err
            if not isinstance(value, dict):
                raise error(f"{path}:{lineno}: a record must be a JSON object")
            yield lineno, value
