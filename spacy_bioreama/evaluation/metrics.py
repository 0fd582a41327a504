"""Metric functions: counting and P/R/F over exact-match keys.

What each metric means: docs/architecture.md, "Evaluation protocol".

These are the ONLY implementation of the metrics: the Doc scorers (`scorers.py`: the
registered spaCy scorers, the `score` command, `spacy evaluate`) and
`evaluate-instructions` (`instruction_records.py`, on instruction records) both apply
them, so every command reports the same thing.

* `labelled_prf` (keys ``<prefix>_p/_r/_f`` and ``<prefix>_per_type``): micro and
  per-label P/R/F of two sets of keys whose last element is the label; one counting
  loop for NER mentions, relation keys and pair assignments.
* `positive_label_scores`: the same over positive labels only, as the seeds and BLURB
  report GAD, EU-ADR, ChemProt and DDI. Each scored item (a concept pair of a document,
  or one instruction record) has a gold label and a predicted one; negative labels
  (`NEGATIVE_RELATION_LABELS`: ``0``, ``false``, ``False``, ``None``) are never scored.
  A positive prediction is a true positive when it equals the item's gold label and a
  false positive otherwise (also on a negative item); a positive gold label not
  predicted is a false negative, so a wrong positive label counts once as fp and once
  as fn.
* `choice_scores` (keys ``<prefix>_acc``, ``<prefix>_macro_f``, ``<prefix>_per_type``):
  accuracy and macro-F1 of a closed-answer task (PubMedQA yes / no / maybe). An
  unanswered item is wrong (and a false negative of its gold answer). Macro-F1 averages
  the per-answer F1 over the answers present in the gold or the predictions, as
  scikit-learn does by default; on PubMedQA dev every answer occurs in gold, so this is
  the mean over yes / no / maybe.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

from spacy.scorer import PRFScore

from ..annotations.labels import NEGATIVE_RELATION_LABELS


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


def count_prf(predicted: set, gold: set, score: PRFScore) -> None:
    """Add one document's true positives, false positives and false negatives (exact
    matches between `predicted` and `gold`) to `score`."""
    score.tp += len(predicted & gold)
    score.fp += len(predicted - gold)
    score.fn += len(gold - predicted)


def prf_keys(prefix: str, score: PRFScore) -> dict[str, float]:
    """`<prefix>_p`, `<prefix>_r` and `<prefix>_f` of one PRFScore."""
    return {
        f"{prefix}_p": score.precision,
        f"{prefix}_r": score.recall,
        f"{prefix}_f": score.fscore,
    }


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
