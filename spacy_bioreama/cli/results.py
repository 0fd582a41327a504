"""CLI commands for the baselines and the results page (`docs/results.md`).

Kept out of cli.py so that the evaluation commands evolve separately; cli.py imports this
module once, which registers the commands on the same typer app.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ._util import app

_OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}
_TRAIN_RECORD = "bioreama_train.json"  # training wall time + command, next to model-last

GoldArgument = Annotated[
    Path, typer.Argument(metavar="GOLD", help="Gold DocBin to score on (BioRED dev).")
]
LimitOption = Annotated[
    int,
    typer.Option(min=0, help="Only the first N documents (0 = all); use evaluate's --limit."),
]


def _command_line() -> str:
    """This invocation as `python -m spacy_bioreama ...`, for the metrics' meta block."""
    return shlex.join(["python", "-m", "spacy_bioreama", *sys.argv[1:]])


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(1)


def _write_metrics(metrics: dict[str, Any], output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(metrics, indent=2), encoding="utf8")
    typer.echo(f"wrote {output}", err=True)


def _headline(metrics: dict[str, Any]) -> str:
    def pct(value: Any) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    gold = metrics.get("gold_entities", {})
    return (
        f"NER P/R/F1 {pct(metrics['ents_p'])}/{pct(metrics['ents_r'])}/{pct(metrics['ents_f'])}"
        f"; RE F1 pair+type end to end {pct(metrics['rel_micro_f'])}"
        f"; gold entities pair {pct(gold.get('rel_pair_f'))}, "
        f"pair+type {pct(gold.get('rel_micro_f'))}"
    )


@app.command("baseline-cooccurrence")
def baseline_cooccurrence(
    gold_path: GoldArgument,
    train: Annotated[
        Path, typer.Option(help="DocBin whose most frequent relation label is used.")
    ] = Path("corpus/biored_train.spacy"),
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path(
        "metrics/baseline_cooccurrence.json"
    ),
    limit: LimitOption = 0,
) -> None:
    """Relation floor on gold entities: every allowed candidate concept pair gets the
    training set's most frequent relation label (scored with score_bio)."""
    import spacy

    from ..annotations.labels import BIORED_TYPE_PAIRS
    from ..evaluation.baselines import read_docbin, run_cooccurrence

    nlp = spacy.blank("en")
    try:
        train_docs = read_docbin(train, nlp)
        gold = read_docbin(gold_path, nlp, limit)
        metrics = run_cooccurrence(train_docs, gold, nlp.make_doc, BIORED_TYPE_PAIRS)
    except (FileNotFoundError, ValueError) as err:
        raise _fail(str(err)) from err
    label = metrics["gold_entities"]["run"]["label"]
    metrics["meta"] = {
        "model": f"co-occurrence, every candidate pair labelled {label}",
        "adapter": None,
        "data": str(gold_path),
        "documents": len(gold),
        "train_data": str(train),
        "label": label,
        "command": _command_line(),
    }
    _write_metrics(metrics, output)
    typer.echo(_headline(metrics))


@app.command("baseline-spacy-ner", context_settings=_OVERRIDES)
def baseline_spacy_ner(
    ctx: typer.Context,
    gold_path: GoldArgument,
    config: Annotated[Path, typer.Option(help="spaCy training config.")] = Path(
        "configs/spacy_ner_biored.cfg"
    ),
    train: Annotated[Path, typer.Option(help="Training DocBin.")] = Path(
        "corpus/biored_train.spacy"
    ),
    dev: Annotated[
        Path | None,
        typer.Option(help="Dev DocBin for spacy train's logging (default: GOLD)."),
    ] = None,
    model_dir: Annotated[Path, typer.Option(help="spacy train --output folder.")] = Path(
        "training/spacy_ner"
    ),
    train_model: Annotated[
        bool,
        typer.Option(
            "--train-model/--no-train-model",
            help="Run spacy train first (timed); --no-train-model scores an existing model.",
        ),
    ] = True,
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path(
        "metrics/baseline_spacy_ner.json"
    ),
    limit: LimitOption = 0,
) -> None:
    """spaCy-native NER baseline: `spacy train` (wall time measured), then model-last
    predicts GOLD's texts and score_bio scores its doc.ents. Extra `--section.key value`
    options go to spacy train (e.g. `--training.max_steps 10` for a smoke run)."""
    import spacy

    from ..evaluation.baselines import read_docbin, run_spacy_ner

    record_path = model_dir / _TRAIN_RECORD
    if train_model:
        cmd = [
            sys.executable,
            "-m",
            "spacy",
            "train",
            str(config),
            "--output",
            str(model_dir),
            "--paths.train",
            str(train),
            "--paths.dev",
            str(dev or gold_path),
            *ctx.args,
        ]
        shown = shlex.join(["python", *cmd[1:]])
        typer.echo(f"running: {shown}", err=True)
        start = time.perf_counter()
        done = subprocess.run(cmd, check=False)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            raise _fail(f"spacy train failed (exit {done.returncode}): {shown}")
        record = {
            "train_seconds": round(seconds, 1),
            "train_command": shown,
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "cpu_count": os.cpu_count(),
        }
        record_path.write_text(json.dumps(record, indent=2), encoding="utf8")
        typer.echo(f"spacy train took {seconds:.1f} s", err=True)
    elif ctx.args:
        raise _fail(f"options for spacy train given with --no-train-model: {ctx.args}")
    model_path = model_dir / "model-last"
    if not model_path.exists():
        raise _fail(f"{model_path} not found: train it first (drop --no-train-model)")
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    nlp = spacy.load(model_path)
    try:
        gold = read_docbin(gold_path, nlp, limit)
    except FileNotFoundError as err:
        raise _fail(str(err)) from err
    metrics = run_spacy_ner(nlp, gold)
    metrics["meta"] = {
        "model": str(model_path),
        "adapter": None,
        "data": str(gold_path),
        "documents": len(gold),
        "config": str(config),
        "train_data": str(train),
        **record,
        "command": _command_line(),
    }
    _write_metrics(metrics, output)
    typer.echo(_headline(metrics))


