"""Scorers with spaCy-standard keys (see DESIGN.md, "Evaluation protocol").

* NER: strict mention-level P/R/F over all mentions (`doc.ents` plus the overflow group):
  a prediction counts when its character offsets and type equal a gold mention's.
* RE: BioRED-style, document level, on concept pairs (unordered), in three settings:
  pair only (`rel_pair_*`), pair + type (`rel_micro_*`, spaCy's conventional key, plus
  `rel_per_type`) and pair + type + novelty (`rel_novelty_*`, None when the system
  predicts no novelty). Negative labels of the pair-classification corpora
  (`NEGATIVE_RELATION_LABELS`) are excluded, as the seeds and BLURB report. A predicted concept is
  mapped to the gold concepts that share one of its mentions (same character offsets),
  so the same code scores both the gold-entities and the end-to-end setting.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from spacy.scorer import PRFScore
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..annotations.labels import NEGATIVE_RELATION_LABELS
from ..annotations.spans import all_mentions, concept_ids


def _mention_keys(doc: Doc) -> set[tuple[int, int, str]]:
    return {(s.start_char, s.end_char, s.label_) for s in all_mentions(doc)}


def labelled_prf(gold: set[tuple], predicted: set[tuple], prefix: str) -> dict[str, Any]:
    """Micro and per-label P/R/F (`<prefix>_p/_r/_f`, `<prefix>_per_type`) of exact-match
    keys whose last element is the label: one counting loop for every scorer."""
    total = PRFScore()
    per_label: dict[str, PRFScore] = defaultdict(PRFScore)
    for key in gold | predicted:
        score = per_label[key[-1]]
        if key in gold and key in predicted:
            total.tp += 1
            score.tp += 1
        elif key in predicted:
            total.fp += 1
            score.fp += 1
        else:
            total.fn += 1
            score.fn += 1
    return {
        f"{prefix}_p": total.precision,
        f"{prefix}_r": total.recall,
        f"{prefix}_f": total.fscore,
        f"{prefix}_per_type": {k: v.to_dict() for k, v in sorted(per_label.items())},
    }


def score_entities(examples: Iterable[Example]) -> dict[str, Any]:
    """Strict mention-level NER scores over all mentions (keys compared per document)."""
    gold: set[tuple] = set()
    predicted: set[tuple] = set()
    for i, eg in enumerate(examples):
        gold |= {(i, *key) for key in _mention_keys(eg.reference)}
        predicted |= {(i, *key) for key in _mention_keys(eg.predicted)}
    return labelled_prf(gold, predicted, "ents")


def _concept_mentions(doc: Doc) -> dict[str, set[tuple[int, int]]]:
    mentions: dict[str, set[tuple[int, int]]] = defaultdict(set)
    for span in all_mentions(doc):
        for cid in concept_ids(span, expand_composite=True):
            mentions[cid].add((span.start_char, span.end_char))
    return mentions


def _concept_map(pred: Doc, gold: Doc) -> dict[str, set[str]]:
    """Predicted concept id → gold concept ids sharing at least one mention."""
    gold_by_offsets: dict[tuple[int, int], set[str]] = defaultdict(set)
    for cid, offsets in _concept_mentions(gold).items():
        for off in offsets:
            gold_by_offsets[off].add(cid)
    mapping: dict[str, set[str]] = {}
    for cid, offsets in _concept_mentions(pred).items():
        mapping[cid] = set().union(*(gold_by_offsets.get(o, set()) for o in offsets))
    return mapping


RelationKey = tuple[frozenset[str], str, str | None]


def gold_relation_keys(doc: Doc) -> set[RelationKey]:
    """(unordered concept pair, label, novelty) for each gold relation of `doc`;
    pairs the corpus labels negative ("0", "false", ...) are not relations."""
    return {
        (frozenset((r.head_id, r.tail_id)), r.label, r.novel)
        for r in doc._.relations
        if r.head_id != r.tail_id and r.label not in NEGATIVE_RELATION_LABELS
    }


def predicted_relation_keys(
    doc: Doc, concept_map: dict[str, set[str]], gold: set[RelationKey]
) -> set[RelationKey]:
    """One key per predicted relation, its concepts mapped to gold concepts. A concept
    that maps to several gold concepts (composite mentions, a mention naming two
    concepts) takes the reading that matches a gold relation, if any, so one prediction
    is never counted twice; among those, its own ids first and then a gold relation no
    earlier prediction took, so that two predictions do not collapse onto one gold
    relation. An unmapped concept keeps a marker id and can only be a false positive."""
    gold_pairs = {k[0] for k in gold}
    gold_typed = {k[:2] for k in gold}
    taken: set[tuple[frozenset[str], str]] = set()
    picked: dict[tuple[frozenset[str], str], frozenset[str]] = {}  # repeated relations
    keys = set()
    for rel in doc._.relations:
        if rel.label in NEGATIVE_RELATION_LABELS:
            continue
        heads = sorted(concept_map.get(rel.head_id) or {f"<unmatched>{rel.head_id}"})
        tails = sorted(concept_map.get(rel.tail_id) or {f"<unmatched>{rel.tail_id}"})
        pairs = [frozenset((h, t)) for h in heads for t in tails if h != t]
        if not pairs:
            continue
        own = frozenset((rel.head_id, rel.tail_id))
        if (own, rel.label) in picked:  # the same relation again (reversed, repeated)
            keys.add((picked[own, rel.label], rel.label, rel.novel))
            continue
        pairs.sort(key=lambda p: p != own)  # stable: otherwise sorted order
        typed = [p for p in pairs if (p, rel.label) in gold_typed]
        pick = next(
            (p for p in typed if (p, rel.label) not in taken),
            typed[0] if typed else next((p for p in pairs if p in gold_pairs), pairs[0]),
        )
        taken.add((pick, rel.label))
        picked[own, rel.label] = pick
        keys.add((pick, rel.label, rel.novel))
    return keys


def _prf(pred: set, gold: set, score: PRFScore) -> None:
    score.tp += len(pred & gold)
    score.fp += len(pred - gold)
    score.fn += len(gold - pred)


def score_relations(examples: Iterable[Example]) -> dict[str, Any]:
    """BioRED document-level relation scores in the three settings."""
    pair, typed, novelty = PRFScore(), PRFScore(), PRFScore()
    per_type: dict[str, PRFScore] = defaultdict(PRFScore)
    predicts_novelty = False
    for eg in examples:
        predicts_novelty |= any(r.novel is not None for r in eg.predicted._.relations)
        gold = gold_relation_keys(eg.reference)
        pred = predicted_relation_keys(eg.predicted, _concept_map(eg.predicted, eg.reference), gold)
        _prf({k[0] for k in pred}, {k[0] for k in gold}, pair)
        _prf({k[:2] for k in pred}, {k[:2] for k in gold}, typed)
        _prf(pred, gold, novelty)
        for label in {k[1] for k in pred | gold}:
            _prf(
                {k[:2] for k in pred if k[1] == label},
                {k[:2] for k in gold if k[1] == label},
                per_type[label],
            )
    out: dict[str, Any] = {}
    for prefix, score in (("rel_pair", pair), ("rel_micro", typed), ("rel_novelty", novelty)):
        out[f"{prefix}_p"] = score.precision
        out[f"{prefix}_r"] = score.recall
        out[f"{prefix}_f"] = score.fscore
    if not predicts_novelty:
        # A system that does not predict novelty has no novelty score (not zero).
        out.update(rel_novelty_p=None, rel_novelty_r=None, rel_novelty_f=None)
    out["rel_per_type"] = {k: v.to_dict() for k, v in sorted(per_type.items())}
    return out


def score_bio(examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
    """NER and RE scores for a list of examples."""
    examples = list(examples)
    return {**score_entities(examples), **score_relations(examples)}


@registry.scorers("spacy_bioreama.bio_scorer.v1")
def make_bio_scorer():
    """Registered scorer factory used by the component's default config."""
    return score_bio
