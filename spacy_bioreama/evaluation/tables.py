"""Markdown tables of `evaluate` metrics: one run (`metrics_markdown`, written by
`evaluate --markdown`) and several side by side (`compare_markdown`, the `compare`
command). The `score` and `evaluate-instructions` tables are next to their metrics
(`docbins.metrics_table`, `instruction_records.metrics_table`); the results page is
`results.py`. Every cell goes through `util.formatting.percent`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..tasks.names import QA, TASK_RELATIONS
from ..util.formatting import interval, percent
from .results import get_path, interval_path

# (row label, path into an `evaluate` metrics dict) of compare's fixed rows
COMPARE_ROWS = (
    ("NER F1 (strict mentions)", "ents_f"),
    ("RE F1 pair, end to end", "rel_pair_f"),
    ("RE F1 pair + type, end to end", "rel_micro_f"),
    ("RE F1 pair, gold entities", "gold_entities/rel_pair_f"),
    ("RE F1 pair + type, gold entities", "gold_entities/rel_micro_f"),
    ("documents", "meta/documents"),
    ("docs/s (end to end)", "run/docs_per_s"),
)
RE_SETTINGS = (
    ("rel_pair", "pair"),
    ("rel_micro", "pair + type"),
    ("rel_novelty", "pair + type + novelty"),
)


# compare's rows scored end to end on the run's own relations
END_TO_END_RE_PATHS = frozenset({"rel_pair_f", "rel_micro_f"})


def _predicts_relations(metrics: dict[str, Any]) -> bool:
    """Whether the end-to-end run asked for relations: `--tasks entities` predicts none,
    and its zeros would read as a score."""
    return TASK_RELATIONS in metrics.get("meta", {}).get("tasks", [TASK_RELATIONS])


def _prf_row(label: str, scores: dict[str, Any], key: str) -> str:
    cells = " | ".join(percent(scores.get(f"{key}_{m}")) for m in "prf")
    ci = interval((scores.get("intervals") or {}).get(f"{key}_f"), "–")
    return f"| {label} | {cells} | {ci} |"


def metrics_markdown(metrics: dict[str, Any]) -> str:
    """A small markdown table of the headline metrics of an `evaluate` run: NER, then
    RE in each setting, end to end and (when measured) on the gold entities."""
    meta = metrics.get("meta", {})
    rows = [
        f"Model `{meta.get('model')}`, adapter `{meta.get('adapter')}`, "
        f"data `{meta.get('data')}` ({meta.get('documents')} documents).",
        "",
        "| metric | P | R | F1 | F1 95 % CI |",
        "|---|---|---|---|---|",
    ]
    settings = []
    if "ents_f" in metrics:  # not with --no-end-to-end
        rows.append(_prf_row("NER (strict mentions)", metrics, "ents"))
        if _predicts_relations(metrics):
            settings.append(("end to end", metrics))
    if "gold_entities" in metrics:
        settings.append(("gold entities", metrics["gold_entities"]))
    for name, scores in settings:
        for key, label in RE_SETTINGS:
            rows.append(_prf_row(f"RE {label}, {name}", scores, key))
    return "\n".join(rows) + "\n"


def _compare_rows(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, str]]:
    """The fixed rows (unless every run is an `evaluate-instructions` result), then
    per corpus F1 (relations, pairs) or accuracy and macro-F1 (QA)."""
    rows = [] if all("corpora" in metrics for _, metrics in runs) else list(COMPARE_ROWS)
    corpora: dict[str, str] = {}
    for _, metrics in runs:
        for key, m in (metrics.get("corpora") or {}).items():
            corpora.setdefault(key, m.get("task", ""))
    for key, task in corpora.items():
        if task == QA:
            rows += [(f"{key} accuracy", f"corpora/{key}/qa_acc")]
            rows += [(f"{key} macro-F1", f"corpora/{key}/qa_macro_f")]
        else:
            rows.append((f"{key} F1 ({task}, positive labels)", f"corpora/{key}/{task}_f"))
    return rows


def _cell(value: Any, path: str) -> str:
    if isinstance(value, float) and path.endswith(("_f", "_acc")):
        return percent(value)
    return "–" if value is None else str(value)


def _compare_cell(metrics: dict[str, Any], path: str) -> str:
    """One run's figure at `path` with its interval; a dash for the end-to-end relation
    scores of a run that asked for no relations."""
    if path in END_TO_END_RE_PATHS and not _predicts_relations(metrics):
        return "–"
    ci = interval(get_path(metrics, interval_path(path)))
    return _cell(get_path(metrics, path), path) + (f" ({ci})" if ci else "")


def compare_markdown(runs: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Several `evaluate` (or `evaluate-instructions`) results side by side, one column
    per `(name, metrics)` run, each run's command line below the table."""
    lines = ["| metric | " + " | ".join(name for name, _ in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for label, path in _compare_rows(runs):
        cells = [_compare_cell(metrics, path) for _, metrics in runs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for name, metrics in runs:
        lines.append(f"\n`{name}`: {get_path(metrics, 'meta/command')}")
    return "\n".join(lines) + "\n"
