"""CLI command `benchmark`: throughput of the component against a naive baseline.

Kept out of cli.py so it evolves separately; cli.py imports this module once, which
registers the command on the same typer app. The measurement itself is in benchmark.py.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from ._util import MaxPromptTokensOption, _build_pipeline, app


def _batch_sizes(text: str) -> list[int]:
    """`"1,4,8"` → [1, 4, 8]; a readable error for anything else."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"--batch-sizes: comma-separated integers, got {text!r}") from err
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter(f"--batch-sizes: integers >= 1, got {text!r}")
    return sizes


@app.command()
def benchmark(
    corpus: Annotated[
        Path, typer.Argument(metavar="CORPUS", help="DocBin (.spacy) of documents to annotate.")
    ] = Path("corpus/biored_dev.spacy"),
    docs: Annotated[int, typer.Option(min=1, help="Number of documents (the first N).")] = 8,
    batch_sizes: Annotated[
        str, typer.Option(help="Comma-separated batch sizes for nlp.pipe.")
    ] = "1,4,8",
    model: Annotated[str, typer.Option(help="Base model name or path.")] = "default",
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="A saved pipeline; its settings replace --model/--adapter/--tasks."),
    ] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    tasks: Annotated[str, typer.Option(help="entities,relations or relations")] = (
        "entities,relations"
    ),
    max_new_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="Answer length limit for entity lists (default: 256)."),
    ] = None,
    max_prompt_tokens: MaxPromptTokensOption = None,
    output: Annotated[Path, typer.Option(help="File for the JSON line.")] = Path(
        "metrics/benchmark.json"
    ),
) -> None:
    """Documents/s, prompt and generated tokens/s and peak RSS of nlp.pipe at several
    batch sizes, against a naive baseline (one model.generate call per prompt, as
    spacy-llm's Hugging Face models do) measured in the same run on the same prompts.
    Prints a table, then one JSON line (also written to --output)."""
    from spacy.tokens import DocBin

    from ..evaluation.benchmark import format_table, run_benchmark

    sizes = _batch_sizes(batch_sizes)
    if not corpus.exists():
        typer.secho(f"error: {corpus} not found", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    nlp, _ = _build_pipeline(
        pipeline,
        model,
        adapter,
        tasks,
        sizes[0],
        device,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
    )
    gold = []
    for doc in DocBin().from_disk(corpus).get_docs(nlp.vocab):
        gold.append(doc)
        if len(gold) >= docs:
            break
    if not gold:
        typer.secho(f"error: {corpus} holds no documents", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    command = shlex.join(["python", "-m", "spacy_bioreama", *sys.argv[1:]])
    record = run_benchmark(nlp, gold, sizes, command=command)
    record["data"] = str(corpus)
    if pipeline is not None:
        record["pipeline"] = str(pipeline)
    line = json.dumps(record)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(line + "\n", encoding="utf8")
    typer.echo(f"wrote {output}", err=True)
    typer.echo(format_table(record))
    typer.echo(line)
