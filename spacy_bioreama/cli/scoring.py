"""Commands `score` and `evaluate-instructions` (scoring without / with a model).

The work is done in `evaluation/docbins.py` and `evaluation/instruction_records.py`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..util.cmdline import command_line
from ._util import (
    AdapterOption,
    BatchSizeOption,
    DeviceOption,
    ModelOption,
    app,
    fail,
    write_json,
    write_text,
)


@app.command()
def score(
    gold_path: Annotated[Path, typer.Argument(metavar="GOLD", help="Gold DocBin (.spacy).")],
    pred_path: Annotated[
        Path, typer.Argument(metavar="PRED", help="Predicted DocBin (.spacy) of any system.")
    ],
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics.json"),
    markdown: Annotated[Path | None, typer.Option(help="Markdown table to write.")] = None,
    task: Annotated[
        str,
        typer.Option(
            help="auto (from the gold data), bio (ents_*, rel_*: BioRED-style), "
            "pair (pair_*: GAD, EU-ADR, ChemProt, DDI) or qa (qa_*: PubMedQA)."
        ),
    ] = "auto",
) -> None:
    """Score predictions against gold without running a model. Documents are aligned
    by user_data['doc_id'] (else by position); metrics go to the JSON's top level."""
    from ..evaluation.docbins import ScoringInputError, metrics_table, score_docbins
    from ..evaluation.scorers import SCORER_VERSION

    try:
        metrics = score_docbins(gold_path, pred_path, task)
    except ScoringInputError as err:
        raise fail(err) from err
    metrics["meta"]["scorer_version"] = SCORER_VERSION
    metrics["meta"]["command"] = command_line()
    write_json(output, metrics)
    table = metrics_table(metrics)
    if markdown is not None:
        write_text(markdown, table)
    typer.echo(table)


@app.command("evaluate-instructions")
def evaluate_instructions_command(
    dev_path: Annotated[
        Path, typer.Argument(metavar="DEV", help="Instruction JSONL (build-instructions' dev).")
    ],
    model: ModelOption = "default",
    adapter: AdapterOption = None,
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics.json"),
    markdown: Annotated[Path | None, typer.Option(help="Markdown table to write.")] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Write one JSON line per record (label, prediction).")
    ] = None,
    limit_per_corpus: Annotated[
        int, typer.Option(min=0, help="Only the first N records of each corpus (0 = all).")
    ] = 0,
    batch_size: BatchSizeOption = 8,
    device: DeviceOption = "auto",
    max_prompt_tokens: Annotated[
        int, typer.Option(min=1, help="Longer prompts are not run (counted as unanswered).")
    ] = 2048,
    none_threshold: Annotated[
        float | None,
        typer.Option(
            help="re/pair: related when P(None) is below this, as the component does "
            "(its default is 0.5); unset = the most probable choice."
        ),
    ] = None,
) -> None:
    """Score a model (+ adapter) on instruction dev records by constrained choice:
    re/pair micro P/R/F1 over positive labels, QA accuracy and macro-F1, per corpus."""
    from ..evaluation.instruction_records import (
        InstructionDataError,
        evaluate_instructions,
        metrics_table,
    )
    from ..models import load_backend

    if none_threshold is not None and not 0.0 < none_threshold <= 1.0:
        raise fail(f"--none-threshold must be in (0, 1], got {none_threshold}")
    try:
        backend = load_backend(
            model,
            adapter,
            device=device,
            max_prompt_tokens=max_prompt_tokens,
            batch_size=batch_size,
        )
        metrics, preds = evaluate_instructions(
            dev_path,
            backend,
            limit_per_corpus=limit_per_corpus,
            batch_size=batch_size,
            none_threshold=none_threshold,
        )
    except (InstructionDataError, FileNotFoundError) as err:
        raise fail(err) from err
    metrics["meta"] = {
        "model": model,
        "adapter": adapter,
        "data": str(dev_path),
        "limit_per_corpus": limit_per_corpus,
        "none_threshold": none_threshold,
        "max_prompt_tokens": backend.max_prompt_tokens,
        "command": command_line(),
    }
    write_json(output, metrics)
    table = metrics_table(metrics)
    if markdown is not None:
        write_text(markdown, table)
    if predictions is not None:
        write_text(predictions, "".join(json.dumps(p) + "\n" for p in preds))
    typer.echo(table)
