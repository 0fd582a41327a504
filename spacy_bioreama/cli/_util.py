"""Command-line interface: `python -m spacy_bioreama COMMAND` (or `spacy-bioreama`)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="spacy-bioreama",
    help="Instruction-tuned causal LLMs for biomedical information extraction in spaCy.",
    no_args_is_help=True,
    add_completion=False,
)

DATA_DIR_ENV = "BIOREAMA_DATA_DIR"


def default_data_dir() -> Path:
    """Where the corpora live: $BIOREAMA_DATA_DIR, else ../shared/data next to the repo."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (0 where the platform cannot tell)."""
    from ..util.resources import peak_rss_bytes

    return peak_rss_bytes() / 2**20


@app.command()
def convert(
    fmt: Annotated[
        str,
        typer.Argument(
            metavar="FORMAT",
            help="pubtator, ncbi-disease, bioc-xml, bioc-json, ddi, gad, euadr, chemprot, pubmedqa",
        ),
    ],
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Corpus file or folder.")],
    output_path: Annotated[
        Path, typer.Argument(metavar="OUTPUT", help="DocBin (.spacy) to write.")
    ],
) -> None:
    """Convert a corpus to a spaCy DocBin and print what was read (and what was not)."""
    from ..corpora import CorpusFormatError
    from ..corpora import convert as convert_corpus

    try:
        report = convert_corpus(fmt, input_path, output_path)
    except (CorpusFormatError, FileNotFoundError, ValueError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    typer.echo(str(report))
    typer.echo(f"wrote {output_path}")


@app.command()
def annotate(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="DocBin (.spacy) or .txt")],
    output_path: Annotated[Path, typer.Argument(metavar="OUTPUT", help="DocBin (.spacy) to write")],
    model: Annotated[str, typer.Option(help="Base model name or path.")] = "default",
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    pipeline: Annotated[
        Path | None,
        typer.Option(
            help="A saved pipeline; its settings replace --model/--adapter/--tasks/--device."
        ),
    ] = None,
    tasks: Annotated[str, typer.Option(help="entities,relations or relations")] = (
        "entities,relations"
    ),
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    score: Annotated[
        bool, typer.Option(help="Score against the annotations in INPUT (a DocBin).")
    ] = False,
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
) -> None:
    """Run `bio_relation_llm` over documents; print throughput, statistics and scores.

    A .txt INPUT holds one document per line. With `--tasks relations` the entities
    already in INPUT are kept and only relations are predicted."""
    from spacy.tokens import DocBin

    nlp, component = _build_pipeline(
        pipeline,
        model,
        adapter,
        tasks,
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
        none_threshold=none_threshold,
    )
    if input_path.suffix == ".txt":
        texts = input_path.read_text(encoding="utf8").splitlines()
        gold = [nlp.make_doc(t) for t in texts]
    else:
        gold = list(DocBin().from_disk(input_path).get_docs(nlp.vocab))
    if limit:
        gold = gold[:limit]
    predicted, summary = _run(nlp, component, gold, batch_size, score)
    DocBin(docs=predicted, store_user_data=True).to_disk(output_path)
    typer.echo(json.dumps(summary, indent=2))
    typer.echo(f"wrote {output_path}", err=True)


