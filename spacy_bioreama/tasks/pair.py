"""Pair classification corpora (GAD, EU-ADR, ChemProt, DDI): each annotated pair is one
example, asked with the relation task's prompts (`tasks/relation.py`).

Unlike BioRED, these corpora annotate the pairs themselves (positive and negative): the
units are the corpus relations, not enumerated concept pairs. Corpus labels become
answer words through the source's ``label_map`` (GAD ``{"1": "Association", "0":
"None"}``); a corpus negative label, or a word mapped to "None", is a negative answer.
The context is the whole document, or (``context = "sentence"``) the sentence(s)
holding the pair, for multi-sentence documents such as DDI.
"""

from __future__ import annotations

from collections.abc import Sequence

from spacy.tokens import Doc, Span

from ..annotations.labels import NEGATIVE_RELATION_LABELS
from ..annotations.spans import all_mentions
from .names import PAIR
from .relation import NO_RELATION, Concept, unit_maker
from .units import SourceLike, SourcePlan, Unit, UnitContext, UnitTask
from .windows import sentence_ranges

TASK_NAME = PAIR
PAIR_CONTEXTS = ("document", "sentence")


def plan_source(train: Sequence[Doc], source: SourceLike, where: str) -> SourcePlan:
    """The positive answer words: the configured ``labels``, else the ``label_map``
    words (in map order, "None" left out), else the train split's positive labels."""
    if source.labels is not None:
        labels = tuple(source.labels)
    elif source.label_map is not None:
        words = [w for w in source.label_map.values() if w.lower() != "none"]
        labels = tuple(dict.fromkeys(words))
    else:
        labels = tuple(
            sorted({r.label for d in train for r in d._.relations} - set(NEGATIVE_RELATION_LABELS))
        )
    info = {"labels": list(labels), "label_map": source.label_map, "context": source.context}
    return SourcePlan(labels, info)


def verbalise(source: SourceLike, label: str, doc_id: str, where: str) -> str:
    """A pair corpus label as the answer word: through `label_map` (which must cover
    every label it meets), corpus negatives to "None"."""
    if source.label_map is not None:
        if label not in source.label_map:
            raise ValueError(
                f"{where} label_map: corpus label {label!r} "
                f"(document {doc_id}) has no entry; mapped: {sorted(source.label_map)}"
            )
        label = source.label_map[label]
        return NO_RELATION if label.lower() == NO_RELATION.lower() else label
    return NO_RELATION if label in NEGATIVE_RELATION_LABELS else label


def pair_sentences(doc: Doc, head: Span, tail: Span) -> tuple[int, int]:
    """Character range from the first to the last sentence touching either mention."""
    spans = [(head.start_char, head.end_char), (tail.start_char, tail.end_char)]
    touching = [(a, b) for a, b in sentence_ranges(doc) if any(s < b and a < e for s, e in spans)]
    if not touching:
        return (0, len(doc.text))
    start, end = min(a for a, _ in touching), max(b for _, b in touching)
    while end > start and doc.text[end - 1].isspace():
        end -= 1
    while start < end and doc.text[start].isspace():
        start += 1
    return (start, end)


def make_units(doc: Doc, doc_id: str, source: SourceLike, context: UnitContext) -> list[Unit]:
    """One unit per corpus relation of `doc` (ids ``/p1``... when it has several);
    pairs whose mentions are missing, or whose answer is outside the labels, are
    dropped and counted."""
    stats = context.stats
    by_offsets = {(s.start, s.end): s for s in all_mentions(doc)}
    rels = doc._.relations
    if not rels:
        stats["docs_without_pair"] += 1
    units = []
    for n, rel in enumerate(rels):
        head_span, tail_span = by_offsets.get(rel.head), by_offsets.get(rel.tail)
        if head_span is None or tail_span is None:
            stats["pairs_without_mentions_dropped"] += 1
            continue
        head = Concept(rel.head_id, head_span.label_, head_span.text, rel.head)
        tail = Concept(rel.tail_id, tail_span.label_, tail_span.text, rel.tail)
        label = verbalise(source, rel.label, doc_id, context.where)
        if label != NO_RELATION and label not in context.labels:
            stats["pairs_with_label_outside_labels_dropped"] += 1
            continue
        window = None
        if source.context == "sentence":
            window = pair_sentences(doc, head_span, tail_span)
        uid = f"{source.name}/{doc_id}" + (f"/p{n + 1}" if len(rels) > 1 else "")
        make = unit_maker(doc, head, tail, window, label, context, task=TASK_NAME)
        units.append(Unit(uid, label, make, negative=label == NO_RELATION))
    return units


UNITS = UnitTask(
    PAIR,
    plan_source,
    make_units,
    options=frozenset({"labels", "label_map", "negative_ratio", "rationale", "context"}),
    negatives="all",
)

__all__ = ["PAIR_CONTEXTS", "TASK_NAME", "UNITS", "make_units", "pair_sentences", "verbalise"]
