"""PubTator reader (BioRED, BC5CDR CDR, and any PubTator file).

Format::

    PMID|t|Title
    PMID|a|Abstract
    PMID<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id[<TAB>extra]
    PMID<TAB>RelType<TAB>ID1<TAB>ID2[<TAB>Novelty]
    <blank line>

Offsets index ``title + " " + abstract`` (end exclusive). The id column may list several
ids (``A,B``, ``A;B``; BC5CDR composite mentions ``A|B`` with a 7th column of
sub-texts); ``Span.kb_id_`` keeps it verbatim (surrounding whitespace removed).
BioRED relation lines carry a novelty column (``Novel`` / ``No``), kept as
``Relation.novel``; BC5CDR ``CID`` relations are ``Chemical-ID Disease-ID``.

We parse the lines ourselves instead of with ``bioc.pubtator``: that reader strips every
line (moving text that ends in spaces), prints unparseable lines to stdout instead of
raising, and cannot say on which line a problem is. `tests/test_corpora.py` checks that
both readers see the same annotations on BioRED.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from spacy.tokens import Doc

from .base import (
    CorpusFormatError,
    MakeDoc,
    MentionSpec,
    PathArg,
    RelationSpec,
    SeenIds,
    build_doc,
    read_text,
    resolve_make_doc,
    split_lines,
)
from .report import ConversionReport

_TEXT_LINE = re.compile(r"^([^|\t]+)\|([ta])\|(.*)$", re.DOTALL)


@dataclass
class PubTatorDocument:
    """One document as parsed from a PubTator file, before a Doc is built: its text
    lines and its annotation lines (with their line numbers, for error messages)."""

    pmid: str
    line: int
    title: str | None = None
    abstract: str | None = None
    mentions: list[tuple[int, list[str]]] = field(default_factory=list)
    relations: list[tuple[int, list[str]]] = field(default_factory=list)

    @property
    def text(self) -> str:
        """``title + " " + abstract`` (what the offsets index)."""
        parts = [p for p in (self.title, self.abstract) if p is not None]
        return " ".join(parts)


def parse_pubtator(path: PathArg) -> Iterator[PubTatorDocument]:
    """Parse a PubTator file into raw documents (line numbers kept for errors)."""
    lines = split_lines(read_text(path))
    doc: PubTatorDocument | None = None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            if doc is not None:
                yield doc
                doc = None
            continue
        match = _TEXT_LINE.match(line)
        if match:
            pmid, kind, content = match.groups()
            pmid = pmid.strip()
            if doc is not None and (doc.pmid != pmid or kind == "t"):
                # a new document without a blank line in between
                if kind == "a" and doc.pmid != pmid and doc.abstract is None:
                    raise CorpusFormatError(
                        path, f"abstract of {pmid} follows the title of {doc.pmid}", lineno
                    )
                yield doc
                doc = None
            if doc is None:
                doc = PubTatorDocument(pmid=pmid, line=lineno)
            if kind == "t":
                doc.title = content
            else:
                if doc.abstract is not None:
                    raise CorpusFormatError(path, f"second abstract line for {pmid}", lineno)
                doc.abstract = content
            continue
        cols = line.split("\t")
        if doc is None:
            raise CorpusFormatError(path, "annotation line before any 'PMID|t|title' line", lineno)
        if cols[0].strip() != doc.pmid:
            raise CorpusFormatError(
                path,
                f"annotation for document {cols[0]!r} inside document {doc.pmid!r}",
                lineno,
            )
        if len(cols) >= 5 and _is_int(cols[1]) and _is_int(cols[2]):
            doc.mentions.append((lineno, cols))
        elif len(cols) in (4, 5) and not _is_int(cols[1]):
            doc.relations.append((lineno, cols))
        else:
            raise CorpusFormatError(
                path,
                "expected a mention line 'PMID<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id' "
                "or a relation line 'PMID<TAB>type<TAB>id1<TAB>id2[<TAB>novelty]', "
                f"got {len(cols)} columns: {line[:80]!r}",
                lineno,
            )
    if doc is not None:
        yield doc


def _is_int(value: str) -> bool:
    return value.strip().lstrip("-").isdigit()


def pubtator_to_doc(
    raw: PubTatorDocument,
    make_doc: MakeDoc,
    report: ConversionReport,
    path: PathArg,
) -> Doc:
    """Build the spaCy Doc of one parsed PubTator document."""
    text = raw.text
    if raw.title is None:
        raise CorpusFormatError(path, f"document {raw.pmid} has no title line", raw.line)
    mentions = []
    for lineno, cols in raw.mentions:
        start, end = int(cols[1]), int(cols[2])
        kb_id = cols[5].strip() if len(cols) > 5 else ""
        if len(cols) > 5 and kb_id != cols[5]:
            report.adjust(
                raw.pmid,
                f"whitespace around the id {cols[5]!r} removed (line {lineno})",
                start,
                end,
                repr(cols[3]),
            )
        mentions.append(
            MentionSpec(start=start, end=end, label=cols[4].strip(), kb_id=kb_id, text=cols[3])
        )
    relations = [
        RelationSpec(
            head_id=cols[2].strip(),
            tail_id=cols[3].strip(),
            label=cols[1].strip(),
            novel=cols[4].strip() if len(cols) > 4 else None,
            where=f" (line {lineno})",
        )
        for lineno, cols in raw.relations
    ]
    return build_doc(make_doc, text, raw.pmid, mentions, relations, report)


def read_pubtator(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
) -> Iterator[Doc]:
    """Read a PubTator file: one Doc per document (``doc.user_data["doc_id"]`` = PMID).

    Mentions go to ``doc.ents`` (``label_`` = corpus type, ``kb_id_`` = id field) with
    overlapping ones in ``doc.spans["bio_entities"]``; relations to ``doc._.relations``.
    Problems are recorded in `report` (pass one to see them); malformed lines raise
    `CorpusFormatError`.
    """
    make_doc = resolve_make_doc(make_doc)
    report = ConversionReport("pubtator", str(path)) if report is None else report
    yield from pubtator_docs(path, make_doc, report)


def pubtator_docs(path: PathArg, make_doc: MakeDoc, report: ConversionReport) -> Iterator[Doc]:
    """The Docs of a PubTator-layout file, in file order (PubTator and NCBI-disease
    readers). A PMID seen before is kept and reported as an adjustment, never dropped."""
    seen = SeenIds(report)
    for raw in parse_pubtator(path):
        seen.check(raw.pmid, f" (again at line {raw.line})")
        yield pubtator_to_doc(raw, make_doc, report, path)
