"""95 % bootstrap confidence intervals over documents for the micro-F1 scores.

Why documents: BioRED relations are document level, and mentions of one document are not
independent, so the unit that is sampled is the document. Each resample draws the
documents with replacement, sums their true positives, false positives and false
negatives, and takes the micro F1 of the sums (as the scorer does for the whole set); the
interval is the 2.5th and 97.5th percentile over the resamples (percentile bootstrap).
A difference between two systems whose intervals overlap widely is not a finding.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from spacy.training import Example

from .scorers import entity_key_sets, relation_key_sets

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
# metric key -> how to count one document's (predicted, gold) sets
ENTITY_KEYS = ("ents_f",)
RELATION_KEYS = ("rel_pair_f", "rel_micro_f")


def _counts(predicted: set, gold: set) -> tuple[int, int, int]:
    return len(predicted & gold), len(predicted - gold), len(gold - predicted)


def document_counts(examples: Iterable[Example], keys: Sequence[str]) -> dict[str, list]:
    """Per document (tp, fp, fn) for each metric key in `keys` (`ENTITY_KEYS`,
    `RELATION_KEYS`), counted exactly as `score_bio` counts them."""
    out: dict[str, list] = {key: [] for key in keys}
    for eg in examples:
        if any(k in ENTITY_KEYS for k in keys):
            pred, gold = entity_key_sets(eg)
            out["ents_f"].append(_counts(pred, gold))
        if any(k in RELATION_KEYS for k in keys):
            pred, gold = relation_key_sets(eg)
            if "rel_pair_f" in out:
                out["rel_pair_f"].append(_counts({k[0] for k in pred}, {k[0] for k in gold}))
            if "rel_micro_f" in out:
                out["rel_micro_f"].append(_counts({k[:2] for k in pred}, {k[:2] for k in gold}))
    return out


def f1_interval(
    counts: Sequence[tuple[int, int, int]],
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
) -> tuple[float, float] | None:
    """The percentile-bootstrap interval of micro F1 over the documents' (tp, fp, fn);
    None for no documents. A resample without any prediction or gold item scores 0, as
    spaCy's PRFScore does."""
    import numpy as np

    if not counts:
        return None
    table = np.asarray(counts, dtype=np.int64)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(table), size=(resamples, len(table)))
    tp, fp, fn = table[picks].sum(axis=1).T
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(resamples), where=denominator > 0)
    tail = (1.0 - confidence) / 2 * 100
    low, high = np.percentile(f1, [tail, 100 - tail])
    return float(low), float(high)


def intervals(
    examples: Iterable[Example],
    keys: Sequence[str] = ENTITY_KEYS + RELATION_KEYS,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The ``intervals`` block of a metrics file: ``{key: [low, high]}`` for each metric
    in `keys`, with the method, resamples and seed that make it reproducible."""
    counts = document_counts(examples, keys)
    block: dict[str, Any] = {
        "method": "percentile bootstrap over documents",
        "confidence": DEFAULT_CONFIDENCE,
        "resamples": resamples,
        "seed": seed,
    }
    for key in keys:
        found = f1_interval(counts[key], resamples=resamples, seed=seed)
        block[key] = list(found) if found is not None else None
    return block


__all__ = [
    "DEFAULT_RESAMPLES",
    "ENTITY_KEYS",
    "RELATION_KEYS",
    "document_counts",
    "f1_interval",
    "intervals",
]
