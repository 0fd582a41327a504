"""JSON Lines reader: our document records (`export.jsonl`, `annotate-corpus` output) and
plain text records.

One JSON object a line::

    {"id": "14510914", "text": "...",
     "entities": [{"start": 0, "end": 25, "text": "...", "label": "...", "concept_id": "..."}],
     "relations": [{"head_id": "...", "tail_id": "...", "label": "...", "score": 0.9,
                    "novel": "Novel", "head": [0, 25], "tail": [55, 78]}]}

Only ``text`` (or ``title`` and ``abstract``, joined with a space as PubTator does) is
required; ``entities`` and ``relations`` may be left out. Entity ``text``, where given,
is checked against the document text. A relation with ``head`` / ``tail`` offsets is
anchored on the mention at those offsets (the one carrying the concept id, if several);
without them, on the first mention of each concept, as in PubTator. ``score`` (default
1) is kept in `Relation.score`. A line that is not JSON, or a field of the wrong type,
is a `CorpusFormatError` naming the file, line and field; a blank line is skipped; a
record without ``id`` is given ``<file stem>-<line>`` (reported).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

from spacy.tokens import Doc

from ..annotations.spans import split_concept_ids
from ..util.jsonl import JsonLineError, json_records
from .base import (
    CorpusFormatError,
    MakeDoc,
    MentionSpec,
    PathArg,
    RelationSpec,
    ScoredSpec,
    SeenIds,
    build_doc,
    read_text,
    resolve_make_doc,
    restore_scores,
    split_lines,
)
from .report import ConversionReport


def _field(
    record: dict[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    where: str,
    path: PathArg,
    lineno: int,
    required: bool = True,
) -> Any:
    value = record.get(key)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        got = "missing" if key not in record else f"a {type(value).__name__}"
        raise CorpusFormatError(path, f"{where}{key!r} must be {names}, is {got}", lineno)
    return value


def _offsets(value: Any, where: str, path: PathArg, lineno: int) -> tuple[int, int] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise CorpusFormatError(path, f"{where} must be [start, end] (integers)", lineno)
    return value[0], value[1]


def _anchor_key(
    entities: list[MentionSpec], chars: tuple[int, int] | None, concept: str
) -> Hashable | None:
    """Key of the mention at `chars` carrying `concept` (else the first there)."""
    if chars is None:
        return None
    found = None
    for m in entities:
        if (m.start, m.end) == chars:
            primary, secondary = split_concept_ids(m.kb_id)
            if concept in primary or concept in secondary:
                return m.key
            found = m.key if found is None else found
    return found


def _entities(record: dict[str, Any], path: PathArg, lineno: int) -> list[MentionSpec]:
    """The record's ``entities`` as mention specs (key = position in the list)."""
    entities: list[MentionSpec] = []
    for i, ent in enumerate(_field(record, "entities", list, "", path, lineno, False) or []):
        where = f"entities[{i}]."
        if not isinstance(ent, dict):
            raise CorpusFormatError(path, f"entities[{i}] must be an object", lineno)
        entities.append(
            MentionSpec(
                start=_field(ent, "start", int, where, path, lineno),
                end=_field(ent, "end", int, where, path, lineno),
                label=_field(ent, "label", str, where, path, lineno),
                kb_id=(_field(ent, "concept_id", str, where, path, lineno, False) or "").strip(),
                text=_field(ent, "text", str, where, path, lineno, False),
                key=i,
            )
        )
    return entities


def _relations(
    record: dict[str, Any],
    entities: list[MentionSpec],
    doc_id: str,
    report: ConversionReport,
    path: PathArg,
    lineno: int,
) -> list[ScoredSpec]:
    """The record's ``relations`` as relation specs with their scores and offsets."""
    scored: list[ScoredSpec] = []
    for i, rel in enumerate(_field(record, "relations", list, "", path, lineno, False) or []):
        where = f"relations[{i}]."
        if not isinstance(rel, dict):
            raise CorpusFormatError(path, f"relations[{i}] must be an object", lineno)
        head_id = _field(rel, "head_id", str, where, path, lineno)
        tail_id = _field(rel, "tail_id", str, where, path, lineno)
        score = _field(rel, "score", (int, float), where, path, lineno, False)
        score = 1.0 if score is None else float(score)
        if not 0.0 <= score <= 1.0:
            raise CorpusFormatError(path, f"{where}score must be in [0, 1], is {score}", lineno)
        head = _offsets(rel.get("head"), f"{where}head", path, lineno)
        tail = _offsets(rel.get("tail"), f"{where}tail", path, lineno)
        head_key, tail_key = (
            _anchor_key(entities, head, head_id),
            _anchor_key(entities, tail, tail_id),
        )
        if (head is not None and head_key is None) or (tail is not None and tail_key is None):
            report.adjust(
                doc_id,
                f"relations[{i}] names offsets without a mention (line {lineno}); anchored on "
                "the first mention of each concept",
            )
            head_key = tail_key = None
        elif (head_key is None) != (tail_key is None):
            head_key = tail_key = None  # one end only: anchor both by concept
        novel = _field(rel, "novel", str, where, path, lineno, False)
        spec = RelationSpec(
            head_id=head_id.strip(),
            tail_id=tail_id.strip(),
            label=_field(rel, "label", str, where, path, lineno),
            novel=novel,
            head_key=head_key,
            tail_key=tail_key,
            where=f" (line {lineno})",
        )
        anchored = head_key is not None  # offsets are matched only where they anchor
        scored.append((spec, score, head if anchored else None, tail if anchored else None))
    return scored


def record_to_doc(
    record: dict[str, Any],
    make_doc: MakeDoc,
    report: ConversionReport,
    path: PathArg,
    lineno: int,
    seen: SeenIds,
) -> Doc:
    """Build the Doc of one JSON record (see the module docstring)."""
    if "text" in record:
        text = _field(record, "text", str, "", path, lineno)
    else:
        title = _field(record, "title", str, "(no 'text') ", path, lineno)
        abstract = _field(record, "abstract", str, "", path, lineno, required=False)
        text = title if abstract is None else f"{title} {abstract}"
    doc_id = record.get("id")
    if doc_id is None:
        doc_id = f"{Path(path).stem}-{lineno}"
        report.adjust(doc_id, f"record without 'id' (line {lineno}); named {doc_id}")
    doc_id = str(doc_id)
    seen.check(doc_id, f" (again at line {lineno})")

    entities = _entities(record, path, lineno)
    scored = _relations(record, entities, doc_id, report, path, lineno)
    doc = build_doc(make_doc, text, doc_id, entities, [s for s, *_ in scored], report)
    restore_scores(doc, scored)
    return doc


def read_jsonl(
    path: PathArg,
    make_doc: MakeDoc | None = None,
    report: ConversionReport | None = None,
) -> Iterator[Doc]:
    """Read a JSON Lines file of document records: one Doc per non-blank line."""
    make_doc = resolve_make_doc(make_doc)
    report = ConversionReport("jsonl", str(path)) if report is None else report
    seen = SeenIds(report)
    try:
        for lineno, record in json_records(split_lines(read_text(path))):
            yield record_to_doc(record, make_doc, report, path, lineno, seen)
    except JsonLineError as err:
        raise CorpusFormatError(path, err.reason, err.lineno) from None
