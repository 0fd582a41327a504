"""PubMedQA reader (PQA-L ``pqal_trainval.json`` / ``ori_pqal.json`` layout).

The file maps an id (PMID) to ``{"QUESTION", "CONTEXTS", "LABELS", "final_decision",
"LONG_ANSWER", "MESHES", "YEAR", ...}``. One Doc per question:

- text: the contexts joined with a single space; ``doc.spans["sections"]`` holds one
  span per context labelled with its section label (BACKGROUND, METHODS, ...);
- ``doc.user_data``: ``doc_id`` (the id), ``question``, ``answer`` (final decision),
  ``long_answer`` (the conclusion, useful as a rationale), ``meshes``, ``year``;
- ``doc.cats``: one-hot over ``yes`` / ``no`` / ``maybe``.

PQA-A / PQA-U files have the same layout (PQA-U without a decision: ``answer`` is then
None and ``doc.cats`` empty).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from spacy.tokens import Doc

from .base import (
    CorpusFormatError,
    MakeDoc,
    PathArg,
    SeenIds,
    build_doc,
    read_text,
    resolve_make_doc,
)
from .report import ConversionReport

ANSWERS = ("yes", "no", "maybe")
SECTIONS_KEY = "sections"
CONTEXT_SEPARATOR = " "


def read_pubmedqa(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
) -> Iterator[Doc]:
    """Read a PubMedQA JSON file: one Doc per question."""
    make_doc = resolve_make_doc(make_doc)
    report = ConversionReport("pubmedqa", str(path)) if report is None else report
    try:
        data = json.loads(read_text(path), object_pairs_hook=_KeyedObject)
    except json.JSONDecodeError as err:
        raise CorpusFormatError(path, f"invalid JSON: {err.msg}", err.lineno) from None
    if not isinstance(data, dict):
        raise CorpusFormatError(path, "expected a JSON object mapping ids to questions")
    seen = SeenIds(report)
    for qid, item in data.pairs:
        seen.check(str(qid))
        yield _item_to_doc(str(qid), item, path, make_doc, report)


class _KeyedObject(dict):
    """A JSON object that also keeps its `pairs` in file order, repeats included: a
    plain dict keeps only the last question of a repeated id, silently dropping the
    others (found by tests/test_reader_fuzz.py). Repeats are kept and reported."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(pairs)
        self.pairs = pairs


def _item_to_doc(
    qid: str, item: Any, path: PathArg, make_doc: MakeDoc, report: ConversionReport
) -> Doc:
    if not isinstance(item, dict):
        raise CorpusFormatError(path, f"entry {qid}: expected an object")
    question = item.get("QUESTION")
    contexts = item.get("CONTEXTS")
    if not isinstance(question, str) or not isinstance(contexts, list):
        raise CorpusFormatError(path, f"entry {qid}: needs QUESTION (text) and CONTEXTS (list)")
    if not all(isinstance(c, str) for c in contexts):
        raise CorpusFormatError(path, f"entry {qid}: CONTEXTS must be strings")
    # lists of the wrong type would fail deep in the conversion or be split into
    # characters (found by tests/test_reader_fuzz.py)
    for key in ("LABELS", "MESHES"):
        value = item.get(key)
        if value is not None and not (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            raise CorpusFormatError(path, f"entry {qid}: {key} must be a list of strings")
    labels = item.get("LABELS") or []
    answer = item.get("final_decision")
    if answer is not None and answer not in ANSWERS:
        raise CorpusFormatError(
            path, f"entry {qid}: final_decision {answer!r} is not one of {ANSWERS}"
        )
    sections: list[tuple[int, int, str]] = []
    offset = 0
    for i, context in enumerate(contexts):
        if i:
            offset += len(CONTEXT_SEPARATOR)
        label = str(labels[i]) if i < len(labels) else "CONTEXT"
        sections.append((offset, offset + len(context), label))
        offset += len(context)
    if labels and len(labels) != len(contexts):
        report.adjust(
            qid,
            f"{len(labels)} section labels for {len(contexts)} contexts; "
            "unlabelled ones get 'CONTEXT'",
        )
    text = CONTEXT_SEPARATOR.join(contexts)
    user_data = {
        "question": question,
        "answer": answer,
        "long_answer": item.get("LONG_ANSWER"),
        "meshes": tuple(item.get("MESHES") or ()),  # tuple: as DocBin returns it
        "year": item.get("YEAR"),
    }
    boundaries = [b for s, e, _ in sections for b in (s, e)]
    doc = build_doc(
        make_doc, text, qid, [], [], report, extra_boundaries=boundaries, user_data=user_data
    )
    if answer is not None:
        report.doc_labels[answer] += 1
        doc.cats = {a: float(a == answer) for a in ANSWERS}
    spans = [
        span
        for s, e, label in sections
        if (span := doc.char_span(s, e, label=label, alignment_mode="contract")) is not None
        and len(span)
    ]
    doc.spans[SECTIONS_KEY] = spans
    return doc
