"""How far to trust a relation's `score`, and what `none_threshold` costs or buys.

`evaluate` runs the gold-entity setting with the component's `keep_pair_scores` on, so
every candidate pair it scored is kept in `doc.user_data[PAIR_SCORES_KEY]` with P(None)
and its best label. From those, without running the model again:

- a **reliability diagram**: the relations kept at the chosen threshold, binned by their
  confidence (`Relation.score`, the probability of the predicted label), against the
  fraction of each bin that is right (pair + type, as `score_relations` counts it), and
  the expected calibration error, ECE = sum over bins of (n_bin / n) * |accuracy - confidence|;
- a **threshold sweep**: relation P / R / F1 (pair + type) as if the component had been
  run with each `none_threshold`, which is exact because the decision rule
  (`tasks.relation.decide`) depends on P(None) alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from spacy.tokens import Doc
from spacy.training import Example

from ..annotations.relations import Relation
from ..pipeline.component import PAIR_SCORES_KEY
from .scorers import gold_relation_keys, match_concepts, predicted_relation_keys, score_relations

DEFAULT_BINS = 10
SWEEP_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 21))  # 0.05 ... 1.0


def pair_scores(doc: Doc) -> list[dict[str, Any]]:
    """The candidate pairs the component scored for `doc` (one per pair and window), as
    recorded with `keep_pair_scores`; entries without P(None) are left out."""
    return [e for e in doc.user_data.get(PAIR_SCORES_KEY) or () if e.get("p_none") is not None]


def relations_at(doc: Doc, none_threshold: float) -> list[Relation]:
    """The relations the component would have written with `none_threshold`: a pair is
    related in a window when P(None) < threshold, and a concept pair keeps its most
    confident related window (as `BioRelationLLM` does)."""
    best: dict[frozenset[str], Relation] = {}
    for e in pair_scores(doc):
        if e["p_none"] >= none_threshold:
            continue
        key = frozenset((e["head_id"], e["tail_id"]))
        if key not in best or best[key].score < e["score"]:
            head, tail = tuple(e["head"]), tuple(e["tail"])
            best[key] = Relation(head, tail, e["head_id"], e["tail_id"], e["label"], e["score"])
    return sorted(best.values(), key=lambda r: (r.head, r.tail, r.label))


def _with_relations(doc: Doc, relations: list[Relation]) -> Doc:
    copy = doc.copy()
    copy._.relations = relations
    return copy


def threshold_sweep(
    predicted: Sequence[Doc], gold: Sequence[Doc], thresholds: Iterable[float] = SWEEP_THRESHOLDS
) -> list[dict[str, Any]]:
    """Relation P / R / F1 (pair + type) and the number of relations at each threshold."""
    rows = []
    for threshold in thresholds:
        docs = [_with_relations(p, relations_at(p, threshold)) for p in predicted]
        scores = score_relations(Example(p, g) for p, g in zip(docs, gold, strict=True))
        rows.append(
            {
                "threshold": threshold,
                "p": scores["rel_micro_p"],
                "r": scores["rel_micro_r"],
                "f": scores["rel_micro_f"],
                "predicted": sum(len(d._.relations) for d in docs),
            }
        )
    return rows


def _correctness(predicted: Doc, gold: Doc) -> list[tuple[float, bool]]:
    """(confidence, right?) for each relation of `predicted`: right when its concept
    pair and label match a gold relation (concepts matched as the scorer matches them)."""
    gold_keys = gold_relation_keys(gold)
    gold_typed = {k[:2] for k in gold_keys}
    concepts = match_concepts(predicted, gold)
    out = []
    for rel in predicted._.relations:
        keys = predicted_relation_keys(_with_relations(predicted, [rel]), concepts, gold_keys)
        out.append((float(rel.score), any(k[:2] in gold_typed for k in keys)))
    return out


def reliability(
    predicted: Sequence[Doc], gold: Sequence[Doc], bins: int = DEFAULT_BINS
) -> dict[str, Any]:
    """Equal-width confidence bins of the relations in `predicted` (as written), each
    with its count, mean confidence and accuracy, and the expected calibration error."""
    pairs = [c for p, g in zip(predicted, gold, strict=True) for c in _correctness(p, g)]
    table = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(c, ok) for c, ok in pairs if lo <= c < hi or (b == bins - 1 and c == 1.0)]
        count = len(inside)
        table.append(
            {
                "lo": lo,
                "hi": hi,
                "count": count,
                "confidence": sum(c for c, _ in inside) / count if count else None,
                "accuracy": sum(ok for _, ok in inside) / count if count else None,
            }
        )
    n = len(pairs)
    ece = (
        sum(
            row["count"] / n * abs(row["accuracy"] - row["confidence"])
            for row in table
            if row["count"]
        )
        if n
        else None
    )
    return {"predictions": n, "ece": ece, "bins": table}


def calibration(
    predicted: Sequence[Doc], gold: Sequence[Doc], none_threshold: float | None
) -> dict[str, Any] | None:
    """The `calibration` block `evaluate` writes for the gold-entity run, or None when no
    pair scores were recorded (a backend without option probabilities)."""
    if not any(pair_scores(p) for p in predicted):
        return None
    threshold = 1.0 if none_threshold is None else none_threshold
    return {
        "none_threshold": none_threshold,
        **reliability([_with_relations(p, relations_at(p, threshold)) for p in predicted], gold),
        "sweep": threshold_sweep(predicted, gold),
    }


__all__ = [
    "DEFAULT_BINS",
    "SWEEP_THRESHOLDS",
    "calibration",
    "pair_scores",
    "relations_at",
    "reliability",
    "threshold_sweep",
]
