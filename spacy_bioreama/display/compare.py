"""Gold vs predicted for the relation view: which mentions and relations match, which
are misses (gold only) and which are false positives (predicted only).

The matching is the scorers' (`evaluation/scorers.py`): a mention matches on exact
(start, end, label) character offsets; a relation on its unordered concept pair and
label, concepts mapped as `match_concepts` maps them, and a predicted relation is a match
exactly when the scorer counts it as one (`relation_hits`). Novelty is not compared."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from spacy.tokens import Doc

from ..annotations.doc_ids import doc_id
from ..annotations.spans import all_mentions
from ..evaluation.scorers import (
    gold_relation_keys,
    match_concepts,
    predicted_relation_keys,
    relation_hits,
)

MATCH, MISS, FALSE_POSITIVE = "match", "miss", "false-positive"


@dataclass(frozen=True)
class Comparison:
    """Per-mention and per-relation statuses of one gold/predicted document pair, in
    the order of `all_mentions(doc)` and `doc._.relations`."""

    gold_mentions: list[str]
    pred_mentions: list[str]
    gold_relations: list[str]
    pred_relations: list[str]


def align(docs: Sequence[Doc], gold: Sequence[Doc]) -> list[Doc]:
    """The gold document of each predicted one: by ``doc_id`` when every document has
    a unique one, else by position (then the counts must be equal). A missing gold
    document or one with another text is a `ValueError` naming the document."""
    pred_ids = [doc_id(d) for d in docs]
    gold_ids = [doc_id(d) for d in gold]
    by_id = None not in pred_ids + gold_ids and len(set(gold_ids)) == len(gold_ids)
    if by_id:
        index = dict(zip(gold_ids, gold, strict=True))
        missing = [i for i in pred_ids if i not in index]
        if missing:
            raise ValueError(f"no gold document with doc_id {missing[0]!r}")
        pairs = [index[i] for i in pred_ids]
    else:
        if len(docs) != len(gold):
            raise ValueError(
                f"{len(docs)} predicted but {len(gold)} gold documents, and no unique "
                "doc_id to align them by"
            )
        pairs = list(gold)
    for n, (pred, ref) in enumerate(zip(docs, pairs, strict=True)):
        if pred.text != ref.text:
            raise ValueError(
                f"document {doc_id(pred, f'#{n}')}: the predicted text differs from the gold text"
            )
    return pairs


def _mention_key(span) -> tuple[int, int, str]:
    return (span.start_char, span.end_char, span.label_)


def compare(pred: Doc, gold: Doc) -> Comparison:
    """Statuses (`MATCH`, `MISS`, `FALSE_POSITIVE`) of every mention and relation."""
    gold_keys = {_mention_key(s) for s in all_mentions(gold)}
    pred_keys = {_mention_key(s) for s in all_mentions(pred)}
    gold_ments = [MATCH if _mention_key(s) in pred_keys else MISS for s in all_mentions(gold)]
    pred_ments = [
        MATCH if _mention_key(s) in gold_keys else FALSE_POSITIVE for s in all_mentions(pred)
    ]
    concept_map = match_concepts(pred, gold)
    gold_rel = gold_relation_keys(gold)
    pred_typed = {k[:2] for k in predicted_relation_keys(pred, concept_map, gold_rel)}
    pred_rels = [MATCH if hit else FALSE_POSITIVE for hit in relation_hits(pred, gold)]
    gold_rels = [
        MATCH if (frozenset((r.head_id, r.tail_id)), r.label) in pred_typed else MISS
        for r in gold._.relations
    ]
    return Comparison(gold_ments, pred_ments, gold_rels, pred_rels)