@app.command()
def demo(
    limit: Annotated[int, typer.Option(min=1, help="Number of BioRED dev abstracts.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    data_dir: Annotated[
        Path | None,
        typer.Option(help=f"Corpora folder (default ${DATA_DIR_ENV} or ../shared/data)"),
    ] = None,
    model: Annotated[str, typer.Option(help="Base model name or path.")] = "default",
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    max_prompt_tokens: MaxPromptTokensOption = None,
) -> None:
    """The main job: annotate BioRED dev abstracts with the embedded model (or yours),
    show the first document's entities and relations, then throughput and scores."""
    from ..corpora import read

    source = (data_dir or default_data_dir()) / "biored" / "Dev.PubTator"
    if not source.exists():
        typer.secho(
            f"error: {source} not found; set ${DATA_DIR_ENV} or --data-dir to the corpora folder",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(1)
    nlp, component = _build_pipeline(
        None,
        model,
        adapter,
        "entities,relations",
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
    )
    gold = []
    for doc in read("pubtator", source, make_doc=nlp.make_doc):
        gold.append(doc)
        if len(gold) >= limit:
            break
    if not gold:
        typer.secho(f"error: no documents in {source}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
    predicted, summary = _run(nlp, component, gold, batch_size, score=True)
    first = predicted[0]
    typer.echo(f"document {gold[0].user_data.get('doc_id', 0)}: {first.text[:200]}...")
    typer.echo("entities:")
    for ent in first.ents:
        typer.echo(f"  {ent.label_:<28} {ent.text!r}")
    typer.echo("relations:")
    for rel in first._.relations:
        typer.echo(
            f"  {rel.head_span(first).text!r} --{rel.label}--> {rel.tail_span(first).text!r}"
            f"  (confidence {rel.score:.2f})"
        )
    scores = summary["scores"]
    typer.echo(
        f"BioRED dev, {len(gold)} documents, model={model}, adapter={adapter}: "
        f"NER F1 {scores['ents_f']:.3f}, RE F1 (pair + type, end to end) "
        f"{scores['rel_micro_f']:.3f}"
    )
    typer.echo(json.dumps(summary, indent=2))


MaxPromptTokensOption = Annotated[
    int | None,
    typer.Option(
        min=192,
        help="Longest prompt in tokens; documents are cut into windows that fit. Match the "
        "instruction set's max_length for a tuned adapter (default: the component's 1024).",
    ),
]
NoneThresholdOption = Annotated[
    float | None,
    typer.Option(
        help="A pair is related when P(None) is below this (default: the component's 0.5); "
        "1.0 relates every candidate pair.",
    ),
]


def _build_pipeline(pipeline, model, adapter, tasks, batch_size, device, **settings):
    """A pipeline holding `bio_relation_llm`: loaded from `pipeline`, or a blank English
    one around `model` + `adapter`. `settings` (None = keep) override component settings
    such as `max_prompt_tokens` and `none_threshold`."""
    import spacy

    from ..pipeline.component import BioRelationLLM

    settings = {k: v for k, v in settings.items() if v is not None}
    if pipeline is not None:
        nlp = spacy.load(pipeline)
        component = next((c for _, c in nlp.pipeline if isinstance(c, BioRelationLLM)), None)
        if component is None:
            raise typer.BadParameter(f"{pipeline} has no bio_relation_llm component")
        for key, value in settings.items():
            setattr(component, key, value)
        return nlp, component
    nlp = spacy.blank("en")
    component = nlp.add_pipe(
        "bio_relation_llm",
        config={
            "model": model,
            "adapter": adapter,
            "tasks": [t.strip() for t in tasks.split(",") if t.strip()],
            "batch_size": batch_size,
            "device": device,
            **settings,
        },
    )
    return nlp, component


def _run(nlp, component, gold, batch_size: int, score: bool):
    """Annotate fresh copies of `gold`; return predictions and a summary with docs/s,
    peak RSS, the component's parse statistics and (optionally) scores."""
    from spacy.training import Example
    from tqdm import tqdm

    from ..annotations.spans import copy_for_prediction
    from ..evaluation.scorers import score_bio

    keep_ents = "entities" not in component.tasks
    inputs = [copy_for_prediction(nlp.make_doc, doc, keep_ents) for doc in gold]
    _ = component.backend  # load the model before timing
    start = time.perf_counter()
    predicted = list(
        tqdm(
            nlp.pipe(inputs, batch_size=batch_size),
            total=len(inputs),
            desc="annotate",
            unit="doc",
            file=sys.stderr,
        )
    )
    seconds = time.perf_counter() - start
    summary = {
        "docs": len(predicted),
        "seconds": round(seconds, 2),
        "docs_per_s": round(len(predicted) / seconds, 3) if seconds else None,
        "batch_size": batch_size,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "stats": dict(component.stats),
    }
    if score:
        summary["scores"] = score_bio([Example(p, g) for p, g in zip(predicted, gold, strict=True)])
    return predicted, summary


_OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True}


@app.command("build-instructions", context_settings=_OVERRIDES)
def build_instructions_command(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Instruction config (.cfg).")],
    output: Annotated[Path, typer.Option(help="Folder for train/dev JSONL and stats.")] = Path(
        "training/instructions"
    ),
    model: Annotated[
        str | None, typer.Option(help="Measure lengths with this model's tokenizer.")
    ] = None,
) -> None:
    """Build the instruction dataset from DocBin corpora (extra `--section.key value`
    options override the config, as in spaCy)."""
    from ..instructions.build import build_instructions, load_config
    from ..training.run import parse_overrides

    try:
        cfg = load_config(config, parse_overrides(ctx.args))
        report = build_instructions(cfg, output, tokenizer=model)
    except (FileNotFoundError, ValueError) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    typer.echo(str(report))
    typer.echo(f"wrote {output}", err=True)


@app.command(context_settings=_OVERRIDES)
def train(
    ctx: typer.Context,
    config: Annotated[Path, typer.Argument(metavar="CONFIG", help="Training config (.cfg).")],
    output: Annotated[Path, typer.Option(help="Run folder (checkpoints, log, adapter/).")],
    force: Annotated[
        bool, typer.Option(help="Start afresh even if OUTPUT holds another run.")
    ] = False,
) -> None:
    """LoRA fine-tuning. Extra `--section.key value` options override the config
    (e.g. `--training.max_steps 3`); running the same command again resumes."""
    from ..training.run import OutputDirConflict, parse_overrides
    from ..training.run import train as run_training

    try:
        result = run_training(config, output, parse_overrides(ctx.args), force=force)
    except (FileNotFoundError, ValueError, OutputDirConflict) as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from err
    typer.echo(str(result))


@app.command()
def evaluate(
    gold_path: Annotated[Path, typer.Argument(metavar="GOLD", help="Gold DocBin (.spacy).")],
    output: Annotated[Path, typer.Option(help="Metrics JSON to write.")] = Path("metrics.json"),
    markdown: Annotated[Path | None, typer.Option(help="Markdown table to write.")] = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Write the end-to-end predictions (DocBin).")
    ] = None,
    model: Annotated[str, typer.Option(help="Base model name or path.")] = "default",
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    pipeline: Annotated[Path | None, typer.Option(help="A saved pipeline instead.")] = None,
    limit: Annotated[int, typer.Option(min=0, help="Only the first N documents (0 = all).")] = 0,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    max_pairs: Annotated[
        int, typer.Option(min=1, help="Cap on candidate pairs per window (max_pairs_per_window).")
    ] = 100,
    gold_entities: Annotated[
        bool, typer.Option(help="Also score relations predicted on the gold entities.")
    ] = True,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda")] = "auto",
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
) -> None:
    """Run the component over a gold corpus and score it: end to end (predicted
    entities) and, for relations, with the gold entities given. Writes metrics JSON
    (end-to-end scores at the top level), a markdown table and the predictions."""
    from spacy.tokens import DocBin

    nlp, component = _build_pipeline(
        pipeline,
        model,
        adapter,
        "entities,relations",
        batch_size,
        device,
        max_prompt_tokens=max_prompt_tokens,
        none_threshold=none_threshold,
    )
    component.max_pairs_per_window = max_pairs
    gold = list(DocBin().from_disk(gold_path).get_docs(nlp.vocab))
    if limit:
        gold = gold[:limit]
    if not gold:
        raise typer.BadParameter(f"{gold_path} holds no documents")
    predicted, summary = _run(nlp, component, gold, batch_size, score=True)
    metrics: dict = {**summary.pop("scores"), "run": summary}
    if gold_entities:
        component.tasks = ["relations"]
        component.stats.clear()
        _, rel_summary = _run(nlp, component, gold, batch_size, score=True)
        scores = rel_summary.pop("scores")
        metrics["gold_entities"] = {k: v for k, v in scores.items() if k.startswith("rel_")}
        metrics["gold_entities"]["run"] = rel_summary
    metrics["meta"] = {
        "model": model if pipeline is None else str(pipeline),
        "adapter": adapter,
        "data": str(gold_path),
        "documents": len(gold),
        "max_prompt_tokens": component.max_prompt_tokens,
        "none_threshold": component.none_threshold,
        "max_pairs_per_window": component.max_pairs_per_window,
        "command": " ".join(["python -m spacy_bioreama", *sys.argv[1:]]),
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


def metrics_markdown(metrics: dict) -> str:
    """A small markdown table of the headline metrics of an `evaluate` run."""

    def fmt(value) -> str:
        return "–" if value is None else f"{100 * value:.1f}"

    meta = metrics.get("meta", {})
    rows = [
        f"Model `{meta.get('model')}`, adapter `{meta.get('adapter')}`, "
        f"data `{meta.get('data')}` ({meta.get('documents')} documents).",
        "",
        "| metric | P | R | F1 |",
        "|---|---|---|---|",
        f"| NER (strict mentions) | {fmt(metrics['ents_p'])} | {fmt(metrics['ents_r'])} | "
        f"{fmt(metrics['ents_f'])} |",
    ]
    settings = [("end to end", metrics)]
    if "gold_entities" in metrics:
        settings.append(("gold entities", metrics["gold_entities"]))
    for name, scores in settings:
        for key, label in (
            ("rel_pair", "pair"),
            ("rel_micro", "pair + type"),
            ("rel_novelty", "pair + type + novelty"),
        ):
            rows.append(
                f"| RE {label}, {name} | {fmt(scores[key + '_p'])} | {fmt(scores[key + '_r'])} |"
                f" {fmt(scores[key + '_f'])} |"
            )
    return "\n".join(rows) + "\n"


@app.command()
def compare(
    metrics_files: Annotated[list[Path], typer.Argument(help="Metrics JSON files from evaluate.")],
    output: Annotated[Path | None, typer.Option(help="Markdown file to write.")] = None,
) -> None:
    """Put several `evaluate` (or `evaluate-instructions`) results side by side, one
    column each: F1 per metric, and per corpus F1 (relations, pairs) or accuracy and
    macro-F1 (QA)."""
    runs = [(p.stem, json.loads(p.read_text())) for p in metrics_files]

    def get(metrics: dict, path: str):
        value = metrics
        for part in path.split("/"):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    rows = [
        ("NER F1 (strict mentions)", "ents_f"),
        ("RE F1 pair, end to end", "rel_pair_f"),
        ("RE F1 pair + type, end to end", "rel_micro_f"),
        ("RE F1 pair, gold entities", "gold_entities/rel_pair_f"),
        ("RE F1 pair + type, gold entities", "gold_entities/rel_micro_f"),
        ("documents", "meta/documents"),
        ("docs/s (end to end)", "run/docs_per_s"),
    ]
    if not any("corpora" not in metrics for _, metrics in runs):
        rows = []  # evaluate-instructions results only: per-corpus rows
    corpora: dict[str, str] = {}
    for _, metrics in runs:
        for key, m in (metrics.get("corpora") or {}).items():
            corpora.setdefault(key, m.get("task", ""))
    for key, task in corpora.items():
        if task == "qa":
            rows += [(f"{key} accuracy", f"corpora/{key}/qa_acc")]
            rows += [(f"{key} macro-F1", f"corpora/{key}/qa_macro_f")]
        else:
            rows.append((f"{key} F1 ({task}, positive labels)", f"corpora/{key}/{task}_f"))
    lines = ["| metric | " + " | ".join(name for name, _ in runs) + " |"]
    lines.append("|---|" + "---|" * len(runs))
    for label, path in rows:
        cells = []
        for _, metrics in runs:
            value = get(metrics, path)
            if isinstance(value, float) and path.endswith(("_f", "_acc")):
                cells.append(f"{100 * value:.1f}")
            else:
                cells.append("–" if value is None else str(value))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for name, metrics in runs:
        lines.append(f"\n`{name}`: {get(metrics, 'meta/command')}")
    table = "\n".join(lines) + "\n"
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(table)
    typer.echo(table)


@app.command()
def package(
    output_dir: Annotated[Path, typer.Argument(metavar="OUTPUT_DIR", help="Where to build.")],
    adapter: Annotated[str | None, typer.Option(help="PEFT LoRA adapter directory.")] = None,
    model: Annotated[str, typer.Option(help="Base model name or path (referenced).")] = "default",
    name: Annotated[str, typer.Option(help="Package name (without the en_ prefix).")] = (
        "bioreama"
    ),
    version: Annotated[str, typer.Option()] = "0.1.0",
    max_prompt_tokens: MaxPromptTokensOption = None,
    none_threshold: NoneThresholdOption = None,
) -> None:
    """Build an installable spaCy pipeline package (sdist) holding `bio_relation_llm`
    with the adapter copied in; the base model is referenced, not copied."""
    import importlib

    import spacy

    from .. import __version__

    nlp = spacy.blank("en")
    settings = {"max_prompt_tokens": max_prompt_tokens, "none_threshold": none_threshold}
    nlp.add_pipe(
        "bio_relation_llm",
        config={
            "model": model,
            "adapter": adapter,
            **{k: v for k, v in settings.items() if v is not None},
        },
    )
    nlp.meta.update(
        name=name,
        version=version,
        requirements=[f"spacy-bioreama>={__version__}"],
        description="bio_relation_llm: biomedical entities and relations from a LoRA-tuned LM",
    )
    pipeline_dir = output_dir / "pipeline"
    output_dir.mkdir(parents=True, exist_ok=True)
    nlp.to_disk(pipeline_dir)
    spacy_package = importlib.import_module("spacy.cli.package").package
    spacy_package(pipeline_dir, output_dir, name=name, version=version, force=True, silent=False)


@app.command()
def info() -> None:
    """Versions, the embedded model's location and the data directory in use."""
    import spacy
    import torch
    import transformers

    from .. import __version__

    typer.echo(f"spacy-bioreama {__version__}")
    typer.echo(
        f"spacy {spacy.__version__}, transformers {transformers.__version__}, "
        f"torch {torch.__version__} (cuda: {torch.cuda.is_available()})"
    )
    typer.echo(f"data directory: {default_data_dir()}")
    from ..models import EmbeddedModelNotInstalled, cache_dir, find_gguf

    try:
        typer.echo(f"embedded model: {find_gguf()}")
    except EmbeddedModelNotInstalled as err:
        typer.echo(f"embedded model: not installed ({err})")
    typer.echo(f"model cache: {cache_dir()}")


def main() -> None:
    app()
