"""Command `benchmark`: throughput of the component against a naive baseline.

The measurement itself is in `evaluation/benchmark.py`; this module reads the options
and the corpus and writes the record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._util import (
    AdapterOption,
    DeviceOption,
    MaxPromptTokensOption,
    ModelOption,
    TasksOption,
    app,
    build_pipeline,
    fail,
    load_model,
    read_gold,
)


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
    model: ModelOption = "default",
    adapter: AdapterOption = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(help="A saved pipeline; its settings replace --model/--adapter/--tasks."),
    ] = None,
    device: DeviceOption = "auto",
    tasks: TasksOption = "entities,relations",
    max_new_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="Answer length limit for entity lists (default: 256)."),
    ] = None,
    max_prompt_tokens: MaxPromptTokensOption = None,
    output: Annotated[Path, typer.Option(help="File for the JSON line.")] = Path(
        "metrics/benchmark.json"
    ),
    llama_cpp: Annotated[
        bool | None,
        typer.Option(
            "--llama-cpp/--no-llama-cpp",
            help="Measure llama.cpp on the same prompts (default: when llama-cpp-python, "
            "the [llamacpp] extra, is installed; --llama-cpp fails without it).",
        ),
    ] = None,
) -> None:
    """Documents/s, prompt and generated tokens/s and peak RSS of nlp.pipe at several
    batch sizes, against a naive baseline (one model.generate call per prompt, as
    spacy-llm's Hugging Face models do) and llama.cpp (when installed), measured in the
    same run on the same prompts. Prints a table, then one JSON line (also written to --output)."""
    from ..evaluation.benchmark import format_table, run_benchmark
    from ..evaluation.benchmark_llama_cpp import llama_cpp_version
    from ..util.cmdline import command_line

    sizes = _batch_sizes(batch_sizes)
    nlp, component = build_pipeline(
        pipeline,
        model,
        adapter,
        tasks,
        sizes[0],
        device,
        max_new_tokens=max_new_tokens,
        max_prompt_tokens=max_prompt_tokens,
    )
    gold = read_gold(corpus, nlp.vocab, docs, what="corpus")
    if llama_cpp and llama_cpp_version() is None:  # before minutes of model loading
        from ..models.llama_cpp import INSTALL_HINT

        raise fail(f"--llama-cpp needs llama-cpp-python, which is not installed: {INSTALL_HINT}")
    load_model(component)
    record = run_benchmark(nlp, gold, sizes, command=command_line(), llama_cpp=llama_cpp)
    record["data"] = str(corpus)
    if pipeline is not None:
        record["pipeline"] = str(pipeline)
    line = json.dumps(record)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(line + "\n", encoding="utf8")
    typer.echo(f"wrote {output}", err=True)
    typer.echo(format_table(record))
    typer.echo(line)