@app.command("baseline-spacy-llm")
def baseline_spacy_llm(
    gold_path: GoldArgument,
    model: Annotated[str, typer.Option(help="Base model name or path.")] = "default",
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path(
        "metrics/baseline_spacy_llm.json"
    ),
    limit: LimitOption = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            min=1, help="Answer length limit; NER.v3 writes one explained line per entity."
        ),
    ] = 512,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
) -> None:
    """spacy-llm's own zero-shot `spacy.NER.v3` task (labels only) on our
    `spacy_bioreama.HF.v1` model; its doc.ents scored with score_bio."""
    import spacy

    from ..annotations.labels import BIORED_ENTITY_LABELS
    from ..evaluation.baselines import read_docbin, run_spacy_llm_ner, spacy_llm_ner_pipeline

    nlp = spacy_llm_ner_pipeline(
        model,
        adapter,
        BIORED_ENTITY_LABELS,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
    )
    try:
        gold = read_docbin(gold_path, spacy.blank("en"), limit)
    except FileNotFoundError as err:
        raise _fail(str(err)) from err
    metrics = run_spacy_llm_ner(nlp, gold, batch_size)
    metrics["meta"] = {
        "model": model,
        "adapter": adapter,
        "data": str(gold_path),
        "documents": len(gold),
        "task": "spacy.NER.v3 (zero-shot, labels only)",
        "max_new_tokens": max_new_tokens,
        "command": _command_line(),
    }
    _write_metrics(metrics, output)
    typer.echo(_headline(metrics))


@app.command("results")
def results_command(
    output: Annotated[Path, typer.Option(help="Markdown page to write.")] = Path("docs/results.md"),
    base: Annotated[Path, typer.Option(help="(a) evaluate, untuned base model.")] = Path(
        "metrics/base.json"
    ),
    tuned: Annotated[Path, typer.Option(help="(b) evaluate, tuned adapter.")] = Path(
        "metrics/tuned.json"
    ),
    spacy_ner: Annotated[Path, typer.Option(help="(c) baseline-spacy-ner.")] = Path(
        "metrics/baseline_spacy_ner.json"
    ),
    cooccurrence: Annotated[Path, typer.Option(help="(d) baseline-cooccurrence.")] = Path(
        "metrics/baseline_cooccurrence.json"
    ),
    spacy_llm: Annotated[Path, typer.Option(help="(e) baseline-spacy-llm.")] = Path(
        "metrics/baseline_spacy_llm.json"
    ),
    benchmark: Annotated[
        Path, typer.Option(help="benchmark's JSON line (optional: skipped when absent).")
    ] = Path("metrics/benchmark.json"),
) -> None:
    """Write docs/results.md from the metrics files: rows (a)-(e) on the same documents,
    how each was made, throughput (if benchmarked) and published figures apart."""
    from dataclasses import replace

    from ..evaluation.results import (
        DEFAULT_ROWS,
        MetricsFileMissing,
        MetricsMismatch,
        build_results,
    )

    paths = {
        "base": base,
        "tuned": tuned,
        "spacy_ner": spacy_ner,
        "cooccurrence": cooccurrence,
        "spacy_llm": spacy_llm,
    }
    rows = tuple(replace(row, path=paths[row.key]) for row in DEFAULT_ROWS)
    try:
        build_results(rows, output, _command_line(), benchmark)
    except (MetricsFileMissing, MetricsMismatch, ValueError) as err:
        raise _fail(str(err)) from err
    typer.echo(f"wrote {output}")
