"""Commands `evaluate` (run the component over a gold corpus and score it) and `compare`
(several metrics files side by side). The tables are rendered by `evaluation.tables`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ._util import (
    AdapterOption,
    BatchSizeOption,
    DeviceOption,
    MaxPromptTokensOption,
    ModelOption,
    NoneThresholdOption,
    app,
    build_pipeline,
    fail,
    other_entity_components,
    read_gold,
    run_pipeline,
)


@app.command()
def evaluate(
    gold_path: Annotated[Path, typer.Argument(metavar="GOLD", help="Gold DocBin (.spacy).")],
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics.json"),
    markdown: Annotated[Path | None, typer.Option(help="Markdown table to write.")] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Write the end-to-end predictions (DocBin).")
    ] = None,
    pair_scores: Annotated[
        Path | None,
        typer.Option(
            help="Write the gold-entity run's documents with every candidate pair's scores "
            "(DocBin), to inspect or refit the calibration without running the model again."
        ),
    ] = None,
    model: ModelOption = "default",
    adapter: AdapterOption = None,
    pipeline: Annotated[Path | None, typer.Option(help="A saved pipeline instead.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
    batch_size: BatchSizeOption = 8,
    max_pairs: Annotated[
        int, typer.Option(min=1, help="Cap on candidate pairs per window (max_pairs_per_window).")
    ] = 100,
    gold_entities: Annotated[
        bool, typer.Option(help="Also score relations predicted on the gold entities.")
    ] = True,
    end_to_end: Annotated[
        bool,
        typer.Option(
            help="Score entities and relations predicted from the text (off: only the "
            "gold-entity relation setting, e.g. for relation ablations)."
        ),
    ] = True,
    device: DeviceOption = "auto",
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
    relation_prompt: Annotated[
        str | None,
        typer.Option(
            help="Relation prompt variant: named, marked, sentence or typed (default: the one the "
            "adapter was trained on)."
        ),
    ] = None,
    ner_prompt: Annotated[
        str | None,
        typer.Option(
            help="NER prompt variant: all_types or per_type (default: the one the adapter "
            "was trained on)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="Name of the setting (meta.name; the results page's ablation rows)."),
    ] = None,
    tasks: Annotated[
        str,
        typer.Option(
            help="Tasks to run end to end, comma-separated: entities, relations "
            "(`--tasks entities` scores NER alone)."
        ),
    ] = "entities,relations",
    ner_copy_constraint: Annotated[
        bool | None,
        typer.Option(
            help="Decode NER forms as copies of spans of the text (default: the "
            "component's setting, off)."
        ),
    ] = None,
    ner_window_tokens: Annotated[
        int | None,
        typer.Option(
            min=32,
            help="Tokens of text per NER window (default: the component's setting, as "
            "much as a prompt holds).",
        ),
    ] = None,
) -> None:
    """Run the component over a gold corpus and score it: end to end (predicted
    entities) and, for relations, with the gold entities given. Writes metrics JSON
    (end-to-end scores at the top level), a markdown table and the predictions."""

    from ..evaluation.scorers import SCORER_VERSION
    from ..evaluation.tables import metrics_markdown
    from ..tasks.names import TASK_ENTITIES, TASK_RELATIONS
    from ..util.cmdline import command_line

    nlp, component = build_pipeline(
        pipeline,
        model,
        adapter,
        tasks,
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
        none_threshold=none_threshold,
        max_pairs_per_window=max_pairs,
        relation_prompt=relation_prompt,
        ner_prompt=ner_prompt,
        ner_copy_constraint=ner_copy_constraint,
        ner_window_tokens=ner_window_tokens,
    )
    # the tasks asked for end to end (the gold-entity run below switches to relations)
    run_tasks = list(component.tasks)
    # the gold-entity setting scores relations: it needs that task
    gold_entities = gold_entities and TASK_RELATIONS in run_tasks
    if not (end_to_end or gold_entities):
        raise fail("nothing to score: --no-end-to-end needs --gold-entities and the relations task")
    gold = read_gold(gold_path, nlp.vocab, limit)
    metrics: dict[str, Any] = {}
    predicted: list = []
    if end_to_end:
        predicted, summary = run_pipeline(nlp, component, gold, batch_size, score=True)
        metrics = {**summary.pop("scores"), "run": summary}
    if gold_entities:
        metrics["gold_entities"] = _on_gold_entities(nlp, component, gold, batch_size, pair_scores)
    metrics["meta"] = {
        "name": name,
        "model": model if pipeline is None else str(pipeline),
        "adapter": adapter,
        "data": str(gold_path),
        "documents": len(gold),
        "max_prompt_tokens": component.max_prompt_tokens,
        "none_threshold": component.effective_none_threshold,
        "none_threshold_setting": component.none_threshold,
        "calibration_source": component.calibration.source,
        "relation_prompt": component.effective_relation_prompt,
        "relation_answer": _answer_format(component.effective_relation_rationale),
        "ner_prompt": component.effective_ner_prompt if TASK_ENTITIES in run_tasks else None,
        "tasks": run_tasks,
        "ner_copy_constraint": component.ner_copy_constraint,
        "ner_window_tokens": component.ner_window_tokens,
        "max_pairs_per_window": component.max_pairs_per_window,
        "max_pairs_per_doc": component.max_pairs_per_doc,
        "scorer_version": SCORER_VERSION,
        "command": command_line(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(metrics, indent=2))
    table = metrics_markdown(metrics)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table)
    if predictions is not None and predicted:
        _write_docs(predicted, predictions)
    typer.echo(table)
    typer.echo(f"wrote {output}", err=True)


def _on_gold_entities(
    nlp, component, gold, batch_size: int, pair_scores: Path | None = None
) -> dict[str, Any]:
    """Relations predicted with the gold entities given: the `rel_*` scores, the run
    summary and the calibration block (reliability, ECE, threshold sweep; see
    evaluation/calibration.py). The component is switched to relations only."""
    from ..evaluation.calibration import calibration
    from ..tasks.names import TASK_RELATIONS

    component.configure(tasks=[TASK_RELATIONS], keep_pair_scores=True)
    component.stats.clear()
    # the other components that predict entities (a hybrid pipeline's ner) stay off
    with nlp.select_pipes(disable=other_entity_components(nlp, component)):
        predicted, summary = run_pipeline(nlp, component, gold, batch_size, score=True)
    scores = summary.pop("scores")
    out = {
        **{k: v for k, v in scores.items() if k.startswith("rel_")},
        "intervals": scores["intervals"],
        "run": summary,
    }
    block = calibration(predicted, gold, component.effective_none_threshold)
    if block is not None:
        out["calibration"] = block
    if pair_scores is not None:
        _write_docs(predicted, pair_scores)
    return out


def _write_docs(docs, path: Path) -> None:
    """`docs` as a DocBin with their user data (the pair scores `keep_pair_scores` kept)."""
    from spacy.tokens import DocBin

    path.parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(path)


@app.command()
def calibrate(
    heldout_path: Annotated[
        Path,
        typer.Argument(
            metavar="HELDOUT",
            help="Gold DocBin of training documents the adapter was not trained on "
            "(build-instructions' heldout/<source>.calibration.spacy), never dev.",
        ),
    ],
    adapter: Annotated[str, typer.Option(help="PEFT LoRA adapter directory to calibrate.")],
    model: ModelOption = "default",
    output: Annotated[
        Path | None, typer.Option(help="Also write the fitted calibration (with its sweep) here.")
    ] = None,
    pair_scores: Annotated[
        Path | None,
        typer.Option(
            help="Write the held-back documents with every candidate pair's scores (DocBin), "
            "to inspect or refit the calibration without running the model again."
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
    batch_size: BatchSizeOption = 8,
    max_pairs: Annotated[
        int, typer.Option(min=1, help="Cap on candidate pairs per window (max_pairs_per_window).")
    ] = 100,
    device: DeviceOption = "auto",
    max_prompt_tokens: MaxPromptTokensOption = None,
    score_input: Annotated[
        str,
        typer.Option(
            help="What the score scaling reads: type_probability (P(label | related)) or "
            "label_probability (P(label))."
        ),
    ] = "type_probability",
    from_pair_scores: Annotated[
        Path | None,
        typer.Option(
            help="Refit from the documents a run saved with --pair-scores (same HELDOUT "
            "documents) instead of running the model: seconds instead of minutes."
        ),
    ] = None,
) -> None:
    """Choose the adapter's relation threshold, label bias and score scaling on held-back
    training documents (gold entities given) and save them as ``calibration.json`` in the adapter
    folder, where the component's default ``none_threshold = "auto"`` finds them."""
    from ..evaluation.calibration import fit_calibration
    from ..evaluation.scorers import SCORER_VERSION
    from ..pipeline.relation_calibration import SCORE_INPUTS, write_calibration
    from ..tasks.names import TASK_RELATIONS
    from ..util.cmdline import command_line

    if score_input not in SCORE_INPUTS:
        raise fail(f"--score-input must be one of {list(SCORE_INPUTS)}, got {score_input!r}")
    nlp, component = build_pipeline(
        None,
        model,
        adapter,
        TASK_RELATIONS,
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
        none_threshold=1.0,
        max_pairs_per_window=max_pairs,
    )
    component.configure(keep_pair_scores=True)
    gold = read_gold(heldout_path, nlp.vocab, limit, "held-out")
    if from_pair_scores is not None:
        predicted = _saved_pair_scores(from_pair_scores, gold, nlp.vocab)
        seconds = None
    else:
        predicted, summary = run_pipeline(nlp, component, gold, batch_size, score=False)
        seconds = summary["seconds"]
    if pair_scores is not None:
        _write_docs(predicted, pair_scores)
    try:
        fitted = fit_calibration(predicted, gold, score_input)
    except ValueError as err:
        raise fail(err) from err
    sweep = fitted.pop("sweep")
    fitted.update(
        data=str(heldout_path),
        pair_scores=None if from_pair_scores is None else str(from_pair_scores),
        max_pairs_per_window=max_pairs,
        max_prompt_tokens=component.max_prompt_tokens,
        seconds=seconds,
        scorer_version=SCORER_VERSION,  # the verdicts its F1 and ECE are counted with
        command=command_line(),
    )
    path = write_calibration(adapter, fitted)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps({**fitted, "sweep": sweep}, indent=2))
    typer.echo(
        f"none_threshold {fitted['none_threshold']:.2f}: pair + type F1 "
        f"{100 * fitted['f1']:.1f} on {fitted['documents']} held-back documents, "
        f"{fitted['relations']} of {fitted['candidate_pairs']} candidate pairs related; "
        f"ECE {_fraction(fitted['ece_raw'])} -> {_fraction(fitted['ece_scaled'])} after scaling"
    )
    if fitted["label_bias_fitted"]:
        bias = ", ".join(f"{k} {v:+.2f}" for k, v in fitted["label_bias_fitted"].items())
        kept = "kept" if fitted["label_bias"] else "not kept: it did not raise F1"
        typer.echo(
            f"label bias from {fitted['typing_pairs']} related pairs: {bias} ({kept}; pair + "
            f"type F1 {100 * fitted['f1_without_label_bias']:.1f} without it)"
        )
    typer.echo(f"wrote {path}", err=True)


