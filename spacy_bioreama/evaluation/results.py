"""`docs/results.md`: every measured figure side by side, assembled from metrics JSON.

The page is generated, never typed: each number comes from a metrics file written by a
command (`evaluate`, the `baseline-*` commands, `benchmark`), and the page says which
command made it and on how many documents. Rows must share the data file and document
count, so that they are comparable by construction. Figures from the literature are kept
in a separate, clearly marked block: they were not measured here.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks.relation import NO_RELATION
from ..util.formatting import percent
from .scorers import SCORER_CHANGES, SCORER_VERSION


@dataclass(frozen=True)
class Row:
    """One row of the results table: which metrics file, and which command makes it."""

    key: str
    label: str
    path: Path
    producer: str
    # left out of the page (not an error) when its metrics file does not exist
    optional: bool = False


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
        "best",
        "(b+) best CPU adapter (`bio_relation_llm`, `spacy project run best`)",
        Path("metrics/best.json"),
        "spacy project run evaluate-best",
        optional=True,
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
    Row(
        "hybrid",
        "(f) hybrid: spaCy ner (c) + `bio_relation_llm` relations (`configs/pipeline_hybrid.cfg`)",
        Path("metrics/hybrid.json"),
        "spacy project run evaluate-hybrid",
        optional=True,
    ),
)
# `evaluate --name NAME` files of the relation and NER ablations (see docs/results.md)
ABLATIONS_DIR = Path("metrics/ablations")
# rows whose adapters are recipes too: the relation ablation table lists them as well,
# so that each ablation reads against the quick and the best recipe on the same documents
ABLATION_REFERENCE_ROWS = ("tuned", "best")

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
    ("relation ECE, gold entities", "gold_entities/calibration/ece"),
)

_STANDARD_META = ("model", "adapter", "data", "documents", "command", "scorer_version")
OLDER_SCORER_MARK = "†"

# The PNGs `results` writes into the plots folder, PLOTS_DIR next to the page.
PLOTS_DIR = "plots"
PLOT_FILES = {
    "per_type": "per_type_f1.png",
    "reliability": "reliability.png",
    "sweep": "threshold_sweep.png",
}
CALIBRATION_PATH = "gold_entities/calibration"
# the rows whose calibration block is plotted: the first that has one
CALIBRATION_ROWS = ("best", "tuned")


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


def _figure_keys(metrics: dict[str, Any]) -> list[str]:
    """The metric keys a file holds, top level and with gold entities."""
    gold = metrics.get("gold_entities") or {}
    return [k for k, v in metrics.items() if v is not None] + [
        k for k, v in gold.items() if v is not None
    ]


def older_scorer_changes(metrics: dict[str, Any]) -> list[str]:
    """What the scorer versions after the one that scored `metrics` changed among the
    figures it holds (empty: scored by the current scorer, or no figure it moved)."""
    version = get_path(metrics, "meta/scorer_version")
    version = version if isinstance(version, int) else 1  # files from before the record
    keys = _figure_keys(metrics)
    return [
        what
        for v, (what, prefixes) in sorted(SCORER_CHANGES.items())
        if version < v <= SCORER_VERSION and any(k.startswith(prefixes) for k in keys)
    ]


def _marked(label: str, metrics: dict[str, Any]) -> str:
    return f"{label} {OLDER_SCORER_MARK}" if older_scorer_changes(metrics) else label


def older_scorer_note(files: list[dict[str, Any]]) -> list[str]:
    """The note under a table with rows an older scorer scored (none: no lines)."""
    changes = sorted({what for m in files for what in older_scorer_changes(m)})
    if not changes:
        return []
    return [
        "",
        f"{OLDER_SCORER_MARK} scored by an earlier version of `score_bio` (its metrics file "
        f"records no `scorer_version`, or one below {SCORER_VERSION}); its figures may "
        f"differ under the current one, which changed: " + "; ".join(changes) + ". "
        "Re-running the row's command (listed with it below) scores it anew.",
    ]


def interval_path(path: str) -> str:
    """Where the 95 % interval of the F1 at `path` is kept: ``a/rel_micro_f`` →
    ``a/intervals/rel_micro_f``."""
    head, _, key = path.rpartition("/")
    return f"{head}/intervals/{key}" if head else f"intervals/{key}"


def load_rows(rows: tuple[Row, ...] = DEFAULT_ROWS) -> list[tuple[Row, dict[str, Any]]]:
    """Read every row's metrics file; all missing files are named in one error, each
    with the command that writes it."""
    rows = tuple(row for row in rows if row.path.exists() or not row.optional)
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


def figure(metrics: dict[str, Any], path: str, missing: str = "") -> str:
    """One cell: an F1 in % with its bootstrap interval where the file has one
    (``46.7 [41.2–52.0]``), an ECE as a fraction, `missing` where there is no value."""
    from ..util.formatting import interval

    value = get_path(metrics, path)
    if value is None:
        return missing
    if path.endswith("/ece"):
        return f"{float(value):.3f}"
    ci = interval(get_path(metrics, interval_path(path)))
    return f"{percent(value)} [{ci}]" if ci else percent(value)


# (column header, how to read it from an ablation's metrics file)
ABLATION_COLUMNS = (
    "setting",
    "RE F1 pair + type, gold entities",
    "RE F1 pair, gold entities",
    "none_threshold",
    "related / candidate pairs",
    "ECE",
    "RE prompts",
    "RE prompt tokens",
    "s/doc (RE, gold entities)",
    "NER F1",
)


def load_ablations(folder: Path = ABLATIONS_DIR) -> list[tuple[str, dict[str, Any]]]:
    """The ablation metrics files (``evaluate --name``) in `folder`, by name."""
    if not folder.is_dir():
        return []
    loaded = []
    for path in sorted(folder.glob("*.json")):
        try:
            metrics = json.loads(path.read_text(encoding="utf8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from err
        if not isinstance(metrics, dict) or not isinstance(metrics.get("meta"), dict):
            raise ValueError(
                f"{path} is not an `evaluate` metrics file (it has no meta block); the "
                f"ablations folder {folder} must hold only `evaluate --name` outputs"
            )
        loaded.append((str(get_path(metrics, "meta/name") or path.stem), metrics))
    return loaded


# (column header) of the NER ablations: the files without a gold-entity relation run
NER_ABLATION_COLUMNS = (
    "setting",
    "NER P",
    "NER R",
    "NER F1",
    "weakest type (F1)",
    "NER windows",
    "copy-redirected steps",
    "generated tokens",
    "s/doc",
)


def reference_ablations(
    loaded: list[tuple[Row, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    """The `ABLATION_REFERENCE_ROWS` that scored relations on the gold entities, named
    by their row and relation prompt, for the relation ablation table."""
    named = []
    for row, m in loaded:
        if row.key in ABLATION_REFERENCE_ROWS and m.get("gold_entities"):
            prompt = get_path(m, "meta/relation_prompt")
            named.append((f"{row.label}: `{prompt}` prompt" if prompt else row.label, m))
    return named


def render_ablations(loaded: list[tuple[str, dict[str, Any]]], folder: Path) -> list[str]:
    """The Ablations section: a relation table (files with the gold-entity run) and a
    NER table (files with end-to-end entity scores: `evaluate --tasks entities` and the
    reference rows), each row with its command."""
    if not loaded:
        return []
    relations = [(n, m) for n, m in loaded if m.get("gold_entities")]
    entities = [(n, m) for n, m in loaded if "ents_f" in m]
    out = [
        "## Ablations",
        "",
        f"From the `evaluate --name` files in `{folder}` and the adapter rows above, each "
        "on the documents its row says.",
    ]
    if relations:
        out += [
            "",
            "### Relations (gold entities)",
            "",
            "Candidate pairs: every allowed concept pair of the gold entities; the `sentence` "
            "prompt asks only those a sentence co-mentions, the rest count as unrelated.",
            "",
            *_table_head(ABLATION_COLUMNS),
        ]
        out += [_relation_ablation_row(name, m) for name, m in relations]
        out += older_scorer_note([m for _, m in relations])
        for name, m in relations:
            confusion = get_path(m, "gold_entities/rel_confusion")
            if confusion:
                out += ["", f"Label confusion of `{name}`:", "", *_confusion_table(confusion)]
    if entities:
        out += [
            "",
            "### Entities (end to end)",
            "",
            *_table_head(NER_ABLATION_COLUMNS),
        ]
        out += [_entity_ablation_row(name, m) for name, m in entities]
    out.append("")
    listed = relations + [(n, m) for n, m in entities if not m.get("gold_entities")]
    for name, m in listed:
        out.append(
            f"- `{name}` ({get_path(m, 'meta/documents')} documents): "
            f"`{get_path(m, 'meta/command')}`"
        )
    return out


def _confusion_table(confusion: dict[str, dict[str, int]]) -> list[str]:
    """Gold label (rows) against predicted label (columns), in concept pairs with the gold
    entities given; `None` (no relation on that side) comes last in both."""

    def ordered(labels: set[str]) -> list[str]:
        return sorted(labels - {NO_RELATION}) + [NO_RELATION] * (NO_RELATION in labels)

    predicted = ordered({p for row in confusion.values() for p in row})
    lines = _table_head(("gold ↓ / predicted →", *predicted))
    for g in ordered(set(confusion)):
        cells = ["–" if g == p == NO_RELATION else str(confusion[g].get(p, 0)) for p in predicted]
        lines.append("| " + " | ".join([g, *cells]) + " |")
    return lines


def _table_head(columns: tuple[str, ...]) -> list[str]:
    """Header and alignment lines: the first column left, the figures right."""
    return ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]


def _seconds_per_doc(run: dict[str, Any]) -> str:
    seconds, docs = run.get("seconds"), run.get("docs")
    return f"{seconds / docs:.2f}" if seconds and docs else "–"


def _relation_ablation_row(name: str, m: dict[str, Any]) -> str:
    gold = m["gold_entities"]
    stats = get_path(gold, "run/stats") or {}
    asked = stats.get("re_pairs", 0)
    candidates = asked + sum(
        stats.get(k, 0)
        for k in ("re_pairs_not_co_mentioned", "re_pairs_skipped", "re_pairs_skipped_doc_cap")
    )
    cells = [
        _marked(name, m),
        figure(m, "gold_entities/rel_micro_f", "–"),
        figure(m, "gold_entities/rel_pair_f", "–"),
        str(get_path(m, "meta/none_threshold")),
        f"{stats.get('relations', 0)} / {candidates}",
        figure(m, "gold_entities/calibration/ece", "–"),
        str(asked),
        str(stats.get("re_prompt_tokens", "–")),
        _seconds_per_doc(gold.get("run") or {}),
        figure(m, "ents_f", "–"),
    ]
    return "| " + " | ".join(cells) + " |"


def _entity_ablation_row(name: str, m: dict[str, Any]) -> str:
    run = m.get("run") or {}
    stats = run.get("stats") or {}
    per_type = m.get("ents_per_type") or {}
    weakest = min(per_type.items(), key=lambda kv: kv[1].get("f", 0.0), default=None)
    cells = [
        name,
        figure(m, "ents_p", "–"),
        figure(m, "ents_r", "–"),
        figure(m, "ents_f", "–"),
        f"{weakest[0]} ({percent(weakest[1].get('f', 0.0))})" if weakest else "–",
        # files from before ner_window_tokens: the entity windows were the windows
        str(stats.get("ner_windows", stats.get("windows", "–"))),
        str(stats.get("ner_copy_redirected_steps", "–")),
        str(stats.get("generated_tokens", "–")),
        _seconds_per_doc(run),
    ]
    return "| " + " | ".join(cells) + " |"


def render_results(
    loaded: list[tuple[Row, dict[str, Any]]],
    command: str,
    benchmark: dict[str, Any] | None = None,
    benchmark_path: Path | None = None,
    plots: list[str] | None = None,
    ablations: list[str] | None = None,
) -> str:
    """The markdown page: table, plots (`plots`: the section's lines, None for no
    section), how each row was made, throughput, published figures."""
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
        "RE is document level on unordered concept pairs. Scores in %, with the 95 % "
        "bootstrap interval over documents in brackets (`evaluation/bootstrap.py`; "
        "1000 resamples). ECE: expected calibration error of the relation scores (10 bins). "
        "A blank cell: the row does not do that task.",
        "",
        "| system | " + " | ".join(header for header, _ in COLUMNS) + " | documents |",
        "|---|" + "---:|" * (len(COLUMNS) + 1),
    ]
    for row, metrics in loaded:
        # blank where the row does not do that task
        cells = [figure(metrics, path) for _, path in COLUMNS]
        docs = get_path(metrics, "meta/documents")
        out.append(f"| {_marked(row.label, metrics)} | " + " | ".join(cells) + f" | {docs} |")
    out += older_scorer_note([metrics for _, metrics in loaded])
    if ablations:
        out += ["", *ablations]
    if plots is not None:
        out += ["", "## Plots", "", *plots]
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
        from .benchmark import engine_rows, llama_cpp_summary

        out.append(f"From `{benchmark_path}`, made by `{benchmark.get('command')}`:")
        out.append("")
        # A record from an older benchmark (or a hand-written one) may lack the per-run
        # figures: then only the measures below are shown.
        if {"runs", "naive_seconds", "peak_rss_bytes"} <= benchmark.keys():
            out += [
                "| engine | docs/s | prompt tok/s | generated tok/s | prompts | seconds "
                "| RSS MiB |",
                "|---|---:|---:|---:|---:|---:|---:|",
            ]
            out += [
                f"| {r.engine} | {r.docs_per_s:.3f} | {r.prompt_tokens_per_s:.1f} | "
                f"{r.generated_tokens_per_s:.1f} | {r.prompts} | {r.seconds:.2f} | {r.rss} |"
                for r in engine_rows(benchmark)
            ]
            out += ["", llama_cpp_summary(benchmark) + ".", ""]
        out += ["| measure | value |", "|---|---:|"]
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


@dataclass
class BuiltResults:
    """What `build_results` wrote: the page, the PNGs, and warnings for the console."""

    page: str
    plots: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _image(title: str, path: Path, page_dir: Path, caption: str) -> list[str]:
    """A markdown image linked relative to the page, with its one-line caption."""
    link = Path(os.path.relpath(path, page_dir)).as_posix()
    return [f"![{title}]({link})", "", f"*{caption}*", ""]


def write_plots(
    loaded: list[tuple[Row, dict[str, Any]]], plots_dir: Path, page_dir: Path
) -> tuple[list[str], list[Path], list[str]]:
    """Write the PNGs into `plots_dir`; return the lines of the page's Plots section,
    the files written and the warnings (links relative to `page_dir`). Plots that cannot be
    drawn (no matplotlib, no per-type scores, no calibration block) are left out, the
    section says why, and a stale PNG of the same name is removed."""
    from . import plots

    if not plots.plots_available():
        note = "matplotlib is not installed (`pip install 'spacy-bioreama[plots]'`): no plots."
        return [f"No plots: {note}"], [], [note]
    lines: list[str] = []
    written: list[Path] = []
    target = {key: plots_dir / name for key, name in PLOT_FILES.items()}
    if plots.has_per_type(loaded):
        written.append(plots.plot_per_type_f1(loaded, target["per_type"]))
        lines += _image(
            "Per-type F1 by system",
            target["per_type"],
            page_dir,
            "Per-type F1 (%) of each row that records per-type scores: entity types (strict "
            "mentions) and relation types (pair + type, gold entities).",
        )
    else:
        lines += ["No row records per-type scores (`ents_per_type`, `rel_per_type`).", ""]
    candidates = [(r, m) for key in CALIBRATION_ROWS for r, m in loaded if r.key == key]
    # the first of them that recorded calibration (else the first, to say it did not)
    tuned = next(
        ((r, m) for r, m in candidates if get_path(m, CALIBRATION_PATH) is not None),
        candidates[0] if candidates else None,
    )
    calibration = get_path(tuned[1], CALIBRATION_PATH) if tuned else None
    if calibration is None:
        where = f"`{tuned[0].path}`" if tuned else "the tuned row"
        lines.append(
            f"No calibration plots: {where} has no `{CALIBRATION_PATH}` block; run "
            "`evaluate` again to record calibration."
        )
    else:
        lines += _calibration_images(plots, calibration, tuned[1], target, page_dir, written)
    for path in target.values():  # a PNG not written this time would be stale
        if path not in written and path.exists():
            path.unlink()
    while lines and not lines[-1]:
        lines.pop()
    return lines, written, []


def _calibration_images(
    plots: Any,
    calibration: dict[str, Any],
    metrics: dict[str, Any],
    target: dict[str, Path],
    page_dir: Path,
    written: list[Path],
) -> list[str]:
    """Write the reliability diagram and the threshold sweep; their section lines."""
    threshold = plots.threshold_text(calibration)
    written.append(plots.plot_reliability(calibration, target["reliability"]))
    written.append(plots.plot_threshold_sweep(calibration, target["sweep"]))
    point = plots.chosen_point(calibration)
    f1 = point["f"] if point else get_path(metrics, "gold_entities/rel_micro_f")
    return [
        *_image(
            "Reliability diagram",
            target["reliability"],
            page_dir,
            "Reliability of the tuned adapter's relation scores (gold entities): "
            f"ECE = {plots.ece_text(calibration)} over {calibration['predictions']} "
            f"predictions at none_threshold {threshold}.",
        ),
        *_image(
            "Threshold sweep",
            target["sweep"],
            page_dir,
            "Relation P / R / F1 (pair + type, gold entities) of the tuned adapter against "
            f"none_threshold; chosen threshold {threshold}, F1 {percent(f1)}.",
        ),
    ]


def build_results(
    rows: tuple[Row, ...],
    output: Path,
    command: str,
    benchmark_path: Path,
    plots_dir: Path | None = None,
    ablations_dir: Path = ABLATIONS_DIR,
) -> BuiltResults:
    """Load, check and render the page, write the plots into `plots_dir` (None: no
    plots, no Plots section), then write the page to `output`."""
    loaded = load_rows(rows)
    check_same_split(loaded)
    # no ablation files: no section (the reference rows alone repeat the table above)
    files = load_ablations(ablations_dir)
    ablations = (
        render_ablations(reference_ablations(loaded) + files, ablations_dir) if files else []
    )
    section, written, warnings = None, [], []
    if plots_dir is not None:
        section, written, warnings = write_plots(loaded, plots_dir, output.parent)
    page = render_results(
        loaded,
        command,
        read_benchmark(benchmark_path),
        benchmark_path,
        plots=section,
        ablations=ablations,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(page, encoding="utf8")
    return BuiltResults(page, written, warnings)
