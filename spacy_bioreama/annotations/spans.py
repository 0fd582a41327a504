"""Placing mentions on a Doc: token alignment, `doc.ents` plus overflow spans.

Readers and the component both go through these helpers, so corpora and predictions
follow the same rules: every mention aligns exactly to tokens, `doc.ents` holds a
non-overlapping subset (longest first, spaCy's rule) and every other mention is kept in
`doc.spans["bio_entities"]` rather than dropped.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable

from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc, Span
from spacy.util import filter_spans

from .relations import USER_DATA_KEY as RELATIONS_KEY

OVERFLOW_KEY = "bio_entities"
_SPACE_RE = re.compile(r"\s+")


# what separates several ids in an id field (`split_concept_ids`): a text id holding one
# would be read as several concepts ("2,4-dinitrophenol" as "2" and "4-dinitrophenol")
_ID_SEPARATORS = re.compile(r"[,;|]")


def normalise_concept(text: str) -> str:
    """Concept id for a predicted mention without a knowledge-base id: the text in lower
    case, spaces collapsed, id separators (``,;|``) read as spaces."""
    return _SPACE_RE.sub(" ", _ID_SEPARATORS.sub(" ", text).strip().lower()).strip()


def text_length(doc: Doc) -> int:
    """``len(doc.text)`` without building the text (``Doc.text`` joins every token on
    each access: per-window calls on a long document would be quadratic)."""
    if not len(doc):
        return 0
    last = doc[-1]
    return last.idx + len(last.text_with_ws)


def text_slice(doc: Doc, start: int, end: int) -> str:
    """``doc.text[start:end]`` (0 <= start) from the tokens that overlap the range
    only, found by binary search (see `text_length`)."""
    n = len(doc)
    lo, hi = 0, n
    while lo < hi:  # the first token ending after `start`
        mid = (lo + hi) // 2
        token = doc[mid]
        if token.idx + len(token.text_with_ws) <= start:
            lo = mid + 1
        else:
            hi = mid
    if lo == n or start >= end:
        return ""
    base = doc[lo].idx
    parts = []
    for i in range(lo, n):
        token = doc[i]
        if token.idx >= end:
            break
        parts.append(token.text_with_ws)
    return "".join(parts)[start - base : end - base]


def split_at_boundaries(doc: Doc, boundaries: Iterable[int]) -> Doc:
    """Return `doc` re-tokenised so that every character offset in `boundaries`
    falls on a token edge (the text is unchanged). Returns `doc` itself when no
    token needs splitting. Linear in the number of tokens."""
    text = doc.text
    boundaries = {b for b in boundaries if 0 < b < len(text)}
    if not boundaries:
        return doc
    arr = doc.to_array([IDX, LENGTH])
    starts = arr[:, 0].tolist()
    ends = (arr[:, 0] + arr[:, 1]).tolist()
    edges = set(starts) | set(ends)
    cuts = sorted(b for b in boundaries if b not in edges)
    if not cuts:
        return doc
    words: list[str] = []
    spaces: list[bool] = []
    ci = 0
    for token, start, end in zip(doc, starts, ends, strict=True):
        while ci < len(cuts) and cuts[ci] <= start:
            ci += 1
        pos = start
        while ci < len(cuts) and cuts[ci] < end:
            words.append(text[pos : cuts[ci]])
            spaces.append(False)
            pos = cuts[ci]
            ci += 1
        words.append(text[pos:end])
        spaces.append(bool(token.whitespace_))
    new = Doc(doc.vocab, words=words, spaces=spaces)
    assert new.text == text
    return new


def split_tokens_at(doc: Doc, offsets: Iterable[int]) -> int:
    """Split, in place, every token that one of the character `offsets` falls strictly
    inside (the text is unchanged; entities and span groups are carried over by the
    retokenizer). Returns the number of tokens split. Use it where the Doc belongs to
    the caller; build a new aligned Doc with `make_aligned_doc` otherwise."""
    starts = [t.idx for t in doc]
    cuts: dict[int, set[int]] = {}
    for offset in offsets:
        i = bisect.bisect_right(starts, offset) - 1
        if i >= 0 and starts[i] < offset < starts[i] + len(doc[i].text):
            cuts.setdefault(i, set()).add(offset)
    if not cuts:
        return 0
    with doc.retokenize() as retokenizer:
        for i, points in cuts.items():
            token = doc[i]
            edges = [token.idx, *sorted(points), token.idx + len(token.text)]
            orths = [doc.text[a:b] for a, b in zip(edges, edges[1:], strict=False)]
            head = (token, 0) if token.head.i == token.i else token.head
            retokenizer.split(token, orths, heads=[head] + [(token, 0)] * (len(orths) - 1))
    return len(cuts)


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


_PRIMARY_SPLIT = re.compile(r"[,;]")
_NO_ID = {"", "-", "-1"}


def split_concept_ids(kb_id: str) -> tuple[list[str], list[str]]:
    """The concept ids of a corpus id field, in two tiers.

    Primary ids: the field split on ``,`` and ``;`` (BioRED, PubTator). Secondary ids:
    each primary id further split on ``|`` -- BC5CDR and NCBI-disease list several ids
    as ``A|B``, while BioRED uses ``|`` inside single ids (variants ``c|DEL|657|5``,
    composite concepts ``D017180|D014693`` that relations name as a whole). Lookups
    try the primary tier first, so ``|`` never splits an id a relation names whole.
    ``-`` and ``-1`` mean "no id" and are dropped.
    """
    primary = [p.strip() for p in _PRIMARY_SPLIT.split(kb_id) if p.strip() not in _NO_ID]
    secondary = [
        s.strip() for p in primary if "|" in p for s in p.split("|") if s.strip() not in _NO_ID
    ]
    return primary, secondary


def concept_ids(span: Span, *, expand_composite: bool = False) -> list[str]:
    """The concept ids of a mention (primary tier; with `expand_composite`, the ``|``
    parts as well); without an id, the normalised surface form."""
    primary, secondary = split_concept_ids(span.kb_id_)
    ids = primary + [s for s in secondary if s not in primary] if expand_composite else primary
    return ids or [normalise_concept(span.text)]


def copy_for_prediction(
    make_doc: Callable[[str], Doc], doc: Doc, keep_entities: bool = False
) -> Doc:
    """A fresh Doc with `doc`'s text, its user data (document ids ...) and, with
    `keep_entities`, its mentions (kb ids included), but never its relations: the
    input for predicting on gold data."""
    mentions = all_mentions(doc) if keep_entities else []
    new = make_aligned_doc(
        make_doc, doc.text, [o for s in mentions for o in (s.start_char, s.end_char)]
    )
    set_entities(
        new,
        [new.char_span(s.start_char, s.end_char, label=s.label_, kb_id=s.kb_id_) for s in mentions],
    )
    new.user_data.update({k: v for k, v in doc.user_data.items() if k != RELATIONS_KEY})
    return new
