"""Reading a closed-set answer (a relation label, a pair label, a QA choice) from a
model's text.

One parser for every task with choices, so that training targets, pipeline decoding and
instruction-record scoring read an answer the same way. The answer is the last non-empty
line (a rationale puts ``Evidence: ...`` lines before it), with an optional
``Answer:`` prefix, in any case, surrounding quotes and end punctuation ignored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

ANSWER_PREFIX = "Answer:"
_STRIP = " .!'\"`"
_LEADING_WORD = re.compile(r"^\W*([A-Za-z]+)\b")


def answer_line(text: str) -> str | None:
    """The line an answer is read from: the last non-empty line of `text`, stripped,
    without an ``Answer:`` prefix (any case); None for a blank text."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    if last.lower().startswith(ANSWER_PREFIX.lower()):
        last = last[len(ANSWER_PREFIX) :].strip()
    return last


def _choice_named(word: str, choices: Sequence[str]) -> str | None:
    word = word.lower()
    return next((c for c in choices if c.lower() == word), None)


def parse_choice(text: str, choices: Sequence[str], *, leading_word: bool = False) -> str | None:
    """The choice (as spelled in `choices`) that the answer line of `text` names, case
    and surrounding ``. ! ' " `` ignored; None when it names none.

    With `leading_word`, a line that is not a bare choice may still start with one
    ("Yes, because ..." gives "yes"): for free-text answers to yes/no questions."""
    last = answer_line(text)
    if last is None:
        return None
    found = _choice_named(last.strip(_STRIP), choices)
    if found is None and leading_word:
        match = _LEADING_WORD.match(last)
        if match:
            found = _choice_named(match.group(1), choices)
    return found


__all__ = ["ANSWER_PREFIX", "answer_line", "parse_choice"]
