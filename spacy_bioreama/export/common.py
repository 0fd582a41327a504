"""What every writer shares: the export report, passages, mentions in writing order and
the mention each relation is anchored on.

Writers are the inverse of the `corpora` readers: what a writer puts in a file, our
reader for that format reads back into the same text, mentions (character offsets,
labels, concept ids; the overflow group included) and relations.

Passages (title / abstract): the PubTator and BioC readers join passages with a space
and keep no record of where each began. A Doc may say where they are in
``doc.user_data["passages"]`` (a list of ``[offset, kind]``, e.g. ``[[0, "title"], [88,
"abstract"]]``); without it the title is taken to end at the first sentence end (``.``,
``?`` or ``!`` followed by a space) that no mention crosses -- right for 495 of the 500
BioRED train+dev abstracts. Either way the text the reader rebuilds is exactly the
Doc's text, because the split is always at a single space.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from spacy.tokens import Doc, Span

from ..annotations.doc_ids import doc_id
from ..annotations.relations import Relation
from ..annotations.spans import OVERFLOW_KEY, split_concept_ids
from ..corpora.report import AnnotationCounts

PASSAGES_KEY = "passages"
_SENTENCE_END = re.compile(r"[.?!] (?=\S)")


@dataclass
class ExportReport(AnnotationCounts):
    """Counts of one export (one writer over a list of Docs) and what it had to change."""

    format: str = ""
    output: str = ""
    files: list[str] = field(default_factory=list)
    adjusted: list[str] = field(default_factory=list)  # written after a change (reason)
    skipped: list[str] = field(default_factory=list)  # left out (reason)

    def add_doc(self, doc: Doc, mentions: Iterable[Span], relations: Iterable[Relation]) -> None:
        """Count a written document with the mentions and relations written for it."""
        self.count(mentions, relations)

    def to_dict(self) -> dict:
        """A JSON-friendly summary."""
        return {
            "format": self.format,
            "output": self.output,
            "documents": self.documents,
            "mentions": self.n_mentions,
            "relations": self.n_relations,
            "files": len(self.files),
            "adjusted": list(self.adjusted),
            "skipped": list(self.skipped),
        }

    def format_text(self) -> str:
        """A human-readable report: counts, then every adjustment and skip."""
        lines = [
            f"Export report ({self.format})",
            f"  output:    {self.output}",
            f"  documents: {self.documents}",
            f"  mentions:  {self.n_mentions}",
            f"  relations: {self.n_relations}",
            f"  files:     {len(self.files)}",
            f"  adjusted:  {len(self.adjusted)}",
        ]
        lines.extend(f"    - {a}" for a in self.adjusted)
        lines.append(f"  skipped:   {len(self.skipped)}")
        lines.extend(f"    - {s}" for s in self.skipped)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format_text()


class Passage(NamedTuple):
    """A passage of a document: its document offset, text and kind (title, abstract)."""

    offset: int
    text: str
    kind: str


def document_id(doc: Doc, index: int) -> str:
    """The Doc's id (`doc.user_data["doc_id"]`), or its 1-based position where it has none."""
    return doc_id(doc) or str(index + 1)


def ordered_mentions(doc: Doc) -> list[Span]:
    """Every mention (doc.ents and the overflow group) in writing order: by offsets, a
    `doc.ents` mention before an overflow one at the same offsets, so that a reader
    placing them again (longest first, first come first served) puts the same ones in
    `doc.ents`."""
    spans = [(s, 0) for s in doc.ents]
    if OVERFLOW_KEY in doc.spans:
        spans.extend((s, 1) for s in doc.spans[OVERFLOW_KEY])
    spans.sort(key=lambda p: (p[0].start_char, p[0].end_char, p[1]))
    return [s for s, _ in spans]


def anchor_index(mentions: list[Span], token_span: tuple[int, int], concept: str) -> int | None:
    """Index in `mentions` of a relation end's representative mention: the mention at
    those token offsets whose concept ids contain `concept`, else the first at those
    offsets; None when no mention is there."""
    found = None
    for i, span in enumerate(mentions):
        if (span.start, span.end) != tuple(token_span):
            continue
        primary, secondary = split_concept_ids(span.kb_id_)
        if concept in primary or concept in secondary:
            return i
        if found is None:
            found = i
    return found


def passages(doc: Doc, mentions: Iterable[Span] = ()) -> list[Passage]:
    """The document's passages (see the module docstring); joined by single spaces they
    give `doc.text` back."""
    text = doc.text
    offsets = _stored_offsets(doc)
    if offsets is None:
        offsets = [(0, "title")]
        cut = _title_end(text, mentions)
        if cut is not None:
            offsets.append((cut + 1, "abstract"))
    out = []
    for i, (offset, kind) in enumerate(offsets):
        end = offsets[i + 1][0] - 1 if i + 1 < len(offsets) else len(text)
        out.append(Passage(offset, text[offset:end], kind))
    return out


def _stored_offsets(doc: Doc) -> list[tuple[int, str]] | None:
    """`doc.user_data["passages"]` when it is usable: increasing offsets, the first 0,
    each later one just after a space."""
    value = doc.user_data.get(PASSAGES_KEY)
    if not value:
        return None
    try:
        offsets = [(int(o), str(k)) for o, k in value]
    except (TypeError, ValueError):
        return None
    text = doc.text
    if offsets[0][0] != 0:
        return None
    for (prev, _), (cur, _) in zip(offsets, offsets[1:], strict=False):
        if not (prev < cur <= len(text) and text[cur - 1] == " "):
            return None
    return offsets


def _title_end(text: str, mentions: Iterable[Span]) -> int | None:
    """Offset of the space after the title (see the module docstring), or None."""
    covered = [(s.start_char, s.end_char) for s in mentions]
    for match in _SENTENCE_END.finditer(text):
        space = match.start() + 1
        if not any(start <= space < end for start, end in covered):
            return space
    return None


__all__ = [
    "PASSAGES_KEY",
    "ExportReport",
    "Passage",
    "anchor_index",
    "document_id",
    "ordered_mentions",
    "passages",
]
