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
    device: DeviceOption = "auto",
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
) -> None:
    """Run the component over a gold corpus and score it: end to end (predicted
    entities) and, for relations, with the gold entities given. Writes metrics JSON
    (end-to-end scores at the top level), a markdown table and the predictions."""
    from spacy.tokens import DocBin

    from ..evaluation.tables import metrics_markdown
    from ..util.cmdline import command_line

    nlp, component = build_pipeline(
        pipeline,
        model,
        adapter,
        "entities,relations",
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
        none_threshold=none_threshold,
        max_pairs_per_window=max_pairs,
    )
    gold = read_gold(gold_path, nlp.vocab, limit)
    predicted, summary = run_pipeline(nlp, component, gold, batch_size, score=True)
    metrics: dict[str, Any] = {**summary.pop("scores"), "run": summary}
    if gold_entities:
        metrics["gold_entities"] = _on_gold_entities(nlp, component, gold, batch_size)
    metrics["meta"] = {
        "model": model if pipeline is None else str(pipeline),
        "adapter": adapter,
        "data": str(gold_path),
        "documents": len(gold),
        "max_prompt_tokens": component.max_prompt_tokens,
        "none_threshold": component.none_threshold,
        "max_pairs_per_window": component.max_pairs_per_window,
        "max_pairs_per_doc": component.max_pairs_per_doc,
        "command": command_line(),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(metrics, indent=2))
    table = metrics_markdown(metrics)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(table)
    if predictions is not None:
        DocBin(docs=predicted, store_user_data=True).to_disk(predictions)
    typer.echo(table)
    typer.echo(f"wrote {output}", err=True)


def _on_gold_entities(nlp, component, gold, batch_size: int) -> dict[str, Any]:
    """Relations predicted with the gold entities given: the `rel_*` scores, the run
    summary and the calibration block (reliability, ECE, threshold sweep; see
    evaluation/calibration.py). The component is switched to relations only."""
    from ..evaluation.calibration import calibration
    from ..tasks.names import TASK_RELATIONS

    component.configure(tasks=[TASK_RELATIONS], keep_pair_scores=True)
    component.stats.clear()
    predicted, summary = run_pipeline(nlp, component, gold, batch_size, score=True)
    scores = summary.pop("scores")
    out = {**{k: v for k, v in scores.items() if k.startswith("rel_")}, "run": summary}
    block = calibration(predicted, gold, component.none_threshold)
    if block is not None:
        out["calibration"] = block
    return out


@app.command()
def compare(
    metrics_files: Annotated[list[Path], typer.Argument(help="Metrics JSON files from evaluate.")],
    output: Annotated[Path | None, typer.Option(help="Markdown file to write.")] = None,
) -> None:
    """Put several `evaluate` (or `evaluate-instructions`) results side by side, one
    column each: F1 per metric, and per corpus F1 (relations, pairs) or accuracy and
    macro-F1 (QA)."""
    from ..evaluation.tables import compare_markdown

    runs = [(p.stem, json.loads(p.read_text())) for p in metrics_files]
    table = compare_markdown(runs)
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table)
    typer.echo(table)
