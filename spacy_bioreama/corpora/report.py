"""The conversion report: what a reader produced and everything it could not place.

Readers never drop an annotation silently. An annotation that cannot be put on the
Doc (offsets outside the text, text that does not match the offsets, a relation whose
concept has no mention, ...) is recorded as an `Issue` in `ConversionReport.unplaced`;
an annotation that was placed after a documented adjustment (a mention text with
trailing spaces, a discontinuous entity kept as one covering span, a typeless DDI pair,
...) is recorded in `ConversionReport.adjusted`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from spacy.tokens import Doc, Span

from ..annotations.relations import Relation
from ..annotations.spans import OVERFLOW_KEY, all_mentions


@dataclass(frozen=True)
class Issue:
    """One annotation that could not be placed (or was placed after an adjustment).

    `start` / `end` are character offsets into the document text as given by the
    corpus (None where the annotation has none, e.g. a concept-level relation);
    `annotation` says what it was (mention text, relation ids, ...).
    """

    doc_id: str
    start: int | None
    end: int | None
    reason: str
    annotation: str = ""

    def format(self) -> str:
        """One line: document id, offsets, annotation and reason."""
        where = "" if self.start is None else f" [{self.start}:{self.end}]"
        what = f" {self.annotation}" if self.annotation else ""
        return f"{self.doc_id}{where}{what}: {self.reason}"


@dataclass(kw_only=True)
class AnnotationCounts:
    """Documents, mentions per label and relations per label: what a reader placed or a
    writer (`export/`) wrote, counted the same way on both sides of a round trip."""

    documents: int = 0
    mentions: Counter = field(default_factory=Counter)
    relations: Counter = field(default_factory=Counter)

    def count(self, mentions: Iterable[Span], relations: Iterable[Relation]) -> None:
        """Count one document with its mentions and relations."""
        self.documents += 1
        for span in mentions:
            self.mentions[span.label_] += 1
        for rel in relations:
            self.relations[rel.label] += 1

    @property
    def n_mentions(self) -> int:
        """Mentions counted, all labels."""
        return sum(self.mentions.values())

    @property
    def n_relations(self) -> int:
        """Relations counted, all labels."""
        return sum(self.relations.values())


@dataclass
class ConversionReport(AnnotationCounts):
    """Counts and problems of one conversion (one reader over one input)."""

    corpus_format: str = ""
    source: str = ""
    overflow: int = 0
    doc_labels: Counter = field(default_factory=Counter)  # document-level labels (QA answers)
    unplaced: list[Issue] = field(default_factory=list)
    adjusted: list[Issue] = field(default_factory=list)

    # -- recording -------------------------------------------------------------
    def add_doc(self, doc: Doc) -> None:
        """Count a finished Doc: mentions (ents + overflow) per label, relations per
        label, overflow spans."""
        self.count(all_mentions(doc), doc._.relations)
        if OVERFLOW_KEY in doc.spans:
            self.overflow += len(doc.spans[OVERFLOW_KEY])

    def unplaceable(
        self,
        doc_id: str,
        reason: str,
        start: int | None = None,
        end: int | None = None,
        annotation: str = "",
    ) -> None:
        """Record an annotation that could not be placed (left out of the Doc)."""
        self.unplaced.append(Issue(str(doc_id), start, end, reason, annotation))

    def adjust(
        self,
        doc_id: str,
        reason: str,
        start: int | None = None,
        end: int | None = None,
        annotation: str = "",
    ) -> None:
        """Record an annotation kept after a correction, or a quirk of the input."""
        self.adjusted.append(Issue(str(doc_id), start, end, reason, annotation))

    # -- summaries -------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-friendly summary (used by scripts and tests)."""
        return {
            "format": self.corpus_format,
            "source": self.source,
            "documents": self.documents,
            "mentions": self.n_mentions,
            "mentions_per_type": dict(sorted(self.mentions.items())),
            "relations": self.n_relations,
            "relations_per_type": dict(sorted(self.relations.items())),
            "overflow": self.overflow,
            "doc_labels": dict(sorted(self.doc_labels.items())),
            "unplaced": [vars(i) for i in self.unplaced],
            "adjusted": [vars(i) for i in self.adjusted],
        }

    def format(self) -> str:
        """A human-readable report: counts, then every unplaced / adjusted annotation."""
        head = (
            f"Conversion report ({self.corpus_format})"
            if self.corpus_format
            else ("Conversion report")
        )
        lines = [head]
        if self.source:
            lines.append(f"  source:    {self.source}")
        lines.append(f"  documents: {self.documents}")
        lines.append(f"  mentions:  {self.n_mentions}")
        lines.extend(_counter_lines(self.mentions))
        lines.append(f"  relations: {self.n_relations}")
        lines.extend(_counter_lines(self.relations))
        if self.doc_labels:
            lines.append(f"  document labels: {sum(self.doc_labels.values())}")
            lines.extend(_counter_lines(self.doc_labels))
        lines.append(
            f"  overflow:  {self.overflow} mentions kept in doc.spans[{OVERFLOW_KEY!r}] "
            "(overlapping doc.ents)"
        )
        lines.append(f"  unplaced:  {len(self.unplaced)} annotations could not be placed")
        lines.extend(f"    - {issue.format()}" for issue in self.unplaced)
        lines.append(f"  adjusted:  {len(self.adjusted)} annotations placed after an adjustment")
        lines.extend(f"    - {issue.format()}" for issue in self.adjusted)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def _counter_lines(counter: Counter) -> list[str]:
    if not counter:
        return []
    width = max(len(str(k)) for k in counter)
    return [f"    {str(k):<{width}}  {v}" for k, v in sorted(counter.items())]
