"""Relation extraction as pair classification (REaMA style).

Why pair classification rather than one listing of all relations per document:

* the answer is one label from a closed set, so decoding can be constrained to the
  labels and every answer parses; the renormalised probability of the chosen label is
  a calibrated-enough confidence in [0, 1] at no extra cost;
* a small model does far better choosing a label than writing a structured list of
  concept pairs that must then be matched back to mentions;
* it is what the seed papers train on (REInstruct: positive pairs plus sampled "none"
  pairs), so the instruction builder can balance positives and negatives.

The cost is one prompt per candidate concept pair; candidates are restricted to the
entity type pairs the relation schema allows (`type_pairs`). The text is given
unmarked and the pair is named after it: BioRED concepts have many mentions, naming
each concept once is clearer than marking every mention, and all pair prompts of a
window share the same text prefix.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from spacy.tokens import Doc, Span

from ..annotation import all_mentions, concept_ids, split_concept_ids
from ..schema import NEGATIVE_RELATION_LABELS
from .base import TaskExample, pick_instruction

TASK_NAME = "re"
NO_RELATION = "None"

INSTRUCTIONS = (
    "Read the text and decide which relation it states between Entity 1 and Entity 2. "
    "Answer with exactly one of: {labels}.",
    "Given the biomedical text below, classify the relation between Entity 1 and Entity 2. "
    "Possible answers: {labels}.",
    "What is the relationship between Entity 1 and Entity 2 according to this text? "
    "Reply with one label from: {labels}.",
    "Relation extraction. Choose the label that describes how Entity 1 and Entity 2 are "
    "related in the passage, from: {labels}. Answer 'None' if the text states no relation.",
    "You are a biomedical curator. Based only on the text, which of these relations holds "
    "between Entity 1 and Entity 2: {labels}?",
)


@dataclass(frozen=True)
class Concept:
    """A concept in a window: its id, type, display name and representative mention."""

    concept_id: str
    label: str
    name: str
    mention: tuple[int, int]


def collect_concepts(doc: Doc, window: tuple[int, int] | None = None) -> list[Concept]:
    """Concepts with a mention inside `window`, in order of first mention there. The
    representative mention is the concept's first mention in `doc.ents` (so that the
    `doc._.rel` view can index it), else its first overflow mention."""
    start, end = window if window is not None else (0, len(doc.text))
    in_ents = {(e.start, e.end, e.label_) for e in doc.ents}
    first: dict[str, Span] = {}
    representative: dict[str, Span] = {}
    for span in all_mentions(doc):
        if span.start_char < start or span.end_char > end:
            continue
        for cid in concept_ids(span):
            first.setdefault(cid, span)
            if (span.start, span.end, span.label_) in in_ents:
                representative.setdefault(cid, span)
    concepts = []
    for cid, span in first.items():
        rep = representative.get(cid, span)
        concepts.append(Concept(cid, rep.label_, rep.text, (rep.start, rep.end)))
    return concepts


def parse_type_pairs(type_pairs: Iterable[str]) -> set[frozenset[str]]:
    """`"A|B"` strings to unordered type pairs; an empty input allows every pair."""
    pairs = set()
    for item in type_pairs:
        parts = [p.strip() for p in item.split("|")]
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"relation type pair {item!r} must look like 'TypeA|TypeB'")
        pairs.add(frozenset(parts))
    return pairs


def candidate_pairs(
    concepts: Sequence[Concept], allowed: set[frozenset[str]]
) -> list[tuple[Concept, Concept]]:
    """Unordered concept pairs (in order of appearance) whose types are allowed."""
    pairs = []
    for i, head in enumerate(concepts):
        for tail in concepts[i + 1 :]:
            if head.mention == tail.mention:
                continue  # one mention with several ids: not a pair of entities
            if not allowed or frozenset((head.label, tail.label)) in allowed:
                pairs.append((head, tail))
    return pairs


def answer_choices(labels: Sequence[str]) -> tuple[str, ...]:
    """The closed answer set: the relation labels plus the no-relation answer."""
    return (*labels, NO_RELATION)


def build_example(
    doc: Doc,
    head: Concept,
    tail: Concept,
    labels: Sequence[str],
    window: tuple[int, int] | None = None,
    *,
    target: str | None = None,
    rng: random.Random | None = None,
) -> TaskExample:
    """The pair-classification example for (head, tail) in `doc` (or a window of it)."""
    start, end = window if window is not None else (0, len(doc.text))
    choices = answer_choices(labels)
    instruction = pick_instruction(INSTRUCTIONS, rng).format(labels=", ".join(choices))
    text = (
        f"Text: {doc.text[start:end]}\n\n"
        f"Entity 1: {head.name} ({head.label})\n"
        f"Entity 2: {tail.name} ({tail.label})"
    )
    return TaskExample(
        task=TASK_NAME,
        instruction=instruction,
        input=text,
        output=target,
        choices=choices,
        meta={"head": head, "tail": tail, "window": (start, end)},
    )


def _id_readings(concept_id: str) -> set[str]:
    """The id itself and, for a composite id ``A|B``, its parts (see split_concept_ids)."""
    primary, secondary = split_concept_ids(concept_id)
    return {concept_id, *primary, *secondary}


def gold_label(doc: Doc, head: Concept, tail: Concept) -> str:
    """The gold answer for a pair: its relation label in `doc._.relations` (ids matched
    whole first, then by the parts of composite ids, as the scorer does), or
    NO_RELATION when there is none or the corpus labels the pair negative."""
    whole = frozenset((head.concept_id, tail.concept_id))
    heads, tails = _id_readings(head.concept_id), _id_readings(tail.concept_id)
    label = None
    for rel in doc._.relations:
        if frozenset((rel.head_id, rel.tail_id)) == whole:
            label = rel.label
            break
        if label is None and (
            (rel.head_id in heads and rel.tail_id in tails)
            or (rel.head_id in tails and rel.tail_id in heads)
        ):
            label = rel.label
    if label is None or label in NEGATIVE_RELATION_LABELS:
        return NO_RELATION
    return label


def parse_answer(answer: str, labels: Sequence[str]) -> str | None:
    """The label in an answer (last non-empty line, optional 'Answer:' prefix, any case).
    Returns NO_RELATION for a negative answer and None when nothing matches."""
    lines = [line.strip() for line in answer.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    if last.lower().startswith("answer:"):
        last = last[len("answer:") :].strip()
    last = last.strip(" .'\"`")
    by_lower = {label.lower(): label for label in answer_choices(labels)}
    return by_lower.get(last.lower())
