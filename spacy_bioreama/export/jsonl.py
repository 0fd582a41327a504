"""JSON Lines writer: one JSON object per document, the record `annotate-corpus` writes
(issue 11) and `corpora.jsonl.read_jsonl` reads back::

    {"id": "14510914",
     "text": "...",
     "entities": [{"start": 0, "end": 25, "text": "Congenital hypothyroidism",
                   "label": "DiseaseOrPhenotypicFeature", "concept_id": "D003409"}, ...],
     "relations": [{"head_id": "D003409", "tail_id": "6528", "label": "Association",
                    "score": 0.93, "novel": "Novel", "head": [0, 25], "tail": [55, 78]}, ...]}

Offsets are character offsets into ``text``, end exclusive. ``entities`` holds every
mention (``doc.ents`` and the overflow group), a ``doc.ents`` mention before an
overflow one at the same offsets. ``head`` / ``tail`` are the character offsets of the
relation's representative mentions; ``novel`` is null where the corpus has no novelty.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from os import PathLike
from typing import Any

from spacy.tokens import Doc

from ..util.files import atomic_write_text
from .common import ExportReport, document_id, ordered_mentions


def doc_to_record(doc: Doc, index: int = 0, report: ExportReport | None = None) -> dict[str, Any]:
    """The JSON record of one Doc (see the module docstring)."""
    mentions = ordered_mentions(doc)
    relations = list(doc._.relations)
    record = {
        "id": document_id(doc, index),
        "text": doc.text,
        "entities": [
            {
                "start": s.start_char,
                "end": s.end_char,
                "text": s.text,
                "label": s.label_,
                "concept_id": s.kb_id_,
            }
            for s in mentions
        ],
        "relations": [],
    }
    for rel in relations:
        head, tail = rel.head_span(doc), rel.tail_span(doc)
        record["relations"].append(
            {
                "head_id": rel.head_id,
                "tail_id": rel.tail_id,
                "label": rel.label,
                "score": rel.score,
                "novel": rel.novel,
                "head": [head.start_char, head.end_char],
                "tail": [tail.start_char, tail.end_char],
            }
        )
    if report is not None:
        report.add_doc(doc, mentions, relations)
    return record


def jsonl_text(docs: Iterable[Doc], report: ExportReport | None = None) -> str:
    """The JSON Lines file holding `docs`, as one string."""
    report = ExportReport("jsonl") if report is None else report
    return "".join(
        json.dumps(doc_to_record(doc, i, report), ensure_ascii=False) + "\n"
        for i, doc in enumerate(docs)
    )


def write_jsonl(docs: Iterable[Doc], output: str | PathLike, report: ExportReport) -> None:
    """Write `docs` as one JSON Lines file at `output` (atomically)."""
    atomic_write_text(output, jsonl_text(docs, report))
    report.files.append(str(output))
