"""Scorers with spaCy-standard keys (see docs/architecture.md, "Evaluation protocol").

* NER: strict mention-level P/R/F over all mentions (`doc.ents` plus the overflow group):
  a prediction counts when its character offsets and type equal a gold mention's.
* RE: BioRED-style, document level, on concept pairs (unordered), in three settings:
  pair only (`rel_pair_*`), pair + type (`rel_micro_*`, spaCy's conventional key, plus
  `rel_per_type`) and pair + type + novelty (`rel_novelty_*`, None when the system
  predicts no novelty). Negative labels of the pair-classification corpora
  (`NEGATIVE_RELATION_LABELS`) are excluded, as the seeds and BLURB report. A predicted
  concept id the gold document also uses stands for itself; any other (end to end: the
  normalised mention text) for the gold concepts that share one of its mentions (same
  character offsets, any type), so the same code scores both settings (`match_concepts`).
* Pairs (GAD, EU-ADR, ChemProt, DDI; ``pair_*``): micro P/R/F1 over the positive labels
  (`metrics.positive_label_scores`). Pair corpora give one Doc per example (or per DDI
  document) with the gold relations, negatives included, in ``doc._.relations``; a
  predicted Doc holds only the relations it predicts (none = negative). Pairs are
  unordered, and predicted concepts are mapped to gold ones as for RE.
* QA (PubMedQA; ``qa_*``): accuracy and macro-F1 (`metrics.choice_scores`). Gold answers
  are ``doc.user_data["answer"]`` (else the one-hot ``doc.cats``); a prediction is the
  argmax of the predicted ``doc.cats`` (the gold answer copied into a prediction's user
  data is never read).

The counting and P/R/F functions are in `metrics.py`; the three scorers are registered
for spaCy (`spacy_bioreama.{bio,pair,qa}_scorer.v1`, also as spacy_scorers entry points).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from itertools import product
from typing import Any

from spacy.scorer import PRFScore
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..annotations.labels import NEGATIVE_RELATION_LABELS
from ..annotations.spans import all_mentions, concept_ids, split_concept_ids
from ..tasks import qa
from ..tasks.relation import NO_RELATION
from .metrics import choice_scores, count_prf, labelled_prf, positive_label_scores, prf_keys

SCORER_VERSION = 2
"""Raised when a change to these scorers moves a figure. Metrics files record it
(``meta/scorer_version``; files without it are version 1) and the results page marks the
rows an older version scored (`SCORER_CHANGES`: what each version changed, and the
metrics it moved, by key prefix)."""

SCORER_CHANGES: dict[int, tuple[str, tuple[str, ...]]] = {
    2: (
        "2026-12-07: with gold entities, a relation predicted for the other concept of a "
        "mention naming two (ids such as `D004409,D006948`) was credited as the gold one, "
        "and a second prediction onto one gold relation was merged; end to end, a relation "
        "between two text concepts of one gold concept was dropped. All are false "
        "positives now, in the relation F1s, the pair corpora's and the reliability "
        "diagram's (ECE) verdicts alike",
        ("rel_", "pair_"),
    ),
}

QA_ANSWERS: tuple[str, ...] = qa.CHOICES


def _mention_keys(doc: Doc) -> set[tuple[int, int, str]]:
    return {(s.start_char, s.end_char, s.label_) for s in all_mentions(doc)}


def entity_key_sets(eg: Example) -> tuple[set[tuple], set[tuple]]:
    """(predicted, gold) strict mention keys of one example: what NER counts."""
    return _mention_keys(eg.predicted), _mention_keys(eg.reference)


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


def match_concepts(pred: Doc, gold: Doc) -> dict[str, set[str]]:
    """Predicted concept id → the gold concept ids it stands for (how a predicted
    concept is matched in every relation and pair score). An id the gold document also
    uses (the gold-entities setting, a linking system) stands for itself and its ``|``
    parts only: a mention naming two concepts (``D004409,D006948``) must not let a
    relation of one be credited to the other. Any other id (end to end: the normalised
    text) stands for the gold concepts sharing at least one of its mentions' offsets;
    the entity type is not compared there (NER scores it)."""
    gold_mentions = _concept_mentions(gold)
    gold_by_offsets: dict[tuple[int, int], set[str]] = defaultdict(set)
    for cid, offsets in gold_mentions.items():
        for off in offsets:
            gold_by_offsets[off].add(cid)
    mapping: dict[str, set[str]] = {}
    for cid, offsets in _concept_mentions(pred).items():
        at_offsets = set().union(*(gold_by_offsets.get(o, set()) for o in offsets))
        if cid in at_offsets:  # a gold id, on one of its own gold mentions
            _, parts = split_concept_ids(cid)
            mapping[cid] = {cid, *(part for part in parts if part in gold_mentions)}
        else:
            mapping[cid] = at_offsets
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
    """The keys of the predicted relations (`relation_keys_in_order`), as a set."""
    return {key for key in relation_keys_in_order(doc, concept_map, gold) if key is not None}


def relation_keys_in_order(
    doc: Doc, concept_map: dict[str, set[str]], gold: set[RelationKey]
) -> list[RelationKey | None]:
    """One key per relation of `doc._.relations`, in order (None for a negative label or
    a concept with itself), its concepts mapped to gold concepts. A concept that maps to
    several gold concepts (composite mentions, a text concept on a mention naming two)
    takes the reading that matches a gold relation, if any, so one prediction is never
    counted twice; among those, its own ids first and then a gold relation no earlier
    prediction took, so that two predictions do not collapse onto one gold relation. An
    unmapped concept keeps a marker id and can only be a false positive."""
    gold_pairs = {k[0] for k in gold}
    gold_typed = {k[:2] for k in gold}
    taken: set[tuple[frozenset[str], str]] = set()
    picked: dict[tuple[frozenset[str], str], frozenset[str]] = {}  # repeated relations
    keys: list[RelationKey | None] = []
    for rel in doc._.relations:
        if rel.label in NEGATIVE_RELATION_LABELS or rel.head_id == rel.tail_id:
            keys.append(None)
            continue
        heads = sorted(concept_map.get(rel.head_id) or {f"<unmatched>{rel.head_id}"})
        tails = sorted(concept_map.get(rel.tail_id) or {f"<unmatched>{rel.tail_id}"})
        # none: two predicted concepts of one gold concept ("p53", "tp53") related to
        # each other, a false positive, never silently dropped
        pairs = [frozenset((h, t)) for h in heads for t in tails if h != t] or [
            frozenset((f"<same>{rel.head_id}", f"<same>{rel.tail_id}"))
        ]
        own = frozenset((rel.head_id, rel.tail_id))
        if (own, rel.label) in picked:  # the same relation again (reversed, repeated)
            keys.append((picked[own, rel.label], rel.label, rel.novel))
            continue
        pairs.sort(key=lambda p: p != own)  # stable: otherwise sorted order
        typed = [p for p in pairs if (p, rel.label) in gold_typed]
        pick = next(
            (p for p in typed if (p, rel.label) not in taken),
            typed[0] if typed else next((p for p in pairs if p in gold_pairs), pairs[0]),
        )
        taken.add((pick, rel.label))
        picked[own, rel.label] = pick
        keys.append((pick, rel.label, rel.novel))
    return keys


def relation_hits(pred: Doc, gold: Doc) -> list[bool]:
    """For each relation of `pred`, in order: whether the scorer counts its key as a true
    positive in the pair + type setting (relations sharing a key, which the scorer
    counts once, share the verdict). The one per-relation verdict, for the reliability
    diagram and the relation view, so that neither can disagree with the scores."""
    gold_keys = gold_relation_keys(gold)
    gold_typed = {k[:2] for k in gold_keys}
    verdicts: dict[tuple[frozenset[str], str], bool] = {}
    hits = []
    for key in relation_keys_in_order(pred, match_concepts(pred, gold), gold_keys):
        if key is None:
            hits.append(False)
            continue
        # a relation whose key an earlier one had is the same prediction to the scorer
        # (two names of one concept related alike): it shares that one's verdict
        hits.append(verdicts.setdefault(key[:2], key[:2] in gold_typed))
    return hits


def relation_key_sets(eg: Example) -> tuple[set[RelationKey], set[RelationKey]]:
    """(predicted, gold) relation keys of one example, predicted concepts mapped to gold
    ones: what every relation setting counts (pair: ``k[0]``, + type: ``k[:2]``)."""
    gold = gold_relation_keys(eg.reference)
    pred = predicted_relation_keys(eg.predicted, match_concepts(eg.predicted, eg.reference), gold)
    return pred, gold


def count_label_confusion(
    pred: set[RelationKey], gold: set[RelationKey], confusion: Counter[tuple[str, str]]
) -> None:
    """Add one example's (gold label, predicted label) counts to `confusion`, per concept
    pair; `NO_RELATION` stands for a pair the other side does not relate. A label both
    sides give counts on the diagonal; the labels left over are crossed (one label per
    pair, BioRED's case, gives one cell)."""
    gold_labels: dict[frozenset[str], set[str]] = defaultdict(set)
    pred_labels: dict[frozenset[str], set[str]] = defaultdict(set)
    for pair, label, _ in gold:
        gold_labels[pair].add(label)
    for pair, label, _ in pred:
        pred_labels[pair].add(label)
    for pair in gold_labels.keys() | pred_labels.keys():
        g, p = gold_labels.get(pair, set()), pred_labels.get(pair, set())
        confusion.update((label, label) for label in g & p)
        if g ^ p:
            confusion.update(
                product(sorted(g - p) or [NO_RELATION], sorted(p - g) or [NO_RELATION])
            )


def score_relations(examples: Iterable[Example]) -> dict[str, Any]:
    """BioRED document-level relation scores in the three settings, and the label
    confusion over concept pairs (``rel_confusion``: gold label -> predicted label ->
    pairs; it tells typing errors from detection errors)."""
    pair, typed, novelty = PRFScore(), PRFScore(), PRFScore()
    per_type: dict[str, PRFScore] = defaultdict(PRFScore)
    confusion: Counter[tuple[str, str]] = Counter()
    predicts_novelty = False
    for eg in examples:
        predicts_novelty |= any(r.novel is not None for r in eg.predicted._.relations)
        pred, gold = relation_key_sets(eg)
        count_label_confusion(pred, gold, confusion)
        count_prf({k[0] for k in pred}, {k[0] for k in gold}, pair)
        count_prf({k[:2] for k in pred}, {k[:2] for k in gold}, typed)
        count_prf(pred, gold, novelty)
        for label in {k[1] for k in pred | gold}:
            count_prf(
                {k[:2] for k in pred if k[1] == label},
                {k[:2] for k in gold if k[1] == label},
                per_type[label],
            )
    out: dict[str, Any] = {
        **prf_keys("rel_pair", pair),
        **prf_keys("rel_micro", typed),
        **prf_keys("rel_novelty", novelty),
    }
    if not predicts_novelty:
        # A system that does not predict novelty has no novelty score (not zero).
        out.update(rel_novelty_p=None, rel_novelty_r=None, rel_novelty_f=None)
    out["rel_per_type"] = {k: v.to_dict() for k, v in sorted(per_type.items())}
    nested: dict[str, dict[str, int]] = defaultdict(dict)
    for (g, p), n in sorted(confusion.items()):
        nested[g][p] = n
    out["rel_confusion"] = dict(nested)
    return out


def score_bio(examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
    """NER and RE scores for a list of examples."""
    examples = list(examples)
    return {**score_entities(examples), **score_relations(examples)}


def pair_assignments(
    examples: Iterable[Example],
) -> tuple[list[tuple[Hashable, str]], list[tuple[Hashable, str]]]:
    """Gold and predicted `((example index, concept pair), label)` of pair documents;
    negative gold pairs are left out (they are never scored)."""
    gold: list[tuple[Hashable, str]] = []
    pred: list[tuple[Hashable, str]] = []
    for i, eg in enumerate(examples):
        gold_keys = gold_relation_keys(eg.reference)
        concept_map = match_concepts(eg.predicted, eg.reference)
        gold += [((i, pair), label) for pair, label, _ in gold_keys]
        pred += [
            ((i, pair), label)
            for pair, label, _ in predicted_relation_keys(eg.predicted, concept_map, gold_keys)
        ]
    return gold, pred


def score_pairs(examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
    """Pair-classification scores (``pair_p``, ``pair_r``, ``pair_f``, ``pair_per_type``)."""
    gold, pred = pair_assignments(examples)
    return positive_label_scores(gold, pred, "pair")


def gold_answer(doc: Doc) -> str | None:
    """A QA document's gold answer: ``user_data["answer"]``, else the one-hot cats."""
    answer = doc.user_data.get(qa.ANSWER_KEY)
    if answer in QA_ANSWERS:
        return answer
    return predicted_answer(doc)


def predicted_answer(doc: Doc) -> str | None:
    """The highest-scoring answer in ``doc.cats`` (None when no answer scores above 0)."""
    scores = {a: float(doc.cats.get(a, 0.0)) for a in QA_ANSWERS}
    best = max(QA_ANSWERS, key=lambda a: scores[a])
    return best if scores[best] > 0.0 else None


def score_qa(examples: Iterable[Example], **kwargs: Any) -> dict[str, Any]:
    """QA accuracy and macro-F1 (``qa_acc``, ``qa_macro_f``, ``qa_per_type``); documents
    without a gold answer (PQA-U) are not scored."""
    pairs = []
    for eg in examples:
        gold = gold_answer(eg.reference)
        if gold is not None:
            pairs.append((gold, predicted_answer(eg.predicted)))
    return choice_scores(pairs, "qa")


@registry.scorers("spacy_bioreama.bio_scorer.v1")
def make_bio_scorer():
    """Registered scorer for BioRED-style documents (NER + RE); the component's
    default (`bio_relation_llm`'s `scorer` setting)."""
    return score_bio


@registry.scorers("spacy_bioreama.pair_scorer.v1")
def make_pair_scorer():
    """Registered scorer for GAD / EU-ADR / ChemProt / DDI documents."""
    return score_pairs


@registry.scorers("spacy_bioreama.qa_scorer.v1")
def make_qa_scorer():
    """Registered scorer for PubMedQA documents."""
    return score_qa
