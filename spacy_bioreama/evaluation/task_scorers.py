"""Scorers for the pair-classification corpora and PubMedQA (DESIGN.md, "Evaluation protocol").

The two metric functions here are the ONLY implementation of these metrics: the spaCy
scorers below apply them to Docs (`score` command, `spacy evaluate`) and
`evaluate-instructions` applies them to instruction records, so both report the same thing.

* `positive_label_scores` (keys ``<prefix>_p/_r/_f`` and ``<prefix>_per_type``): micro
  P/R/F1 over the positive labels, as the seeds and BLURB report GAD, EU-ADR, ChemProt and
  DDI. Each scored item (a concept pair of a document, or one instruction record) has a
  gold label and a predicted one; negative labels (`NEGATIVE_RELATION_LABELS`: ``0``,
  ``false``, ``False``, ``None``) are never scored. A positive prediction is a true
  positive when it equals the item's gold label and a false positive otherwise (also on
  a negative item); a positive gold label not predicted is a false negative, so a wrong
  positive label counts once as fp and once as fn.
* `choice_scores` (keys ``<prefix>_acc``, ``<prefix>_macro_f``, ``<prefix>_per_type``):
  accuracy and macro-F1 of a closed-answer task (PubMedQA yes / no / maybe). An
  unanswered item is wrong (and a false negative of its gold answer). Macro-F1 averages
  the per-answer F1 over the answers present in the gold or the predictions, as
  scikit-learn does by default; on PubMedQA dev every answer occurs in gold, so this is
  the mean over yes / no / maybe.

Doc conventions: pair corpora give one Doc per example (or per DDI document) with the
gold relations, negatives included, in ``doc._.relations``; a predicted Doc holds only
the relations it predicts (none = negative). Pairs are unordered and a predicted concept
maps to the gold concepts that share one of its mentions (`scoring.py`). PubMedQA gold
answers are ``doc.user_data["answer"]`` (else the one-hot ``doc.cats``); a prediction is
the argmax of the predicted ``doc.cats`` (the gold answer copied into a prediction's
user data is never read).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from spacy.scorer import PRFScore
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import registry

from ..annotations.labels import NEGATIVE_RELATION_LABELS
from ..tasks import qa
from .scorers import _concept_map, gold_relation_keys, labelled_prf, predicted_relation_keys

QA_ANSWERS: tuple[str, ...] = qa.CHOICES


def is_negative_label(label: str | None) -> bool:
    """True for "no relation" answers, which pair metrics never score."""
    return label is None or label in NEGATIVE_RELATION_LABELS


def positive_label_scores(
    gold: Iterable[tuple[Hashable, str]],
    predicted: Iterable[tuple[Hashable, str]],
    prefix: str = "pair",
) -> dict[str, Any]:
    """Micro and per-label P/R/F1 over positive labels of `(item, label)` assignments.

    `item` identifies what is classified (a concept pair in a document, a record id);
    duplicates of the same assignment count once."""
    gold_set = {(item, label) for item, label in gold if not is_negative_label(label)}
    pred_set = {(item, label) for item, label in predicted if not is_negative_label(label)}
    return labelled_prf(gold_set, pred_set, prefix)


def choice_scores(
    pairs: Iterable[tuple[str, str | None]], prefix: str = "qa", answers: Sequence[str] = ()
) -> dict[str, Any]:
    """Accuracy and macro-F1 of `(gold answer, predicted answer or None)` pairs.

    Macro-F1 averages over the answers in gold or predictions (plus `answers`, to force
    some in); None predictions are wrong and belong to no answer."""
    pairs = list(pairs)
    labels = set(answers) | {g for g, _ in pairs} | {p for _, p in pairs if p is not None}
    per_label = {label: PRFScore() for label in labels}
    correct = 0
    for gold, pred in pairs:
        if pred == gold:
            correct += 1
            per_label[gold].tp += 1
            continue
        per_label[gold].fn += 1
        if pred is not None:
            per_label[pred].fp += 1
    macro = sum(s.fscore for s in per_label.values()) / len(per_label) if per_label else 0.0
    return {
        f"{prefix}_acc": correct / len(pairs) if pairs else 0.0,
        f"{prefix}_macro_f": macro,
        f"{prefix}_per_type": {k: v.to_dict() for k, v in sorted(per_label.items())},
    }


# ------------------------------------------------------------------ Doc scorers
def pair_assignments(
    examples: Iterable[Example],
) -> tuple[list[tuple[Hashable, str]], list[tuple[Hashable, str]]]:
    """Gold and predicted `((example index, concept pair), label)` of pair documents;
    negative gold pairs are left out (they are never scored)."""
    gold: list[tuple[Hashable, str]] = []
    pred: list[tuple[Hashable, str]] = []
    for i, eg in enumerate(examples):
        gold_keys = gold_relation_keys(eg.reference)
        concept_map = _concept_map(eg.predicted, eg.reference)
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


@registry.scorers("spacy_bioreama.pair_scorer.v1")
def make_pair_scorer():
    """Registered scorer for GAD / EU-ADR / ChemProt / DDI documents."""
    return score_pairs


@registry.scorers("spacy_bioreama.qa_scorer.v1")
def make_qa_scorer():
    """Registered scorer for PubMedQA documents."""
    return score_qa
