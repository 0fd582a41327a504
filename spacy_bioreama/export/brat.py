"""brat standoff writer: a folder with ``ID.txt`` (the text, verbatim) and ``ID.ann`` per
document, plus an ``annotation.conf`` declaring the types; `corpora.brat.read_brat`
reads it back. ``.ann`` lines::

    T1<TAB>DiseaseOrPhenotypicFeature 0 25<TAB>Congenital hypothyroidism
    #1<TAB>AnnotatorNotes T1<TAB>D003409
    R1<TAB>Association Arg1:T3 Arg2:T7
    #2<TAB>AnnotatorNotes R1<TAB>{"head_id": "D003409", "tail_id": "6528", "score": 1.0}
    A1<TAB>Novelty R1 Novel

- every mention (overflow included) is a ``T``; a mention whose text holds a line
  break is written as fragments (``0 5;6 12``), as brat requires;
- the concept id (verbatim, composite ids included) is the mention's AnnotatorNotes;
- a relation links its representative mentions; its note holds the concept ids it
  names (a mention may carry several, ``A,B``) and its score, as JSON; the novelty
  flag is the ``Novelty`` attribute.

File names are the document ids (characters other than letters, digits, ``.``, ``_``
and ``-`` become ``_``; a repeated name gets ``-2``, ``-3``; both reported).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from os import PathLike
from pathlib import Path

from spacy.tokens import Doc

from ..util.files import atomic_write_text
from .common import ExportReport, anchor_index, document_id, ordered_mentions

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_BREAK = re.compile(r"[\r\n]+")
_WS = re.compile(r"\s")


def _fragments(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """`(start, end)` pieces of a mention that leave out its line breaks."""
    pieces, pos = [], start
    for match in _BREAK.finditer(text, start, end):
        if match.start() > pos:
            pieces.append((pos, match.start()))
        pos = match.end()
    if pos < end:
        pieces.append((pos, end))
    return pieces


def _type_name(value: str, what: str, doc_name: str, report: ExportReport) -> str:
    """brat types cannot hold whitespace: replace it with ``_`` (reported)."""
    safe = _WS.sub("_", value) or "_"
    if safe != value:
        report.adjusted.append(f"{doc_name}: {what} {value!r} written as {safe!r}")
    return safe


def doc_to_ann(doc: Doc, report: ExportReport, doc_name: str = "") -> str:
    """The ``.ann`` text of one Doc (its ``.txt`` is ``doc.text``)."""
    mentions = ordered_mentions(doc)
    text = doc.text
    lines: list[str] = []
    notes = 0
    for i, span in enumerate(mentions, 1):
        pieces = _fragments(text, span.start_char, span.end_char)
        where = ";".join(f"{a} {b}" for a, b in pieces)
        shown = " ".join(text[a:b] for a, b in pieces)
        label = _type_name(span.label_, "entity type", doc_name, report)
        lines.append(f"T{i}\t{label} {where}\t{shown}")
        if span.kb_id_:
            notes += 1
            lines.append(f"#{notes}\tAnnotatorNotes T{i}\t{_BREAK.sub(' ', span.kb_id_)}")
    relations = []
    attributes = 0
    for rel in doc._.relations:
        head = anchor_index(mentions, rel.head, rel.head_id)
        tail = anchor_index(mentions, rel.tail, rel.tail_id)
        if head is None or tail is None:
            report.skipped.append(
                f"{doc_name}: relation {rel.label}({rel.head_id}, {rel.tail_id}) has no "
                "mention at its anchor offsets"
            )
            continue
        relations.append(rel)
        r = len(relations)
        label = _type_name(rel.label, "relation type", doc_name, report)
        lines.append(f"R{r}\t{label} Arg1:T{head + 1} Arg2:T{tail + 1}")
        note = {"head_id": rel.head_id, "tail_id": rel.tail_id, "score": rel.score}
        notes += 1
        lines.append(f"#{notes}\tAnnotatorNotes R{r}\t{json.dumps(note, ensure_ascii=False)}")
        if rel.novel is not None:
            attributes += 1
            novel = _type_name(rel.novel, "novelty", doc_name, report)
            lines.append(f"A{attributes}\tNovelty R{r} {novel}")
    report.add_doc(doc, mentions, relations)
    return "".join(line + "\n" for line in lines)


def annotation_conf(docs: Iterable[Doc]) -> str:
    """An ``annotation.conf`` declaring the entity and relation types and the novelty
    values used by `docs`, so brat displays the folder as it is."""
    entities: set[str] = set()
    relations: set[str] = set()
    novelty: set[str] = set()
    for doc in docs:
        entities.update(_WS.sub("_", s.label_) or "_" for s in ordered_mentions(doc))
        for rel in doc._.relations:
            relations.add(_WS.sub("_", rel.label) or "_")
            if rel.novel is not None:
                novelty.add(_WS.sub("_", rel.novel) or "_")
    lines = ["[entities]", *sorted(entities), "", "[relations]"]
    lines += [f"{r}\tArg1:<ENTITY>, Arg2:<ENTITY>" for r in sorted(relations)]
    lines += ["", "[events]", "", "[attributes]"]
    if novelty:
        lines.append(f"Novelty\tArg:<RELATION>, Value:{'|'.join(sorted(novelty))}")
    return "\n".join(lines) + "\n"


def write_brat(docs: Iterable[Doc], output: str | PathLike, report: ExportReport) -> None:
    """Write `docs` into the folder `output` (created): ``.txt`` + ``.ann`` per document
    and ``annotation.conf``, each file written atomically."""
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: brat output must be a folder")
    folder.mkdir(parents=True, exist_ok=True)
    docs = list(docs)
    used: set[str] = set()
    for i, doc in enumerate(docs):
        ident = document_id(doc, i)
        name = _UNSAFE.sub("_", ident) or str(i + 1)
        if name in used:
            n = 2
            while f"{name}-{n}" in used:
                n += 1
            name = f"{name}-{n}"
        if name != ident:
            report.adjusted.append(f"document id {ident!r} written as {name}.txt/.ann")
        used.add(name)
        atomic_write_text(folder / f"{name}.txt", doc.text)
        atomic_write_text(folder / f"{name}.ann", doc_to_ann(doc, report, name))
        report.files += [str(folder / f"{name}.txt"), str(folder / f"{name}.ann")]
    atomic_write_text(folder / "annotation.conf", annotation_conf(docs))
    report.files.append(str(folder / "annotation.conf"))
