"""Commands for the baselines (`baseline-cooccurrence`, `baseline-spacy-ner`,
`baseline-spacy-llm`) and the results page (`results`, writing `docs/results.md`).

The baselines themselves are in `evaluation/baselines.py`, the page in
`evaluation/results.py`; every metrics file records the command that wrote it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..util.cmdline import command_line
from ..util.formatting import percent
from ..util.resources import cpu_description, package_versions
from ._util import (
    OVERRIDES,
    AdapterOption,
    BatchSizeOption,
    DeviceOption,
    ModelOption,
    app,
    fail,
    read_gold,
    write_json,
)

_TRAIN_RECORD = "bioreama_train.json"  # training wall time + command, next to model-last
# the packages whose numerics decide a spaCy CPU training run
SPACY_TRAIN_PACKAGES = ("spacy", "thinc", "numpy", "blis")

GoldArgument = Annotated[
    Path, typer.Argument(metavar="GOLD", help="Gold DocBin to score on (BioRED dev).")
]
LimitOption = Annotated[
    int,
    typer.Option(min=0, help="Only the first N documents (0 = all); use evaluate's --limit."),
]


def _headline(metrics: dict[str, Any]) -> str:
    """One line of a baseline's headline scores, printed after its metrics file."""
    gold = metrics.get("gold_entities", {})
    ner = "/".join(percent(metrics[f"ents_{m}"]) for m in "prf")
    return (
        f"NER P/R/F1 {ner}"
        f"; RE F1 pair+type end to end {percent(metrics['rel_micro_f'])}"
        f"; gold entities pair {percent(gold.get('rel_pair_f'))}, "
        f"pair+type {percent(gold.get('rel_micro_f'))}"
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
    same_sentence: Annotated[
        bool,
        typer.Option(help="Only pairs a sentence co-mentions (the sentence prompt's floor)."),
    ] = False,
) -> None:
    """Relation floor on gold entities: every allowed candidate concept pair gets the
    training set's most frequent relation label (scored with score_bio)."""
    import spacy

    from ..annotations.labels import BIORED_TYPE_PAIRS
    from ..evaluation.baselines import run_cooccurrence
    from ..evaluation.scorers import SCORER_VERSION

    nlp = spacy.blank("en")
    train_docs = read_gold(train, nlp.vocab, what="train")
    gold = read_gold(gold_path, nlp.vocab, limit)
    try:
        metrics = run_cooccurrence(
            train_docs, gold, nlp.make_doc, BIORED_TYPE_PAIRS, same_sentence=same_sentence
        )
    except ValueError as err:  # no relations to learn a label from
        raise fail(err) from err
    label = metrics["gold_entities"]["run"]["label"]
    which = (
        "every candidate pair co-mentioned in a sentence"
        if same_sentence
        else "every candidate pair"
    )
    metrics["meta"] = {
        "name": f"co-occurrence floor{' (same sentence)' if same_sentence else ''}",
        "model": f"co-occurrence, {which} labelled {label}",
        "adapter": None,
        "data": str(gold_path),
        "documents": len(gold),
        "train_data": str(train),
        "label": label,
        "scorer_version": SCORER_VERSION,
        "command": command_line(),
    }
    write_json(output, metrics)
    typer.echo(_headline(metrics))


@app.command("baseline-spacy-ner", context_settings=OVERRIDES)
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

    from ..evaluation.baselines import run_spacy_ner
    from ..evaluation.scorers import SCORER_VERSION

    record_path = model_dir / _TRAIN_RECORD
    if train_model:
        args = [str(config), "--output", str(model_dir), "--paths.train", str(train)]
        _spacy_train([*args, "--paths.dev", str(dev or gold_path), *ctx.args], record_path)
    elif ctx.args:
        raise fail(f"options for spacy train given with --no-train-model: {ctx.args}")
    model_path = model_dir / "model-last"
    if not model_path.exists():
        raise fail(f"{model_path} not found: train it first (drop --no-train-model)")
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    nlp = spacy.load(model_path)
    gold = read_gold(gold_path, nlp.vocab, limit)
    metrics = run_spacy_ner(nlp, gold)
    metrics["meta"] = {
        "model": str(model_path),
        "adapter": None,
        "data": str(gold_path),
        "documents": len(gold),
        "config": str(config),
        "train_data": str(train),
        **record,
        "scorer_version": SCORER_VERSION,
        "command": command_line(),
    }
    write_json(output, metrics)
    typer.echo(_headline(metrics))


