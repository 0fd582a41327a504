"""`docs/results.md`: every measured figure side by side, assembled from metrics JSON.

The page is generated, never typed: each number comes from a metrics file written by a
command (`evaluate`, the `baseline-*` commands, `benchmark`), and the page says which
command made it and on how many documents. Rows must share the data file and document
count, so that they are comparable by construction. Figures from the literature are kept
in a separate, clearly marked block: they were not measured here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..util.formatting import percent


@dataclass(frozen=True)
class Row:
    """One row of the results table: which metrics file, and which command makes it."""

    key: str
    label: str
    path: Path
    producer: str


DEFAULT_ROWS = (
    Row(
        "base",
        "(a) untuned base model, zero-shot (`bio_relation_llm`)",
        Path("metrics/base.json"),
        "spacy project run evaluate-base",
    ),
    Row(
        "tuned",
        "(b) LoRA-tuned adapter (`bio_relation_llm`)",
        Path("metrics/tuned.json"),
        "spacy project run evaluate-tuned",
    ),
    Row(
        "spacy_ner",
        "(c) spaCy tok2vec + ner (`spacy train`)",
        Path("metrics/baseline_spacy_ner.json"),
        "spacy project run baseline-spacy-ner",
    ),
    Row(
        "cooccurrence",
        "(d) co-occurrence floor (most frequent label)",
        Path("metrics/baseline_cooccurrence.json"),
        "spacy project run baseline-cooccurrence",
    ),
    Row(
        "spacy_llm",
        "(e) spacy-llm `spacy.NER.v3`, same base model",
        Path("metrics/baseline_spacy_llm.json"),
        "spacy project run baseline-spacy-llm",
    ),
)

# Published figures (BioRED relation extraction F1) quoted by the seed papers (REaMA).
# They are literature values, shown in their own block, never mixed with measurements.
PUBLISHED = (
    ("BioRED relation extraction, previous state of the art (as cited by REaMA)", "65.17"),
    ("BioRED relation extraction, LLaMA-2-70B zero-shot (REaMA)", "12.21"),
)

# (column header, path into the metrics dict)
COLUMNS = (
    ("NER P", "ents_p"),
    ("NER R", "ents_r"),
    ("NER F1", "ents_f"),
    ("RE F1 pair + type, end to end", "rel_micro_f"),
    ("RE F1 pair, gold entities", "gold_entities/rel_pair_f"),
    ("RE F1 pair + type, gold entities", "gold_entities/rel_micro_f"),
)

_STANDARD_META = ("model", "adapter", "data", "documents", "command")


class MetricsFileMissing(FileNotFoundError):
    """A metrics file the results page needs does not exist."""


class MetricsMismatch(ValueError):
    """Rows were measured on different data or document counts."""


def get_path(metrics: dict[str, Any], path: str) -> Any:
    """`metrics["a"]["b"]` for path "a/b"; None where any part is missing."""
    value: Any = metrics
    for part in path.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def load_rows(rows: tuple[Row, ...] = DEFAULT_ROWS) -> list[tuple[Row, dict[str, Any]]]:
    """Read every row's metrics file; all missing files are named in one error, each
    with the command that writes it."""
    missing = [row for row in rows if not row.path.exists()]
    if missing:
        lines = "\n".join(f"  {row.path}  (make it with: {row.producer})" for row in missing)
        raise MetricsFileMissing(f"metrics file(s) missing:\n{lines}")
    loaded = []
    for row in rows:
        try:
            loaded.append((row, json.loads(row.path.read_text(encoding="utf8"))))
        except json.JSONDecodeError as err:
            raise ValueError(f"{row.path} is not valid JSON: {err}") from err
    return loaded


def check_same_split(loaded: list[tuple[Row, dict[str, Any]]]) -> None:
    """Refuse to put side by side rows measured on different data or document counts."""
    seen = {
        (Path(str(get_path(m, "meta/data"))).name, get_path(m, "meta/documents")) for _, m in loaded
    }
    if len(seen) > 1:
        detail = "\n".join(
            f"  {row.path}: data {get_path(m, 'meta/data')}, "
            f"{get_path(m, 'meta/documents')} documents"
            for row, m in loaded
        )
        raise MetricsMismatch(
            "rows were measured on different data or document counts; re-run them with the "
            f"same --limit (project var eval_docs):\n{detail}"
        )


def read_benchmark(path: Path) -> dict[str, Any] | None:
    """The benchmark record (one JSON line, the last non-empty line wins), or None when
    the file does not exist."""
    if not path.exists():
        return None
    lines = [line for line in path.read_text(encoding="utf8").splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"{path} is empty")
    record = json.loads(lines[-1])
    if not isinstance(record, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(record).__name__}")
    return record


def _code(value: Any) -> str:
    return f"`{value}`"


def render_results(
    loaded: list[tuple[Row, dict[str, Any]]],
    command: str,
    benchmark: dict[str, Any] | None = None,
    benchmark_path: Path | None = None,
) -> str:
    """The markdown page: table, how each row was made, throughput, published figures."""
    first_meta = loaded[0][1].get("meta", {}) if loaded else {}
    out = [
        "# Results: baselines side by side",
        "",
        "Generated by the command below (`spacy project run results`); do not edit by hand:",
        'every figure is read from the metrics files listed under "How each row was made".',
        "",
        "```bash",
        command,
        "```",
        "",
        f"Data: `{first_meta.get('data')}`, first {first_meta.get('documents')} documents; "
        "all rows scored with `spacy_bioreama.evaluation.scorers.score_bio`: NER is strict "
        "mention level (exact character span and type, all mentions incl. overlapping ones); "
        "RE is document level on unordered concept pairs. Scores in %. A blank cell: the "
        "row does not do that task.",
        "",
        "| system | " + " | ".join(header for header, _ in COLUMNS) + " | documents |",
        "|---|" + "---:|" * (len(COLUMNS) + 1),
    ]
    for row, metrics in loaded:
        # blank where the row does not do that task
        cells = [percent(get_path(metrics, path), missing="") for _, path in COLUMNS]
        docs = get_path(metrics, "meta/documents")
        out.append(f"| {row.label} | " + " | ".join(cells) + f" | {docs} |")
    out += ["", "## How each row was made", ""]
    for row, metrics in loaded:
        meta = metrics.get("meta", {})
        out.append(f"- **{row.label}** — `{meta.get('command')}`")
        details = [
            f"model {_code(meta.get('model'))}",
            f"adapter {_code(meta.get('adapter'))}",
            f"data {_code(meta.get('data'))}",
            f"{meta.get('documents')} documents",
            f"metrics file `{row.path}`",
        ]
        out.append("  " + ", ".join(details) + ".")
        extra = {k: v for k, v in meta.items() if k not in _STANDARD_META}
        if extra:
            out.append("  " + "; ".join(f"{k}: {_code(v)}" for k, v in sorted(extra.items())) + ".")
    out += ["", "## Throughput", ""]
    if benchmark is None:
        out.append(
            f"No benchmark record (`{benchmark_path}`) was found; run the `benchmark` command "
            "to add one."
        )
    else:
        out.append(f"From `{benchmark_path}`:")
        out += ["", "| measure | value |", "|---|---:|"]
        first = ("docs_per_s", "naive_docs_per_s", "speedup")
        keys = [k for k in first if k in benchmark]
        keys += [k for k in benchmark if k not in first and not isinstance(benchmark[k], dict)]
        for key in keys:
            value = benchmark[key]
            shown = f"`{value}`" if isinstance(value, str) else str(value)
            out.append(f"| {key} | {shown} |")
    out += [
        "",
        "## Published figures (not measured here)",
        "",
        "Quoted from the seed papers (REaMA) for orientation only. They are NOT measurements",
        "of this project: they come from the papers' own setups (splits, protocols, entity",
        "settings, models), so they cannot be compared cell by cell with the table above.",
        "",
        "| published figure | F1 |",
        "|---|---:|",
        *(f"| {name} | {value} |" for name, value in PUBLISHED),
        "",
    ]
    return "\n".join(out)


def build_results(
    rows: tuple[Row, ...],
    output: Path,
    command: str,
    benchmark_path: Path,
) -> str:
    """Load, check and render the page, then write it to `output`."""
    loaded = load_rows(rows)
    check_same_split(loaded)
    page = render_results(loaded, command, read_benchmark(benchmark_path), benchmark_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf8")
    return page
