"""Score a model on the instruction-format dev records written by `build-instructions`.

Why: a multi-task adapter and a BioRED-only adapter must be compared on every task's dev
data, including tasks the component does not run as a pipeline (GAD, ChemProt, PubMedQA
...). The records already hold the exact prompts training used, so scoring them needs no
corpus reader and no document-level decoding.

Each record with ``choices`` (tasks ``re``, ``pair``, ``qa``) is answered by constrained
choice through the backend (``generate(..., choices=...)``) on the prompt training built
from it (`instructions.records.record_example(record).chat_prompt()`). The gold answer is the
record's ``label`` (else its ``output``'s last line). A record trained evidence first
(``answer_format`` names a rationale) is scored on its ``options``, every choice's
rationale, as the component scores such an adapter's pairs.
Records without choices (``ner``) are counted as skipped.

Metrics per corpus (`metrics.py`, the same functions the Doc scorers use):

* ``re`` / ``pair``: ``<task>_p/_r/_f`` micro over positive labels ("None" excluded) and
  ``<task>_per_type``. For ``re`` the items are the dev records, i.e. candidate pairs
  with SAMPLED negatives: comparable between models on the same file, but not BioRED's
  document-level score (use `evaluate` for that).
* ``qa``: ``qa_acc`` and ``qa_macro_f``.

A prompt longer than the backend's `max_prompt_tokens` is not run; it counts as
unanswered (a false negative, or a wrong QA answer) and in ``too_long``.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..annotations.labels import NEGATIVE_RELATION_LABELS
from ..instructions.records import record_example
from ..models.backend import ChatPrompt, Generation
from ..tasks import qa
from ..tasks import relation as re_task
from ..tasks.answers import parse_choice
from ..util.formatting import percent
from ..util.jsonl import iter_json_objects
from .metrics import choice_scores, positive_label_scores

QA_TASK = qa.TASK_NAME


class InstructionDataError(ValueError):
    """A record cannot be evaluated (the message names file, line and field)."""


@dataclass(frozen=True)
class EvalRecord:
    """One scorable record: where it came from, its prompt, choices and gold answer."""

    line: int
    id: str
    task: str
    corpus: str
    prompt: ChatPrompt
    choices: tuple[str, ...]
    label: str
    # the answers decoding scores when training taught more than the label (each
    # choice's rationale, the record's ``options``); None: the choices themselves
    options: tuple[str, ...] | None = None


def read_eval_records(path: Path) -> tuple[list[EvalRecord], Counter]:
    """The records of `path` that have choices, and the count of the others per task."""
    if not path.is_file():
        raise InstructionDataError(f"instruction file {str(path)!r} does not exist")
    records: list[EvalRecord] = []
    skipped: Counter = Counter()
    for lineno, raw in iter_json_objects(path, InstructionDataError):
        where = f"{path}:{lineno}"
        task = raw.get("task")
        if not isinstance(task, str) or not task:
            raise InstructionDataError(f"{where}: field 'task' is missing or not a string")
        if raw.get("choices") is None:
            skipped[task] += 1
            continue
        records.append(_eval_record(raw, where, lineno, task))
    return records, skipped


def _eval_record(raw: dict[str, Any], where: str, lineno: int, task: str) -> EvalRecord:
    for key in ("instruction", "input"):
        if not isinstance(raw.get(key), str):
            raise InstructionDataError(f"{where}: field {key!r} is missing or not a string")
    choices = raw["choices"]
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, str) and c for c in choices)
    ):
        raise InstructionDataError(f"{where}: field 'choices' must be a non-empty list of strings")
    label = raw.get("label")
    if label is None and isinstance(raw.get("output"), str):
        label = parse_choice(raw["output"], choices)
    if label not in choices:
        raise InstructionDataError(
            f"{where}: field 'label' ({raw.get('label')!r}, or the answer in 'output') "
            f"is not one of the choices {choices}"
        )
    corpus = raw.get("corpus")
    return EvalRecord(
        line=lineno,
        id=str(raw.get("id", f"line{lineno}")),
        task=task,
        corpus=corpus if isinstance(corpus, str) and corpus else "unknown",
        prompt=record_example(raw).chat_prompt(),
        choices=tuple(choices),
        label=label,
        options=_decode_options(raw, where, choices),
    )


def _decode_options(raw: dict[str, Any], where: str, choices: list[str]) -> tuple[str, ...] | None:
    """The record's ``options`` (one answer per choice, in order, each naming it: a
    rationale), None when it has none; an answer format without them is an error."""
    options = raw.get("options")
    if options is None:
        if raw.get("answer_format") is not None:
            raise InstructionDataError(
                f"{where}: field 'options' is missing: the record's answer format "
                f"{raw['answer_format']!r} is scored on each choice's full answer "
                "(rebuild the set with build-instructions)"
            )
        return None
    if (
        not isinstance(options, list)
        or len(options) != len(choices)
        or not all(isinstance(o, str) for o in options)
        or [parse_choice(o, choices) for o in options] != choices
    ):
        raise InstructionDataError(
            f"{where}: field 'options' must list one answer per choice, in the order of "
            f"'choices', each naming its choice on its last line"
        )
    return tuple(options)


def limit_per_group(records: Sequence[EvalRecord], limit: int) -> list[EvalRecord]:
    """The first `limit` records (file order) of each corpus and task (0 = all)."""
    if not limit:
        return list(records)
    seen: Counter = Counter()
    kept = []
    for rec in records:
        if seen[(rec.corpus, rec.task)] < limit:
            seen[(rec.corpus, rec.task)] += 1
            kept.append(rec)
    return kept


def decide(
    record: EvalRecord, generation: Generation, none_threshold: float | None = None
) -> tuple[str | None, float]:
    """The predicted choice and its probability. For relation records with
    `none_threshold`, the component's rule: related when P(None) < threshold, then
    the most probable positive label (else the argmax choice)."""
    answer = parse_choice(generation.text, record.choices)
    probability = min(1.0, max(0.0, math.exp(generation.logprob)))
    if record.task == QA_TASK:
        return answer, probability
    probabilities = getattr(generation, "probabilities", None)
    return re_task.decide(answer, probability, probabilities, none_threshold)


def _prompt_tokens(backend: Any, prompt: ChatPrompt) -> int:
    counter = getattr(backend, "count_prompt_tokens", None)
    return counter(prompt) if counter is not None else backend.count_tokens(prompt.user)


def predict(
    records: Sequence[EvalRecord],
    backend: Any,
    *,
    batch_size: int = 8,
    none_threshold: float | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """One prediction dict per record: id, corpus, task, label, prediction (None when
    unanswered), probability, too_long."""
    from tqdm import tqdm

    fits = [_prompt_tokens(backend, r.prompt) <= backend.max_prompt_tokens for r in records]
    out: list[dict[str, Any]] = [
        {
            "id": r.id,
            "corpus": r.corpus,
            "task": r.task,
            "label": r.label,
            "prediction": None,
            "probability": None,
            "too_long": not ok,
        }
        for r, ok in zip(records, fits, strict=True)
    ]
    todo = [i for i, ok in enumerate(fits) if ok]
    # several backend batches per call: the backend shares prompt prefixes within a call
    chunk = max(1, batch_size) * 4
    disable = None if progress is None else not progress
    with tqdm(
        total=len(records), desc="evaluate", unit="rec", file=sys.stderr, disable=disable
    ) as bar:
        bar.update(len(records) - len(todo))
        for start in range(0, len(todo), chunk):
            batch = todo[start : start + chunk]
            options = [records[i].options or records[i].choices for i in batch]
            generations = backend.generate(
                [records[i].prompt for i in batch],
                max_new_tokens=max(len(c) for opts in options for c in opts) + 4,
                choices=options,
            )
            for i, generation in zip(batch, generations, strict=True):
                if records[i].options is not None and getattr(generation, "distribution", None):
                    generation = replace(
                        generation,
                        distribution=re_task.distribution_by_label(
                            generation.distribution, records[i].choices
                        ),
                    )
                answer, probability = decide(records[i], generation, none_threshold)
                out[i]["prediction"] = answer
                out[i]["probability"] = round(probability, 6)
            bar.update(len(batch))
    return out


def group_key(corpus: str, task: str, tasks_of_corpus: set[str]) -> str:
    """The corpus name, or ``corpus/task`` when the corpus has several scored tasks."""
    return corpus if len(tasks_of_corpus) == 1 else f"{corpus}/{task}"


def score_predictions(predictions: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Metrics per corpus (see the module docstring) from `predict`'s output."""
    tasks: dict[str, set[str]] = defaultdict(set)
    for p in predictions:
        tasks[p["corpus"]].add(p["task"])
    groups: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
    for i, p in enumerate(predictions):
        groups[group_key(p["corpus"], p["task"], tasks[p["corpus"]])].append((i, p))
    out: dict[str, dict[str, Any]] = {}
    for key, items in sorted(groups.items()):
        task = items[0][1]["task"]
        metrics: dict[str, Any] = {
            "corpus": items[0][1]["corpus"],
            "task": task,
            "records": len(items),
            "answered": sum(p["prediction"] is not None for _, p in items),
            "too_long": sum(p["too_long"] for _, p in items),
            "gold_positive": sum(p["label"] not in NEGATIVE_RELATION_LABELS for _, p in items),
        }
        if task == QA_TASK:
            del metrics["gold_positive"]
            metrics.update(
                choice_scores([(p["label"], p["prediction"]) for _, p in items], QA_TASK)
            )
        else:
            metrics.update(
                positive_label_scores(
                    [(i, p["label"]) for i, p in items],
                    [(i, p["prediction"]) for i, p in items if p["prediction"] is not None],
                    prefix=task,
                )
            )
        out[key] = metrics
    return out


