"""Split long documents into windows that fit the model's context.

Windows are character ranges cut at sentence ends where possible (so a mention is
never cut in two unless a single sentence is longer than the budget, in which case it
is cut at token boundaries). Tasks run per window; their results are merged back into
the document, offsets shifted.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from spacy.tokens import Doc

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)|\n+")


def sentence_ranges(doc: Doc, text: str | None = None) -> list[tuple[int, int]]:
    """Character ranges of the sentences of `doc`: `doc.sents` when the Doc has sentence
    boundaries, else split after ``. ! ?`` followed by a space and at line breaks
    (blank ranges left out). `text`: ``doc.text`` where the caller has it already
    (``Doc.text`` is rebuilt from the tokens on every access)."""
    if doc.has_annotation("SENT_START"):
        return [(s.start_char, s.end_char) for s in doc.sents]
    text = doc.text if text is None else text
    ranges, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        ranges.append((start, match.start()))
        start = match.end()
    ranges.append((start, len(text)))
    return [(a, b) for a, b in ranges if text[a:b].strip()]


def _split_long(
    doc: Doc, text: str, start: int, end: int, count_tokens: Callable[[str], int], budget: int
) -> list[tuple[int, int]]:
    """Cut one over-long sentence at spaCy token boundaries."""
    span = doc.char_span(start, end, alignment_mode="expand")
    tokens = list(span) if span is not None else []
    pieces: list[tuple[int, int]] = []
    piece_start = None
    piece_end = start
    for token in tokens:
        t_start, t_end = max(token.idx, start), min(token.idx + len(token), end)
        if piece_start is None:
            piece_start = t_start
        elif count_tokens(text[piece_start:t_end]) > budget:
            pieces.append((piece_start, piece_end))
            piece_start = t_start
        piece_end = t_end
    if piece_start is not None:
        pieces.append((piece_start, piece_end))
    return pieces or [(start, end)]


def split_windows(
    doc: Doc, count_tokens: Callable[[str], int], budget: int
) -> list[tuple[int, int]]:
    """Character ranges covering every non-blank part of `doc`, each at most `budget`
    tokens as counted by `count_tokens`. An empty or blank document has no window."""
    text = doc.text  # once: Doc.text is rebuilt from the tokens on every access
    if not text.strip():
        return []
    if count_tokens(text) <= budget:
        return [(0, len(text))]
    windows: list[tuple[int, int]] = []
    cur_start = cur_end = None
    cur_tokens = 0
    for s_start, s_end in sentence_ranges(doc, text):
        n = count_tokens(text[s_start:s_end])
        if n > budget:
            if cur_start is not None:
                windows.append((cur_start, cur_end))
                cur_start = None
            windows.extend(_split_long(doc, text, s_start, s_end, count_tokens, budget))
            continue
        if cur_start is not None and cur_tokens + n + 1 > budget:
            windows.append((cur_start, cur_end))
            cur_start = None
        if cur_start is None:
            cur_start, cur_tokens = s_start, 0
        cur_end = s_end
        cur_tokens += n + 1
    if cur_start is not None:
        windows.append((cur_start, cur_end))
    return windows
