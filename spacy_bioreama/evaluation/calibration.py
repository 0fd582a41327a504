"""How far to trust a relation's `score`, and what `none_threshold` costs or buys.

`evaluate` runs the gold-entity setting with the component's `keep_pair_scores` on, so
every candidate pair it scored is kept in `doc.user_data[PAIR_SCORES_KEY]` with P(None)
and its best label. From those, without running the model again:

- a **reliability diagram**: the relations kept at the chosen threshold, binned by their
  confidence (`Relation.score`: the adapter's calibrated confidence), against the
  fraction of each bin that is right (pair + type, as `score_relations` counts it), and
  the expected calibration error, ECE = sum over bins of (n_bin / n) * |accuracy - confidence|;
- a **threshold sweep**: relation P / R / F1 (pair + type) as if the component had been
  run with each `none_threshold`, which is exact because the decision rule
  (`tasks.relation.decide`) depends on P(None) alone;
- a **label bias** (`fit_label_bias`): one offset per relation label, added to log
  P(label) when a related pair is typed, so that a tuned model's lean towards one label
  (the best adapter read more positive correlations as negative, 99 of 352 on dev,
  than as positive, 4) is corrected on held-back documents rather than on dev.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from spacy.tokens import Doc
from spacy.training import Example

from ..annotations.relations import Relation
from ..pipeline.component import PAIR_SCORES_KEY
from ..pipeline.relation_calibration import (
    FALLBACK_NONE_THRESHOLD,
    LABEL_PROBABILITY,
    TYPE_PROBABILITY,
    RelationCalibration,
    scaling_input,
)
from .scorers import relation_hits, score_relations

DEFAULT_BINS = 10
SWEEP_THRESHOLDS = tuple(round(0.05 * k, 2) for k in range(1, 21))  # 0.05 ... 1.0


def pair_scores(doc: Doc) -> list[dict[str, Any]]:
    """The candidate pairs the component scored for `doc` (one per pair and window), as
    recorded with `keep_pair_scores`; entries without P(None) are left out."""
    return [e for e in doc.user_data.get(PAIR_SCORES_KEY) or () if e.get("p_none") is not None]


def kept_entries(doc: Doc, none_threshold: float) -> list[dict[str, Any]]:
    """The pair scores behind the relations the component would have written with
    `none_threshold`: a pair is related in a window when P(None) < threshold, and a
    concept pair keeps its most probable related window (by ``raw_score``, the model's
    label probability, as `BioRelationLLM` does; older records without it by
    ``score``). Sorted as the component sorts its relations."""
    best: dict[frozenset[str], dict[str, Any]] = {}
    for e in pair_scores(doc):
        if e["p_none"] >= none_threshold:
            continue
        key = frozenset((e["head_id"], e["tail_id"]))
        if key not in best or _raw(best[key]) < _raw(e):
            best[key] = e
    return sorted(best.values(), key=lambda e: (tuple(e["head"]), tuple(e["tail"]), e["label"]))


def _raw(entry: Mapping[str, Any]) -> float:
    return entry.get("raw_score", entry["score"])


def _relation(entry: Mapping[str, Any], score: float) -> Relation:
    head, tail = tuple(entry["head"]), tuple(entry["tail"])
    return Relation(head, tail, entry["head_id"], entry["tail_id"], entry["label"], score)


def relations_at(doc: Doc, none_threshold: float, score_key: str = "score") -> list[Relation]:
    """The relations the component would have written with `none_threshold`
    (`kept_entries`), each scored by `score_key`: ``"score"`` (the calibrated
    confidence) or ``"raw_score"`` (the label probability, what a new calibration is
    fitted on)."""
    return [
        _relation(e, e[score_key] if score_key in e else e["score"])
        for e in kept_entries(doc, none_threshold)
    ]


def _with_relations(doc: Doc, relations: list[Relation]) -> Doc:
    copy = doc.copy()
    copy._.relations = relations
    return copy


def threshold_sweep(
    predicted: Sequence[Doc],
    gold: Sequence[Doc],
    thresholds: Iterable[float] = SWEEP_THRESHOLDS,
    score_key: str = "score",
) -> list[dict[str, Any]]:
    """Relation P / R / F1 (pair + type) and the number of relations at each threshold
    (`score_key`: which score picks a concept pair's window, see `relations_at`)."""
    rows = []
    for threshold in thresholds:
        docs = [_with_relations(p, relations_at(p, threshold, score_key)) for p in predicted]
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
    """(confidence, right?) for each relation of `predicted`: right when the scorer
    counts it as a true positive (pair + type; `relation_hits`)."""
    hits = relation_hits(predicted, gold)
    return [(float(rel.score), hit) for rel, hit in zip(predicted._.relations, hits, strict=True)]


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


# ridge (towards no bias) of the label-bias fit: a label the held-back documents barely
# show keeps a bias near 0 instead of one fitted to a handful of pairs
LABEL_BIAS_RIDGE = 1.0
# a label needs this many related held-back pairs for a bias of its own (the others keep
# 0): on 40 BioRED documents a bias fitted to Bind's handful of pairs reached +3.7 and
# cost pair + type F1
MIN_LABEL_BIAS_PAIRS = 20


def typing_examples(
    predicted: Sequence[Doc], gold: Sequence[Doc]
) -> list[tuple[dict[str, float], str]]:
    """(relation labels' probabilities, gold label) of every scored pair whose concept
    pair is related in `gold` (gold entities given, so the concept ids are the gold
    ones) and whose gold label is among the options: what typing is fitted on."""
    out = []
    for p, g in zip(predicted, gold, strict=True):
        labels = {frozenset((r.head_id, r.tail_id)): r.label for r in g._.relations}
        for e in pair_scores(p):
            probabilities = e.get("probabilities") or {}
            label = labels.get(frozenset((e["head_id"], e["tail_id"])))
            if label in probabilities:
                out.append((dict(probabilities), label))
    return out


def fit_label_bias(
    examples: Sequence[tuple[Mapping[str, float], str]], ridge: float = LABEL_BIAS_RIDGE
) -> dict[str, float]:
    """Offsets b maximising the log likelihood of the gold labels under
    softmax(log P(label) + b), with a ridge towards 0; Newton steps on a convex loss.
    Only labels with `MIN_LABEL_BIAS_PAIRS` gold pairs get an offset, fitted among
    themselves (softmax over those labels, on their pairs) and centred, so the rare
    labels keep 0 = the others' mean instead of being lifted by the gauge. Empty (no
    correction) with fewer than two such labels."""
    import numpy as np

    counts = Counter(y for _, y in examples)
    labels = sorted(k for k, n in counts.items() if n >= MIN_LABEL_BIAS_PAIRS)
    if len(labels) < 2:
        return {}
    examples = [(probs, y) for probs, y in examples if y in labels]
    index = {k: i for i, k in enumerate(labels)}
    z = np.array(
        [[math.log(max(probs.get(k, 0.0), 1e-12)) for k in labels] for probs, _ in examples]
    )
    y = np.zeros_like(z)
    y[np.arange(len(examples)), [index[label] for _, label in examples]] = 1.0
    b = np.zeros(len(labels))
    for _ in range(50):
        logits = z + b
        q = np.exp(logits - logits.max(axis=1, keepdims=True))
        q /= q.sum(axis=1, keepdims=True)
        gradient = (q - y).sum(axis=0) + ridge * b
        hessian = np.diag(q.sum(axis=0)) - q.T @ q + ridge * np.eye(len(labels))
        step = np.linalg.solve(hessian, gradient)
        b -= step
        if np.abs(step).max() < 1e-8:
            break
    b -= b.mean()  # softmax ignores a shared offset
    return {k: round(float(b[index[k]]), 6) for k in labels}


def retyped(doc: Doc, label_bias: Mapping[str, float]) -> Doc:
    """A copy of `doc` whose pair scores take their label (and its probability as
    ``raw_score``) under `label_bias`; entries without label probabilities are kept."""
    calibration = RelationCalibration(label_bias=tuple(sorted(label_bias.items())))
    entries = []
    for e in doc.user_data.get(PAIR_SCORES_KEY) or ():
        probabilities = e.get("probabilities")
        if probabilities:
            label = calibration.type_label(probabilities)
            e = {**e, "label": label, "raw_score": probabilities[label]}
        entries.append(e)
    copy = doc.copy()
    copy.user_data[PAIR_SCORES_KEY] = entries
    return copy


# the grid `fit_calibration` chooses the threshold from (exact: see threshold_sweep)
FIT_THRESHOLDS = tuple(round(0.01 * k, 2) for k in range(1, 101))
# fewer relations than this (or only right / only wrong ones): no score scaling is fitted
MIN_SCALING_RELATIONS = 20


# the smallest slope a fitted scaling keeps: where the held-back documents show no
# ranking (a slope fitted at or below it), the scores still keep their raw order (which
# window of a concept pair is kept, how relations sort) and read as about the held-back
# accuracy, instead of staying as overconfident as they came
MIN_SLOPE = 0.01


def platt_scaling(pairs: Sequence[tuple[float, bool]], steps: int = 100) -> tuple[float, float]:
    """(a, b) of P(right) = sigmoid(a * logit(score) + b): `fit_score_scaling` on the
    label probability."""
    scaling = fit_score_scaling([(c, None, ok) for c, ok in pairs], LABEL_PROBABILITY, steps)
    return scaling["a"], scaling["b"]


def fit_score_scaling(
    relations: Sequence[tuple[float, float | None, bool]],
    score_input: str = TYPE_PROBABILITY,
    steps: int = 100,
) -> dict[str, Any]:
    """The ``score_scaling`` of `RelationCalibration`, fitted on (label probability,
    P(None), right?) of the relations kept on the held-back documents: P(right) =
    sigmoid(a * logit(s) + b), s as `score_input` says (Platt scaling), by damped Newton
    steps on the log loss (each step halved until the loss falls) with a small ridge
    (0.01) towards the identity so that separable data stays finite. The identity when
    there are too few relations or a single outcome. A slope below `MIN_SLOPE` (scores
    that do not rank the right relations first) is held at `MIN_SLOPE`, and b alone is
    fitted."""
    import numpy as np

    outcomes = {ok for *_, ok in relations}
    if len(relations) < MIN_SCALING_RELATIONS or len(outcomes) < 2:
        return {"a": 1.0, "b": 0.0, "input": LABEL_PROBABILITY}
    s = np.array([scaling_input(c, p_none, score_input) for c, p_none, _ in relations])
    s = np.clip(s, 1e-6, 1 - 1e-6)
    x = np.stack([np.log(s / (1 - s)), np.ones_like(s)], axis=1)
    y = np.array([float(ok) for *_, ok in relations])
    a, b = _fit_logistic(x, y, np.array([1.0, 0.0]), steps)
    if a < MIN_SLOPE:
        a = MIN_SLOPE
        (b,) = _fit_logistic(x[:, 1:], y, np.array([0.0]), steps, MIN_SLOPE * x[:, 0])
    return {"a": float(a), "b": float(b), "input": score_input}


def _fit_logistic(x: Any, y: Any, prior: Any, steps: int, offset: Any = 0.0) -> Any:
    """Weights w minimising the log loss of sigmoid(x @ w + offset) against `y`, plus a
    ridge of 0.01 towards `prior` (where the weights start): damped Newton steps."""
    import numpy as np

    ridge = 0.01

    def loss(w: Any) -> float:
        z = x @ w + offset
        # log(1 + e^z) - y z, written so that it does not overflow
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + ridge / 2 * np.sum((w - prior) ** 2))

    w = prior.copy()
    current = loss(w)
    for _ in range(steps):
        q = 0.5 * (1 + np.tanh(0.5 * (x @ w + offset)))  # sigmoid without overflow
        gradient = x.T @ (q - y) + ridge * (w - prior)
        hessian = (x * (q * (1 - q))[:, None]).T @ x + ridge * np.eye(len(w))
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6 and loss(w - scale * step) > current:
            scale /= 2
        if scale <= 1e-6:
            break
        w = w - scale * step
        previous, current = current, loss(w)
        if previous - current < 1e-10:
            break
    return w


