"""The relation calibration an adapter carries: its detection threshold and score scaling.

`python -m spacy_bioreama calibrate` runs the adapter on training documents held back from
its instruction set (``calibration_fraction``), never on dev, and writes
``calibration.json`` into the adapter folder::

    {"none_threshold": 0.62,            # P(None) below it relates the pair
     "score_scaling": {"a": 1.3, "b": -0.4,    # score' = sigmoid(a * logit(s) + b)
                       "input": "type_probability"},     # s = P(label | related)
     "label_bias": {"Positive_Correlation": 0.8, ...},  # typing: argmax log P(label) + bias
     "documents": 36, "f1": 0.31, ...}  # what it was fitted on, for the reader

The component's default ``none_threshold = "auto"`` takes the threshold from there (0.5
for an adapter without one, and for the base model), and rescales `Relation.score` so
that it reads as the chance that the relation is right. The file travels with the adapter
(`to_disk`, `spacy package`), so a saved pipeline decides as the calibrated adapter did.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CALIBRATION_FILE = "calibration.json"
# what a score scaling reads: the relation label's probability P(label) (the raw score,
# which also holds the detection: P(label) = (1 - P(None)) * P(label | related)), or the
# typing alone, P(label | related)
LABEL_PROBABILITY = "label_probability"
TYPE_PROBABILITY = "type_probability"
SCORE_INPUTS = (LABEL_PROBABILITY, TYPE_PROBABILITY)
AUTO = "auto"
# the threshold of an adapter (or base model) that carries no calibration
FALLBACK_NONE_THRESHOLD = 0.5


class CalibrationFileError(ValueError):
    """An adapter's calibration.json cannot be used (the message names the file and field)."""


def scaling_input(score: float, p_none: float | None, score_input: str) -> float:
    """What a score scaling reads of a relation whose label probability is `score`:
    `score` itself, or with ``type_probability`` P(label | related) = score / (1 - P(None))."""
    if score_input == TYPE_PROBABILITY and p_none is not None and p_none < 1.0:
        return score / (1.0 - p_none)
    return score


@dataclass(frozen=True)
class RelationCalibration:
    """A threshold and a logistic scaling of relation scores (identity: a=1, b=0 on the
    label probability)."""

    none_threshold: float = FALLBACK_NONE_THRESHOLD
    a: float = 1.0
    b: float = 0.0
    source: str = "default"
    # (label, bias) added to log P(label) when a related pair is typed: the tuned model's
    # preference between labels, corrected on the held-back documents (empty: none)
    label_bias: tuple[tuple[str, float], ...] = ()
    # what the scaling reads (`SCORE_INPUTS`)
    score_input: str = LABEL_PROBABILITY

    def type_label(self, positives: Mapping[str, float]) -> str:
        """The label of a related pair from its relation labels' probabilities: the most
        probable one after `label_bias` (the plain argmax without a bias)."""
        bias = dict(self.label_bias)
        if not bias:
            return max(positives, key=positives.get)
        return max(positives, key=lambda k: math.log(max(positives[k], 1e-12)) + bias.get(k, 0.0))

    @property
    def is_identity(self) -> bool:
        return self.a == 1.0 and self.b == 0.0 and self.score_input == LABEL_PROBABILITY

    def scale(self, score: float, p_none: float | None = None) -> float:
        """The calibrated confidence of a relation whose label probability is `score`
        (`p_none`: the pair's P(None), which the type probability input divides out)."""
        if self.is_identity:
            return score
        p = min(1.0 - 1e-6, max(1e-6, scaling_input(score, p_none, self.score_input)))
        z = self.a * math.log(p / (1.0 - p)) + self.b
        return 1.0 / (1.0 + math.exp(-z))


def read_calibration(adapter: str | os.PathLike | None) -> RelationCalibration:
    """The calibration saved in `adapter` (a folder), or the fallback when there is none."""
    if adapter is None:
        return RelationCalibration()
    path = Path(adapter) / CALIBRATION_FILE
    if not path.is_file():
        return RelationCalibration()
    try:
        data = json.loads(path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalibrationFileError(f"{path}: not readable JSON ({err})") from None
    if not isinstance(data, Mapping):
        raise CalibrationFileError(f"{path}: must hold a JSON object")
    threshold = _number(data, "none_threshold", path)
    if not 0.0 < threshold <= 1.0:
        raise CalibrationFileError(f"{path}: none_threshold must be in (0, 1], got {threshold}")
    scaling = data.get("score_scaling") or {}
    if not isinstance(scaling, Mapping):
        raise CalibrationFileError(f"{path}: score_scaling must be an object with a and b")
    a = _number(scaling, "a", path, default=1.0, field="score_scaling.a")
    b = _number(scaling, "b", path, default=0.0, field="score_scaling.b")
    score_input = scaling.get("input", LABEL_PROBABILITY)
    if score_input not in SCORE_INPUTS:
        raise CalibrationFileError(
            f"{path}: score_scaling.input must be one of {list(SCORE_INPUTS)}, got {score_input!r}"
        )
    bias = data.get("label_bias") or {}
    if not isinstance(bias, Mapping):
        raise CalibrationFileError(f"{path}: label_bias must be an object of label: number")
    label_bias = tuple(
        (str(k), _number(bias, k, path, field=f"label_bias.{k}")) for k in sorted(bias)
    )
    return RelationCalibration(
        threshold,
        a,
        b,
        source=str(path),
        label_bias=label_bias,
        score_input=score_input,
    )


def _number(
    data: Mapping[str, Any], key: str, path: Path, default: float | None = None, field: str = ""
) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CalibrationFileError(f"{path}: {field or key} must be a finite number, got {value!r}")
    return float(value)


def write_calibration(adapter: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write `record` (with ``none_threshold`` and ``score_scaling``) as the adapter's
    calibration.json, checked by reading it back. Returns the path."""
    path = Path(adapter) / CALIBRATION_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(record), indent=2) + "\n", encoding="utf8")
    tmp.replace(path)
    read_calibration(adapter)
    return path


__all__ = [
    "AUTO",
    "CALIBRATION_FILE",
    "FALLBACK_NONE_THRESHOLD",
    "LABEL_PROBABILITY",
    "SCORE_INPUTS",
    "TYPE_PROBABILITY",
    "CalibrationFileError",
    "RelationCalibration",
    "read_calibration",
    "scaling_input",
    "write_calibration",
]
