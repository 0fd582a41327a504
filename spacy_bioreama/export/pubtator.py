"""PubTator writer: the inverse of `corpora.pubtator.read_pubtator`.

Per document::

    PMID|t|title
    PMID|a|abstract
    PMID<TAB>start<TAB>end<TAB>text<TAB>type<TAB>id     (every mention, overflow included)
    PMID<TAB>label<TAB>id1<TAB>id2[<TAB>Novel|No]        (every relation)
    <blank line>

Offsets index ``title + " " + abstract``, as the reader joins them; the title / abstract
split is `common.passages` (a document without a sentence end is written as a title
only). PubTator is line based: a tab, newline or carriage return in the text is written
as a space (reported), so offsets stay valid. Relations are concept level, as in
BioRED: the reader anchors them again on the first mention of each concept.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from os import PathLike

from spacy.tokens import Doc

from ..util.files import atomic_write_text
from .common import ExportReport, document_id, ordered_mentions, passages

_BREAKS = re.compile(r"[\t\r\n]")
_BAD_ID = re.compile(r"[|\t\r\n]")


def _clean(value: str, what: str, pmid: str, report: ExportReport) -> str:
    cleaned = _BREAKS.sub(" ", value)
    if cleaned != value:
        report.adjusted.append(f"{pmid}: tab or line break in the {what} written as a space")
    return cleaned


def doc_to_pubtator(doc: Doc, index: int, report: ExportReport) -> str:
    """The PubTator lines of one Doc (ending with the blank line that separates documents)."""
    pmid = document_id(doc, index)
    if _BAD_ID.search(pmid) or not pmid.strip():
        safe = _BAD_ID.sub("_", pmid).strip() or str(index + 1)
        report.adjusted.append(f"document id {pmid!r} written as {safe!r} (PubTator PMID)")
        pmid = safe
    mentions = ordered_mentions(doc)
    text = _clean(doc.text, "text", pmid, report)
    parts = passages(doc, mentions)
    title = text[: len(parts[0].text)]
    lines = [f"{pmid}|t|{title}"]
    if len(parts) > 1:
        lines.append(f"{pmid}|a|{text[parts[1].offset :]}")
    for span in mentions:
        mention = text[span.start_char : span.end_char]
        kb_id = _clean(span.kb_id_, "concept id", pmid, report)
        lines.append(
            f"{pmid}\t{span.start_char}\t{span.end_char}\t{mention}\t{span.label_}\t{kb_id}"
        )
    relations = list(doc._.relations)
    for rel in relations:
        fields = [rel.label, rel.head_id, rel.tail_id]
        if rel.novel is not None:
            fields.append(rel.novel)
        fields = [_clean(f, "relation", pmid, report) for f in fields]
        lines.append("\t".join([pmid, *fields]))
    report.add_doc(doc, mentions, relations)
    return "\n".join(lines) + "\n\n"


def pubtator_text(docs: Iterable[Doc], report: ExportReport | None = None) -> str:
    """The PubTator file holding `docs`, as one string."""
    report = ExportReport("pubtator") if report is None else report
    return "".join(doc_to_pubtator(doc, i, report) for i, doc in enumerate(docs))


def write_pubtator(docs: Iterable[Doc], output: str | PathLike, report: ExportReport) -> None:
    """Write `docs` as one PubTator file at `output` (atomically)."""
    atomic_write_text(output, pubtator_text(docs, report))
    report.files.append(str(output))