def evaluate_instructions(
    path: Path,
    backend: Any,
    *,
    limit_per_corpus: int = 0,
    batch_size: int = 8,
    none_threshold: float | None = None,
    progress: bool | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read, predict and score `path`: (metrics with "corpora" and "run", predictions)."""
    records, skipped = read_eval_records(path)
    records = limit_per_group(records, limit_per_corpus)
    if not records:
        raise InstructionDataError(
            f"{path}: no record with 'choices' to evaluate (skipped per task: {dict(skipped)})"
        )
    start = time.perf_counter()
    predictions = predict(
        records, backend, batch_size=batch_size, none_threshold=none_threshold, progress=progress
    )
    seconds = time.perf_counter() - start
    metrics = {
        "corpora": score_predictions(predictions),
        "run": {
            "records": len(records),
            "skipped_without_choices": dict(sorted(skipped.items())),
            "seconds": round(seconds, 2),
            "records_per_s": round(len(records) / seconds, 3) if seconds else None,
        },
    }
    return metrics, predictions


def metrics_table(metrics: dict[str, Any]) -> str:
    """A markdown table: one row per corpus, P/R/F1 for relations, accuracy/macro-F1
    for QA."""
    meta = metrics.get("meta", {})
    limit = meta.get("limit_per_corpus")
    lines = [
        f"Model `{meta.get('model')}`, adapter `{meta.get('adapter')}`, data "
        f"`{meta.get('data')}`" + (f" (first {limit} records per corpus)" if limit else "") + ".",
        "",
        "| corpus | task | records | P | R | F1 | accuracy | macro-F1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, m in metrics["corpora"].items():
        task = m["task"]
        if task == QA_TASK:
            cells = ["–", "–", "–", percent(m["qa_acc"]), percent(m["qa_macro_f"])]
        else:
            cells = [*(percent(m[f"{task}_{k}"]) for k in "prf"), "–", "–"]
        lines.append(f"| {key} | {task} | {m['records']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
