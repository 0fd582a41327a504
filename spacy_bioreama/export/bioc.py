"""BioC XML and BioC JSON writers, through the `bioc` package: the inverse of
`corpora.bioc_formats.read_bioc_xml` / `read_bioc_json`.

The collection looks like BioRED's BioC files:

- one ``passage`` per `common.passages` part (infon ``type`` = ``title`` /
  ``abstract``), at its document offset, holding the annotations that start in it;
- one ``annotation`` per mention (overflow included): infons ``identifier`` (the
  concept id, verbatim; left out where the mention has none) and ``type``, one
  ``location`` (document offset, length) and the ``text``;
- one document-level ``relation`` per relation: infons ``entity1`` / ``entity2``
  (concept ids), ``type`` (label), ``novel`` where known and ``score`` where it is not
  1 (predictions), plus ``Arg1`` / ``Arg2`` nodes naming the representative mentions'
  annotations (BioRED has none; our reader reads the infons, which come first).

BioC JSON is written by `bioc.biocjson` with every key it defines (``infons``,
``sentences``, ``relations``, ``nodes``), which our reader and the `bioc` package read
as they are.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from os import PathLike

import bioc
import bioc.biocjson
import bioc.biocxml
from bioc import (
    BioCAnnotation,
    BioCCollection,
    BioCDocument,
    BioCLocation,
    BioCNode,
    BioCPassage,
    BioCRelation,
)
from spacy.tokens import Doc

from ..util.files import atomic_write_text
from .common import ExportReport, anchor_index, document_id, ordered_mentions, passages

SOURCE = "spacy-bioreama"


def _score_text(score: float) -> str:
    return f"{score:.6g}"


def doc_to_bioc(doc: Doc, index: int, report: ExportReport) -> BioCDocument:
    """The `BioCDocument` of one Doc."""
    document = BioCDocument()
    document.id = document_id(doc, index)
    mentions = ordered_mentions(doc)
    parts = passages(doc, mentions)
    bioc_passages = []
    for part in parts:
        passage = BioCPassage()
        passage.offset = part.offset
        passage.text = part.text
        passage.infons["type"] = part.kind
        bioc_passages.append(passage)
        document.add_passage(passage)
    for i, span in enumerate(mentions):
        ann = BioCAnnotation()
        ann.id = str(i)
        if span.kb_id_:
            ann.infons["identifier"] = span.kb_id_
        ann.infons["type"] = span.label_
        ann.text = span.text
        ann.add_location(BioCLocation(span.start_char, span.end_char - span.start_char))
        # the passage the mention starts in
        at = bisect.bisect_right([part.offset for part in parts], span.start_char) - 1
        holder = bioc_passages[max(at, 0)]
        holder.add_annotation(ann)
    relations = list(doc._.relations)
    for k, rel in enumerate(relations):
        relation = BioCRelation()
        relation.id = f"R{k}"
        relation.infons["entity1"] = rel.head_id
        relation.infons["entity2"] = rel.tail_id
        relation.infons["type"] = rel.label
        if rel.novel is not None:
            relation.infons["novel"] = rel.novel
        if rel.score != 1.0:
            relation.infons["score"] = _score_text(rel.score)
        for role, token_span, concept in (
            ("Arg1", rel.head, rel.head_id),
            ("Arg2", rel.tail, rel.tail_id),
        ):
            at = anchor_index(mentions, token_span, concept)
            if at is not None:
                relation.add_node(BioCNode(str(at), role))
        document.add_relation(relation)
    report.add_doc(doc, mentions, relations)
    return document


def bioc_collection(docs: Iterable[Doc], report: ExportReport | None = None) -> BioCCollection:
    """The `BioCCollection` holding `docs`."""
    report = ExportReport("bioc") if report is None else report
    collection = BioCCollection()
    collection.source = SOURCE
    collection.key = "BioC.key"
    for i, doc in enumerate(docs):
        collection.add_document(doc_to_bioc(doc, i, report))
    return collection


def write_bioc_xml(docs: Iterable[Doc], output: str | PathLike, report: ExportReport) -> None:
    """Write `docs` as one BioC XML collection at `output` (atomically)."""
    atomic_write_text(output, bioc.biocxml.dumps(bioc_collection(docs, report)))
    report.files.append(str(output))


def write_bioc_json(docs: Iterable[Doc], output: str | PathLike, report: ExportReport) -> None:
    """Write `docs` as one BioC JSON collection at `output` (atomically)."""
    text = bioc.biocjson.dumps(bioc_collection(docs, report), indent=1)
    atomic_write_text(output, text + "\n")
    report.files.append(str(output))
