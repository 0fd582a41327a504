"""Score a system's predicted DocBin against a gold DocBin, without running a model.

Any system can be compared with the same scorers as `evaluate`: write its predictions as
a DocBin (``doc.ents`` + overflow spans, ``doc._.relations``, ``doc.cats`` for QA) and
run ``python -m spacy_bioreama score GOLD.spacy PRED.spacy``.

Alignment: by ``doc.user_data["doc_id"]`` when every gold and predicted document has a
unique one (predictions may come in any order; extra predictions are ignored and
counted), else by position, which needs the same number of documents. A gold document
without a prediction, or whose prediction has another text, is an error naming the file
and the document.

Which scorer applies is decided from the gold data (`detect_task`), or forced:

* ``bio`` (BioRED, BC5CDR, NCBI-disease ...): ``ents_*`` and ``rel_*``;
* ``pair`` (GAD, EU-ADR, ChemProt, DDI): ``pair_*``;
* ``qa`` (PubMedQA): ``qa_*`` (all three in `scorers.py`).

`load_gold` is the one reader of "the first N documents of a DocBin, or a clear error"
for every command that scores or annotates a corpus.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from spacy.tokens import Doc
from spacy.training import Example
from spacy.vocab import Vocab

from ..annotations import relations as _relations  # noqa: F401  (registers doc._.relations)
from ..annotations.doc_ids import DOC_ID_KEY, doc_id
from ..annotations.labels import NEGATIVE_RELATION_LABELS
from ..corpora.base import CorpusFormatError, read_docbin
from ..corpora.pair_tsv import PAIR_SCHEMES
from ..tasks import qa
from ..tasks.names import PAIR, QA
from ..util.formatting import percent
from .scorers import QA_ANSWERS, score_bio, score_pairs, score_qa

TASKS = ("auto", "bio", PAIR, QA)
SCORERS: dict[str, Callable[..., dict[str, Any]]] = {
    "bio": score_bio,
    PAIR: score_pairs,
    QA: score_qa,
}
# doc id prefixes written by the pair readers (pair_tsv.py: "<scheme>:...", ddi.py: "DDI-...")
_PAIR_ID_PREFIXES = tuple(f"{name}:" for name in PAIR_SCHEMES) + ("DDI-",)


class ScoringInputError(ValueError):
    """The gold or predicted documents cannot be read or scored together (the message
    names the file)."""


def load_docbin(path: Path | str, vocab: Vocab, what: str = "gold", limit: int = 0) -> list[Doc]:
    """The documents of a DocBin (the first `limit`, 0 = all), with an error naming the
    file when it is missing or not a DocBin."""
    path = Path(path)
    if not path.is_file():
        raise ScoringInputError(f"{what} file {path} not found")
    try:
        return read_docbin(path, vocab, limit)
    except CorpusFormatError as err:
        raise ScoringInputError(str(err)) from err


def load_gold(path: Path | str, vocab: Vocab, limit: int = 0, what: str = "gold") -> list[Doc]:
    """The first `limit` documents (0 = all) of the DocBin a command reads; a missing
    file, a file that is not a DocBin or one that holds no documents is a
    `ScoringInputError` naming the file."""
    docs = load_docbin(path, vocab, what, limit)
    if not docs:
        raise ScoringInputError(f"{path} holds no documents")
    return docs


def _first_difference(a: str, b: str) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def align(
    gold: Sequence[Doc], pred: Sequence[Doc], gold_path: Path, pred_path: Path
) -> tuple[list[Example], dict[str, Any]]:
    """`Example(pred, gold)` per gold document, and how they were aligned."""
    gold_ids, pred_ids = [doc_id(d) for d in gold], [doc_id(d) for d in pred]
    by_id = (
        None not in gold_ids
        and None not in pred_ids
        and len(set(gold_ids)) == len(gold_ids)
        and len(set(pred_ids)) == len(pred_ids)
    )
    if by_id:
        pred_by_id = dict(zip(pred_ids, pred, strict=True))
        pairs = []
        for i, (key, gold_doc) in enumerate(zip(gold_ids, gold, strict=True)):
            if key not in pred_by_id:
                raise ScoringInputError(
                    f"{pred_path}: no prediction for document {key!r} "
                    f"(document {i + 1} of {gold_path})"
                )
            pairs.append((key, gold_doc, pred_by_id[key]))
        unmatched = len(set(pred_ids) - set(gold_ids))
    else:
        if len(gold) != len(pred):
            raise ScoringInputError(
                f"{gold_path} has {len(gold)} documents and {pred_path} has {len(pred)}; "
                f"without a unique user_data['{DOC_ID_KEY}'] on every document they are "
                "aligned by position, which needs the same number"
            )
        pairs = [
            (gold_ids[i] or f"#{i + 1}", g, p)
            for i, (g, p) in enumerate(zip(gold, pred, strict=True))
        ]
        unmatched = 0
    examples = []
    for key, gold_doc, pred_doc in pairs:
        if gold_doc.text != pred_doc.text:
            at = _first_difference(gold_doc.text, pred_doc.text)
            raise ScoringInputError(
                f"{pred_path}: the text of document {key!r} differs from {gold_path}'s "
                f"(first difference at character {at}: gold {gold_doc.text[at : at + 20]!r}, "
                f"predicted {pred_doc.text[at : at + 20]!r})"
            )
        examples.append(Example(pred_doc, gold_doc))
    info = {
        "aligned_by": DOC_ID_KEY if by_id else "position",
        "unmatched_predictions": unmatched,
    }
    return examples, info


def detect_task(gold: Sequence[Doc]) -> str:
    """ "qa" when documents carry a question or yes/no/maybe cats; "pair" when relations
    carry a corpus negative label or doc ids come from a pair reader; else "bio"."""
    if any(d.user_data.get(qa.QUESTION_KEY) or set(d.cats) & set(QA_ANSWERS) for d in gold):
        return QA
    if any(r.label in NEGATIVE_RELATION_LABELS for d in gold for r in d._.relations) or any(
        (doc_id(d) or "").startswith(_PAIR_ID_PREFIXES) for d in gold
    ):
        return PAIR
    return "bio"


def score_docbins(gold_path: Path, pred_path: Path, task: str = "auto") -> dict[str, Any]:
    """Metrics (keys of the applicable scorer at the top level) plus a "meta" block."""
    if task not in TASKS:
        raise ScoringInputError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    vocab = Vocab()
    gold = load_gold(gold_path, vocab)
    pred = load_docbin(pred_path, vocab, "prediction")
    examples, info = align(gold, pred, gold_path, pred_path)
    if info["unmatched_predictions"]:
        print(
            f"warning: {info['unmatched_predictions']} documents of {pred_path} are not in "
            f"{gold_path} and are not scored",
            file=sys.stderr,
        )
    resolved = detect_task(gold) if task == "auto" else task
    metrics = SCORERS[resolved](examples)
    metrics["meta"] = {
        "gold": str(gold_path),
        "pred": str(pred_path),
        "task": resolved,
        "documents": len(examples),
        **info,
    }
    return metrics


def metrics_table(metrics: dict[str, Any]) -> str:
    """A markdown table of the headline metrics of `score_docbins`."""
    meta = metrics.get("meta", {})
    lines = [
        f"Predictions `{meta.get('pred')}` against `{meta.get('gold')}` "
        f"({meta.get('documents')} documents, task `{meta.get('task')}`).",
        "",
    ]
    if meta.get("task") == QA:
        lines += ["| metric | value |", "|---|---|"]
        lines.append(f"| accuracy | {percent(metrics['qa_acc'])} |")
        lines.append(f"| macro-F1 | {percent(metrics['qa_macro_f'])} |")
        return "\n".join(lines) + "\n"
    lines += ["| metric | P | R | F1 |", "|---|---|---|---|"]
    if meta.get("task") == PAIR:
        rows = [("pair, micro over positive labels", "pair")]
        per_type = metrics.get("pair_per_type", {})
    else:
        rows = [
            ("NER (strict mentions)", "ents"),
            ("RE pair", "rel_pair"),
            ("RE pair + type", "rel_micro"),
            ("RE pair + type + novelty", "rel_novelty"),
        ]
        per_type = {}
    for label, key in rows:
        lines.append(
            f"| {label} | {percent(metrics[key + '_p'])} | {percent(metrics[key + '_r'])} | "
            f"{percent(metrics[key + '_f'])} |"
        )
    for label, score in per_type.items():
        lines.append(
            f"| {label} | {percent(score['p'])} | {percent(score['r'])} | {percent(score['f'])} |"
        )
    return "\n".join(lines) + "\n"