def _saved_pair_scores(path: Path, gold: list, vocab) -> list:
    """The documents a run saved with ``--pair-scores``, checked against `gold` (the same
    documents, in order): a mismatch is a clear error naming the file."""
    from ..evaluation.calibration import pair_scores

    docs = read_gold(path, vocab, what="pair scores (write it with --pair-scores)")
    if len(docs) < len(gold) or any(d.text != g.text for d, g in zip(docs, gold, strict=False)):
        raise fail(f"{path}: holds other documents than the held-out file (or fewer of them)")
    docs = docs[: len(gold)]
    if not any(pair_scores(d) for d in docs):
        raise fail(f"{path}: no pair scores saved (a run with --pair-scores writes them)")
    return docs


def _fraction(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


@app.command()
def compare(
    metrics_files: Annotated[list[Path], typer.Argument(help="Metrics JSON files from evaluate.")],
    output: Annotated[Path | None, typer.Option(help="Markdown file to write.")] = None,
) -> None:
    """Put several `evaluate` (or `evaluate-instructions`) results side by side, one
    column each: F1 per metric, and per corpus F1 (relations, pairs) or accuracy and
    macro-F1 (QA)."""
    from ..evaluation.tables import compare_markdown

    runs = [(name, _metrics_file(path)) for name, path in _column_names(metrics_files)]
    table = compare_markdown(runs)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table)
    typer.echo(table)


def _column_names(paths: list[Path]) -> list[tuple[str, Path]]:
    """A column name per file: its stem, or its folder and stem where stems repeat
    (``a/metrics.json`` and ``b/metrics.json``), else its path."""
    stems = [p.stem for p in paths]
    names = [p.stem if stems.count(p.stem) == 1 else f"{p.parent.name}/{p.stem}" for p in paths]
    # still the same (x/a/metrics.json, y/a/metrics.json): the paths as given
    return [(n if names.count(n) == 1 else str(p), p) for n, p in zip(names, paths, strict=True)]


def _metrics_file(path: Path) -> dict[str, Any]:
    """A metrics JSON of `evaluate`/`evaluate-instructions`, or a clear error naming it."""
    try:
        metrics = json.loads(path.read_text(encoding="utf8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(f"{path}: cannot read a metrics file ({err})") from err
    if not isinstance(metrics, dict) or "meta" not in metrics:
        raise fail(f"{path}: not a metrics file of evaluate (no 'meta' entry)")
    return metrics


def _answer_format(rationale) -> str:
    """How the relation answers were scored, for the metrics' meta: ``direct`` or the
    rationale's ``answer_format``."""
    return "direct" if rationale is None else rationale.answer_format
