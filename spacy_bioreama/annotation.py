"""Placing mentions on a Doc: token alignment, `doc.ents` plus overflow spans.

Readers and the component both go through these helpers, so corpora and predictions
follow the same rules: every mention aligns exactly to tokens, `doc.ents` holds a
non-overlapping subset (longest first, spaCy's rule) and every other mention is kept in
`doc.spans["bio_entities"]` rather than dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from spacy.tokens import Doc, Span
from spacy.util import filter_spans

OVERFLOW_KEY = "bio_entities"
_SPACE_RE = re.compile(r"\s+")


def normalise_concept(text: str) -> str:
    """Concept id for a predicted mention without a knowledge-base id."""
    return _SPACE_RE.sub(" ", text.strip().lower())


def split_at_boundaries(doc: Doc, boundaries: Iterable[int]) -> Doc:
    """Return `doc` re-tokenised so that every character offset in `boundaries`
    falls on a token edge (the text is unchanged). Returns `doc` itself when no
    token needs splitting."""
    cuts = sorted({b for b in boundaries if 0 < b < len(doc.text)})
    if not cuts:
        return doc
    words: list[str] = []
    spaces: list[bool] = []
    changed = False
    ci = 0
    for token in doc:
        start, end = token.idx, token.idx + len(token.text)
        while ci < len(cuts) and cuts[ci] <= start:
            ci += 1
        pieces_at = [start]
        j = ci
        while j < len(cuts) and cuts[j] < end:
            pieces_at.append(cuts[j])
            j += 1
        pieces_at.append(end)
        if len(pieces_at) > 2:
            changed = True
        for k in range(len(pieces_at) - 1):
            words.append(doc.text[pieces_at[k] : pieces_at[k + 1]])
            last = k == len(pieces_at) - 2
            spaces.append(bool(token.whitespace_) if last else False)
    if not changed:
        return doc
    new = Doc(doc.vocab, words=words, spaces=spaces)
    assert new.text == doc.text
    return new


def make_aligned_doc(
    make_doc: Callable[[str], Doc], text: str, boundaries: Iterable[int] = ()
) -> Doc:
    """Tokenise `text` and split tokens so every offset in `boundaries` is a token edge."""
    return split_at_boundaries(make_doc(text), boundaries)


def set_entities(doc: Doc, spans: Iterable[Span]) -> int:
    """Put `spans` on `doc`: a non-overlapping subset in `doc.ents` (longest first),
    every other distinct span in `doc.spans["bio_entities"]`. Exact duplicates
    (same offsets, label and kb id) are merged. Returns the number of overflow spans."""
    unique: dict[tuple[int, int, str, str], Span] = {}
    for span in spans:
        unique.setdefault((span.start, span.end, span.label_, span.kb_id_), span)
    candidates = list(unique.values())
    ents = filter_spans(candidates)
    chosen = {(s.start, s.end, s.label_, s.kb_id_) for s in ents}
    overflow = [s for k, s in unique.items() if k not in chosen]
    doc.set_ents(ents, default="outside")
    if overflow or OVERFLOW_KEY in doc.spans:
        doc.spans[OVERFLOW_KEY] = sorted(overflow, key=lambda s: (s.start, s.end, s.label_))
    return len(overflow)


def all_mentions(doc: Doc) -> list[Span]:
    """Every mention on `doc`: `doc.ents` plus the overflow group, sorted."""
    spans = list(doc.ents)
    if OVERFLOW_KEY in doc.spans:
        spans.extend(doc.spans[OVERFLOW_KEY])
    return sorted(spans, key=lambda s: (s.start, s.end, s.label_))


def concept_ids(span: Span) -> list[str]:
    """The concept ids of a mention: corpus ids may list several (``A,B`` / ``A;B``);
    without an id, the normalised surface form."""
    if span.kb_id_:
        return [i for i in re.split(r"[,;|]", span.kb_id_) if i and i != "-"] or [
            normalise_concept(span.text)
        ]
    return [normalise_concept(span.text)]
