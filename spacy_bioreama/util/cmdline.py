"""The command line of this run, as recorded in metrics files and results pages."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence


def command_line(argv: Sequence[str] | None = None, program: str = "spacy_bioreama") -> str:
    """This invocation as `python -m spacy_bioreama ARGS`, shell-quoted, so that a
    recorded command can be pasted back into a shell and run again."""
    args = sys.argv[1:] if argv is None else list(argv)
    return shlex.join(["python", "-m", program, *args])