def _spacy_train(args: list[str], record_path: Path) -> None:
    """Run `python -m spacy train ARGS`, timed; its wall time and command line go to
    `record_path` (read into the metrics' meta block)."""
    shown = command_line(["train", *args], program="spacy")  # as typed: python -m spacy
    typer.echo(f"running: {shown}", err=True)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "spacy", "train", *args], check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise fail(f"spacy train failed (exit {done.returncode}): {shown}")
    record = {
        "train_seconds": round(seconds, 1),
        "train_command": shown,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "cpu_count": os.cpu_count(),
        # spaCy's CPU training repeats exactly on one machine, yet with the same config and
        # corpus it gave NER F1 68.2 on 2026-12-02/04 and 66.3 on 2026-12-07 (an AMD
        # EPYC): record what can explain such a move
        "cpu": cpu_description(),
        "versions": package_versions(SPACY_TRAIN_PACKAGES),
    }
    record_path.write_text(json.dumps(record, indent=2), encoding="utf8")
    typer.echo(f"spacy train took {seconds:.1f} s", err=True)


@app.command("baseline-spacy-llm")
def baseline_spacy_llm(
    gold_path: GoldArgument,
    model: ModelOption = "default",
    adapter: AdapterOption = None,
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path(
        "metrics/baseline_spacy_llm.json"
    ),
    limit: LimitOption = 0,
    batch_size: BatchSizeOption = 8,
    max_new_tokens: Annotated[
        int,
        typer.Option(
            min=1, help="Answer length limit; NER.v3 writes one explained line per entity."
        ),
    ] = 512,
    device: DeviceOption = "auto",
) -> None:
    """spacy-llm's own zero-shot `spacy.NER.v3` task (labels only) on our
    `spacy_bioreama.HF.v1` model; its doc.ents scored with score_bio."""
    import spacy

    from ..annotations.labels import BIORED_ENTITY_LABELS
    from ..evaluation.baselines import run_spacy_llm_ner, spacy_llm_ner_pipeline
    from ..evaluation.scorers import SCORER_VERSION

    nlp = spacy_llm_ner_pipeline(
        model,
        adapter,
        BIORED_ENTITY_LABELS,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
    )
    gold = read_gold(gold_path, spacy.blank("en").vocab, limit)
    metrics = run_spacy_llm_ner(nlp, gold, batch_size)
    metrics["meta"] = {
        "model": model,
        "adapter": adapter,
        "data": str(gold_path),
        "documents": len(gold),
        "task": "spacy.NER.v3 (zero-shot, labels only)",
        "max_new_tokens": max_new_tokens,
        "scorer_version": SCORER_VERSION,
        "command": command_line(),
    }
    write_json(output, metrics)
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
    best: Annotated[
        Path, typer.Option(help="(b+) evaluate, the best CPU adapter (optional).")
    ] = Path("metrics/best.json"),
    hybrid: Annotated[
        Path, typer.Option(help="(f) evaluate, spaCy ner + bio_relation_llm (optional).")
    ] = Path("metrics/hybrid.json"),
    ablations: Annotated[
        Path, typer.Option(help="Folder of `evaluate --name` ablation files (optional).")
    ] = Path("metrics/ablations"),
    benchmark: Annotated[
        Path, typer.Option(help="benchmark's JSON line (optional: skipped when absent).")
    ] = Path("metrics/benchmark.json"),
    plots: Annotated[
        bool,
        typer.Option(
            "--plots/--no-plots",
            help="Also write PNG plots into a plots/ folder next to --output and embed them "
            "(needs matplotlib: the `plots` extra).",
        ),
    ] = True,
) -> None:
    """Write docs/results.md from the metrics files: rows (a)-(e) on the same documents,
    plots (per-type F1; reliability and threshold sweep of the tuned row), how each was
    made, throughput (if benchmarked) and published figures apart."""
    from dataclasses import replace

    from ..evaluation.results import (
        DEFAULT_ROWS,
        PLOTS_DIR,
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
        "best": best,
        "hybrid": hybrid,
    }
    rows = tuple(replace(row, path=paths[row.key]) for row in DEFAULT_ROWS)
    plots_dir = output.parent / PLOTS_DIR if plots else None
    try:
        built = build_results(
            rows, output, command_line(), benchmark, plots_dir, ablations_dir=ablations
        )
    except (MetricsFileMissing, MetricsMismatch, ValueError) as err:
        raise fail(err) from err
    for warning in built.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo(f"wrote {output}")
    for path in built.plots:
        typer.echo(f"wrote {path}")