def fit_calibration(
    predicted: Sequence[Doc], gold: Sequence[Doc], score_input: str = TYPE_PROBABILITY
) -> dict[str, Any]:
    """The calibration `calibrate` saves with an adapter, from a run with every pair's
    scores kept (`keep_pair_scores`) on documents the adapter was not trained on: the
    `label_bias` of typing (`fit_label_bias`, on the related held-back pairs; kept only
    when it raises the best pair + type F1 there), then the
    `none_threshold` of the best pair + type F1 on `FIT_THRESHOLDS` with that typing
    (ties: the lower threshold, fewer relations), and the Platt scaling of the type
    probability P(label | related) of the relations kept there (`fit_score_scaling`),
    with the ECE before and after (`score_input`: what the scaling reads). Why the type
    probability by default: once the threshold has
    related a pair, what is left to get wrong is mostly its label; on the best
    adapter's held-back documents P(None) said next to nothing about which kept
    relations were right, and on dev the type probability ranked them best (docs/results.md)."""
    if not any(pair_scores(p) for p in predicted):
        raise ValueError("no pair scores were recorded: the backend gives no option probabilities")
    examples = typing_examples(predicted, gold)
    fitted_bias = fit_label_bias(examples)
    unbiased = [retyped(p, {}) for p in predicted]
    predicted, sweep = unbiased, threshold_sweep(unbiased, gold, FIT_THRESHOLDS, "raw_score")
    label_bias: dict[str, float] = {}
    if fitted_bias:
        biased = [retyped(p, fitted_bias) for p in predicted]
        biased_sweep = threshold_sweep(biased, gold, FIT_THRESHOLDS, "raw_score")
        # kept only where it types the held-back documents better than the plain argmax
        if max(r["f"] for r in biased_sweep) > max(r["f"] for r in sweep):
            label_bias, predicted, sweep = fitted_bias, biased, biased_sweep
    best = max(sweep, key=lambda row: (row["f"], -row["threshold"]))
    fallback = best["f"] == 0.0  # no threshold gets anything right: choosing one is noise
    if fallback:
        best = min(sweep, key=lambda row: abs(row["threshold"] - FALLBACK_NONE_THRESHOLD))
    threshold = best["threshold"]
    chosen = [kept_entries(p, threshold) for p in predicted]
    kept = [
        _with_relations(p, [_relation(e, _raw(e)) for e in c])
        for p, c in zip(predicted, chosen, strict=True)
    ]
    right = [ok for p, g in zip(kept, gold, strict=True) for _, ok in _correctness(p, g)]
    entries = [e for c in chosen for e in c]
    relations = [(_raw(e), e["p_none"], ok) for e, ok in zip(entries, right, strict=True)]
    scaling = fit_score_scaling(relations, score_input)
    scale = RelationCalibration(a=scaling["a"], b=scaling["b"], score_input=scaling["input"]).scale
    scaled = [
        _with_relations(p, [_relation(e, scale(_raw(e), e["p_none"])) for e in c])
        for p, c in zip(predicted, chosen, strict=True)
    ]
    candidates = sum(len(pair_scores(p)) for p in predicted)
    without_bias = threshold_sweep(unbiased, gold, [threshold], "raw_score")[0]
    return {
        "none_threshold": threshold,
        # True: F1 was 0 at every threshold, so the fallback threshold is kept
        "fallback": fallback,
        "score_scaling": scaling,
        "label_bias": label_bias,
        # the bias fitted, kept in label_bias only when it raised the best F1
        "label_bias_fitted": fitted_bias,
        "typing_pairs": len(examples),
        # pair + type F1 at the chosen threshold with the plain argmax typing
        "f1_without_label_bias": without_bias["f"],
        "documents": len(predicted),
        "candidate_pairs": candidates,
        "relations": best["predicted"],
        "p": best["p"],
        "r": best["r"],
        "f1": best["f"],
        "ece_raw": reliability(kept, gold)["ece"],
        "ece_scaled": reliability(scaled, gold)["ece"],
        "sweep": sweep,
    }


def calibration(
    predicted: Sequence[Doc], gold: Sequence[Doc], none_threshold: float | None
) -> dict[str, Any] | None:
    """The `calibration` block `evaluate` writes for the gold-entity run, or None when no
    pair scores were recorded (a backend without option probabilities)."""
    if not any(pair_scores(p) for p in predicted):
        return None
    # without a threshold the component took the argmax answer: its relations as written
    # (a threshold of 1.0 would relate every pair with P(None) < 1)
    docs = (
        list(predicted)
        if none_threshold is None
        else [_with_relations(p, relations_at(p, none_threshold)) for p in predicted]
    )
    return {
        "none_threshold": none_threshold,
        **reliability(docs, gold),
        "sweep": threshold_sweep(predicted, gold),
    }


__all__ = [
    "DEFAULT_BINS",
    "SWEEP_THRESHOLDS",
    "FIT_THRESHOLDS",
    "MIN_SLOPE",
    "calibration",
    "fit_calibration",
    "fit_label_bias",
    "retyped",
    "typing_examples",
    "pair_scores",
    "fit_score_scaling",
    "kept_entries",
    "platt_scaling",
    "relations_at",
    "reliability",
    "threshold_sweep",
]
